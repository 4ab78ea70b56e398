import copy
import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import zipfile

import numpy as np
import pytest
import torch

import harden
from harden import HardenError
from harden.checkpoint import read_checkpoint


def test_roundtrip_keeps_logits_and_metadata(digits_model, digits, tmp_path):
    path = harden.save(digits_model, tmp_path / "m.safetensors", {"note": "x"})
    loaded = harden.load(path)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(loaded(x), digits_model.eval()(x))
    _, meta = read_checkpoint(path)
    for k in ("format_version", "arch", "num_classes", "in_chans", "input_size", "mean", "std", "data"):
        assert k in meta
    assert meta["arch"] == "cnn-small" and meta["data"] == "digits" and meta["note"] == "x"


def test_pt_state_dict_with_flags(digits_model, tmp_path):
    path = tmp_path / "m.pt"
    torch.save(digits_model.net.state_dict(), path)
    with pytest.raises(HardenError, match="--arch"):
        harden.load(path)
    with pytest.raises(HardenError, match=r"number of classes.*head.1.weight, has 10 rows: --num-classes 10"):
        harden.load(path, arch="cnn-small")
    m = harden.load(path, arch="cnn-small", num_classes=10, in_chans=1, input_size=(8, 8),
                    mean=list(digits_model.spec.mean), std=list(digits_model.spec.std))
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(m(x), digits_model.eval()(x))


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


class Remover:
    """A pickle that deletes a file when it is loaded the ordinary way."""
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.remove, (self.target,))


def test_pickle_with_code_never_runs(digits_model, tmp_path, capsys):
    """A checkpoint that names code, zip or legacy (pre-1.6) format, is read as data: the weights beside it load,
    the code is never called."""
    sentinel = tmp_path / "keep.txt"
    sentinel.write_text("x")
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": digits_model.net.state_dict(), "evil": Evil(), "rm": Remover(sentinel)}, path)
    flags = dict(arch="cnn-small", num_classes=10, in_chans=1, input_size=(8, 8))
    model = harden.load(path, **flags)
    assert torch.equal(model.net.state_dict()["head.1.weight"], digits_model.net.state_dict()["head.1.weight"])
    torch.save({"evil": Evil(), "rm": Remover(sentinel)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(HardenError, match="holds no state dict"):
        harden.load(tmp_path / "legacy.pt", **flags)
    torch.save({"state_dict": digits_model.net.state_dict(), "evil": Evil(), "rm": Remover(sentinel)},
               tmp_path / "legacy_weights.pt", _use_new_zipfile_serialization=False)
    model = harden.load(tmp_path / "legacy_weights.pt", **flags)
    assert torch.equal(model.net.state_dict()["head.1.weight"], digits_model.net.state_dict()["head.1.weight"])
    assert sentinel.exists() and "pwned" not in capsys.readouterr().out


def test_a_plain_pickle_is_read_as_data(digits_model, tmp_path, capsys, recwarn):
    """`pickle.dump(model.state_dict(), f)` (Kaggle notebooks' way; not torch.save): read with the same inert reader,
    the tensors' storages from the bytes torch pickles them as, protocols 2 (bytes as `_codecs.encode`), 4 and 5
    alike; a whole module, a dict around the weights and numpy arrays of them too; code beside them never runs, and
    torch's warning about the protocol is not passed on. It was refused as "not a readable PyTorch checkpoint (...
    legacy checkpoint's header)"."""
    import pickle
    sentinel = tmp_path / "keep.txt"
    sentinel.write_text("x")
    net = digits_model.net.eval()
    flags = dict(arch="cnn-small", num_classes=10, in_chans=1, input_size=(8, 8))
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}  # numpy's rebuilders, as torch's loader allows them
    forms = {"state.pkl": (net.state_dict(), 4), "old.pkl": (net.state_dict(), 2), "whole.pkl": (net, 4),
             "dict.pkl": ({"weights": net.state_dict(), "acc": 0.93, "evil": Evil(), "rm": Remover(sentinel)}, 2),
             "highest.pkl": (net.state_dict(), 5), "arrays.pkl": (arrays, 2), "arrays5.pkl": (arrays, 5)}
    for name, (obj, protocol) in forms.items():
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
        model = harden.load(tmp_path / name, **flags)
        assert all(torch.equal(model.net.state_dict()[k], v) for k, v in net.state_dict().items()), name
    assert sentinel.exists() and "pwned" not in capsys.readouterr().out
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(HardenError, match="holds no state dict"):
        harden.load(tmp_path / "list.pkl", **flags)


def test_weights_saved_as_numpy_arrays_load_as_an_npz_of_them_does(digits_model, tmp_path):
    """`torch.save({k: v.numpy() ...})` (weights converted for another framework and saved back): numeric arrays are
    a state dict where the file holds no tensor dict; beside a tensor dict, arrays (a metrics history) are not one."""
    import numpy as np
    net = digits_model.net.eval()
    flags = dict(arch="cnn-small", num_classes=10, in_chans=1, input_size=(8, 8))
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    for name, obj in {"flat.pt": arrays, "nested.pt": {"model": arrays, "history": [0.5, 0.7]}}.items():
        torch.save(obj, tmp_path / name)
        model = harden.load(tmp_path / name, **flags)
        assert all(torch.equal(model.net.state_dict()[k], v) for k, v in net.state_dict().items()), name
    torch.save({"state_dict": net.state_dict(), "metrics": {"acc": np.array([0.5, 0.7]), "loss": np.array([1.0])}},
               tmp_path / "both.pt")
    assert harden.load(tmp_path / "both.pt", **flags).net.state_dict().keys() == net.state_dict().keys()


def test_a_whole_pickled_model_loads_without_running_and_names_its_class(digits_model, tmp_path):
    """`torch.save(model)` (alone, in a dict, wrapped in DataParallel; zip or legacy format): its weights, read
    without importing its class; without --arch, the error names the class to pass."""
    net = digits_model.net.eval()
    x = torch.rand(3, 1, 8, 8)
    flags = dict(arch="cnn-small", num_classes=10, in_chans=1, input_size=(8, 8),
                 mean=list(digits_model.spec.mean), std=list(digits_model.spec.std))
    forms = {"full.pt": net, "dict.pt": {"model": net, "epoch": 3, "best_acc": 0.9},
             "dp.pt": torch.nn.DataParallel(net)}
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)  # as `torch.save(model, path)` in published code
        model = harden.load(tmp_path / name, **flags)
        with torch.no_grad():
            assert torch.equal(model(x), digits_model.eval()(x)), name
        assert f"read the whole pickled {type(net).__module__}" in model.load_notes[0]
        with pytest.raises(HardenError) as missing:
            harden.load(tmp_path / name)
        message = str(missing.value)
        assert f"pickles a whole {type(net).__module__}.{type(net).__name__}" in message, name
        assert "a pickled model's code is not run" in message and "plain state dict" not in message, name
        assert "\x1b" not in message
    assert "pickled_class" not in harden.load(tmp_path / "full.pt", **flags).spec.extra
    looped = copy.deepcopy(net)
    looped.head._modules["back"] = looped  # a cycle torch's own registration refuses, written anyway
    torch.save(looped, tmp_path / "cycle.pt")
    assert set(read_checkpoint(tmp_path / "cycle.pt")[0]) == set(net.state_dict())  # not followed, not recursed
    for name, obj in forms.items():  # torch's legacy format (before 1.6): its storages after the pickle
        torch.save(obj, tmp_path / f"legacy_{name}", _use_new_zipfile_serialization=False)
        with torch.no_grad():
            assert torch.equal(harden.load(tmp_path / f"legacy_{name}", **flags)(x), digits_model.eval()(x)), name
    half = {"w": torch.arange(6, dtype=torch.float16).view(2, 3), "i": torch.tensor([7], dtype=torch.int64)}
    torch.save({"m": net, "extra": half}, tmp_path / "legacy_mixed.pt", _use_new_zipfile_serialization=False)
    from harden.inert_pickle import load_inert_legacy
    with open(tmp_path / "legacy_mixed.pt", "rb") as f:
        extra = load_inert_legacy(f)["extra"]
    assert torch.equal(extra["w"], half["w"]) and torch.equal(extra["i"], half["i"])
    with pytest.raises(HardenError) as missing:
        harden.load(tmp_path / "legacy_full.pt")
    assert f"pickles a whole {type(net).__module__}.{type(net).__name__}" in str(missing.value)


