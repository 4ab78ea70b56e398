"""A checkpoint written from a plain nn.Module (models.from_module, as harden.fix(net, ...) does) names an
architecture that rebuilds it: a timm model its timm name, a torchvision model its factory; other classes their
`module:Class`, whose load says what to give where the class cannot be built with its defaults."""
import pytest
import timm
import torch
import torchvision

import harden
from harden.errors import HardenError
from harden.models.registry import from_module


@pytest.mark.parametrize("build, arch, args", [
    (lambda: timm.create_model("resnet10t", num_classes=3), "resnet10t", {}),
    (lambda: timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=2), None, {}),
    (lambda: timm.create_model("deit_tiny_patch16_224", num_classes=5, img_size=32), "deit_tiny_patch16_224",
     {"img_size": [32, 32]}),
    (lambda: torchvision.models.resnet18(num_classes=7), "torchvision.models:resnet18", {}),
])
def test_a_module_written_loads_by_its_own_name(tmp_path, build, arch, args):
    torch.manual_seed(0)
    net = build().eval()
    model = from_module(net, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    if arch is None:  # built with arguments that change its weights (depth=2): its class, and load says what to give
        assert model.spec.arch == f"{type(net).__module__}:{type(net).__qualname__}"
        harden.save(model, tmp_path / "m.safetensors")
        # ViT-Ti's depth and width are read from the weights; its 3 heads change no tensor, so they are asked for
        with pytest.raises(HardenError, match=r"--model-arg depth=2 --model-arg embed_dim=192 --model-arg "
                                              r"num_heads=VALUE"):
            harden.load(tmp_path / "m.safetensors")
        again = harden.load(tmp_path / "m.safetensors", model_args={"num_heads": 3})
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(again(x), model(x), atol=1e-5)
        return
    assert (model.spec.arch, model.spec.model_args) == (arch, args)
    harden.save(model, tmp_path / "m.safetensors")
    back = harden.load(tmp_path / "m.safetensors").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-5)


def test_a_transformers_classifier_is_read_at_its_logits_and_written_as_its_configuration(tmp_path):
    """A Hugging Face transformers classifier given as a plain module (its forward returns a ModelOutput): its class
    count read from the output's logits, and a checkpoint written from it rebuilds it from its configuration (as a
    model folder's is), with no --arch."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, num_labels=4)
    net = transformers.ViTForImageClassification(cfg).eval()
    model = from_module(net, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert (model.spec.num_classes, model.spec.arch) == (4, "transformers:ViTForImageClassification")
    assert model.spec.model_args["config"]["hidden_size"] == 32 and "logits_key" not in model.spec.extra
    harden.save(model, tmp_path / "m.safetensors")
    back = harden.load(tmp_path / "m.safetensors").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-5)
        # the caller's module left as it is: its forward still returns the library's output object
        assert torch.allclose(model(x), net(pixel_values=(x - 0.5) / 0.5).logits, atol=1e-5)


def test_the_callers_module_is_left_as_it_is():
    """A module returning (logits, features), as published code often writes one: harden reads the scores out of it
    without a hook, so the caller's own code still gets the pair."""
    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)

        def forward(self, x):
            h = self.body(x)
            return self.fc(h), h

    net = Pair()
    model = from_module(net, input_size=8, num_classes=5)  # two N x K outputs: which is the scores is said
    x = torch.rand(2, 3, 8, 8)
    assert model.spec.num_classes == 5 and torch.equal(model(x), net(x)[0]) and isinstance(net(x), tuple)
    # harden.evaluate takes it with images in memory, as harden.fix does: the data's class count picks the scores
    xs, ys = torch.rand(24, 3, 8, 8), torch.arange(24) % 5
    with torch.no_grad():
        want = float((net(xs)[0].argmax(1) == ys).float().mean())
    net.train()  # evaluated between two epochs of the caller's training: handed back in train mode
    report = harden.evaluate(net, (xs, ys), attacks=["fgsm"], n=24, metrics=False, masking_checks=False,
                             craft_on=Pair())  # a plain module crafting too
    assert report.clean_accuracy == pytest.approx(want, abs=1e-6) and isinstance(net(xs), tuple)
    assert all(m.training for m in net.modules()) and all(p.requires_grad for p in net.parameters())
    with pytest.raises(HardenError, match=r"a tuple \(0: \(2, 5\), 1: \(2, 192\)\).*labels 0 to 5"):
        harden.evaluate(net, (xs, ys + 1), attacks=["fgsm"], n=24)  # labels from 1 (SVHN's): no entry of 6 scores
    assert report.threat_model == "transfer from source model"
    # a notebook shows one line, not the report's every field (36 KB of them)
    assert repr(report).startswith(f"Report('model', transfer from source model, 24 images of arrays: clean "
                                   f"{100 * want:.1f}%, fgsm {100 * report.attacks[0].robust_accuracy:.1f}%, worst "
                                   f"{100 * report.worst_case:.1f}%") and len(repr(report)) < 160


