"""Model files of other frameworks and runtimes, named in the error with the way to a file harden reads.

harden attacks and trains PyTorch modules and ONNX graphs (it needs gradients through the network). A TensorFlow,
Keras or TFLite model converts to ONNX with tf2onnx; a file compiled for a runtime (ExecuTorch, TensorRT, OpenVINO,
Core ML) has no way back, and the error asks for what it was built from. Found by content where the format has a
signature (TFLite's and ExecuTorch's flatbuffer identifiers, HDF5's magic, a Keras 3 archive's members), else by
the name a tool gives it; only the first bytes or a zip's listing are read."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TF2ONNX = "pip install tf2onnx, then python -m tf2onnx.convert"


def _head(path: Path, n: int = 512) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""


def describe(path: Path, by_name: bool = True) -> str | None:
    """The one-paragraph error for `path` if it is another framework's model, else None. Called where harden's own
    formats did not fit; `by_name=False`: by content only (a zip that could still be a torch file of any name)."""
    name = repr(str(path))
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return (f"{name} is a TensorFlow SavedModel; harden attacks and trains PyTorch and ONNX models. Convert "
                    f"it to ONNX ({TF2ONNX} --saved-model {path} --output model.onnx) and pass the .onnx.")
        if path.suffix.lower() == ".mlpackage":
            return _compiled(name, "a Core ML package", "Core ML")
        return None
    head = _head(path)
    suffix = path.suffix.lower() if by_name else ""
    if head[4:8] == b"TFL3" or suffix == ".tflite":
        return (f"{name} is a TensorFlow Lite model; harden attacks and trains PyTorch and ONNX models. Convert it "
                f"to ONNX ({TF2ONNX} --tflite {path} --output model.onnx) and pass the .onnx.")
    if head[4:6] == b"ET" and head[6:8].isdigit() or suffix == ".pte":
        return _compiled(name, "an ExecuTorch program (.pte)", "ExecuTorch",
                         "the torch.export program it was lowered from (torch.export.save(program, 'model.pt2'))")
    if head.startswith(HDF5_MAGIC) or (suffix in (".h5", ".hdf5") and not head.startswith(b"PK")):
        return (f"{name} is an HDF5 file (a Keras model or its weights); harden attacks and trains PyTorch and ONNX "
                f"models. Convert the Keras model to ONNX ({TF2ONNX} --keras {path} --output model.onnx, or "
                "tf2onnx.convert.from_keras(model, output_path='model.onnx')) and pass the .onnx.")
    if head.startswith(b"PK") and _mar_manifest(path) is not None:
        model = _mar_manifest(path).get("model") or {}
        weights, code = model.get("serializedFile"), model.get("modelFile")
        return (f"{name} is a TorchServe model archive (.mar): a zip of the weights ({weights or 'its serialized file'}"
                f"){', the architecture (' + code + ')' if code else ''} and a handler. Unzip it and give harden the "
                f"weights file{' with --arch ' + code + ':ClassName' if code else ''}; its index_to_name.json, if "
                "any, serves as --class-map.")
    if head.startswith(b"PK") and _npz_members(path):
        names = _npz_members(path)
        if any("/" in n for n in names):  # Flax/JAX parameter paths: big_vision's, Google's ViT checkpoints
            return (f"{name} is an .npz of JAX/Flax parameters ({names[0]}, ...) other than the class-token ViTs "
                    "harden converts itself (google-research/vision_transformer's): BiT's ResNets, big_vision's "
                    "models. timm converts several of Google's layouts: build the timm model it is (timm.create_model"
                    "('resnetv2_50x1_bit', num_classes=...)), load it with that model family's _load_weights(model, "
                    "'file.npz'), torch.save(model.state_dict(), 'model.pth'), and pass that with --arch.")
        if not is_npz_state_dict(names):
            return (f"{name} is an .npz of arrays ({', '.join(names[:4])}), not a model's weights; images and labels "
                    "are given with --data.")
    if head.startswith(b"PK") and _is_keras_archive(path):
        return (f"{name} is a Keras 3 model (.keras); harden attacks and trains PyTorch and ONNX models. Load it in "
                "Keras and convert it to ONNX (tf2onnx.convert.from_keras(model, output_path='model.onnx')), then "
                "pass the .onnx.")
    if by_name and path.name == "saved_model.pb":
        return (f"{name} is a TensorFlow SavedModel's graph; pass its folder to tf2onnx ({TF2ONNX} --saved-model "
                f"{path.parent} --output model.onnx) and the .onnx to harden.")
    if suffix == ".xml" and b"<net " in head:
        return _compiled(name, "an OpenVINO IR model", "OpenVINO")
    if suffix in (".engine", ".plan", ".trt"):
        return _compiled(name, "a TensorRT engine (built for one GPU)", "TensorRT")
    if suffix == ".mlmodel":
        return _compiled(name, "a Core ML model", "Core ML")
    return _by_name(path, name, suffix, head) if by_name else None


TF_CHECKPOINT = re.compile(r"\.(index|meta)$|\.data-\d{5}-of-\d{5}$")


def _by_name(path: Path, name: str, suffix: str, head: bytes) -> str | None:
    """Formats without a signature harden can check, known by the names their tools give them (only where harden's
    own formats did not fit the content)."""
    if suffix in (".caffemodel", ".prototxt"):
        return (f"{name} is a Caffe model (a .caffemodel with its deploy .prototxt); harden attacks and trains PyTorch "
                "and ONNX models. Convert the pair to ONNX (caffe2onnx, or MMdnn) or to a PyTorch module and its "
                "state dict, and pass that.")
    if suffix in (".pdmodel", ".pdiparams"):
        stem = path.with_suffix("")
        return (f"{name} is half of a PaddlePaddle inference model; harden attacks and trains PyTorch and ONNX models. "
                f"Convert it to ONNX (pip install paddle2onnx; paddle2onnx --model_dir {stem.parent} --model_filename "
                f"{stem.name}.pdmodel --params_filename {stem.name}.pdiparams --save_file model.onnx) and pass the "
                ".onnx.")
    if suffix in (".pdparams", ".pdopt"):
        return (f"{name} holds PaddlePaddle training weights; harden attacks and trains PyTorch and ONNX models. Save "
                "the model as an inference model (paddle.jit.save(model, 'inference/model', input_spec=[...])), "
                "convert that to ONNX (paddle2onnx --model_dir inference --model_filename model.pdmodel "
                "--params_filename model.pdiparams --save_file model.onnx) and pass the .onnx.")
    if suffix == ".params" and any(path.parent.glob("*-symbol.json")):
        return (f"{name} holds an MXNet model's weights (its graph is the -symbol.json beside it); harden attacks and "
                "trains PyTorch and ONNX models. Export the pair to ONNX (mxnet.onnx.export_model(sym, params, "
                "in_shapes=[(1, 3, 224, 224)], in_types=[numpy.float32], onnx_file_path='model.onnx'); "
                "mxnet.contrib.onnx before MXNet 1.9) and pass the .onnx.")
    if TF_CHECKPOINT.search(path.name) and ("ckpt" in path.name or (path.parent / "checkpoint").is_file()):
        return (f"{name} is part of a TensorFlow checkpoint (variables, not a model harden can run); harden attacks "
                "and trains PyTorch and ONNX models. tf2onnx converts a TF1 checkpoint with its .meta graph "
                f"({TF2ONNX} --checkpoint model.ckpt.meta --inputs input:0 --outputs logits:0 --output model.onnx); "
                "a TF2/Keras checkpoint is restored into its Keras model, which converts "
                "(tf2onnx.convert.from_keras(model, output_path='model.onnx')). Pass the .onnx.")
    if suffix == ".pb":
        return (f"{name} is a TensorFlow frozen graph; harden attacks and trains PyTorch and ONNX models. Convert it "
                f"to ONNX ({TF2ONNX} --graphdef {path.name} --inputs input:0 --outputs logits:0 --output model.onnx, "
                "with its own input and output tensor names) and pass the .onnx.")
    if suffix == ".param" and head.startswith(b"7767517"):
        return _compiled(name, "an ncnn model", "ncnn")
    if suffix == ".mnn":
        return _compiled(name, "an MNN model", "MNN")
    if suffix == ".weights" and any(path.parent.glob("*.cfg")):
        return (f"{name} holds Darknet weights (the network is the .cfg beside it); harden attacks and trains PyTorch "
                "and ONNX models. Convert the pair to ONNX or to a PyTorch module and its state dict, and pass that.")
    return None


STATE_KEY_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var")


def is_npz_state_dict(names: list[str]) -> bool:
    """Array names that are a torch state dict's keys (`np.savez(path, **{k: v.numpy() ...})`)."""
    return bool(names) and sum(n.endswith(STATE_KEY_SUFFIXES) for n in names) >= max(1, len(names) // 2)


def npz_state_dict(path: Path) -> dict | None:
    """The tensors of an .npz that holds a torch state dict under its keys; None for any other file."""
    names = _npz_members(path)
    if not is_npz_state_dict(names) or any("/" in n for n in names):
        return None
    import numpy as np
    import torch
    with np.load(path, allow_pickle=False) as z:
        return {k: torch.from_numpy(np.array(z[k])) for k in z.files}


def _mar_manifest(path: Path) -> dict | None:
    """A TorchServe archive's MAR-INF/MANIFEST.json; None for any other file."""
    import json
    try:
        with zipfile.ZipFile(path) as z:
            if "MAR-INF/MANIFEST.json" not in z.namelist():
                return None
            found = json.loads(z.read("MAR-INF/MANIFEST.json"))
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        return None
    return found if isinstance(found, dict) else {}


def _npz_members(path: Path) -> list[str]:
    """The array names of an .npz (a zip of .npy members alone); empty for any other file."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []
    return [n[:-4] for n in names] if names and all(n.endswith(".npy") for n in names) else []


def _is_keras_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "config.json" in names and any(n.startswith("model.weights") for n in names)


def _compiled(name: str, what: str, runtime: str, source: str = "the ONNX or PyTorch model it was converted from") -> str:
    return (f"{name} is {what}, compiled for {runtime}'s inference runtime: it holds no graph harden can take "
            f"gradients through. Give {source}, or the weights and --arch.")
