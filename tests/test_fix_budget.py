"""`harden fix --time-budget`: the epochs planned from timed one-epoch runs, the report sized to what is left, a
budgeted run training as `--epochs` of its count would, and budgets too short refused before any training."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harden
from harden import fix_budget
from harden.cli import app
from harden.errors import HardenError
from harden.report.budget import MIN_USEFUL_IMAGES, SAFETY


class Clock:
    """A fake time.perf_counter that a timed run advances."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(fix_budget.time, "perf_counter", c)
    return c


def epoch_costing(clock: Clock, per_image: float, fixed: float, warm_up: float, calls: list):
    def one_epoch(k: int) -> None:
        calls.append(k)
        clock.now += fixed + per_image * k + (warm_up if len(calls) == 1 else 0.0)
    return one_epoch


def test_epochs_are_planned_at_a_timed_epoch_s_rate(clock):
    calls: list[int] = []
    # 1,000 images, batch 32: a warm-up epoch on 32, then one on 640 timed; an epoch costs 0.01 s an image + 2 s
    one_epoch = epoch_costing(clock, 0.01, 2.0, warm_up=5.0, calls=calls)
    plan = fix_budget.plan_epochs(2000.0, clock.now, 100, 1000, 32, one_epoch, report=True)
    assert calls == [32, 640]
    # the warm-up's 5 s are left out; the timed epoch's fixed 2 s are counted per image (an upper end)
    assert plan.seconds_per_epoch == pytest.approx(8.4 * 1000 / 640)
    spent = (2 + 0.32 + 5) + (2 + 6.4)
    assert plan.calibration_s == pytest.approx(spent)
    assert plan.share_s == pytest.approx(fix_budget.TRAIN_SHARE * (2000.0 - spent))
    assert plan.epochs == int(SAFETY * fix_budget.TRAIN_SHARE * (2000.0 - spent) / (8.4 * 1000 / 640)) == 81
    assert "81 of the 100 epochs fit" in plan.line()
    # the recipe's count when more would fit; without the report training has all of what is left
    assert fix_budget.plan_epochs(1e4, clock.now, 10, 1000, 32, one_epoch, report=True).epochs == 10
    no_report = fix_budget.plan_epochs(1000.0, clock.now, 100, 1000, 32, epoch_costing(clock, 0.01, 2.0, 0.0, []),
                                       report=False)
    assert no_report.epochs == int(SAFETY * (1000.0 - 2.32 - 8.4) / (8.4 * 1000 / 640)) == 67


def test_a_set_of_a_batch_or_two_is_timed_whole(clock):
    calls: list[int] = []
    plan = fix_budget.plan_epochs(200.0, clock.now, 10, 40, 32, epoch_costing(clock, 0.1, 1.0, 0.0, calls), True)
    assert calls == [32, 40]
    assert plan.seconds_per_epoch == pytest.approx(5.0)  # the whole set's epoch, timed


def test_a_timing_that_would_eat_the_budget_is_cut_to_the_batches_that_fit(clock):
    calls: list[int] = []
    one_epoch = epoch_costing(clock, 0.05, 1.0, warm_up=0.0, calls=calls)
    # the 640-image timing (~33 s, ~52 s by the warm-up's rate) would take more than a quarter of training's share of
    # 60 s: the whole batches that fit in it by the warm-up's rate are timed instead (64 images), which fits no epoch
    # of 10,000 images
    with pytest.raises(HardenError, match=r"--time-budget 60s: one epoch on the 10,000 training images takes up to "
                                          r"about 656\.[23] s here \(scaled from an epoch on 64, its start-up included\)"
                                          r".* not one epoch fits\. About \d+ s would fit one"):
        fix_budget.plan_epochs(60.0, clock.now, 10, 10_000, 32, one_epoch, report=True)
    assert calls == [32, 64]
    # where not even one more batch fits, the warm-up is scaled up alone (its fixed cost with it)
    calls.clear()
    with pytest.raises(HardenError, match=r"about 812\.5 s here \(scaled from an epoch on 32"):
        fix_budget.plan_epochs(40.0, clock.now, 10, 10_000, 32, one_epoch, report=True)
    assert calls == [32]


