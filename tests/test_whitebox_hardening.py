"""Hardening that survives a white-box attacker: the default `harden fix` raises white-box PGD robust accuracy at
a small clean cost; TRADES, MART and N-FGSM train; the validation monitor keeps the best epoch and stops on
catastrophic overfitting; fixer with craft_on=patched leaves the base byte-identical."""
import copy
import dataclasses

import pytest
import torch

import harden
from harden.fix import state_digest
from harden.recipes import DEFAULT_RECIPE
from harden.data import fit_size, to_tensor
from harden.recipes.at import catastrophic_overfitting, split_validation, validate, validation_attack
from harden.training import Monitor, TrainConfig, fit


@pytest.fixture(scope="module")
def default_fix(digits_ckpt, digits):
    # measured 2026-12-04 (one thread, seed 0, 300 test images, eps 0.1, at's defaults: Adam 0.01, PGD-5, eps ramp
    # 2, 10 epochs, batch auto = 32 for these 539 images, val_keep beyond-noise): white-box PGD 0.290 -> 0.560,
    # AutoPGD -> 0.560, clean 0.887 -> 0.913 (the last epoch kept; keeping the best, epoch 7: PGD 0.517, clean 0.907)
    return harden.fix(digits_ckpt, digits, sets=["eps=0.1"], data_frac=0.3, device="cpu", report_n=300,
                      attacks=["pgd", "autopgd"], metrics=False, masking_checks=False)


def test_default_fix_hardens_white_box(default_fix):
    assert DEFAULT_RECIPE == "at" and default_fix.model.spec.extra["recipe"] == "at"
    base, fixed = default_fix.reports["base_white_box"], default_fix.reports["fixed_white_box"]
    assert fixed.threat_model == "white-box"
    for b, f in zip(base.attacks, fixed.attacks, strict=True):
        assert f.robust_accuracy >= b.robust_accuracy + 0.10, f.name  # measured +29 points; headroom kept
    assert fixed.worst_case >= base.worst_case + 0.10
    change = default_fix.change()  # the same, paired on the 300 images: a gain beyond noise
    assert change["worst"]["difference"] == pytest.approx(fixed.worst_case - base.worst_case)
    assert change["worst"]["lower"] > 0 and change["worst"]["gained"] > change["worst"]["lost"]
    # clean change over seeds 0-7 (one thread, 2026-12-04), the last epoch kept unless beaten beyond the noise of 40
    # validation images: +2.6 to +5.6 points; keeping the best epoch instead gave -8.7 to +5.3 (an under-trained
    # epoch winning by an image: the 5-point bound failed in two of nine runs)
    assert fixed.clean_accuracy >= base.clean_accuracy - 0.05


def kept_epoch(hist: list[dict]) -> int:
    """at's val_keep beyond-noise: the last epoch, unless the first epoch of highest validation PGD accuracy beats it
    by more than one standard error of the difference of the two accuracies."""
    best = max(range(len(hist)), key=lambda i: hist[i]["val_robust"])
    p, q, n = hist[best]["val_robust"], hist[-1]["val_robust"], hist[-1]["val_n"]
    return len(hist) if p - q <= ((p * (1 - p) + q * (1 - q)) / n) ** 0.5 else best + 1


def test_default_fix_records_validation_and_best_epoch(default_fix):
    extra = default_fix.model.spec.extra
    assert extra["validation"]["n"] > 0 and len(extra["validation"]["index_sha256"]) == 16
    hist = default_fix.history
    assert all("val_robust" in h and "val_clean" in h for h in hist)
    assert extra["best_epoch"] == kept_epoch(hist)


def test_an_epoch_beaten_beyond_noise_is_not_kept(digits_ckpt, digits):
    """val_keep: best keeps the epoch of highest validation PGD accuracy; beyond-noise (the default) keeps the last
    unless that one is beaten by more than the noise of the slice's images. Both read the same history."""
    runs = {keep: harden.fix(digits_ckpt, digits, sets=["eps=0.1", f"val_keep={keep}"], data_frac=0.3, epochs=4,
                             device="cpu", report=False) for keep in ("best", "beyond-noise")}
    hist = runs["best"].history
    assert hist == runs["beyond-noise"].history  # the same training; only the weights kept at its end differ
    best = max(range(len(hist)), key=lambda i: hist[i]["val_robust"]) + 1
    assert runs["best"].model.spec.extra["best_epoch"] == best
    assert runs["beyond-noise"].model.spec.extra["best_epoch"] == kept_epoch(hist)
    with pytest.raises(harden.HardenError, match="val_keep"):
        harden.fix(digits_ckpt, digits, sets=["val_keep=first"], data_frac=0.3, epochs=1, device="cpu", report=False)