def test_a_whole_pickled_sequential_names_its_children_and_loads_from_a_function_that_builds_it(tmp_path):
    """`torch.save(nn.Sequential(...))` holding a module of the script's own: the error lists what the container
    holds and asks for a function that builds it (Sequential's own constructor cannot: it takes the modules); with
    one, the weights load. (All of torch.nn's layers, it needs no function: test_torch_layers.py.)"""
    code = ("import torch\nfrom torch import nn\n\nclass Double(nn.Module):\n    def forward(self, x):\n"
            "        return 2 * x\n\ndef make():\n    return nn.Sequential(nn.Conv2d(1, 4, 3), Double(), nn.ReLU(), "
            "nn.Flatten(), nn.Linear(4 * 6 * 6, 5))\n")
    (tmp_path / "seqnet.py").write_text(code)
    from harden.models.registry import _import_callable
    net = _import_callable(f"{tmp_path / 'seqnet.py'}:make")().eval()
    torch.save(net, tmp_path / "seq.pt")
    with pytest.raises(HardenError) as missing:
        harden.load(tmp_path / "seq.pt")
    message = str(missing.value)
    assert "pickles a whole Sequential(torch.nn.modules.conv.Conv2d, " in message and ".Double, torch.nn" in message
    assert "function that builds the same container" in message and "--arch path/to/file.py:make" in message
    model = harden.load(tmp_path / "seq.pt", arch=f"{tmp_path / 'seqnet.py'}:make", input_size=(8, 8))
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    assert (model.spec.num_classes, model.spec.in_chans) == (5, 1)