def test_a_tight_budget_is_planned_from_the_batches_that_fit_not_refused_by_the_warm_up(clock):
    """A CIFAR-10 ResNet-20 at 5% (2,496 images) given 90 s: the 20-batch timing did not fit a quarter of training's
    share, and the warm-up's one batch, scaled up with its one-off costs, planned an 11-s epoch at 101 s and refused the
    budget. Timing the 8 batches that fit plans it within a factor of two, and two epochs fit."""
    calls: list[int] = []
    one_epoch = epoch_costing(clock, 0.004, 1.0, warm_up=0.3, calls=calls)  # an epoch of the set: 11 s
    plan = fix_budget.plan_epochs(90.0, clock.now, 28, 2496, 32, one_epoch, report=True, report_s=30.0)
    assert calls == [32, 256]
    assert plan.seconds_per_epoch == pytest.approx((1.0 + 0.004 * 256) * 2496 / 256)  # 19.7 s: an upper end
    assert plan.epochs == 2


def test_a_budget_that_fits_no_epoch_is_refused_before_training(clock):
    calls: list[int] = []
    one_epoch = epoch_costing(clock, 0.01, 1.0, warm_up=0.0, calls=calls)
    with pytest.raises(HardenError, match=r"takes up to about 231\.[23] s here \(scaled from an epoch on 640, its start-up "
                                          r"included\), and 8\.7 s of the budget are spent \(60% of what is left goes "
                                          r"to training, the rest to the report\)"):
        fix_budget.plan_epochs(200.0, clock.now, 10, 20_000, 32, one_epoch, report=True)
    assert calls == [32, 640]
    assert fix_budget.plan_epochs(200.0, clock.now, 10, 5_000, 32, one_epoch, report=True).epochs == 1


def test_the_interrupted_run_s_plan_is_taken_again(clock):
    calls: list[int] = []
    one_epoch = epoch_costing(clock, 0.01, 2.0, 0.0, calls)
    first = fix_budget.plan_epochs(1000.0, clock.now, 30, 1000, 32, one_epoch, report=True)
    calls.clear()
    again = fix_budget.plan_epochs(1000.0, clock.now, 30, 1000, 32, one_epoch, True, saved=first.summary())
    assert calls == [] and again.resumed and again.epochs == first.epochs
    assert "the interrupted run's plan" in again.line()
    # another budget: planned anew (the state's fingerprint then refuses the resume, as for any other setting)
    other = fix_budget.plan_epochs(2000.0, clock.now, 30, 1000, 32, one_epoch, True, saved=first.summary())
    assert calls and not other.resumed


def test_the_report_takes_what_training_left(clock, monkeypatch, capsys):
    from harden.report import budget
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    runs: list[int] = []

    def run_reports(k: int) -> None:  # 0.1 s an image, 1 s fixed
        runs.append(k)
        clock.now += 1.0 + 0.1 * k
    n, plan = fix_budget.report_images(100.0, clock.now - 60.0, 500, run_reports)
    assert runs[:2] == [8, 16] and plan["seconds_per_image"] == pytest.approx(0.1) and plan["left_s"] == 40.0
    assert MIN_USEFUL_IMAGES <= n < 500 and "budget_s" not in plan  # the budget is the run's, kept beside it
    # training left less than the report's minimum needs: the minimum runs, past the budget, said
    n, plan = fix_budget.report_images(10.0, clock.now - 20.0, 500, run_reports)
    assert n == MIN_USEFUL_IMAGES and plan["minimum_forced"]
    assert "the report runs on 20 anyway (the hardened weights are kept), which may run past the budget" in \
        " ".join(capsys.readouterr().err.split())


