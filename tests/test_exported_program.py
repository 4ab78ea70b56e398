"""torch.export programs (.pt2) as input: read without running anything the file holds, run as the module they were
exported from (batch statistics, dropout, a fixed batch), hardened identically to the network they came from, and
written back (checkpoint, ONNX) without the .pt2 beside them."""
import copy
import json
import pickle
import re
import zipfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harden
from harden.errors import HardenError
from harden.models.exported_program import ExportedNet
from harden.runtime import batchnorm_statistics_kept


class PublishedNet(nn.Module):
    """Written the way research code writes it: BatchNorm, dropout, x.view(x.size(0), -1), a log_softmax head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.drop(x.view(x.size(0), -1))
        return F.log_softmax(self.fc(x), dim=1)


def _trained(digits):
    torch.manual_seed(0)
    net = PublishedNet()
    x, y = digits.images("train", torch.arange(512).numpy())
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        for i in range(0, 512, 64):
            opt.zero_grad()
            F.nll_loss(net(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return net.eval()


def save_program(net, path, batch=None):
    """torch.export.save of `net`: a dynamic batch, or the fixed batch `batch`."""
    x = torch.rand(batch or 2, 1, 8, 8)
    dynamic = None if batch else {"x": {0: torch.export.Dim("batch")}}
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=dynamic), str(path))
    return path


@pytest.fixture(scope="module")
def published(digits, tmp_path_factory):
    net = _trained(digits)
    folder = tmp_path_factory.mktemp("pt2")
    state = folder / "net.pt"
    torch.save(net.state_dict(), state)
    return net, save_program(net, folder / "net.pt2"), save_program(net, folder / "fixed.pt2", batch=4), state


def test_a_program_runs_as_the_module_it_was_exported_from(published):
    net, path, fixed, _ = published
    net = copy.deepcopy(net)  # its statistics change below
    model = harden.load(path)
    assert model.spec.arch == "exported_program" and model.spec.num_classes == 10 and model.spec.in_chans == 1
    assert tuple(model.spec.input_size) == (8, 8)  # read from the program's input
    assert isinstance(model.net, ExportedNet)
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-6)
    # train mode: BatchNorm normalises with the batch's statistics and updates its running ones, dropout is on
    model.train()
    net.train()
    keys = [k for k in model.net.state_dict() if k.endswith("bn1.running_mean")]
    before = model.net.state_dict()[keys[0]].clone()
    with torch.no_grad():
        torch.manual_seed(1)
        ours = model.net(x)
        torch.manual_seed(1)
        theirs = net(x)
    assert torch.allclose(ours, theirs, atol=1e-5)  # the same dropout draws and batch statistics
    assert torch.allclose(model.net.state_dict()[keys[0]], net.bn1.running_mean, atol=1e-6)
    assert not torch.allclose(model.net.state_dict()[keys[0]], before)
    # an attack's forward passes in train mode leave the statistics as they were
    kept = model.net.state_dict()[keys[0]].clone()
    with batchnorm_statistics_kept(model), torch.no_grad():
        model.net(x)
    assert torch.equal(model.net.state_dict()[keys[0]], kept)
    # modes set by assignment, as harden's frozen() restores them, count too
    model.eval()
    for m in model.modules():
        m.training = True
    with torch.no_grad():
        a, b = model.net(x), model.net(x)
    assert not torch.equal(a, b)  # dropout on


def test_a_fixed_batch_program_runs_in_chunks(published):
    net, _, fixed, _ = published
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(fixed)
    assert "fixed batch of 4" in " ".join(cap.get().split())
    x = torch.rand(7, 1, 8, 8, requires_grad=True)  # not a multiple of 4: the last chunk padded
    out = model.net(x)
    assert out.shape == (7, 10) and torch.allclose(out, net(x), atol=1e-5)
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_program_of_any_image_size_reads(tmp_path):
    """Sizes left symbolic (Dim.AUTO on H and W) make torch write shape expressions in sympy's srepr form
    (Add(FloorDiv(Add(s0, Integer(-1)), Integer(2)), Integer(1))): arithmetic, so read."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    auto = torch.export.Dim.AUTO
    program = torch.export.export(net, (torch.rand(2, 1, 16, 16),),
                                  dynamic_shapes={"input": {0: torch.export.Dim("batch"), 2: auto, 3: auto}})
    torch.export.save(program, str(tmp_path / "any.pt2"))
    assert "FloorDiv" in zipfile.ZipFile(tmp_path / "any.pt2").read("any/models/model.json").decode()
    model = harden.load(tmp_path / "any.pt2")
    x = torch.rand(3, 1, 20, 28)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_program_is_attacked_in_float32(published, digits, tmp_path, dtype):
    """A program exported from a float16 or bfloat16 model (what a GPU deployment ships) was refused; it is widened
    to float32, checked against the file run in its own precision."""
    net = copy.deepcopy(published[0]).to(dtype)
    path = tmp_path / "half.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(2, 1, 8, 8, dtype=dtype),),
                                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}), str(path))
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(path)
    assert f"{str(dtype)[6:]} program" in " ".join(cap.get().split())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        ours, theirs = model.net(x), net(x.to(dtype)).float()
    assert ours.dtype == torch.float32 and (ours - theirs).abs().max() <= 5e-2 * max(1.0, float(theirs.abs().max()))
    report = harden.evaluate(model, digits, attacks=["fgsm"], n=20, eps=0.3, metrics=False, masking_checks=False,
                             device="cpu")
    assert report.clean_accuracy >= 0.8
    out = tmp_path / "widened.safetensors"
    harden.save(model, out)
    with torch.no_grad():
        assert torch.equal(harden.load(out).net(x), ours)