@pytest.mark.parametrize("sets", [["loss=trades", "beta=2"], ["loss=trades", "attack=pgd-l2", "eps=1.0"], ["loss=mart"],
                                  ["attack=nfgsm"],
                                  ["attack=fgsm-rs", "eps_ramp=1"], ["awp_gamma=0.01", "awp_warmup=1", "val_max=20"]])
def test_losses_and_cheap_attacks_train(sets, digits_ckpt, digits):
    res = harden.fix(digits_ckpt, digits, sets=["eps=0.1", *sets], data_frac=0.2, epochs=2, device="cpu",
                     report=False)
    assert len(res.history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    assert state_digest(res.model.net) != state_digest(harden.load(digits_ckpt).net)
    params = res.model.spec.extra["recipe_params"]
    for key, value in (s.split("=") for s in sets):  # each setting recorded as given (typed like its default)
        assert str(params[key]) == value or float(params[key]) == float(value), (key, params[key], value)
    subset = res.model.spec.extra["subset"]
    trained = subset["n"] - subset.get("test_copies_left_out", 0)
    assert res.model.spec.extra["validation"]["n"] == (20 if "val_max=20" in sets else round(0.1 * trained))


def test_validation_slice_is_stratified_seeded_and_disjoint(digits):
    train, val, meta = split_validation(digits, 0.1, seed=0)
    _, val2, meta2 = split_validation(digits, 0.1, seed=0)
    assert meta == meta2 and len(train.y_train) + len(val.y_train) == len(digits.y_train)
    assert set(val.y_train.tolist()) == set(range(10))
    rows = {r.tobytes() for r in train.x_train}
    assert not any(r.tobytes() in rows for r in val.x_train[:50])
    train, val, meta = split_validation(digits, 0.1, seed=0, most=30)  # at most 30: the rest trains
    assert meta["n"] == len(val.y_train) == 30 and len(train.y_train) == len(digits.y_train) - 30
    assert set(val.y_train.tolist()) == set(range(10))  # still every class
    with pytest.raises(harden.HardenError, match="val_max"):
        split_validation(digits, 0.1, seed=0, most=-1)


def test_catastrophic_overfitting_rule():
    ok = [{"epoch": 1, "val_robust": 0.40, "adv_acc": 0.50}, {"epoch": 2, "val_robust": 0.38, "adv_acc": 0.55}]
    assert catastrophic_overfitting(ok) is None
    co = ok + [{"epoch": 3, "val_robust": 0.05, "adv_acc": 0.90}]  # PGD collapses while FGSM accuracy climbs ...
    assert catastrophic_overfitting(co) is None  # ... for one epoch: not yet
    co2 = co + [{"epoch": 4, "val_robust": 0.04, "adv_acc": 0.92}]
    assert "fell from 0.400 (epoch 1)" in catastrophic_overfitting(co2)
    both_fall = ok + [{"epoch": e, "val_robust": 0.05, "adv_acc": 0.30} for e in (3, 4)]  # divergence, not CO
    assert catastrophic_overfitting(both_fall) is None
    # measured on digits at 16x16, eps 0.2: a one-epoch fall the run recovered from (to 0.31)
    recovered = [{"epoch": 5, "val_robust": 0.193, "adv_acc": 0.29, "val_n": 539},
                 {"epoch": 11, "val_robust": 0.084, "adv_acc": 0.305, "val_n": 539},
                 {"epoch": 12, "val_robust": 0.11, "adv_acc": 0.28, "val_n": 539}]
    assert all(catastrophic_overfitting(recovered[:i]) is None for i in (1, 2, 3))
    # a measured dip on digits at eps 0.2 (135 validation images) that the same setting recovered from elsewhere:
    # within three standard errors, so not a collapse; the same figures on 1,000 images, or a fall to 0, are
    dip = [{"epoch": 6, "val_robust": 0.176, "adv_acc": 0.22, "val_n": 135}] + \
        [{"epoch": e, "val_robust": 0.066, "adv_acc": 0.24, "val_n": 135} for e in (7, 8)]
    assert catastrophic_overfitting(dip) is None
    assert "fell from" in catastrophic_overfitting([{**h, "val_n": 1000} for h in dip])
    assert "fell from" in catastrophic_overfitting([dip[0]] + [{**h, "val_robust": 0.0} for h in dip[1:]])


@pytest.mark.parametrize("first, single, pgd, defeated", [
    (0.00, 0.17, 0.00, True),  # digits, FGSM without random start at eps 0.3: the run that trips (measured)
    (0.04, 0.36, 0.07, True),  # eps 0.25, epochs 1 and 20 (measured)
    (0.00, 0.12, 0.00, False),  # too few images apart yet
    (0.17, 0.18, 0.00, False),  # a standard model's low ratio (CIFAR-10 ResNet-20, measured), not climbing
    (0.13, 0.65, 0.48, False), (0.02, 0.62, 0.40, False), (0.40, 0.81, 0.71, False),  # healthy runs (digits)
])
def test_training_attack_defeated_is_catastrophic_overfitting(first, single, pgd, defeated):
    history = [{"epoch": 1, "val_robust": 0.0, "val_train_attack": first, "adv_acc": 0.2}] + \
        [{"epoch": e, "val_robust": pgd, "val_train_attack": single, "adv_acc": 0.2} for e in (2, 3)]
    reason = catastrophic_overfitting(history)
    assert (reason is not None and "defeats the single-step attack" in reason) == defeated
    assert catastrophic_overfitting(history[:2]) is None  # one epoch of it: not yet
    assert catastrophic_overfitting(history[-1:]) is None  # nothing to climb from
    # epochs of the eps ramp (trained below the budget the validation attacks at) are not read
    assert catastrophic_overfitting(history, full_budget_epoch=2) is None
    # the first version read the ramp's epochs and a single epoch, and stopped this run at epoch 2 (MNIST at 10%,
    # FGSM-RS at 0.3, a 3-epoch ramp, measured); let go on, it reached validation PGD 0.71
    mnist = [{"epoch": e, "val_robust": r, "val_train_attack": a} for e, r, a in
             [(1, 0.0, 0.043), (2, 0.003, 0.334), (3, 0.159, 0.561), (4, 0.386, 0.705), (5, 0.412, 0.745)]]
    assert all(catastrophic_overfitting(mnist[:i], full_budget_epoch=4) is None for i in range(1, 6))


def test_monitor_stops_and_keeps_the_best_epochs_weights(digits):
    """The shared loop with a validation whose robust accuracy rises, then collapses for two epochs while the
    training attack's accuracy climbs: training stops there and the weights written are those of the best epoch."""
    model = harden.create_model("cnn-small", 10, 1, (8, 8))
    script = iter([0.30, 0.45, 0.05, 0.05, 0.05])
    snapshots = []

    def measure(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"val_robust": next(script), "adv_acc": 0.5 + 0.1 * len(snapshots)}

    def step(m, x, y):
        z = m(x)
        return torch.nn.functional.cross_entropy(z, y), z, {}

    res = fit(model, digits, TrainConfig(epochs=5, batch_size=64, lr=0.05, augment="none"), torch.device("cpu"),
              step=step, monitor=Monitor(measure, "val_robust", catastrophic_overfitting))
    assert len(res.history) == 4 and res.best_epoch == 2 and "catastrophic overfitting" in res.stopped
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[1].items())
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[3].items())