def test_a_torch_file_cut_short_says_so(tmp_path):
    """A zip-format checkpoint without its end (the zip directory is written last): the error says the file was cut
    short, not only torch's own words ("Invalid argument", "failed finding central directory")."""
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.rand(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(HardenError, match="cut short"):
        read_checkpoint(path)


def _damage_outcomes(original: bytes, write, path, rng) -> dict[str, int]:
    """150 copies of `original` with 1-4 bytes overwritten (a fifth also truncated), each written by write(bytes) and
    read: how many read and how many gave a HardenError (anything else fails the test)."""
    outcomes = {"read": 0, "error": 0}
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        write(bytes(data))
        try:
            read_checkpoint(path)
            outcomes["read"] += 1
        except HardenError:
            outcomes["error"] += 1
    return outcomes


def test_damaged_whole_model_pickles_give_only_one_paragraph_errors(tmp_path):
    """Overwritten and truncated bytes in a whole pickled model's data.pkl (read by the inert unpickler, torch having
    refused it), and anywhere in a legacy-format file (the pickles, then each storage's element count and bytes): a
    state dict or a HardenError, never another exception (struct.error, MemoryError, a TypeError from a damaged
    module table were found this way)."""
    import io
    import random
    import zipfile

    import timm
    torch.save(timm.create_model("test_resnet.r160_in1k", num_classes=3), tmp_path / "whole.pt")
    src = zipfile.ZipFile(tmp_path / "whole.pt")
    member = next(n for n in src.namelist() if n.endswith("data.pkl"))
    damaged = tmp_path / "damaged.pt"

    def zipped(data: bytes) -> None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name in src.namelist():
                z.writestr(name, data if name == member else src.read(name))
        damaged.write_bytes(out.getvalue())
    rng = random.Random(0)
    outcomes = _damage_outcomes(src.read(member), zipped, damaged, rng)
    assert outcomes["read"] and outcomes["error"], outcomes
    torch.save(timm.create_model("test_resnet.r160_in1k", num_classes=3), tmp_path / "legacy.pt",
               _use_new_zipfile_serialization=False)
    outcomes = _damage_outcomes((tmp_path / "legacy.pt").read_bytes(), damaged.write_bytes, damaged, rng)
    assert outcomes["read"] and outcomes["error"], outcomes


def test_mismatch_names_keys(digits_model, tmp_path):
    path = harden.save(digits_model, tmp_path / "m.safetensors")
    with pytest.raises(HardenError, match="shape mismatches.*head.*has 10 outputs where the model has 7: --num-classes 10"):
        harden.load(path, num_classes=7)


def test_save_refuses_overwrite_and_input(digits_model, tmp_path):
    path = harden.save(digits_model, tmp_path / "m.safetensors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(HardenError, match="--force"):
        harden.save(digits_model, path)
    with pytest.raises(HardenError, match="input"):
        harden.save(digits_model, path, force=True, inputs=[path])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    harden.save(digits_model, path, force=True)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_outputs_get_the_permissions_of_a_file_open_would_create(digits_model, cli, tmp_path, umask):
    # mkstemp makes owner-only files; a renamed output must not stay unreadable to the CI job's group
    old = os.umask(umask)
    try:
        expected = 0o666 & ~umask
        ckpt = harden.save(digits_model, tmp_path / "m.safetensors")
        code, _, err = cli("eval", ckpt, "--attack", "fgsm", "--num-images", 8, "--no-metrics", "-q",
                           "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
        assert code == 0, err
        code, _, err = cli("export", ckpt, "-o", tmp_path / "m.onnx", "--num-images", 4, "-q")
        assert code == 0, err
        for name in ("m.safetensors", "r.json", "r.md", "m.onnx"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    finally:
        os.umask(old)


def test_torchscript_archives_give_their_weights_without_running(tmp_path, cli, capsys):
    import pickle
    import warnings
    import zipfile

    (tmp_path / "seq.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class Scaled(nn.Module):  # a buffer the constructor computes: not in state_dict(), but in the archive\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.register_buffer('scale', torch.tensor(2.0), persistent=False)\n\n"
        "    def forward(self, x):\n"
        "        return x * self.scale\n\n\n"
        "def seq(num_classes=10, in_chans=1):\n"
        "    return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), Scaled(),\n"
        "                         nn.Flatten(), nn.Linear(4 * 64, num_classes))\n")
    flags = dict(arch=f"{tmp_path / 'seq.py'}:seq", num_classes=10, in_chans=1, input_size=(8, 8))
    import importlib.util
    spec = importlib.util.spec_from_file_location("seq_for_ts", tmp_path / "seq.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.seq().eval()  # the user's own module, as their code scripts or traces it
    with torch.no_grad():
        net[1].running_mean.uniform_()  # buffers travel too
    x = torch.rand(3, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation notice
        archives = {"traced": torch.jit.trace(net, x), "scripted": torch.jit.script(net)}
        for how, module in archives.items():
            torch.jit.save(module, str(tmp_path / f"{how}.pt"))
    for how in archives:
        path = tmp_path / f"{how}.pt"
        loaded = harden.load(path, **flags)
        with torch.no_grad():
            assert torch.equal(loaded(x), net(x)), how
        assert any("3.scale" in note for note in loaded.load_notes), loaded.load_notes
        assert "TorchScript archive of a Sequential(Conv2d, BatchNorm2d, ReLU, Scaled, Flatten, Linear)" \
            in loaded.load_notes[0]
        with pytest.raises(HardenError) as no_flags:  # the class it was compiled from, and the formats that need none
            harden.load(path)
        said = " ".join(str(no_flags.value).split())
        assert "(its TorchScript code is not run)" in said and "a function that builds the same container" in said
        assert "torch.export (.pt2) or to ONNX needs no --arch" in said
    code, out, err = cli("inspect", tmp_path / "traced.pt", "--arch", flags["arch"], "--num-classes", 10,
                         "--in-chans", 1, "--input-size", "8x8")
    assert code == 0, err
    from harden.torchscript import _python_class  # a class of a script run as a program; a mangled one
    assert _python_class("__torch__.___torch_mangle_4.Net") == _python_class("__torch__.Net") == "__main__.Net"
    assert _python_class("__torch__.timm.models.resnet.ResNet") == "timm.models.resnet.ResNet"

    # an archive whose pickle asks for anything but modules and tensors is refused, and nothing runs
    src = zipfile.ZipFile(tmp_path / "traced.pt")
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        for name in src.namelist():
            z.writestr(name, pickle.dumps(Evil(), protocol=2) if name.endswith("/data.pkl") else src.read(name))
    with pytest.raises(HardenError, match="holds no module"):  # read as data: nothing ran
        harden.load(tmp_path / "evil.pt", **flags)
    assert "pwned" not in capsys.readouterr().out


def test_a_cifar_stem_in_a_torchvision_resnet_is_named_with_how_to_build_it(tmp_path):
    """CIFAR training code builds torchvision's ResNet and swaps in a 3x3 stride-1 stem without the max-pool: the
    mismatch error says so and how to build it (not "pass --num-classes", which the file's rows already gave); the
    function it describes then loads the file."""
    import torchvision
    from torch import nn
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1, net.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    torch.save(net.state_dict(), tmp_path / "cifar_r18.pt")
    with pytest.raises(HardenError) as err:
        harden.load(tmp_path / "cifar_r18.pt", arch="torchvision.models:resnet18")
    message = str(err.value)
    assert "conv1.weight) is 3x3 where the architecture's is 7x7" in message, message
    assert "m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity()" in message
    assert "fc.weight's rows" in message and "pass --num-classes" not in message
    (tmp_path / "make.py").write_text("import torchvision\nfrom torch import nn\n\n\ndef make(num_classes=10):\n"
                                      "    m = torchvision.models.resnet18(num_classes=num_classes)\n"
                                      "    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)\n"
                                      "    m.maxpool = nn.Identity()\n    return m\n")
    model = harden.load(tmp_path / "cifar_r18.pt", arch=f"{tmp_path / 'make.py'}:make")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.net.eval()(x), net.eval()(x))


HDF5 = b"\x89HDF\r\n\x1a\n"


def _mar() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"serializedFile": "resnet18.pth",
                                                                  "modelFile": "model.py"}}))
        z.writestr("resnet18.pth", b"weights")
    return buf.getvalue()


@pytest.mark.parametrize("name,content,named", [
    ("model.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(120), "TensorFlow Lite"),
    ("model.bin", b"\x1c\x00\x00\x00TFL3" + bytes(120), "TensorFlow Lite"),  # by content, whatever the name
    ("model.pte", b"\x1c\x00\x00\x00ET12" + bytes(120), "ExecuTorch"),
    ("weights.h5", HDF5 + bytes(120), "Keras"),
    ("model.engine", bytes(128), "TensorRT"),
    ("model.xml", b'<?xml version="1.0"?>\n<net name="resnet" version="11">\n', "OpenVINO"),
    ("model.mlmodel", b"\x08\x04" + bytes(64), "Core ML"),
    ("resnet.mar", _mar(), "TorchServe model archive (.mar): a zip of the weights (resnet18.pth)"),
    ("deploy.caffemodel", b"\n\x06ResNet" + bytes(64), "Caffe"),
    ("model.pdparams", pickle.dumps({"conv1_weights": np.zeros((2, 2), np.float32)}, protocol=2), "PaddlePaddle training"),
    ("inference.pdiparams", bytes(64), "paddle2onnx --model_dir"),
    ("model.ckpt-1000.index", bytes(64), "TensorFlow checkpoint"),
    ("frozen_inference_graph.pb", b"\n\x0f" + bytes(64), "TensorFlow frozen graph"),
    ("mobilenet.param", b"7767517\n75 83\nInput data 0 1 data\n", "ncnn"),
    ("model.mnn", bytes(64), "MNN"),
])
def test_other_frameworks_models_are_named_with_the_way_to_a_file_harden_reads(tmp_path, cli, name, content, named):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = cli("eval", path, "--data", "digits")
    assert code == 2 and named in err and "Traceback" not in err
    routes = ("TensorFlow Lite", "Keras", "TensorFlow checkpoint", "TensorFlow frozen graph")
    assert ("tf2onnx" in err) == (named in routes), err  # a route to ONNX where one exists


def test_models_known_by_the_file_beside_them_are_named(tmp_path, cli):
    """MXNet's x-0000.params beside x-symbol.json, Darknet's .weights beside its .cfg; the same names without
    those files beside them are left to the generic error."""
    (tmp_path / "mx").mkdir()
    (tmp_path / "mx" / "resnet-0000.params").write_bytes(b"\x12\x01" + bytes(64))
    code, _, err = cli("eval", tmp_path / "mx" / "resnet-0000.params", "--data", "digits")
    assert code == 2 and "MXNet" not in err
    (tmp_path / "mx" / "resnet-symbol.json").write_text('{"nodes": []}')
    code, _, err = cli("eval", tmp_path / "mx" / "resnet-0000.params", "--data", "digits")
    assert code == 2 and "mxnet.onnx.export_model" in err
    (tmp_path / "dn").mkdir()
    (tmp_path / "dn" / "darknet53.weights").write_bytes(bytes(64))
    (tmp_path / "dn" / "darknet53.cfg").write_text("[net]\n")
    code, _, err = cli("eval", tmp_path / "dn" / "darknet53.weights", "--data", "digits")
    assert code == 2 and "Darknet" in err


def test_keras_archives_and_saved_models_are_named_and_harden_files_of_those_names_still_load(tmp_path, cli,
                                                                                            digits_ckpt):
    import zipfile
    keras = tmp_path / "model.keras"
    with zipfile.ZipFile(keras, "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", HDF5)
    code, out, err = cli("eval", keras, "--data", "digits")
    assert code == 2 and "Keras 3" in err and "tf2onnx" in err
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    code, out, err = cli("eval", saved, "--data", "digits")
    assert code == 2 and "SavedModel" in err and "--saved-model" in err
    # formats are found by content: a harden checkpoint and a torch file under those names load as what they are
    shutil.copy(digits_ckpt, tmp_path / "model.h5")
    assert harden.load(tmp_path / "model.h5").spec.arch == "cnn-small"
    torch.save(harden.load(digits_ckpt).net.state_dict(), tmp_path / "model.tflite")
    assert harden.load(tmp_path / "model.tflite", arch="cnn-small", num_classes=10, in_chans=1,
                       input_size=(8, 8)).spec.num_classes == 10


def test_a_folder_of_a_training_state_loads_its_model_weights(digits_model, tmp_path, cli, monkeypatch):
    """accelerate's save_state folder (model.safetensors beside optimizer.bin and random_states_0.pkl) has no
    config.json: its one model weights file is read, said; with a second model's weights beside it (model_1), the
    error names the files, not the optimizer's."""
    folder = tmp_path / "checkpoint_500"
    folder.mkdir()
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        (folder / name).write_bytes(b"x")
    with pytest.raises(HardenError, match="directory without config.json") as bare:
        harden.load(folder)
    assert "It holds" not in str(bare.value)
    harden.save(digits_model, folder / "model.safetensors")
    from harden import runtime
    said: list[str] = []
    monkeypatch.setattr(runtime, "info", said.append)
    code, out, err = cli("inspect", folder)
    assert code == 0 and "digits" in out, err
    assert len(said) == 1 and "training state's folder" in said[0] and "its weights are model.safetensors" in said[0]
    loaded = harden.load(folder)  # said once a process
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), digits_model(x))
    harden.save(digits_model, folder / "model_1.safetensors")  # an EMA or teacher copy: which is the user's to say
    with pytest.raises(HardenError, match=r"It holds model.safetensors, model_1.safetensors: give the weights file "
                                          r"itself \(.*checkpoint_500/model.safetensors\)"):
        harden.load(folder)


