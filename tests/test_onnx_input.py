"""ONNX models as input (models/onnx_graph.py): files as torch's two exporters write them, with a dynamic or a fixed
batch, NCHW or NHWC, evaluated, hardened and exported back; the conversion checked against onnxruntime."""
import contextlib
import math
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harden
from harden.errors import HardenError
from harden.models import onnx_graph
from harden.runtime import console


class LeNetView(nn.Module):  # as published code writes it: view-flatten, log_softmax head
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.log_softmax(self.fc(x.view(x.size(0), -1)), dim=1)


class Mixer(nn.Module):
    """What opset 18-20 graphs hold that onnx2torch lacks: a global mean (ReduceMean 18), GELU (Gelu 20), an even
    split (Split 18), a pad, reshapes to constant shapes (Reshape 19), a token concatenated in front (ViT's class
    token, which a fixed batch bakes in)."""
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, 8, 4, stride=4)
        self.token = nn.Parameter(torch.randn(1, 1, 8))
        self.mix = nn.Linear(8, 16)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        t = self.stem(F.pad(x, (1, 1, 1, 1))).flatten(2).transpose(1, 2)
        t = torch.cat([self.token.expand(x.shape[0], -1, -1), t], 1)
        a, b = F.gelu(self.mix(t)).chunk(2, -1)
        return self.head((a * b).mean(1))


class TokenNorm(nn.Module):
    """A LayerNorm after reshapes computed at run time (Swin's, MobileViT's): shape inference leaves its input's
    shape unknown, which onnx2torch's converter took as the normalised shape."""
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        f = self.stem(x)
        b, c, h, w = f.shape
        t = f.reshape(b, c, h * w).transpose(1, 2).reshape(b, h, w, c)
        return self.head(self.norm(t).mean((1, 2)))


def export(net, path, size=(16, 16), chans=3, dynamo=False, fixed_batch=False, nhwc=False, opset=None):
    net = net.eval()
    x = torch.rand(1 if fixed_batch else 2, chans, *size).to(next(net.parameters()).dtype)
    model = net
    if nhwc:  # a TensorFlow-style graph: N x H x W x C in
        class NHWC(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x.permute(0, 3, 1, 2))
        model, x = NHWC().eval(), x.permute(0, 2, 3, 1).contiguous()
    kwargs = {}
    if not fixed_batch:
        kwargs = ({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo
                  else {"dynamic_axes": {"image": {0: "batch"}}})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if opset:
            kwargs["opset_version"] = opset
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["image"], **kwargs)
    return path


def dynamo_available():
    try:
        import onnxscript  # noqa: F401
        return True
    except ImportError:
        return False


CASES = [("legacy", False, False), ("legacy-fixed-batch", False, True)]
if dynamo_available():
    CASES += [("dynamo", True, False), ("dynamo-fixed-batch", True, True)]


@pytest.mark.parametrize("name,dynamo,fixed", CASES, ids=[c[0] for c in CASES])
def test_exported_graphs_load_as_the_module_that_was_exported(tmp_path, name, dynamo, fixed):
    torch.manual_seed(0)
    net = LeNetView()
    with torch.no_grad():  # statistics of a trained network, so the folded or kept BatchNorm matters
        net.bn1.running_mean.normal_()
        net.bn1.running_var.uniform_(0.5, 2)
    path = export(net, tmp_path / "m.onnx", dynamo=dynamo, fixed_batch=fixed)
    with console.capture() as said:
        model = harden.load(path)
    assert model.spec.arch == "onnx" and model.spec.num_classes == 4 and model.spec.in_chans == 3
    assert tuple(model.spec.input_size) == (16, 16)
    assert "assuming mean 0" in " ".join(said.get().split())  # an ONNX file says no preprocessing: the default is said
    x = torch.rand(5, 3, 16, 16)  # a batch of another size than the export's
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    # every weight trainable: the graph's kernels and biases are parameters, not frozen constants
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    folded = 2 * 8 if not any("bn" in k or "Batch" in k for k in model.state_dict()) else 0  # BN folded into conv1
    assert trainable == sum(p.numel() for p in net.parameters()) - folded
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad.abs().sum() > 0


