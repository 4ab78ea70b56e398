"""`harden export`: the whole model as harden runs it (normalisation inside, fixer hooks, idfr's wrapper, BReLU)
as one ONNX file with a dynamic batch axis, then checked: onnxruntime runs it on test images and its
predictions and outputs are compared with torch's. Written atomically, only after the check has run."""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import temp_beside
from .errors import HardenError
from .models import Classifier
from .reparametrized import baked

OPSET = 17
DYNAMO_OPSET = 18  # the oldest torch's dynamo exporter writes (it converts down to older ones only for some graphs)
LOGIT_TOL = 1e-3  # largest |torch - onnxruntime| output difference accepted, relative to the output scale


@dataclass
class ExportCheck:
    n: int
    agreement: float  # share of images whose predicted class is the same in torch and onnxruntime
    max_abs_diff: float
    scale: float  # largest |output| in torch, for the relative tolerance
    images: str  # what was fed: test images of <data>, or random pixels
    written: str = ""  # what the file is: "opset 17, dynamic batch axis"

    @property
    def ok(self) -> bool:
        return self.agreement == 1.0 and self.max_abs_diff <= LOGIT_TOL * max(1.0, self.scale)


def refuse_detour(model: Classifier, what: str) -> None:
    """A forward that leaves torch (numpy, PIL: bpda.detoured) cannot be traced into a graph: the tracer records what
    came back as a constant, and the graph's output no longer depends on its input (an ONNX graph without inputs)."""
    from .bpda import detoured
    spec = model.spec
    where = detoured(model, torch.rand(2, spec.in_chans, *spec.input_size, generator=torch.Generator().manual_seed(0)))
    if where is not None:
        raise HardenError(f"{what} cannot hold this model: its forward leaves torch (numpy, PIL) and comes back at "
                          f"{where} a pass, and a traced graph would hold what came back as a constant, the same "
                          "output for every input. Export the network after that point (harden export -o "
                          "weights.pth writes the weights for your own code) and run the transformation beside it.")


def export_onnx(model: Classifier, path: str | os.PathLike, x_check: torch.Tensor, images: str,
                opset: int = OPSET) -> ExportCheck:
    """Export to `path` (atomically) and check it on x_check; the caller decides what a failed check means."""
    import onnx
    path = Path(path)
    model = model.cpu().eval()
    spec = model.spec
    refuse_detour(model, "ONNX")
    dummy = torch.rand(2, spec.in_chans, *spec.input_size)
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        try:
            # the TorchScript exporter: it traces hooks (fixer) and wrappers (idfr) as they run; the dynamo
            # exporter's deprecation notice for it is not the user's concern
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):  # the exporter dumps its whole IR graph on failure
                warnings.simplefilter("ignore", DeprecationWarning)
                # shape tests on the non-batch axes (outputs.ScoresOf) are constants of the model, as traced
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                program = exported_program_batch(model)
                graph_of = baked(model)  # computed weights as the constants they are; checked against `model` below
                if program is None:
                    torch.onnx.export(graph_of, (dummy,), tmp, input_names=["pixels"], output_names=["outputs"],
                                      dynamic_axes={"pixels": {0: "batch"}, "outputs": {0: "batch"}},
                                      opset_version=opset, dynamo=False)
                else:  # a torch.export program (symbolic sizes the tracer cannot take): exported again by torch.export
                    dummy = torch.rand(program or 2, spec.in_chans, *spec.input_size)
                    opset = max(opset, DYNAMO_OPSET)
                    torch.onnx.export(graph_of, (dummy,), tmp, input_names=["pixels"], output_names=["outputs"],
                                      dynamic_shapes=None if program else ({0: torch.export.Dim("batch")},),
                                      opset_version=opset, dynamo=True)
        except Exception as e:  # the exporter's own errors name the operator it cannot express
            import re
            later = re.search(r"added in (?:opset )?version (\d+)", str(e))
            hint = f" (`harden export --opset {later.group(1)}`)" if later and int(later.group(1)) > opset else ""
            raise HardenError(f"ONNX (opset {opset}) cannot express this model: {first_line(e)}{hint}") from None
        _write_meta(tmp, model)
        onnx.checker.check_model(tmp)
        check = _check(model, tmp, x_check, images)
        written = onnx.load(tmp, load_external_data=False)
        fixed = written.graph.input[0].type.tensor_type.shape.dim[0].dim_value
        check.written = (f"opset {max(o.version for o in written.opset_import if o.domain in ('', 'ai.onnx'))}, "
                         + (f"fixed batch of {fixed}, the program's" if fixed else "dynamic batch axis"))
        os.replace(tmp, path)
        return check
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_facts(model: Classifier) -> dict:
    """What an exported file expects, written beside its graph (read back by harden: models/onnx_graph.py,
    models/exported_program.py): [0, 1] pixels, the normalisation being inside the graph; the input size, crop and
    interpolation; label names; data, and the test split a hardened model was held out of it."""
    spec = model.spec
    facts = {"input_size": list(spec.input_size), "mean": [0.0] * spec.in_chans, "std": [1.0] * spec.in_chans,
             "interpolation": spec.interpolation, "crop_pct": spec.crop_pct, "crop_mode": spec.crop_mode,
             "data": spec.data, "exported_from": spec.arch}
    if spec.extra.get("label_names"):
        facts["label_names"] = list(spec.extra["label_names"])
    return {**facts, **data_record(model)}