def test_npz_files_given_as_checkpoints(digits_model, tmp_path):
    """np.savez of a state dict's arrays loads as that state dict; an .npz of JAX/Flax parameters (Google's ViT) is
    named with timm's way to convert it; an .npz of images given as a checkpoint says to give it as --data."""
    import numpy as np
    state = {k: v.numpy() for k, v in digits_model.net.state_dict().items()}
    np.savez(tmp_path / "weights.npz", **state)
    model = harden.load(tmp_path / "weights.npz", arch=digits_model.spec.arch, num_classes=10, in_chans=1,
                        input_size=8)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.net(x), digits_model.net(x))
    np.savez(tmp_path / "vit.npz", **{"Transformer/encoder_norm/scale": np.ones(4, np.float32)})
    with pytest.raises(HardenError, match="JAX/Flax parameters.*_load_weights"):
        harden.load(tmp_path / "vit.npz", arch="resnet9")
    np.savez(tmp_path / "data.npz", x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.zeros(2, np.int64))
    with pytest.raises(HardenError, match="not a model's weights; images and labels are given with --data"):
        harden.load(tmp_path / "data.npz", arch="resnet9")


def test_a_file_of_parameters_without_buffers_is_named(tmp_path):
    """torch.save(dict(model.named_parameters())): every weight, no BatchNorm running statistics. The error says
    what the file lacks and how it came to lack it, not that the architecture is wrong."""
    net = harden.create_model("resnet9", 10, 1, (8, 8)).net
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.save(dict(net.named_parameters()), tmp_path / "params.pt")
    with pytest.raises(HardenError, match=r"hold every parameter.*running_mean.*BatchNorm's running mean and variance"
                                          r".*model.state_dict\(\)") as e:
        harden.load(tmp_path / "params.pt", arch="resnet9", num_classes=10, in_chans=1, input_size=8)
    assert "--num-classes" not in str(e.value)