@pytest.mark.parametrize("scores, epochs", [
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 8),   # rising to the end of every cycle: 4 + 2 + 2, capped at twice
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.4], 6),             # rising at 4, so 2 more; the added cycle peaks first: stop
    ([0.1, 0.3, 0.2, 0.2], 4),                       # the best epoch was not the last: the planned count
])
def test_epochs_follow_the_validation_slice(digits, scores, epochs):
    """extend: while the last epoch of a cycle is the best on validation, another cycle of extend x the planned
    epochs follows (from a tenth of the peak learning rate), up to twice the planned epochs; the best epoch is kept."""
    model = harden.create_model("cnn-small", 10, 1, (8, 8))
    script = iter(scores)

    def step(m, x, y):
        z = m(x)
        return torch.nn.functional.cross_entropy(z, y), z, {}

    small = dataclasses.replace(digits, x_train=digits.x_train[:128], y_train=digits.y_train[:128])
    res = fit(model, small, TrainConfig(epochs=4, batch_size=64, lr=0.01, augment="none", extend=0.5),
              torch.device("cpu"), step=step, monitor=Monitor(lambda m: {"val_robust": next(script)}, "val_robust"))
    assert len(res.history) == epochs and sum(res.extended) == epochs - 4
    assert res.best_epoch == 1 + max(range(epochs), key=lambda i: scores[i])
    rising = iter([0.1, 0.2, 0.3, 0.4])
    fixed = fit(harden.create_model("cnn-small", 10, 1, (8, 8)), small,
                TrainConfig(epochs=4, batch_size=64, lr=0.01, augment="none"), torch.device("cpu"), step=step,
                monitor=Monitor(lambda m: {"val_robust": next(rising)}, "val_robust"))
    assert len(fixed.history) == 4 and not fixed.extended and fixed.best_epoch == 4  # extend 0: the planned count