@pytest.mark.skipif(not dynamo_available(), reason="onnxscript not installed")
def test_newer_opset_operators_convert(tmp_path):
    torch.manual_seed(0)
    net = Mixer()
    path = export(net, tmp_path / "mixer.onnx", dynamo=True)
    import onnx
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"ReduceMean", "Gelu", "Split", "Reshape"} <= ops or {"ReduceMean", "Gelu"} <= ops, ops
    model = harden.load(path, mean=[0.5], std=[0.5])
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - 0.5) / 0.5), atol=1e-5)


@pytest.mark.skipif(not dynamo_available(), reason="onnxscript not installed")
def test_the_dynamo_exporters_reshape_at_opset_18_converts(tmp_path):
    """torch.onnx.export's default exporter (dynamo, torch >= 2.9) writes Reshape with allowzero=1, which onnx2torch
    refused at opsets 14 to 18 ("allowzero=1 is not implemented")."""
    import onnx
    torch.manual_seed(0)
    net = LeNetView()
    path = export(net, tmp_path / "lenet.onnx", dynamo=True, opset=18)
    graph = onnx.load(str(path)).graph
    assert any(n.op_type == "Reshape" and any(a.name == "allowzero" and a.i == 1 for a in n.attribute)
               for n in graph.node)
    model = harden.load(path)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-5)


class TinyViT(nn.Module):
    """Patches, multi-head scaled_dot_product_attention, mean of the tokens: what the dynamo exporter writes as
    ONNX Attention from opset 23 on."""
    def __init__(self, heads=2):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.qkv = nn.Linear(16, 48)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (n, tokens, 16)
        n, s, _ = t.shape
        q, k, v = self.qkv(t).reshape(n, s, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, s, -1)
        return self.head((t + y).mean(1))


@pytest.mark.skipif(not dynamo_available(), reason="onnxscript not installed")
@pytest.mark.parametrize("opset", [23, 25])
def test_opsets_23_to_25_convert_attention_and_retyped_operators(tmp_path, opset):
    """Opsets 23-25 re-versioned Reshape, Transpose, Shape, ... for new types only, and torch's dynamo exporter writes
    attention as ONNX Attention there: both were "Converter is not implemented"."""
    import onnx
    torch.manual_seed(0)
    net = TinyViT()
    path = export(net, tmp_path / f"vit{opset}.onnx", dynamo=True, opset=opset)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == opset and "Attention" in {n.op_type for n in graph.graph.node}
    model = harden.load(path)
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    assert torch.allclose(model.net(x), net(x), atol=1e-5)
    model.net(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_onnx_attention_masks_heads_and_causality_match_the_definition():
    from harden.models.onnx_extra_ops import Attention
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)  # 2 key/value heads shared
    keep = torch.rand(5, 5) > 0.3
    keep[:, 0] = True  # every query attends to something

    def reference(q, k, v, mask, causal):
        k, v = k.repeat_interleave(q.shape[1] // k.shape[1], 1), v.repeat_interleave(q.shape[1] // v.shape[1], 1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        if causal:
            scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
        return scores.softmax(-1) @ v

    additive = torch.randn(5, 5)
    for mask in (None, keep, additive):
        for causal in (False, True):
            got = Attention(causal, None, 0, 0)(q, k, v, mask)
            assert torch.allclose(got, reference(q, k, v, mask, causal), atol=1e-5), (mask is None, causal)
    flat = Attention(False, None, 4, 2)(*(t.transpose(1, 2).flatten(2) for t in (q, k, v)))  # (n, seq, heads*size)
    assert torch.allclose(flat, reference(q, k, v, None, False).transpose(1, 2).flatten(2), atol=1e-5)


FIXED = [False, True] if dynamo_available() else [False]


@pytest.mark.parametrize("dynamo", FIXED, ids=["legacy", "dynamo"][:len(FIXED)])
def test_a_class_token_concatenated_at_a_fixed_batch_is_freed(tmp_path, dynamo):
    """What torch's exporters write for a ViT exported at batch 1 without dynamic axes (the current exporter's
    default): the class token a constant of batch 1, shapes computed from constants at run time (TorchScript's)."""
    torch.manual_seed(0)
    net = Mixer().eval()
    model = harden.load(export(net, tmp_path / "fixed.onnx", fixed_batch=True, dynamo=dynamo))
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)