def test_tied_tensors_that_save_model_wrote_once_are_filled(tmp_path):
    """safetensors' save_model (Hugging Face's and timm's savers) writes a tensor two names share under one of them:
    a block applied twice, a tied pair of layers. The other name is filled from it, and the load says so."""
    from safetensors.torch import load_file, save_model
    (tmp_path / "tied.py").write_text(
        "from torch import nn\n\n\n"
        "class Tied(nn.Module):\n"
        "    def __init__(self, num_classes=10, in_chans=1):\n"
        "        super().__init__()\n"
        "        self.stem, self.block = nn.Conv2d(in_chans, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)\n"
        "        self.again = self.block  # the same module under a second name\n"
        "        self.fc = nn.Linear(4 * 64, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.again(self.block(self.stem(x)).relu()).flatten(1))\n")
    arch = f"{tmp_path / 'tied.py'}:Tied"
    net = harden.create_model(arch, 10, 1, (8, 8)).net
    save_model(net, str(tmp_path / "tied.safetensors"))
    assert len({"again.weight", "block.weight"} & set(load_file(tmp_path / "tied.safetensors"))) == 1  # the case
    model = harden.load(tmp_path / "tied.safetensors", arch=arch, num_classes=10, in_chans=1, input_size=8)
    assert any("filled 2 tied tensor(s)" in n for n in model.load_notes)
    assert model.net.again is model.net.block
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x))