def test_a_plain_module_that_wants_other_pixels_is_told_how_to_give_them(digits_model, digits):
    """mean 0 and std 1 are harden.evaluate's contract for a plain module, not the module's word: one written for
    0-255 pixels (published code's `x / 255` inside) is measured as it is, and the normalisation check names the
    from_module arguments that read it right."""
    class Wants255(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x / 255)

    report = harden.evaluate(Wants255(digits_model), (digits.x_test[:120], digits.y_test[:120]), attacks=["fgsm"],
                             n=120, metrics=False, masking_checks=False)
    (said,) = [f for f in report.masking if f["check"] == "normalisation assumed"]
    assert said["tripped"] and "0-255 pixels'" in said["detail"], said
    assert "harden.models.from_module(net, input_size=..., mean=(0), std=(0.003922))" in said["detail"]


def test_a_class_of_the_running_script_is_said_when_written_and_when_read(tmp_path, monkeypatch):
    """A class defined in a training script is `__main__:Net`, which no other program imports: writing the checkpoint
    warns with the remedy, and reading it says what --arch takes instead of "'__main__' has no callable 'Net'". The
    script run from its own folder (`python train.py`) was taken for a module found there alone and remembered as
    its file, which loading then ran: the whole training again, or an AttributeError for a script without .py."""
    import sys
    import types
    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('the training script ran again')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.chdir(tmp_path)
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(x.flatten(1))

    Net.__module__, Net.__qualname__ = "__main__", "Net"
    model = from_module(Net(), input_size=4)
    assert model.spec.arch == "__main__:Net"
    from harden.runtime import console
    with console.capture() as cap:
        harden.save(model, tmp_path / "net.safetensors")
    assert "Net is defined in the running script" in " ".join(cap.get().split())
    with pytest.raises(HardenError, match="defined in the script that wrote the checkpoint .* --arch path/to/file.py:Net"):
        harden.load(tmp_path / "net.safetensors")


def test_a_network_that_computes_in_half_precision_itself_is_attacked_in_float32(digits, digits_model):
    """Mixed-precision code puts autocast inside forward, so the network returns bfloat16 scores: the original
    Square (the masking checks' black-box attack, AutoAttack's last stage) stopped with "Index put requires the source
    and destination dtypes match". The scores are read as float32; harden's own --attack-amp keeps its precision."""
    import copy

    class InsideAutocast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = copy.deepcopy(digits_model)

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.body(x)
    net = InsideAutocast().eval()
    rep = harden.evaluate(net, digits, attacks=["square:queries=20", "pgd:steps=5"], n=40, eps=0.1, metrics=False,
                          masking_checks=False, device="cpu")
    assert rep.clean_accuracy > 0.8 and rep.attacks[0].robust_accuracy <= rep.clean_accuracy
    model = harden.models.from_module(net, input_size=8, in_chans=1)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 8, 8)).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(torch.rand(2, 1, 8, 8)).dtype == torch.bfloat16