class BatchMixing(nn.Module):
    """Outputs that depend on the other images of the batch: no batch size but the exported one gives the file's."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        f = self.stem(x).mean((2, 3))
        return self.head(f - f.mean(0, keepdim=True) + f.std(0, keepdim=True))


def test_a_fixed_batch_that_cannot_be_freed_is_refused_with_the_way_out(tmp_path):
    path = export(BatchMixing(), tmp_path / "fixed.onnx", fixed_batch=True)
    with pytest.raises(HardenError, match="fixed batch of 1: re-export it with a dynamic batch axis"):
        harden.load(path)


def test_nhwc_graphs_take_harden_s_nchw_pixels(tmp_path):
    torch.manual_seed(0)
    net = LeNetView(in_chans=1)
    path = export(net, tmp_path / "tf.onnx", chans=1, nhwc=True)
    model = harden.load(path)
    assert model.spec.in_chans == 1 and model.spec.model_args["layout"] == "NHWC"
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)


def test_a_conversion_that_differs_from_onnxruntime_is_refused(tmp_path, monkeypatch):
    path = export(LeNetView(), tmp_path / "m.onnx")
    real = onnx_graph._run_onnxruntime
    monkeypatch.setattr(onnx_graph, "_run_onnxruntime", lambda *a, **kw: real(*a, **kw) + 0.5)
    with pytest.raises(HardenError, match="other outputs than onnxruntime"):
        harden.load(path)


def test_files_that_are_not_onnx_get_the_plain_error(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08\x07 not a protobuf at all" * 10)
    with pytest.raises(HardenError, match="neither a safetensors file, a PyTorch checkpoint .* nor an ONNX model"):
        harden.load(junk)


def test_eval_fix_and_export_round_trip_from_an_onnx_file(tmp_path, cli, digits_model):
    """The user's deployed digits model as ONNX (its normalisation inside, a fixed batch of 1, a log_softmax
    head): evaluated as the original is, hardened into a checkpoint that rebuilds without the file, exported back
    to an ONNX file harden reads with no flags."""
    class Deployed(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = digits_model

        def forward(self, x):
            return F.log_softmax(self.m(x), 1)
    src = export(Deployed(), tmp_path / "user.onnx", size=(8, 8), chans=1, fixed_batch=True)
    quick = ["--no-metrics", "--no-masking-checks"]  # what is compared is the attack's verdicts
    code, out, _ = cli("eval", src, "--data", "digits", "--n", "60", "--attack", "pgd", "-q", *quick, "--json",
                       tmp_path / "onnx.json")
    assert code == 0, out
    base = tmp_path / "base.safetensors"
    harden.save(digits_model, base)
    code, out, _ = cli("eval", base, "--n", "60", "--attack", "pgd", "-q", *quick, "--json", tmp_path / "st.json")
    assert code == 0, out
    import json
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("onnx.json", "st.json"))
    assert a["clean_accuracy"] == b["clean_accuracy"]
    assert a["attacks"][0]["name"] == "pgd" and a["attacks"][0]["robust_accuracy"] == b["attacks"][0]["robust_accuracy"]
    hardened = tmp_path / "user.hardened.safetensors"
    code, out, err = cli("fix", src, "--data", "digits", "--epochs", "1", "--no-report", "-q", "-o", hardened)
    assert code == 0, out + err
    src.rename(tmp_path / "moved.onnx")  # the hardened checkpoint needs no ONNX file beside it
    code, out, _ = cli("inspect", hardened)
    assert code == 0 and "ONNX graph without its weights" in " ".join(out.split())
    assert model_args_text(hardened) not in out  # said in a line, not dumped
    model = harden.load(hardened)
    assert model.spec.arch == "onnx" and model.spec.data == "digits"
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        before = Deployed().eval()(x)
        assert not torch.allclose(model(x), before, atol=1e-4)  # trained: its weights moved
    out_onnx = tmp_path / "hardened.onnx"
    code, out, err = cli("export", hardened, "-o", out_onnx)
    assert code == 0, out + err
    with console.capture() as said:
        back = harden.load(out_onnx)
    assert "assuming" not in " ".join(said.get().split())  # harden's export says its preprocessing: [0, 1] pixels
    assert back.spec.data == "digits" and list(back.spec.mean) == [0.0]
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-4)


def model_args_text(path):
    return harden.load(path).spec.model_args["graph"][:40]


def test_weights_stripped_graph_is_small_and_rebuilds(tmp_path):
    path = export(LeNetView(), tmp_path / "m.onnx")
    model = harden.load(path)
    text = model.spec.model_args["graph"]
    assert len(text) < path.stat().st_size / 4  # the weights travel in the state dict, not twice
    net = onnx_graph.build(model.spec.model_args)
    net.load_state_dict(model.net.state_dict())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert np.allclose(net(x).numpy(), model.net(x).numpy(), atol=1e-6)


def test_layer_norm_after_run_time_reshapes_converts(tmp_path):
    torch.manual_seed(0)
    net = TokenNorm()
    with torch.no_grad():
        net.norm.weight.normal_()
        net.norm.bias.normal_()
    model = harden.load(export(net, tmp_path / "tokens.onnx"))
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())


def test_shape_inference_without_the_weights_finds_the_same_shapes(tmp_path):
    import onnx
    path = export(TokenNorm(), tmp_path / "tokens.onnx")
    full = onnx.shape_inference.infer_shapes(onnx_graph._prepare(onnx.load(str(path))))
    lean = onnx_graph._shape_inference_without_weights(onnx_graph._prepare(onnx.load(str(path))))
    shapes = lambda m: {v.name: str(v.type) for v in m.graph.value_info}  # noqa: E731
    assert shapes(lean) == shapes(full) and len(shapes(full)) > 5
    assert any(len(i.raw_data) > 0 for i in lean.graph.initializer)  # the model itself keeps its weights


def test_float16_graphs_are_attacked_and_trained_in_float32(tmp_path):
    torch.manual_seed(0)
    net = LeNetView().eval()
    path = export(copy_half(net), tmp_path / "half.onnx")
    with console.capture() as said:
        model = harden.load(path)
    assert "float16 graph" in " ".join(said.get().split()) and model.spec.extra["onnx_float16"] is True
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():  # the float16 weights, widened exactly: the float32 network within float16's rounding
        assert torch.allclose(model(x), net(x), atol=2e-2)
        assert torch.allclose(model(x), copy_half(net).float()(x), atol=1e-5)


def copy_half(net):
    import copy
    return copy.deepcopy(net).half()


class Deployed(nn.Module):
    """A deployment graph: 8-bit NHWC pixels in, the cast, scaling and normalisation inside."""
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).contiguous().float() / 255
        return self.net((x - 0.5) / 0.25)


def test_graphs_fed_8_bit_pixels_take_harden_s_pixels(tmp_path):
    torch.manual_seed(0)
    net = LeNetView().eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Deployed(net).eval(), (torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8),),
                          str(tmp_path / "u8.onnx"), dynamo=False, input_names=["image"],
                          dynamic_axes={"image": {0: "batch"}})
    model = harden.load(tmp_path / "u8.onnx")
    assert model.spec.model_args["layout"] == "NHWC" and model.spec.std[0] == pytest.approx(1 / 255)
    x = (torch.rand(3, 3, 16, 16) * 255).round() / 255  # pixels as 8 bits give them
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - 0.5) / 0.25), atol=1e-4)
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad.abs().sum() > 0  # the gradient reaches the pixels: white-box attacks work


class Reductions(nn.Module):
    """The reductions whose axes became an input at opset 18: a standard deviation (ReduceProd of the shape), norms,
    a log-sum-exp, a max."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.head = nn.Linear(40, 4)

    def forward(self, x):
        f = self.stem(x)
        parts = [f.std((2, 3)), f.norm(dim=(2, 3)), f.abs().sum((2, 3)), torch.logsumexp(f, dim=(2, 3)), f.amax((2, 3))]
        return self.head(torch.cat(parts, 1))