def data_record(model: Classifier) -> dict:
    """How the model's data is read, for every exported form (a folder's config.json keeps it under
    models/config.HUB_RECORD): the data it names, the images a hardened model never trained on (an eval of the
    exported model tests on them again, not on a sample that holds its training images), how EXIF orientation was
    taken."""
    from .models.config import RECORD_KEYS
    spec = model.spec
    found = {"data": spec.data, **{k: spec.extra.get(k) for k in RECORD_KEYS if k != "data"}}
    return {k: v for k, v in found.items() if v}


def _write_meta(path: str, model: Classifier) -> None:
    """export_facts in the graph's metadata_props."""
    import json

    import onnx

    from .models.onnx_graph import META_KEY
    facts = export_facts(model)
    graph = onnx.load(path)
    graph.metadata_props.add(key=META_KEY, value=json.dumps(facts))
    onnx.save(graph, path)


def exported_program_batch(model: nn.Module) -> int | None:
    """None for a model without a torch.export program in it; else the program's fixed batch (0: dynamic)."""
    from .models.exported_program import ExportedNet
    found = [m for m in model.modules() if isinstance(m, ExportedNet)]
    return found[0].batch if found else None


def _check(model: Classifier, onnx_path: str, x: torch.Tensor, images: str) -> ExportCheck:
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    fixed = sess.get_inputs()[0].shape[0]
    return compare(model, lambda b: sess.run(["outputs"], {"pixels": b.numpy().astype(np.float32)})[0], x, images,
                   fixed if isinstance(fixed, int) and fixed > 0 else 0)


def compare(model: Classifier, run, x: torch.Tensor, images: str, fixed: int = 0) -> ExportCheck:
    """The exported file's outputs (`run`: a batch of pixels -> numpy outputs) against harden's on `x`; a file of a
    fixed batch is run on whole batches (x repeated to fill them)."""
    if fixed and len(x) % fixed:
        x = x.repeat(-(-fixed // len(x)), 1, 1, 1)[:max(fixed, len(x) // fixed * fixed)]
    with torch.no_grad():
        ref = model(x).numpy()
    step = fixed or len(x)
    got = np.concatenate([np.asarray(run(x[i:i + step])) for i in range(0, len(x), step)])
    return ExportCheck(n=len(x), agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
                       max_abs_diff=float(np.abs(ref - got).max()), scale=float(np.abs(ref).max()), images=images)


def refuse_beyond_architecture(model: Classifier, holds: str, builder: str) -> None:
    """An export that keeps the architecture alone (a library folder, a state dict) cannot hold what a recipe added
    to it: `holds` says what cannot hold a recipe's modules, `builder` what builds the architecture."""
    if model.patch is not None:
        raise HardenError(f"{model.spec.extra.get('recipe', 'The recipe')}'s modules are not part of "
                          f"{model.spec.arch}, so {holds}; export to ONNX (-o model.onnx), which keeps the whole model "
                          "as harden runs it.")
    if model.spec.extra.get("brelu_swapped"):
        raise HardenError(f"gda-brelu replaced the ReLUs of {model.spec.arch} with bounded ReLUs, which {builder} does "
                          "not build; export to ONNX (-o model.onnx), which keeps the whole model as harden runs it.")


def first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