def test_a_network_in_double_or_half_precision_is_fed_its_own_type(digits, digits_model):
    """A module whose weights are float64 (`.double()`, or built under `torch.set_default_dtype(torch.float64)`, as
    scientific notebooks do) or float16 stopped at harden's first probe ("Input type (float) and bias type (double)
    should be the same"), and the default dtype alone broke AutoPGD's bookkeeping. Each is fed in its own weights'
    type, its scores read as float32, and it is handed back as it came; the default dtype too."""
    import copy

    import torch.nn.functional as F

    class Published(torch.nn.Module):  # its own normalisation and a log_softmax head, as published code writes one
        def __init__(self, body=None):
            super().__init__()
            self.body = body if body is not None else copy.deepcopy(digits_model.net)
            self.mean, self.std = float(digits_model.mean.flatten()[0]), float(digits_model.std.flatten()[0])

        def forward(self, x):
            return F.log_softmax(self.body((x - self.mean) / self.std).view(x.size(0), -1), dim=1)

    kw = dict(attacks=["pgd:steps=5,step=0.04", "fgsm", "autopgd:steps=5"], n=40, eps=0.1, metrics=False,
              masking_checks=False, device="cpu")
    single = harden.evaluate(Published().eval(), digits, **kw)
    net = Published().eval().double()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    double = harden.evaluate(net, digits, **kw)
    assert double.clean_accuracy == single.clean_accuracy > 0.8
    assert [a.robust_accuracy for a in double.attacks] == [a.robust_accuracy for a in single.attacks]
    assert all(v.dtype == torch.float64 and torch.equal(v, weights[k]) for k, v in net.state_dict().items())
    half = harden.evaluate(Published().eval().half(), digits, **kw)
    assert abs(half.clean_accuracy - single.clean_accuracy) <= 0.05
    was = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        body = harden.create_model("cnn-small", 10, 1, (8, 8)).net  # built in float64, as the default says
        body.load_state_dict(digits_model.net.state_dict())
        assert next(body.parameters()).dtype == torch.float64
        as_default = harden.evaluate(Published(body).eval(), digits, **kw)
        assert torch.get_default_dtype() == torch.float64  # given back
    finally:
        torch.set_default_dtype(was)
    assert [a.robust_accuracy for a in as_default.attacks] == [a.robust_accuracy for a in single.attacks]
    # half-precision weights cannot take an optimizer's steps (Adam's diverged at the second): the copy trains in float32
    fixed = harden.fix(Published().eval().half(), digits, data_frac=0.2, epochs=1, eps=0.1, report=False,
                       device="cpu")
    assert next(fixed.model.net.parameters()).dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in fixed.history)


def test_a_half_precision_softmax_head_is_read_as_probabilities(digits, digits_model):
    """A bfloat16 softmax rounds each probability to 8 bits, so its rows miss summing to 1 by more than float32's
    tolerance (1e-4 a class): such a network was read as returning logits, its probabilities attacked as scores (CE of
    probabilities: a weaker attack) and no note said so. Its kind is read to its own type's precision; float32 heads and
    plain logits read as before."""
    import copy

    import torch.nn.functional as F

    class Head(torch.nn.Module):  # published code's normalisation and softmax / log_softmax at the end
        def __init__(self, out):
            super().__init__()
            self.body, self.out = copy.deepcopy(digits_model.net), out
            self.mean, self.std = float(digits_model.mean.flatten()[0]), float(digits_model.std.flatten()[0])

        def forward(self, x):
            return self.out(self.body((x - self.mean) / self.std).view(x.size(0), -1))

    from harden.outputs import LOG_PROBABILITIES, LOGITS, PROBABILITIES, detect_output_kind
    x = torch.rand(64, 1, 8, 8) * 0.5 + torch.from_numpy(digits.x_test[:64]).float().permute(0, 3, 1, 2) / 510
    flags = dict(input_size=8, in_chans=1)
    for out, kind in ((lambda z: F.softmax(z, 1), PROBABILITIES), (lambda z: F.log_softmax(z, 1), LOG_PROBABILITIES),
                      (lambda z: z, LOGITS)):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):  # float32: as before
            assert detect_output_kind(from_module(Head(out).eval().to(dtype), **flags), x) == kind, (kind, dtype)
    report = harden.evaluate(Head(lambda z: F.softmax(z, 1)).eval().bfloat16(), digits, attacks=["fgsm"], n=40,
                             eps=0.1, metrics=False, device="cpu", masking_checks=False)
    assert report.output_kind == PROBABILITIES  # the report's attacks took log(p) (runner.py: as_logits)


@pytest.mark.parametrize("wrap", [lambda net: torch.compile(net, backend="eager"), torch.nn.DataParallel,
                                  lambda net: torch.compile(torch.nn.DataParallel(net), backend="eager")],
                         ids=["compiled", "data-parallel", "both"])