@pytest.mark.parametrize("scores, n, kept, stop", [
    ([0.30, 0.50, 0.45], 40, 3, False),   # beaten by 5 points on 40 images (one standard error: 11): the last epoch
    ([0.30, 0.50, 0.45], 4000, 2, False),  # the same 5 points on 4,000 images (standard error 1.1): the best
    ([0.10, 0.60, 0.20], 40, 2, False),   # a collapse (robust overfitting) beyond any noise: the best
    ([0.30, 0.50, 0.45], 40, 2, True),    # within noise, but the last epoch is the one a stop condemned: the best
])
def test_the_last_epoch_is_kept_unless_beaten_beyond_noise(digits, scores, n, kept, stop):
    """Monitor.within_noise (at's val_keep beyond-noise) keeps the last epoch's weights unless the best epoch beat it
    clearly, or training was stopped there (catastrophic overfitting: its warning says the best epoch is kept); the
    weights are then exactly the last epoch's (those validated), else the best's."""
    from harden.recipes.at import beaten_within_noise
    script, snapshots = iter(scores), []

    def measure(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"val_robust": next(script), "val_n": n}

    def step(m, x, y):
        z = m(x)
        return torch.nn.functional.cross_entropy(z, y), z, {}

    small = dataclasses.replace(digits, x_train=digits.x_train[:128], y_train=digits.y_train[:128])
    model = harden.create_model("cnn-small", 10, 1, (8, 8))
    def stopper(history):
        return "catastrophic overfitting: scripted" if stop and len(history) == 3 else None

    res = fit(model, small, TrainConfig(epochs=4 if stop else 3, batch_size=64, lr=0.01, augment="none"),
              torch.device("cpu"), step=step, monitor=Monitor(measure, "val_robust", stopper, beaten_within_noise))
    assert res.best_epoch == kept and len(res.history) == 3 and bool(res.stopped) == stop
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[kept - 1].items())


def test_catastrophic_overfitting_stop_trips_on_a_real_fgsm_run(digits_ckpt, digits):
    """A run built to overfit: FGSM without a random start (one signed step of eps from the clean image) at eps 0.3
    with no ramp. Measured (seeds 0-2, one and two threads): the single-step attack's validation accuracy climbs to
    0.15-0.23 while PGD's stays at 0.00-0.01, and the stop trips at epochs 11-14 (the sign must hold two epochs).
    The weights written are the best epoch's: the returned model gives exactly that epoch's validation figures."""
    epochs, eps, val_frac = 25, 0.3, 0.3
    res = harden.fix(digits_ckpt, digits, sets=[f"eps={eps}", "eps_ramp=0", f"val_frac={val_frac}", "attack=pgd",
                                                "steps=1", "restarts=0", "step=eps/1"],
                     data_frac=0.5, epochs=epochs, device="cpu", report=False)
    hist, extra = res.history, res.model.spec.extra
    assert "defeats the single-step attack" in extra["stopped"] and len(hist) < epochs
    assert hist[-1]["val_train_attack"] - hist[-1]["val_robust"] >= 0.15
    best = 1 + max(range(len(hist)), key=lambda i: hist[i]["val_robust"])  # stopped: the best epoch, noise or not
    assert extra["best_epoch"] == best and best < len(hist)
    sub = harden.subsample(digits, 0.5, 0)
    _, val, _ = split_validation(sub, val_frac, seed=0)
    xv = fit_size(to_tensor(val.x_train, "cpu"), tuple(res.model.spec.input_size))
    again = validate(res.model, xv, torch.from_numpy(val.y_train), validation_attack("pgd:steps=10", eps),
                     extra["recipe_train"]["batch_size"], 0)
    assert (again["val_clean"], again["val_robust"]) == (hist[best - 1]["val_clean"], hist[best - 1]["val_robust"])
    assert any(h["val_clean"] != again["val_clean"] for h in hist)  # the figures tell the epochs apart