def test_weights_that_are_not_finite_are_refused_at_load(digits_model, tmp_path):
    """A file saved after its training diverged: NaN anywhere, or an infinite weight, is named at load; an infinite
    buffer (an attention mask of -inf) is not a fault."""
    state = {k: v.clone() for k, v in digits_model.net.state_dict().items()}
    kw = dict(arch="cnn-small", num_classes=10, in_chans=1, input_size=8)
    state["head.1.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(HardenError, match=r"not all finite: head.1.weight \(1 NaN of 5120\).*diverged"):
        harden.load(tmp_path / "nan.pt", **kw)
    state["head.1.weight"][0, 0] = -float("inf")
    torch.save(state, tmp_path / "inf.pt")
    with pytest.raises(HardenError, match=r"head.1.weight \(1 infinite of 5120\)"):
        harden.load(tmp_path / "inf.pt", **kw)
    from harden.checkpoint import refuse_non_finite
    refuse_non_finite({"blocks.0.attn_mask": torch.tensor([0.0, -float("inf")])}, tmp_path / "mask.pt")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_widened_and_said(tmp_path, dtype):
    """A deployment's half-precision state dict: loaded into the float32 network exactly (the widening is lossless),
    and the load notes say so."""
    net = harden.create_model("cnn-small", 10, 1, (8, 8))
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in net.net.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    model = harden.load(tmp_path / "half.pt", arch="cnn-small", num_classes=10, in_chans=1, input_size=8)
    name = str(dtype).removeprefix("torch.")
    assert any(f"weights stored as {name}, widened exactly" in n for n in model.load_notes)
    for k, v in model.net.state_dict().items():
        assert v.dtype == (torch.float32 if v.is_floating_point() else half[k].dtype)
        assert torch.equal(v, half[k].to(v.dtype))
    harden.save(model, tmp_path / "again.safetensors")
    assert not any("widened" in n for n in harden.load(tmp_path / "again.safetensors").load_notes)


def _as_google_vit_npz(net, path, extra=None):
    """A timm ViT's weights in google-research/vision_transformer's .npz layout (the inverse of timm's reader)."""
    d = net.embed_dim
    heads = net.blocks[0].attn.num_heads
    a = {"embedding/kernel": net.patch_embed.proj.weight.permute(2, 3, 1, 0), "embedding/bias": net.patch_embed.proj.bias,
         "cls": net.cls_token, "Transformer/posembed_input/pos_embedding": net.pos_embed,
         "Transformer/encoder_norm/scale": net.norm.weight, "Transformer/encoder_norm/bias": net.norm.bias,
         "head/kernel": net.head.weight.T, "head/bias": net.head.bias}
    for i, b in enumerate(net.blocks):
        p = f"Transformer/encoderblock_{i}/"
        a[p + "LayerNorm_0/scale"], a[p + "LayerNorm_0/bias"] = b.norm1.weight, b.norm1.bias
        a[p + "LayerNorm_2/scale"], a[p + "LayerNorm_2/bias"] = b.norm2.weight, b.norm2.bias
        for n, which in enumerate(("query", "key", "value")):
            a[f"{p}MultiHeadDotProductAttention_1/{which}/kernel"] = \
                b.attn.qkv.weight[n * d:(n + 1) * d].T.reshape(d, heads, -1)
            a[f"{p}MultiHeadDotProductAttention_1/{which}/bias"] = b.attn.qkv.bias[n * d:(n + 1) * d].reshape(heads, -1)
        a[p + "MultiHeadDotProductAttention_1/out/kernel"] = b.attn.proj.weight.reshape(d, heads, -1).permute(1, 2, 0)
        a[p + "MultiHeadDotProductAttention_1/out/bias"] = b.attn.proj.bias
        a[p + "MlpBlock_3/Dense_0/kernel"], a[p + "MlpBlock_3/Dense_0/bias"] = b.mlp.fc1.weight.T, b.mlp.fc1.bias
        a[p + "MlpBlock_3/Dense_1/kernel"], a[p + "MlpBlock_3/Dense_1/bias"] = b.mlp.fc2.weight.T, b.mlp.fc2.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in a.items()}, **(extra or {}))
    return path