class CameraNet(nn.Module):
    """A deployment module: 8-bit N x H x W x C pixels in, cast and normalised inside."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = (x.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.25
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_a_program_of_8_bit_pixels_is_fed_their_float_values(tmp_path):
    """It asserted a uint8 input and was refused; harden feeds it the float values 0-255 (mean 0, std 1/255), so
    gradients reach the pixels, as for an ONNX graph of 8-bit input."""
    from conftest import tiny_data
    torch.manual_seed(0)
    net = CameraNet().eval()
    path = tmp_path / "camera.pt2"
    x8 = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    torch.export.save(torch.export.export(net, (x8,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}),
                      str(path))
    model = harden.load(path)
    assert model.spec.model_args["layout"] == "NHWC" and model.spec.in_chans == 3
    assert tuple(model.spec.mean) == (0.0,) * 3 and all(abs(s - 1 / 255) < 1e-9 for s in model.spec.std)
    x = (torch.randint(0, 256, (5, 3, 16, 16)) / 255).requires_grad_(True)  # [0, 1] pixels, as harden reads them
    out = model(x)
    with torch.no_grad():
        assert torch.allclose(out, net((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)), atol=1e-4)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    report = harden.evaluate(model, tiny_data((16, 16), 3), attacks=["fgsm"], n=8, metrics=False,
                             masking_checks=False, device="cpu")
    assert len(report.attacks) == 1


def test_a_program_is_evaluated_and_hardened_as_its_source_network(published, digits, tmp_path):
    net, path, _, state = published
    program = harden.load(path)
    source = harden.load(state, arch="tests/test_exported_program.py:PublishedNet", input_size=(8, 8), in_chans=1)
    reports = [harden.evaluate(m, digits, attacks=["fgsm", "pgd"], n=40, eps=0.3, metrics=False,
                               masking_checks=False, device="cpu") for m in (program, source)]
    assert reports[0].clean_accuracy == reports[1].clean_accuracy >= 0.8
    assert [a.robust_accuracy for a in reports[0].attacks] == [a.robust_accuracy for a in reports[1].attacks]
    fixed = [harden.fix(m, digits, data_frac=0.05, epochs=1, report=False, device="cpu").model for m in (program, source)]
    ours, theirs = fixed[0].net.state_dict(), fixed[1].net.state_dict()
    assert all(torch.allclose(ours["program." + k], v, atol=1e-5) for k, v in theirs.items() if v.is_floating_point())
    assert not torch.allclose(ours["program.fc.weight"], net.fc.weight)  # trained
    # written and read back with no .pt2 beside it: the program travels in the checkpoint, without its weights
    out = tmp_path / "hardened.safetensors"
    harden.save(fixed[0], out)
    assert len(fixed[0].spec.model_args["program"]) < 20_000
    again = harden.load(out)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(again(x), fixed[0](x), atol=1e-6)


def test_export_writes_an_onnx_file_harden_reads_back(published, cli, tmp_path):
    net, path, fixed, _ = published
    code, out, err = cli("export", path, "-o", tmp_path / "net.onnx")
    assert code == 0, err
    assert "dynamic batch axis" in " ".join(out.split()) and "OK onnxruntime" in out
    again = harden.load(tmp_path / "net.onnx")  # torch's dynamo exporter's Reshape(allowzero=1) read too
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(again(x), harden.load(path)(x), atol=1e-5)
    code, out, err = cli("export", fixed, "-o", tmp_path / "fixed.onnx")
    assert code == 0, err
    assert "fixed batch of 4" in " ".join(out.split()) and "OK onnxruntime" in out


def test_export_writes_a_program_back_with_the_preprocessing_inside(published, cli, tmp_path):
    _, path, fixed, state = published
    arch = ["--arch", "tests/test_exported_program.py:PublishedNet", "--input-size", "8", "--in-chans", "1"]
    code, out, err = cli("export", state, *arch, "--mean", "0.5", "--std", "0.25", "--data", "digits",
                         "-o", tmp_path / "out.pt2")
    assert code == 0, err
    assert "torch.export program, dynamic batch axis" in " ".join(out.split()) and "OK torch.export.load" in out
    source = harden.load(state, arch=arch[1], input_size=(8, 8), in_chans=1, mean=(0.5,), std=(0.25,))
    again = harden.load(tmp_path / "out.pt2")  # no flags: the normalisation is inside, the facts beside it
    assert tuple(again.spec.mean) == (0.0,) and tuple(again.spec.std) == (1.0,)
    assert tuple(again.spec.input_size) == (8, 8)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(again(x), source(x), atol=1e-5)
        # what the deployment reads it with
        assert torch.allclose(torch.export.load(str(tmp_path / "out.pt2")).module()(x), source(x), atol=1e-5)
    code, out, err = cli("export", state, *arch, "-o", tmp_path / "out.pt2")
    assert code == 2 and "--force" in err  # never overwritten silently
    code, out, err = cli("export", fixed, "-o", tmp_path / "fixed_again.pt2")
    assert code == 0 and "fixed batch of 4" in " ".join(out.split()), err


def test_a_model_read_from_onnx_is_sent_back_to_onnx(cli, tmp_path):
    from test_onnx_input import LeNetView, export
    graph = export(LeNetView(), tmp_path / "lenet.onnx")
    code, out, err = cli("export", graph, "-o", tmp_path / "lenet.pt2")
    assert code == 2 and "-o model.onnx" in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "lenet.pt2").exists() and not list(tmp_path.glob(".*.tmp"))


def test_eval_on_the_command_line(published, cli):
    _, path, _, _ = published
    code, out, err = cli("eval", path, "--data", "digits", "--n", "20", "--attack", "fgsm", "--eps", "0.3")
    assert code == 0, err
    assert "exported_program" not in err or "preprocessing" in err
    assert "fgsm" in out
    code, out, err = cli("inspect", path)
    assert code == 0, err
    assert "torch.export program" in out and "batch_norm" in out


def _rewritten(src, dst, edit):
    """A copy of the archive `src` with each member passed through edit(name, bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))
    return dst