def test_ema_returns_the_moving_average_of_the_trajectory(digits):
    """Weight averaging: with ema = d the loop returns d^T w_0 + sum_t (1 - d) d^(T-t) w_t over the weights after
    each of the T steps, computed here from the same run's trajectory recorded without averaging, and validates
    (and keeps) the average rather than the raw weights."""
    d, cfg = 0.8, TrainConfig(epochs=1, batch_size=64, lr=0.05, augment="none")
    init = harden.create_model("cnn-small", 10, 1, (8, 8))
    seen = []

    def recording_step(m, x, y):
        seen.append({k: v.detach().clone() for k, v in m.state_dict().items()})  # weights after the previous step
        z = m(x)
        return torch.nn.functional.cross_entropy(z, y), z, {}

    plain = copy.deepcopy(init)
    fit(plain, digits, cfg, torch.device("cpu"), step=recording_step)
    trajectory = seen[1:] + [plain.state_dict()]  # w_1 .. w_T
    expected = {k: v.clone().float() for k, v in seen[0].items()}
    for w in trajectory:
        for k in expected:
            expected[k] = d * expected[k] + (1 - d) * w[k].float()

    averaged, validated = copy.deepcopy(init), []
    res = fit(averaged, digits, dataclasses.replace(cfg, ema=d), torch.device("cpu"), step=recording_step,
              monitor=Monitor(lambda m: validated.append({k: v.clone() for k, v in m.state_dict().items()}) or
                              {"val_robust": 0.5}, "val_robust"))
    assert res.best_epoch == 1
    for k, v in averaged.state_dict().items():
        assert torch.allclose(v.float(), expected[k], atol=1e-6), k
        assert torch.equal(validated[0][k], v)
    assert any(not torch.allclose(v.float(), plain.state_dict()[k].float()) for k, v in averaged.state_dict().items())
    with pytest.raises(harden.HardenError, match="ema"):
        harden.fix(harden.create_model("cnn-small", 10, 1, (8, 8)), digits, sets=["ema=1.5"], data_frac=0.1,
                   device="cpu", report=False)