def test_the_report_s_minimum_is_timed_before_training_and_kept_out_of_its_share(clock):
    reports: list[int] = []

    def base_report(k: int) -> None:  # the base's report: 2 s an image, 4 s fixed
        reports.append(k)
        clock.now += 4.0 + 2.0 * k
    need, took = fix_budget.report_minimum(1000.0, clock.now, 500, base_report)
    assert reports == [fix_budget.REPORT_PROBE] and took == pytest.approx(20.0)
    # three reports on the 20 images of a useful report, at the probe's cost per image (its fixed cost counted in it)
    assert need == pytest.approx(fix_budget.REPORTS_PER_FIX * 20.0 * MIN_USEFUL_IMAGES / fix_budget.REPORT_PROBE)
    # training's share is what the budget leaves beside the report's minimum, at most TRAIN_SHARE of it
    one_epoch = epoch_costing(clock, 0.01, 1.0, 0.0, [])
    plan = fix_budget.plan_epochs(600.0, clock.now, 100, 1000, 32, one_epoch, report=True, report_s=need,
                                  report_probe_s=took)
    assert plan.summary()["report_minimum_s"] == pytest.approx(need) and plan.summary()["report_probe_s"] == 20.0
    left = 600.0 - (1.32 + 7.4)
    assert plan.share_s == pytest.approx(left - need) and plan.share_s < fix_budget.TRAIN_SHARE * left
    assert fix_budget.plan_epochs(1e4, clock.now, 100, 1000, 32, one_epoch, True, report_s=need).share_s == \
        pytest.approx(fix_budget.TRAIN_SHARE * (1e4 - 8.72))
    # the reports alone overrun the budget: refused before any training, with the budget that would hold them
    with pytest.raises(HardenError, match=r"--time-budget 100s: the base's report took 20\.0 s on 8 images, so the "
                                          r"fix's three reports .* on the 20 images of a useful report take about 300 "
                                          r"s, more than the 80 s left before any training\. Give a budget of at "
                                          r"least 320 s plus the training's"):
        fix_budget.report_minimum(100.0, clock.now, 500, base_report)
    # one epoch beside them does not fit: the refusal counts the report's time
    with pytest.raises(HardenError, match=r"which needs about 150 s\), so not one epoch fits\. About 171 s would fit one"):
        fix_budget.plan_epochs(165.0, clock.now, 10, 1000, 32, one_epoch, report=True, report_s=150.0)


def test_a_fix_whose_report_cannot_fit_its_budget_trains_nothing(digits_ckpt, tmp_path, monkeypatch, cli):
    """A 224-px model on a CPU, whose report on 20 images takes longer than the whole budget, was trained for 60% of
    it and then overran it many times over: it is refused before any training (here, reports made 10^4 times
    dearer)."""
    monkeypatch.setattr(fix_budget, "REPORTS_PER_FIX", 1e4)
    trained = []
    real = fix_budget.plan_epochs
    monkeypatch.setattr(fix_budget, "plan_epochs", lambda *a, **k: trained.append(1) or real(*a, **k))
    out = tmp_path / "fixed.safetensors"
    before = digits_ckpt.read_bytes()
    code, _, err = cli("fix", digits_ckpt, "--data", "digits", "--set", "eps=0.1", "--data-frac", "0.3", "--epochs",
                       "2", "--attack", "fgsm", "--no-metrics", "--time-budget", "10m", "-o", out)
    text = " ".join(err.split())
    assert code == 2 and "the base's report took" in text and "Nothing was trained or written" in text, text
    assert "Traceback" not in err
    assert not trained and not out.exists() and digits_ckpt.read_bytes() == before


@pytest.mark.parametrize("budget", ["0s", "-5", "ten minutes"])
def test_a_budget_that_is_no_positive_duration_is_refused(budget):
    with pytest.raises(HardenError, match="--time-budget"):
        fix_budget.budget_seconds(budget)