def test_a_google_jax_vit_npz_reads_as_the_timm_vit_it_describes(tmp_path, cli):
    """Its size from the arrays' shapes, its weights through timm's reader: the same logits as the timm model the
    file was written from; a file with the representation layer timm no longer builds is refused by name."""
    import timm
    torch.manual_seed(0)
    net = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=64, depth=2,
                            num_heads=4, num_classes=5).eval()
    path = _as_google_vit_npz(net, tmp_path / "ViT-custom.npz")
    model = harden.load(path)
    assert model.spec.num_classes == 5 and tuple(model.spec.input_size) == (32, 32)
    assert model.spec.model_args == {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4,
                                     "mlp_ratio": 4.0}
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-5)
    code, out, err = cli("inspect", path)
    assert code == 0 and "vit_base_patch16_224" in out, err
    old = _as_google_vit_npz(net, tmp_path / "ViT-B_16-in21k.npz",
                             {"pre_logits/kernel": np.zeros((64, 64), np.float32), "pre_logits/bias": np.zeros(64)})
    with pytest.raises(HardenError, match="representation layer \\(pre_logits\\)"):
        harden.load(old)


def test_a_builtin_network_loads_without_importing_timm(digits_ckpt):
    """harden's own names win over timm's, so a checkpoint of one never asks timm for its config: importing timm
    (and torchvision with it) was 2 of a `harden eval` process's 7 s on this CPU, every torchrun rank paying it."""
    import subprocess
    import sys
    code = ("import sys, harden; m = harden.load(sys.argv[1]); "
            "print(m.spec.arch, sorted({'timm', 'torchvision'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code, str(digits_ckpt)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-2] == "cnn-small []", r.stdout


def test_a_network_from_a_file_loads_a_plain_state_dict_without_importing_timm(tmp_path):
    """A plain state dict (a dict saved by training code, no 'arch' in it) for `--arch file.py:Net` asks timm for
    nothing: 1.3 of a `harden inspect` process's 3.5 s here were timm's import, read to check an 'arch' entry that
    was not there."""
    import subprocess
    import sys
    (tmp_path / "net.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                                     "        super().__init__()\n        self.fc = nn.Linear(3 * 8 * 8, 4)\n\n"
                                     "    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    torch.save({"epoch": 3, "state_dict": {"fc.weight": torch.zeros(4, 192), "fc.bias": torch.zeros(4)}},
               tmp_path / "net.pth")
    code = ("import sys, harden; m = harden.load(sys.argv[1], arch='net.py:Net'); "
            "print(m.spec.num_classes, sorted({'timm', 'torchvision'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "net.pth")], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-2] == "4 []", r.stdout


def test_a_file_built_with_other_depths_says_the_counts(tmp_path, monkeypatch):
    """A timm ViT made with `depth=4` saved as a state dict, loaded by its name (12 blocks), where something else in
    the file fits no argument (so the search of its arguments, tests/test_timm_args.py, finds none): the error says
    the file's blocks count and the argument that gives it, not that no key prefix fits (the keys' names agree); a
    larger sibling's weights (resnet34's for resnet18) say each stage's count."""
    import timm

    from harden.models import args_from_weights, timm_args
    monkeypatch.setattr(args_from_weights, "SEARCH_SECONDS", 0.5)  # the hints are this test's, not the searches'
    monkeypatch.setattr(timm_args, "SIBLING_SECONDS", 0.5)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=4)
    torch.save({**vit.state_dict(), "blocks.0.attn.qkv.weight": torch.zeros(7, 192)}, tmp_path / "vit.pt")
    with pytest.raises(HardenError) as refused:
        harden.load(tmp_path / "vit.pt", arch="vit_tiny_patch16_224")
    said = str(refused.value)
    assert "blocks holds 4 (0-3) where the architecture's holds 12" in said and "--model-arg depth=4" in said
    assert "No key prefix" not in said
    r34 = timm.create_model("resnet34", num_classes=5).state_dict()
    torch.save({**r34, "fc.bias": torch.zeros(3)}, tmp_path / "r34.pt")
    with pytest.raises(HardenError, match=r"layer1 holds 3 \(0-2\) where the architecture's holds 2"):
        harden.load(tmp_path / "r34.pt", arch="resnet18")


def test_an_archive_holding_a_checkpoint_says_to_extract_it(digits_ckpt, tmp_path, cli):
    """A download wrapped in a .zip (`model.zip` holding `weights/model.safetensors`) is a zip file as torch's format
    is: the error says it is an archive and which file to extract, not torch's reader's internals; so do a tar.gz
    (SageMaker's model artifact) and a gzipped checkpoint."""
    import zipfile
    with zipfile.ZipFile(tmp_path / "model.zip", "w") as z:
        z.write(digits_ckpt, "weights/model.safetensors")
        z.writestr("README.txt", "trained for 10 epochs")
    code, out, err = cli("inspect", tmp_path / "model.zip")
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and "hasRecord" not in said, err
    assert "is a zip archive holding weights/model.safetensors" in said and "unzip model.zip" in said
    import gzip
    import shutil
    import tarfile
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:  # SageMaker's artifact
        tar.add(digits_ckpt, "model.safetensors")
    with open(digits_ckpt, "rb") as f, gzip.open(tmp_path / "model.safetensors.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    for name, says in (("model.tar.gz", "is a tar archive holding model.safetensors"),
                       ("model.safetensors.gz", "is gzip-compressed, not a checkpoint itself")):
        code, out, err = cli("inspect", tmp_path / name)
        assert code == 2 and says in " ".join(err.split()), err


DEPTHWISE_NET = '''
import torch
import torch.nn as nn


class MBConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self._depthwise_conv = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self._bn1 = nn.BatchNorm2d(c)
        self._project_conv = nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x):
        return x + self._project_conv(torch.relu(self._bn1(self._depthwise_conv(x))))


class EfficientNet(nn.Module):  # EfficientNet-PyTorch's names: `_blocks` sorts before `_conv_stem`
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(in_channels, 8, 3, 2, 1, bias=False)
        self._blocks = nn.ModuleList([MBConv(8) for _ in range(2)])
        self._fc = nn.Linear(8, num_classes)
        self.layers = nn.Sequential(nn.Linear(8, 8))  # a linear layer whose name sorts after the head's

    def forward(self, x):
        x = torch.relu(self._conv_stem(x))
        for b in self._blocks:
            x = b(x)
        return self._fc(self.layers(x.mean((2, 3))))
'''


@pytest.mark.parametrize("chans", [3, 1])
def test_a_safetensors_file_s_alphabetical_keys_still_say_the_stem_and_the_head(tmp_path, monkeypatch, chans):
    """A safetensors file lists its tensors alphabetically, not in the network's order: EfficientNet-PyTorch's
    `_blocks.0._depthwise_conv.weight` (one input channel a group) came first and was read as the stem, so its
    channels said 1 and the RGB network was built grey ("_conv_stem.weight: checkpoint (16, 3, 3, 3) vs model (16, 1,
    3, 3)"); a Swin's `layers.3...` linear layers sort after `head.fc`. In such a file the stem is a 4-D weight
    reading 3 or 4 channels, then one named as a stem, then the least nested; the head the last 2-D weight named as
    one. The same network saved by torch.save (its own order) reads the same."""
    from safetensors.torch import save_file

    from harden.models.config import first_conv, last_linear
    from harden.models.registry import _import_callable
    (tmp_path / "effnet.py").write_text(DEPTHWISE_NET)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    net = _import_callable("effnet.py:EfficientNet")(in_channels=chans, num_classes=10).eval()
    save_file(net.state_dict(), tmp_path / "e.safetensors")
    torch.save(net.state_dict(), tmp_path / "e.pth")
    for name in ("e.safetensors", "e.pth"):
        state, _ = harden.checkpoint.read_checkpoint(tmp_path / name)
        assert first_conv(state) == ("_conv_stem.weight", chans)
        assert last_linear(state)[0] == ("_fc.weight" if name.endswith("safetensors") else "layers.0.weight")
        model = harden.load(tmp_path / name, arch="effnet.py:EfficientNet", num_classes=10)
        assert model.spec.in_chans == chans
        x = torch.rand(2, chans, 16, 16)
        with torch.no_grad():
            assert torch.allclose(model.eval()(x), net(x), atol=1e-6)


def test_an_mlp_saved_as_safetensors_still_says_its_image(tmp_path):
    """An MLP on flattened digits whose head's name sorts before its first layer's (`head` before `layers.0`): in a
    safetensors file's alphabetical order the head came first, and its 128 inputs said no image; the linear layer
    reading the most inputs is the first layer there (784: 1 x 28 x 28)."""
    from safetensors.torch import save_file
    from torch import nn

    from harden.models.config import first_linear_image

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(784, 128), nn.ReLU())
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            return self.head(self.layers(x.view(x.size(0), -1)))

    save_file(MLP().state_dict(), tmp_path / "mlp.safetensors")
    state, _ = harden.checkpoint.read_checkpoint(tmp_path / "mlp.safetensors")
    assert first_linear_image(state)[1:] == (1, 28)