@pytest.mark.parametrize("craft", ["running", "batch"])
def test_at_batchnorm_statistics_see_only_the_batches_trained_on(digits, craft):
    """PGD-AT trains on adversarial batches only; a train-mode clean pass (for the progress line) would mix clean
    statistics into BatchNorm's running averages, which the evaluated model then applies to attacked inputs.
    One statistics-updating BatchNorm pass per optimizer step: the adversarial batch. The attack runs in eval mode
    (craft_statistics = running) or in train mode with the running statistics held (= batch)."""
    from harden.recipes import apply_overrides, get_recipe, load_recipe_config
    model = harden.create_model("resnet9", 10, 1, (8, 8))
    bn = next(m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    tracked_before = int(bn.num_batches_tracked)
    passes = []
    bn.register_forward_hook(lambda m, i, o: passes.append((m.training, m.momentum)))
    params = apply_overrides(load_recipe_config("at"), ["eps=0.1", "val_frac=0", "eps_ramp=0", "steps=2",
                                                        f"craft_statistics={craft}"])["params"]
    cfg = TrainConfig(epochs=1, batch_size=50, lr=0.001, optimizer="adam", augment="none")
    n = 150
    data = dataclasses.replace(digits, x_train=digits.x_train[:n], y_train=digits.y_train[:n])
    get_recipe("at").train(model, data, params, cfg, torch.device("cpu"))
    steps = cfg.epochs * n // cfg.batch_size
    assert sum(1 for training, momentum in passes if training and momentum) == steps
    assert int(bn.num_batches_tracked) - tracked_before == steps
    held = [p for p in passes if p[0] and not p[1]] if craft == "batch" else [p for p in passes if not p[0]]
    assert len(held) >= 2 * steps  # the attack's passes (two PGD steps a batch, plus the progress line's)


def test_fixer_craft_on_patched_keeps_the_base_byte_identical(digits_ckpt, digits):
    base = harden.load(digits_ckpt)
    res = harden.fix(digits_ckpt, digits, recipe="fixer", sets=["eps=0.1", "craft_on=patched", "steps=3"],
                     data_frac=0.1, epochs=1, device="cpu", report=False)
    assert state_digest(res.model.net) == state_digest(base.net)
    assert res.model.spec.extra["recipe_params"]["craft_on"] == "patched"
    with pytest.raises(harden.HardenError, match="craft_on"):
        harden.fix(digits_ckpt, digits, recipe="fixer", sets=["craft_on=elsewhere"], data_frac=0.1, epochs=1,
                   device="cpu", report=False)


def test_at_epochs_are_automatic_by_fraction_and_set_takes_a_number(digits_ckpt, digits):
    from harden.recipes.at import AdversarialTraining
    assert [AdversarialTraining().auto_epochs(f) for f in (1.0, 0.1, 0.05, 0.01, 0.001)] == [10, 10, 14, 30, 30]
    res = harden.fix(digits_ckpt, digits, sets=["eps=0.1", "epochs=1"], data_frac=0.1, device="cpu", report=False)
    assert len(res.history) == 1 and res.model.spec.extra["recipe_train"]["epochs"] == 1
    with pytest.raises(harden.HardenError, match="epochs must be a whole number"):
        harden.fix(digits_ckpt, digits, sets=["epochs=many"], data_frac=0.1, device="cpu", report=False)
    # a budget or step that is no number says the setting and what it takes (it said "'x' is not a number")
    with pytest.raises(harden.HardenError, match=r"--set eps= takes a number \(its default: 8/255\), got 'x'\."):
        harden.fix(digits_ckpt, digits, sets=["eps=x"], data_frac=0.1, device="cpu", report=False)
    with pytest.raises(harden.HardenError, match=r"--set step= takes auto, eps/K \(the budget over K\) or a number, "
                                                 r"got 'eps/x'\."):
        harden.fix(digits_ckpt, digits, sets=["step=eps/x"], data_frac=0.1, device="cpu", report=False)


def test_at_batch_size_is_automatic_by_fraction_size(digits_ckpt, digits):
    from harden.recipes.at import MIN_STEPS_PER_EPOCH, AdversarialTraining
    auto = AdversarialTraining().auto_batch_size
    assert auto(128 * MIN_STEPS_PER_EPOCH) == 128 and auto(128 * MIN_STEPS_PER_EPOCH - 1) == 64
    assert auto(64 * MIN_STEPS_PER_EPOCH) == 64 and auto(64 * MIN_STEPS_PER_EPOCH - 1) == 32 and auto(10) == 32
    res = harden.fix(digits_ckpt, digits, sets=["eps=0.1", "epochs=1", "batch_size=auto"], data_frac=0.1,
                     device="cpu", report=False)
    n = res.model.spec.extra["subset"]["n"]  # the fraction's size, validation slice included
    assert n < 64 * MIN_STEPS_PER_EPOCH and res.model.spec.extra["recipe_train"]["batch_size"] == 32
    with pytest.raises(harden.HardenError, match=r"batch_size.*(whole number|integer)"):
        harden.fix(digits_ckpt, digits, sets=["batch_size=lots"], data_frac=0.1, device="cpu", report=False)
    with pytest.raises(harden.HardenError, match="no automatic batch size"):
        harden.fix(digits_ckpt, digits, recipe="fixer", sets=["batch_size=auto"], data_frac=0.1, epochs=1,
                   device="cpu", report=False)


def test_eps_ramp_is_a_fifth_of_the_run_by_default():
    from harden.recipes.at import ramp_length
    assert ramp_length("auto", 10) == 2 and ramp_length("auto", 30) == 6 and ramp_length("3", 30) == 3.0
    assert ramp_length(0, 10) == 0.0
    with pytest.raises(harden.HardenError, match="eps_ramp"):
        ramp_length("soon", 10)


def test_at_hardens_against_an_l2_attacker(digits_ckpt, digits):
    """`--set attack=pgd-l2 --set eps=0.5`: at trains against L2 PGD (the recipe's eps an L2 radius, the step its ratio,
    validated by L2 PGD at that radius), and the report measures it there: L2 PGD and DeepFool at the training
    radius, white-box, rise well above the base's (measured: L2 PGD 32.0% -> 57.3%, DeepFool 32.7% -> 58.7%, 150
    images)."""
    from harden.recipes.base import training_attack
    atk = training_attack({"attack": "pgd-l2", "eps": "1.0", "step": "eps/2.5", "steps": 5})
    assert atk.norm == "2" and atk.params["eps"] == 1.0 and atk.params["step"] == 0.4 and not atk.params["early_stop"]
    val = validation_attack("pgd:steps=10", 1.0, "2")
    assert val.name == "pgd-l2" and val.params["eps"] == 1.0 and val.params["step"] == 0.25
    from harden.fix import recipe_config, report_attacks
    attacks, budgets, _ = report_attacks(recipe_config("at", ["attack=pgd-l2", "eps=0.5"]), None, (8, 8))
    assert attacks[-1] == "pgd-l2" and len(attacks) == 7 and budgets == {"eps": None, "eps_l2": 0.5}  # by default
    assert report_attacks(recipe_config("at", ["eps=0.1"]), None, (8, 8))[:2] == (None, {"eps": 0.1})
    res = harden.fix(digits_ckpt, digits, sets=["attack=pgd-l2", "eps=0.5"], data_frac=0.3, device="cpu",
                     report_n=150, attacks=["pgd-l2", "deepfool"], metrics=False, masking_checks=False)
    base, fixed = res.reports["base_white_box"], res.reports["fixed_white_box"]
    by_name = {a.name: (b.robust_accuracy, a.robust_accuracy, a.budget) for b, a in zip(base.attacks, fixed.attacks,
                                                                                        strict=True)}
    assert by_name["pgd-l2"][2] == by_name["deepfool"][2] == 0.5  # the report's L2 budget is the training radius
    for name in ("pgd-l2", "deepfool"):
        assert by_name[name][1] >= by_name[name][0] + 0.10, (name, by_name[name])
    assert fixed.clean_accuracy >= base.clean_accuracy - 0.05


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_trades_examples_stay_in_their_ball_and_raise_the_kl(norm, digits_ckpt, digits):
    """TRADES' inner maximisation in either norm: every example inside the eps ball of its image (L2: scaled back, not
    clipped per pixel) and in [0, 1], and its KL from the clean prediction far above that of a random point of the
    same ball; in L2 most of the budget is spent (the steps are normalised gradients), and the L-inf sign steps would
    leave the L2 ball."""
    from harden.attacks.base import perturbation_norm, random_start
    from harden.recipes.at import _logp, trades_example
    model = harden.load(digits_ckpt)
    m = model.eval()
    x = torch.as_tensor(digits.x_test[:64]).float().div(255).permute(0, 3, 1, 2)
    eps = 0.1 if norm == "inf" else 1.0
    xa = trades_example(m, x, eps, eps / 4, 10, torch.Generator().manual_seed(0), norm)
    size = perturbation_norm(xa - x, norm)
    assert float(size.max()) <= eps * (1 + 1e-5) and float(xa.min()) >= 0 and float(xa.max()) <= 1

    def kl(points):
        with torch.no_grad():
            return float(torch.nn.functional.kl_div(_logp(m(points)), _logp(m(x)).exp(), reduction="batchmean"))

    assert kl(xa) > 5 * kl(random_start(x, eps, norm, torch.Generator().manual_seed(1)))
    if norm == "2":
        assert float(size.median()) >= 0.8 * eps
        signed = trades_example(m, x, eps, eps / 4, 10, torch.Generator().manual_seed(0), "inf")
        assert float(perturbation_norm(signed - x, "2").median()) > 2 * eps  # why the norm must be passed