@pytest.mark.parametrize("dynamo", FIXED, ids=["legacy", "dynamo"][:len(FIXED)])
def test_opset_18_reductions_convert(tmp_path, dynamo):
    torch.manual_seed(0)
    net = Reductions().eval()
    model = harden.load(export(net, tmp_path / "reductions.onnx", dynamo=dynamo))
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-4)


def test_weights_saved_as_external_data_load_and_count_in_the_digest(tmp_path):
    import onnx

    from harden.checkpoint import sha256_file
    torch.manual_seed(0)
    net = LeNetView().eval()
    graph = onnx.load(str(export(net, tmp_path / "src.onnx")))
    (tmp_path / "ext").mkdir()
    onnx.save_model(graph, str(tmp_path / "ext" / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    model = harden.load(tmp_path / "ext" / "model.onnx")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    before = sha256_file(tmp_path / "ext" / "model.onnx")
    data = tmp_path / "ext" / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1  # other weights, the same graph file
    data.write_bytes(bytes(raw))
    assert sha256_file(tmp_path / "ext" / "model.onnx") != before


class Sliced(nn.Module):
    """Slices on leading and trailing axes, a negative step: onnx2torch's Slice, which indexed with lists."""
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3 * 6 * 7, 4)

    def forward(self, x):
        y = x[:, :, 1:-1, 2:].flip(-1)[..., ::1]
        return self.head(y[:, :, :, :7].flatten(1))


def test_slices_convert_with_tuple_indexing(tmp_path):
    net = Sliced().eval()
    with console.capture():
        model = harden.load(export(net, tmp_path / "sliced.onnx", size=(8, 9)))
    x = torch.rand(2, 3, 8, 9)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")  # torch's warning for list indexing (deprecated: read as a tensor index later)
        out = model(x)
        assert torch.allclose(out, net(x), atol=1e-5)


class Shuffled(nn.Module):
    """ShuffleNet's channel shuffle (a reshape to sizes read from the input at run time) before a BatchNorm: at an old
    opset with a dynamic batch, shape inference finds no rank after it."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


class SlicedWithoutFlip(Sliced):  # flip is opset 10's
    def forward(self, x):
        return self.head(x[:, :, 1:-1, 2:][:, :, :, :7].flatten(1))


@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("fixed", [False, True], ids=["dynamic-batch", "fixed-batch"])
def test_graphs_of_old_opsets_are_converted_to_a_newer_one_and_checked(tmp_path, opset, fixed):
    """The ONNX Model Zoo's classic classifiers are opset 7 to 9 (and torch wrote 9 by default): onnx2torch has no
    converter for BatchNormalization-7, MaxPool-1 or Slice-1, so the graph goes through onnx's version converter
    first; at a fixed batch, opset 7's `x.view(x.size(0), -1)` is a constant [1, -1] whose -1 is then read from the
    input's sizes; after a channel shuffle at a dynamic batch, the ranks shape inference cannot find come from one
    run of the graph. The result is the exported module, checked against onnxruntime on the file as it is."""
    import onnx
    torch.manual_seed(0)
    net = LeNetView()
    with torch.no_grad():
        net.bn1.running_mean.normal_()
        net.bn1.running_var.uniform_(0.5, 2)
    sliced, shuffled = SlicedWithoutFlip().eval(), Shuffled().eval()
    with torch.no_grad():
        shuffled.bn.running_mean.normal_()
    for module, path, size in ((net, tmp_path / "lenet.onnx", (16, 16)), (sliced, tmp_path / "sliced.onnx", (8, 9)),
                               (shuffled, tmp_path / "shuffled.onnx", (8, 8))):
        export(module, path, size=size, fixed_batch=fixed, opset=opset)
        assert onnx.load(str(path)).opset_import[0].version == opset
        with console.capture():
            model = harden.load(path)
        x = torch.rand(5, 3, *size)
        with torch.no_grad():
            assert torch.allclose(model(x), module(x), atol=1e-5), path.name
        xg = x.clone().requires_grad_(True)
        model(xg).sum().backward()
        assert xg.grad.abs().sum() > 0


def test_a_quantized_qdq_graph_is_evaluated_as_written_with_bpda_gradients(digits_model, digits, tmp_path):
    """onnxruntime's quantize_static (QDQ, int8, per channel): its weights are dequantized to float exactly, its
    activations' QuantizeLinear/DequantizeLinear run as float arithmetic with ONNX's rounding, checked against
    onnxruntime; the rounding passes gradients straight through (BPDA), so a white-box attack lowers its accuracy
    (a zero gradient would leave it untouched)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    export(digits_model, tmp_path / "float.onnx", size=(8, 8), chans=1)
    quant_pre_process(str(tmp_path / "float.onnx"), str(tmp_path / "pre.onnx"))
    calibration = iter([{"image": digits.x_train[i:i + 16].transpose(0, 3, 1, 2).astype(np.float32) / 255}
                        for i in range(0, 128, 16)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(calibration, None)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quantize_static(str(tmp_path / "pre.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True)
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(tmp_path / "q.onnx")
    assert "quantized (QDQ) graph" in " ".join(cap.get().split())
    assert model.spec.extra["onnx_quantized"].startswith("QDQ")
    import onnxruntime as ort
    x, y = digits.images("test", np.arange(200))
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    deployed = session.run(None, {"image": x.numpy()})[0].argmax(1)  # onnxruntime's fused integer kernels
    with torch.no_grad():
        ours = model(x).argmax(1).numpy()
    assert (ours == deployed).mean() >= 0.97 and (ours == y.numpy()).mean() > 0.8
    probe = x[:8].clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(probe), y[:8]).backward()
    assert probe.grad.abs().sum() > 0  # the rounding's gradient, straight through
    report = harden.evaluate(model, digits, n=100, attacks=["pgd"], eps=0.2, device="cpu", metrics=False,
                             masking_checks=False)
    robust = report.attacks[0].robust_accuracy
    assert robust < report.clean_accuracy - 0.3, (report.clean_accuracy, robust)


def test_a_dynamically_quantized_graph_is_evaluated_with_bpda_gradients(digits_model, digits, tmp_path):
    """onnxruntime's quantize_dynamic (DynamicQuantizeLinear before ConvInteger and MatMulInteger, int8 weights):
    read as float arithmetic with the same rounding and the same per-batch range, checked against onnxruntime; PGD
    through the rounding (BPDA) lowers its accuracy."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    export(digits_model, tmp_path / "float.onnx", size=(8, 8), chans=1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quant_pre_process(str(tmp_path / "float.onnx"), str(tmp_path / "pre.onnx"))
        quantize_dynamic(str(tmp_path / "pre.onnx"), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8)
    import onnx
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= {n.op_type for n in
                                                                         onnx.load(tmp_path / "dyn.onnx").graph.node}
    with console.capture() as cap:
        model = harden.load(tmp_path / "dyn.onnx")
    assert "quantized (dynamic) graph" in " ".join(cap.get().split())
    import onnxruntime as ort
    x, y = digits.images("test", np.arange(64))
    session = ort.InferenceSession(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ours = model(x).numpy()
    theirs = session.run(None, {"image": x.numpy()})[0]  # the same batch: the same quantization range
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.97 and np.abs(ours - theirs).max() < 0.05 * np.abs(
        theirs).max()
    report = harden.evaluate(model, digits, n=100, attacks=["pgd"], eps=0.2, device="cpu", metrics=False,
                             masking_checks=False)
    assert report.attacks[0].robust_accuracy < report.clean_accuracy - 0.3


class _EveryQOperator(nn.Module):
    """A network for which onnxruntime's QOperator form writes each quantized operator harden reads: QLinearConv,
    QLinearAdd, QLinearConcat, QLinearSigmoid, QLinearMul, QLinearLeakyRelu, QLinearAveragePool, QGemm,
    QLinearMatMul and QLinearGlobalAveragePool (with MaxPool and Flatten left on the 8-bit values)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b, self.c = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(8, 10) * 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = self.c(torch.cat([self.a(h) + self.b(h), h], 1))
        h = F.leaky_relu(h * torch.sigmoid(h), 0.1)
        h = F.adaptive_avg_pool2d(F.max_pool2d(F.avg_pool2d(h, 2), 2), 1).flatten(1)
        return self.fc(h) @ self.w


def _qoperator(net, path, calibration, size, chans):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    export(net, path.with_name("float.onnx"), size=size, chans=chans)
    batches = iter(calibration)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quant_pre_process(str(path.with_name("float.onnx")), str(path.with_name("pre.onnx")))
        quantize_static(str(path.with_name("pre.onnx")), str(path), Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=True)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_a_qoperator_graph_is_read_as_its_qdq_form(tmp_path, per_channel, monkeypatch):
    """onnxruntime's QOperator form (QLinearConv, com.microsoft's QLinearAdd, QGemm, ...): each quantized operator is
    read as DequantizeLinear, the float operator and QuantizeLinear, checked against onnxruntime running the file;
    the rounding passes gradients straight through (BPDA). Before, onnx2torch refused QLinearConv."""
    import onnx
    import onnxruntime.quantization as q
    real = q.quantize_static
    monkeypatch.setattr(q, "quantize_static", lambda *a, **k: real(*a, **{**k, "per_channel": per_channel}))
    torch.manual_seed(0)
    name = "image"
    _qoperator(_EveryQOperator(), tmp_path / "q.onnx", [{name: torch.rand(32, 3, 16, 16).numpy()} for _ in range(4)],
               (16, 16), 3)
    ops = {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    from harden.models.onnx_qoperator import READ
    assert set(READ) <= ops
    with console.capture() as cap:
        model = harden.load(tmp_path / "q.onnx")
    assert "quantized (QOperator) graph" in " ".join(cap.get().split())
    assert model.spec.extra["onnx_quantized"].startswith("QOperator")
    import onnxruntime as ort
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    theirs = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {name: x.numpy()})[0]
    with torch.no_grad():
        ours = model(x).numpy()
    assert np.abs(ours - theirs).max() <= 0.05 * np.abs(theirs).max() and (ours.argmax(1) == theirs.argmax(1)).mean() \
        >= 0.95
    probe = x[:8].clone().requires_grad_(True)
    model(probe).logsumexp(1).sum().backward()
    assert probe.grad.abs().sum() > 0  # the rounding's gradient, straight through


def test_a_qoperator_graph_is_attacked_and_one_it_cannot_read_is_refused_by_name(digits_model, digits, tmp_path, cli):
    import onnx
    calibration = [{"image": digits.x_train[i:i + 16].transpose(0, 3, 1, 2).astype(np.float32) / 255}
                   for i in range(0, 128, 16)]
    _qoperator(digits_model, tmp_path / "q.onnx", calibration, (8, 8), 1)
    with console.capture():
        model = harden.load(tmp_path / "q.onnx")
    report = harden.evaluate(model, digits, n=100, attacks=["pgd"], eps=0.2, device="cpu", metrics=False,
                             masking_checks=False)
    assert report.clean_accuracy > 0.8 and report.attacks[0].robust_accuracy < report.clean_accuracy - 0.3
    assert not any("rounds" in note for note in report.notes)  # BPDA built in when loaded: no rounding left to wrap
    # exported, the quantization is written as float arithmetic that rounds: read back, the rounding passes gradients
    # straight through too (before, torch.round's zero gradient made the exported file look robust to every attack)
    harden.save(model, tmp_path / "q.safetensors")
    code, out, err = cli("export", tmp_path / "q.safetensors", "-o", tmp_path / "exported.onnx")
    assert code == 0, out + err
    assert "Round" in {n.op_type for n in onnx.load(tmp_path / "exported.onnx").graph.node}
    with console.capture() as said:
        back = harden.load(tmp_path / "exported.onnx")
    assert "gradients pass the rounding straight through" in " ".join(said.get().split())
    x, y = digits.images("test", np.arange(16))
    with torch.no_grad():
        assert torch.equal(back(x).argmax(1), model(x).argmax(1))
    probe = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(back(probe), y).backward()
    assert (probe.grad.flatten(1).abs().amax(1) > 0).all()
    graph = onnx.load(tmp_path / "q.onnx")
    node = next(n for n in graph.graph.node if n.op_type == "QLinearConv")
    node.op_type, node.domain = "QLinearSoftmax", "com.microsoft"  # one harden does not read
    onnx.save(graph, tmp_path / "other.onnx")
    code, _, err = cli("eval", tmp_path / "other.onnx", "--data", "digits", "--n", 8)
    assert code == 2 and "QLinearSoftmax" in err and "QDQ form" in " ".join(err.split()), err


def test_node_names_that_onnx2torch_would_number_into_each_other_are_renamed(tmp_path):
    """onnx2torch numbers repeated module names (`Relu`, `Relu_1`); a node already named `Relu_1` (onnxruntime's
    optimiser writes such names) then shared one with another and the graph failed with a KeyError. Nodes written
    out of topological order are read in order."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((48, 5)).astype(np.float32), "w")
    nodes = [helper.make_node("Relu", ["image"], ["a"], name="Relu_1"),
             helper.make_node("Relu", ["a"], ["b"], name="/Relu"),
             helper.make_node("Relu", ["b"], ["c"], name="Relu"),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "w"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 5])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    reordered = helper.make_graph([nodes[i] for i in (4, 2, 0, 3, 1)], "g", list(graph.input), list(graph.output),
                                  [w])  # nodes out of topological order, as some tools write them
    onnx.save(helper.make_model(reordered, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "r.onnx")
    x = torch.rand(2, 3, 4, 4)
    for name in ("m.onnx", "r.onnx"):
        model = harden.load(tmp_path / name)
        with torch.no_grad():
            assert torch.allclose(model.net(x), torch.relu(x).flatten(1) @ torch.from_numpy(
                numpy_helper.to_array(w).copy()), atol=1e-5), name