class DropoutNet(nn.Module):
    """Written as published code writes it: dropout (torch's global random stream), a flattening view, log-probs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.drop(F.max_pool2d(F.relu(self.conv(x)), 2))
        return F.log_softmax(self.fc(x.view(x.size(0), -1)), dim=1)


def test_a_budgeted_fix_trains_as_its_epochs_would_and_says_its_plan(digits):
    torch.manual_seed(0)
    net = DropoutNet().eval()
    kw = dict(sets=["eps=0.1"], data_frac=0.3, device="cpu", report=False, seed=3, epochs=2)
    torch.manual_seed(1)
    budgeted = harden.fix(net, digits, time_budget="1h", **kw)
    plan = budgeted.model.spec.extra["time_budget"]["training"]
    assert plan["epochs"] == plan["epochs_asked"] == 2 and plan["seconds_per_epoch"] > 0
    assert budgeted.model.spec.extra["recipe_train"]["epochs"] == 2 and len(budgeted.history) == 2
    # the timings trained copies (dropout drawing from torch's global stream) and put every random stream back:
    # the same weights as --epochs 2 alone
    torch.manual_seed(1)
    plain = harden.fix(net, digits, **kw)
    for (name, a), (_, b) in zip(budgeted.model.state_dict().items(), plain.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_fix_with_a_budget_sizes_its_report_and_records_the_plan(digits_ckpt, tmp_path):
    from typer.testing import CliRunner
    out = tmp_path / "fixed.safetensors"
    res = CliRunner().invoke(app, ["fix", str(digits_ckpt), "--data", "digits", "--set", "eps=0.1", "--data-frac",
                                   "0.3", "--epochs", "2", "--attack", "pgd", "--no-metrics", "--no-masking-checks",
                                   "--time-budget", "10m", "--n", "60", "-o", str(out), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "time budget 600 s: the 2 epochs fit" in text
    meta = harden.load(out).spec.extra["time_budget"]
    assert meta["budget_s"] == 600 and meta["training"]["epochs"] == 2 and meta["report"]["images"] == 60
    assert meta["training"]["report_probe_s"] > 0 and meta["training"]["report_minimum_s"] > 0  # timed first
    assert 0 < meta["used_s"] < 600
    import json
    doc = json.loads((tmp_path / "r.json").read_text())
    reports = doc["reports"] if "reports" in doc else doc
    fixed = next(r for r in reports if r.get("model", "").endswith("+ at") and r["threat_model"] == "white-box")
    assert fixed["n"] == 60 and fixed["time_budget"]["training"]["epochs"] == 2
    assert any("time budget 600 s (fix): 2 of the recipe's 2 epochs, 60 report images" in note
               for note in fixed["notes"])


def test_a_budgeted_run_resumes_with_its_plan(digits, tmp_path, monkeypatch):
    from test_resume import stop_at

    from harden import RunState
    from harden.errors import Interrupted
    torch.manual_seed(0)
    net = DropoutNet().eval()
    kw = dict(sets=["eps=0.1"], data_frac=0.3, device="cpu", report=False, seed=3, epochs=2, time_budget="1h")
    path = tmp_path / "run.state"
    with pytest.raises(Interrupted):
        harden.fix(net, digits, state=stop_at(path, 3), **kw)
    plans = []
    real = fix_budget.plan_epochs
    monkeypatch.setattr(fix_budget, "plan_epochs", lambda *a, **k: plans.append(real(*a, **k)) or plans[-1])
    # another budget is another run: refused as any other changed setting is
    with pytest.raises(HardenError, match=r"saved by a run with other settings \(time_budget\.budget_s: saved 3600"):
        harden.fix(net, digits, state=RunState(path, resume=True), **{**kw, "time_budget": "2h"})
    resumed = harden.fix(net, digits, state=RunState(path, resume=True), **kw)
    assert plans[-1].resumed and "the interrupted run's plan" in plans[-1].line()  # not timed again
    assert len(resumed.history) == 2


def test_a_patch_recipe_is_timed_on_copies_of_its_patched_model(digits_ckpt, digits):
    """fixer hooks its modules onto the base's taps: a timing copy's hooks are the copy's own (a copy whose hooks
    still called the original's patch stopped at its first step, KeyError on a tap)."""
    res = harden.fix(digits_ckpt, digits, recipe="fixer", eps=0.1, data_frac=0.3, epochs=1, device="cpu",
                     report=False, time_budget="1h")
    assert res.model.spec.extra["time_budget"]["training"]["epochs"] == 1 and len(res.history) == 1
    from harden.reparametrized import copy_module
    twin = copy_module(res.model)
    x = digits.images("test", range(8))[0]
    with twin.patch.capture() as seen:
        twin(x)
    assert seen and torch.equal(twin(x), res.model(x))


def test_training_that_outruns_its_share_ends_at_an_epoch_s_end(digits, monkeypatch, capsys):
    """The plan is an estimate (on this machine 12% under a ResNet-20's real epoch): an epoch that would run past the
    training's share is not started, so the report keeps its time."""
    planned = fix_budget.EpochPlan(3600.0, epochs=3, asked=3, seconds_per_epoch=0.1, calibration_s=0.0, share_s=0.0)
    monkeypatch.setattr(fix_budget, "plan_epochs", lambda *a, **k: planned)
    torch.manual_seed(0)
    res = harden.fix(DropoutNet().eval(), digits, sets=["eps=0.1"], data_frac=0.3, device="cpu", report=False,
                     epochs=3, time_budget="1h")
    assert len(res.history) == 1  # the first epoch always runs
    cut = res.model.spec.extra["time_budget"]["training"]["cut_short"]
    assert cut.startswith("ended after epoch 1 of 3: another epoch") and "time budget's share" in cut
    assert "its schedule cut short" in " ".join(capsys.readouterr().err.split())
