"""Host synchronisations per attack step and per training step, counted on the CPU with host_sync.SyncCounter (the
operations CUDA's sync debug mode flags), under the schedule CUDA uses (host_sync.policy("deferred")); and the
deferred schedule gives the same adversarial images as the CPU's every-step one."""
import pytest
import torch
from torch import nn

from harden import host_sync
from harden.attacks import build_attack
from harden.attacks.autopgd import apgd
from harden.attacks.pgd import pgd
from harden.host_sync import SyncCounter, policy


def published_cnn():
    """Written as published code writes it: nn.Sequential and a view in forward."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.fc = nn.Linear(16 * 4 * 4, 10)

        def forward(self, x):
            h = self.features(x)
            return torch.log_softmax(self.fc(h.view(h.size(0), -1)), 1)
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def batch():
    model = published_cnn()
    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts correctly classified
    return model, x, y


def count(fn):
    with SyncCounter() as c:
        out = fn()
    return c, out


def test_counter_sees_what_syncs():
    t = torch.arange(6.0)
    with SyncCounter() as c:
        bool((t > 2).any())
        t[t > 2]
        (t > 2).nonzero()
        float(t.sum())
        torch.where(t > 2, t, 0)  # does not sync
        t[torch.tensor([0, 2])]  # an index tensor does not sync
    assert c.count == 4 and set(c.names) == {"_local_scalar_dense", "index", "nonzero"}


def test_due_schedule():
    cpu = torch.device("cpu")
    assert all(host_sync.due(i, cpu) for i in range(1, 60))
    with policy("deferred"):
        steps = [i for i in range(1, 51) if host_sync.due(i, cpu)]
    assert steps == [1, 2, 4, 8, 16, 24, 32, 40, 48]


def early_stopping(attack, model, x, y, steps=50, chunk=None, rows=None):
    """`rows`: the images' positions in the report's sample, for their own random streams (the report's draws)."""
    from harden.attacks.row_streams import RowStreams
    gen = torch.Generator().manual_seed(0) if rows is None else RowStreams(0, rows, batch_seed=0)
    if attack == "pgd":
        return pgd(model, x, y, eps=0.02, step=0.002, steps=steps, restarts=1, generator=gen, chunk=chunk)[0]
    if attack == "cw":
        return build_attack(f"cw:eps=0.02,step=0.002,steps={steps}").run(model, x, y, gen, chunk=chunk).x_adv
    return apgd(model, x, y, eps=0.02, steps=steps, generator=gen, chunk=chunk)[0]


@pytest.mark.parametrize("attack", ["pgd", "cw", "apgd"])
def test_a_batch_kept_full_from_later_batches_gives_the_same_images_in_fewer_calls(batch, attack):
    """Several batches at once (attacks/refill.py): a working batch of 16 refilled from the 64 images as images leave
    it gives the images one batch of 64 gives (each image's path is its own), in fewer calls of the network than four
    batches of 16 one after the other; under CUDA's schedule the same images, with one host read per due step."""
    model, x, y = batch
    calls = [0]
    hook = model.register_forward_pre_hook(lambda m, args: calls.__setitem__(0, calls[0] + 1))
    try:
        rows = torch.arange(64)
        whole = early_stopping(attack, model, x, y, rows=rows)
        calls[0] = 0
        refilled = early_stopping(attack, model, x, y, chunk=16, rows=rows)
        refill_calls, calls[0] = calls[0], 0
        apart = torch.cat([early_stopping(attack, model, x[i:i + 16], y[i:i + 16], rows=rows[i:i + 16])
                           for i in range(0, 64, 16)])
        apart_calls = calls[0]
        with policy("deferred"):
            syncs, deferred = count(lambda: early_stopping(attack, model, x, y, chunk=16, rows=rows))
            deferred_calls = calls[0] - apart_calls
    finally:
        hook.remove()
    assert torch.allclose(refilled, whole, atol=1e-6) and torch.allclose(apart, whole, atol=1e-6)
    assert torch.allclose(deferred, whole, atol=1e-6)
    assert refill_calls < apart_calls, (refill_calls, apart_calls)  # most images hold here: a small gain
    assert syncs.count <= deferred_calls * 0.25 + 4, (syncs.count, deferred_calls, syncs.names)


@pytest.mark.parametrize("attack", ["pgd", "cw", "apgd"])
def test_deferred_syncs_rarely_and_gives_the_same_images(batch, attack):
    model, x, y = batch
    steps = 50

    def run():
        return early_stopping(attack, model, x, y, steps)

    eager, x_eager = count(run)
    with policy("deferred"):
        deferred, x_deferred = count(run)
    with torch.no_grad():
        fooled_e, fooled_d = model(x_eager).argmax(1) != y, model(x_deferred).argmax(1) != y
    assert 0 < int(fooled_e.sum()) < len(x)  # some images fall during the run, some hold: the early stop matters
    assert torch.equal(fooled_e, fooled_d)
    assert torch.allclose(x_eager, x_deferred, atol=1e-6)
    # eager: a sync at (nearly) every step while images remain; deferred: at most the 9 due steps of 50 plus the
    # run's fixed few (the clean check and its nonzero, the final write-back)
    assert eager.count >= 20
    assert deferred.count <= 9 + 4, deferred.names
    assert deferred.count / steps < 0.3


def test_batch_ladder():
    assert [host_sync.batch_ladder(m) for m in (0, 1, 2, 3, 5, 7, 9, 13, 17, 100, 129, 300, 385)] == \
        [0, 1, 2, 3, 6, 8, 12, 16, 24, 128, 192, 384, 512]
    for m in range(1, 5000):  # never below m, never more than 1.5 m (17 -> 24) past the first rungs
        assert m <= host_sync.batch_ladder(m) <= max(4, m * 3 // 2 + 1)


@pytest.mark.parametrize("attack", ["pgd", "cw", "apgd"])
def test_deferred_batches_take_few_sizes(batch, attack):
    """Under CUDA's schedule an early-stopping attack's batch shrinks along host_sync.batch_ladder (fooled rows pad it,
    frozen), so the network sees a few sizes that recur across batches and attacks, not a new size at every sync;
    the CPU's schedule drops exactly the fooled rows, as before."""
    model, x, y = batch
    sizes = {"eager": [], "deferred": []}
    for mode in sizes:
        hook = model.register_forward_pre_hook(lambda m, args, mode=mode: sizes[mode].append(len(args[0])))
        try:
            with policy(mode):
                early_stopping(attack, model, x, y)
        finally:
            hook.remove()
    ladder = {host_sync.batch_ladder(m) for m in range(1, len(x) + 1)} | {len(x)}
    assert not set(sizes["eager"]) <= ladder  # exact compaction leaves the ladder: the check below can fail
    assert set(sizes["deferred"]) <= ladder, sorted(set(sizes["deferred"]))
    assert min(sizes["deferred"]) < len(x)  # it still shrinks


def test_training_attack_never_syncs(batch):
    model, x, y = batch
    atk = build_attack("pgd:eps=0.05,step=0.02,steps=5,restarts=1,early_stop=false")
    c, _ = count(lambda: atk.run(model, x, y, torch.Generator().manual_seed(0)))
    assert c.count == 0, c.names


def test_training_step_syncs_rarely(digits, digits_ckpt, monkeypatch):
    """A training epoch of `at` (PGD-5 crafting, validation off) under CUDA's schedule: the running loss is read at
    the due steps only, the training attack never; the data feeding's own syncs are counted too."""
    import harden
    from harden import training
    counters = []
    real_fit = training.fit

    def fit(*args, **kwargs):  # counts inside the shared loop only (loading the checkpoint syncs, harmlessly)
        with SyncCounter() as c:
            result = real_fit(*args, **kwargs)
        counters.append((c, result))
        return result
    monkeypatch.setattr("harden.recipes.at.fit", fit)
    with policy("deferred"):
        harden.fix(digits_ckpt, digits, recipe="at", sets=["eps=0.1", "val_frac=0"], data_frac=0.5, epochs=2,
                   batch_size=32, report=False)
    [(c, result)] = counters
    per_epoch = len(digits.y_train) // 2 // 32  # ~22 steps
    assert len(result.history) == 2
    # per epoch: the due steps (1, 2, 4, then every 8th) and the last; the training attack and the epoch's summary none
    assert c.count <= 2 * (3 + per_epoch // 8 + 1), c.names
    assert c.count < 0.4 * 2 * per_epoch


def test_compiled_network_is_used_then_removed(digits_model):
    """--compile: the compiled network runs the forward inside the block; the model's state dict, deep copies and
    its plain forward afterwards are untouched (the eager backend: the same tracing without building kernels)."""
    import copy

    from harden.compiling import COMPILED, compiled
    x = torch.rand(5, *([digits_model.spec.in_chans] + list(digits_model.spec.input_size)))
    keys = list(digits_model.state_dict())
    with torch.no_grad():
        ref = digits_model(x)
    calls = []
    with compiled(digits_model, True, backend="eager"):
        fast = digits_model.__dict__[COMPILED]
        fast.register_forward_pre_hook(lambda *a: calls.append(1))  # noqa: B023
        with torch.no_grad():
            out = digits_model(x)
        assert COMPILED not in copy.deepcopy(digits_model).__dict__
        assert list(digits_model.state_dict()) == keys
    assert calls and torch.allclose(out, ref, atol=1e-6)
    assert COMPILED not in digits_model.__dict__