def _program_edit(change):
    def edit(name, data):
        if re.search(r"models/[^/]+\.json$", name):
            doc = json.loads(data)
            change(doc)
            return json.dumps(doc).encode()
        return data
    return edit


def _nodes(doc):
    return doc["graph_module"]["graph"]["nodes"]


def _set_expressions(doc, text):
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "expr_str" in item:
                item["expr_str"] = text
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class _Runs:
    def __reduce__(self):
        import os
        return (os.system, ("touch MARKER",))


def test_nothing_in_a_program_file_runs(published, tmp_path, monkeypatch):
    _, path, _, _ = published
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    cases = {
        # sympy's parser evaluates a shape expression as Python
        "expression": _program_edit(lambda d: _set_expressions(d, "__import__('os').system('touch MARKER')")),
        # an operator outside torch.ops: the graph would call it on every forward
        "target": _program_edit(lambda d: _nodes(d)[0].update(target="torch.hub.load")),
        # pytree specs name types that torch's reader imports
        "tree": _program_edit(lambda d: d["graph_module"]["module_call_graph"][0]["signature"].update(
            in_spec=json.dumps([1, {"type": "collections.defaultdict", "context": "null", "children_spec": []}]))),
        "enum": _program_edit(lambda d: d["graph_module"]["metadata"].update(
            x=json.dumps({"__enum__": True, "fqn": "os:system", "name": "x"}))),
    }
    for label, edit in cases.items():
        bad = _rewritten(path, tmp_path / f"{label}.pt2", edit)
        with pytest.raises(HardenError) as e:
            harden.load(bad)
        assert "harden" in str(e.value), label
        assert not marker.exists(), label

    def pickled_weight(name, data):  # a weight stored as a pickle that runs a command when unpickled
        if name.endswith("weights/model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if re.search(r"weights/weight_0$", name):
            return pickle.dumps(_Runs())
        return data
    with pytest.raises(HardenError):
        harden.load(_rewritten(path, tmp_path / "pickle.pt2", pickled_weight))
    assert not marker.exists()

    def custom_object(name, data):
        if name.endswith("constants/model_constants_config.json"):
            return json.dumps({"config": {"obj": {"path_name": "custom_obj_0", "is_param": False,
                                                   "use_pickle": False, "tensor_meta": None}}}).encode()
        return data
    with pytest.raises(HardenError, match="non-tensor constant"):
        harden.load(_rewritten(path, tmp_path / "custom.pt2", custom_object))

    # the program's guards are Python source that torch's module() execs: the file loads, the code never runs
    guarded = _rewritten(path, tmp_path / "guards.pt2", _program_edit(
        lambda d: d.update(guards_code=["__import__('pathlib').Path('MARKER').touch() is None"])))
    model = harden.load(guarded)
    with torch.no_grad():
        model(torch.rand(3, 1, 8, 8))
    assert not marker.exists()


def test_unreadable_archives_get_one_paragraph_errors(published, tmp_path, cli):
    _, path, _, _ = published
    aoti = tmp_path / "compiled.pt2"
    with zipfile.ZipFile(aoti, "w") as z:
        z.writestr("compiled/archive_format", "pt2")
        z.writestr("compiled/data/aotinductor/model/model.so", b"\x7fELF")
    code, out, err = cli("eval", aoti, "--data", "digits")
    assert code == 2 and "AOTInductor" in err and "Traceback" not in err
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(path.read_bytes()[:4000])
    code, out, err = cli("eval", truncated, "--data", "digits")
    assert code == 2 and "Traceback" not in err and "truncated.pt2" in err


def test_a_fixed_batch_program_trains_on_whole_chunks(published, digits, tmp_path):
    """A program of a fixed batch of 12 runs a training batch of 32 as chunks of 12, 12 and 8 padded with 4 copies of
    one image, which BatchNorm's batch statistics count: the automatic batch becomes 36; a batch given is kept, with
    a warning that names the whole one."""
    from harden.runtime import console
    net, _, _, _ = published
    program = harden.load(save_program(net, tmp_path / "twelve.pt2", batch=12))
    kw = dict(data_frac=0.05, epochs=1, report=False, device="cpu")
    auto = harden.fix(program, digits, **kw)
    assert auto.model.spec.extra["recipe_train"]["batch_size"] == 36
    with console.capture() as said:
        given = harden.fix(program, digits, batch_size=32, **kw)
    assert given.model.spec.extra["recipe_train"]["batch_size"] == 32
    assert "--batch-size 36 avoids it" in " ".join(said.get().split())