def test_a_wrapped_module_is_run_and_written_as_the_module_it_wraps(digits, digits_model, tmp_path, wrap):
    """`torch.compile(net)` wraps net in torch's OptimizedModule, whose guards recompiled at every batch size the
    attacks narrowed to (35.5 s against 2.1 s eager on a 2-layer MNIST network); DataParallel in its own. A checkpoint
    written from either named the wrapper's class, which no load can build. harden runs, hardens and writes the
    module they wrap."""
    import copy
    net = copy.deepcopy(digits_model.net).eval()
    kw = dict(attacks=["fgsm"], n=30, eps=0.1, metrics=False, masking_checks=False, device="cpu")
    flags = dict(input_size=8, in_chans=1, mean=digits_model.spec.mean, std=digits_model.spec.std)
    eager = harden.evaluate(from_module(copy.deepcopy(net), **flags), digits, **kw)
    model = from_module(wrap(net), **flags)
    assert model.net is net and model.spec.arch == f"{type(net).__module__}:{type(net).__qualname__}"
    report = harden.evaluate(model, digits, **kw)
    assert (report.clean_accuracy, report.attacks[0].robust_accuracy) == \
        (eager.clean_accuracy, eager.attacks[0].robust_accuracy)
    harden.save(model, tmp_path / "m.safetensors")
    back = harden.load(tmp_path / "m.safetensors")
    assert type(back.net) is type(net) and back.state_dict().keys() == model.state_dict().keys()


def test_a_dynamically_quantized_module_is_refused_white_box_and_measured_under_transfer(digits, digits_model):
    """torch.ao's dynamic quantization (the usual CPU deployment step) computes its Linear layers on integers: their
    outputs carry a grad_fn that leads nowhere, so harden stopped on a crash of the state dict's non-tensor entries,
    then inside PGD's autograd. White-box it is refused in one paragraph that says what to do; under transfer from
    the float network it is measured."""
    import copy
    import warnings
    net = copy.deepcopy(digits_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of torch.ao.quantization
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {torch.nn.Linear}, dtype=torch.qint8)
    kw = dict(attacks=["fgsm", "pgd:steps=5,step=0.04"], n=30, eps=0.1, metrics=False, device="cpu")
    with pytest.raises(HardenError, match=r"quantized by torch\.ao \(head\.1 \(DynamicQuantizedLinear\)\).*"
                                          r"craft_on=float_model"):
        harden.evaluate(quantized, digits, **kw)
    moved = harden.evaluate(quantized, digits, craft_on=net, **kw)
    assert moved.threat_model.startswith("transfer from") and moved.clean_accuracy > 0.8


def test_a_torchscript_module_is_evaluated_and_written_for_its_class(digits, digits_model, tmp_path):
    """A deployed TorchScript module (torch.jit.load of a traced or scripted network) is evaluated as it is; a checkpoint
    written from it named TorchScript's own class (`torch.jit._trace:TopLevelTracedModule`), which no load can build,
    and asked for its constructor's `orig`. It names the class the module was made from, the save says that loading
    takes --arch, and the load says which class to give."""
    import copy
    net = copy.deepcopy(digits_model.net).eval()
    traced = torch.jit.trace(net, torch.rand(2, 1, 8, 8))
    flags = dict(input_size=8, in_chans=1, mean=digits_model.spec.mean, std=digits_model.spec.std)
    model = from_module(traced, **flags)
    assert model.spec.arch == f"__torchscript__:{type(net).__name__}"
    kw = dict(attacks=["fgsm"], n=30, eps=0.1, metrics=False, masking_checks=False, device="cpu")
    eager = harden.evaluate(from_module(net, **flags), digits, **kw)
    assert harden.evaluate(model, digits, **kw).attacks[0].robust_accuracy == eager.attacks[0].robust_accuracy
    harden.save(model, tmp_path / "m.safetensors")
    with pytest.raises(HardenError, match=f"TorchScript module .*--arch path/to/file.py:{type(net).__name__}"):
        harden.load(tmp_path / "m.safetensors")
    back = harden.load(tmp_path / "m.safetensors", arch="cnn-small").eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-6)


def test_a_timm_module_given_to_the_library_takes_its_pretrained_cfg_statistics():
    """`harden.evaluate(timm_model, data)`: the module's own pretrained_cfg gives the mean and std, as a checkpoint
    named by that timm name does (a guess the normalisation check measures: "timm config"); RGB's averaged for a
    grey network."""
    from harden.data import load_data
    from harden.data.dataset_objects import wrapped_for
    net = timm.create_model("resnet10t", num_classes=10, in_chans=1).eval()
    model = wrapped_for(net, load_data("digits"))
    assert model.config_sources["mean"].startswith("timm config") and len(model.spec.mean) == 1
    assert model.spec.mean[0] == pytest.approx(sum(net.pretrained_cfg["mean"]) / 3)
    from harden.report.normalisation import assumed
    assert assumed(model) is not None  # still measured by the normalisation check
