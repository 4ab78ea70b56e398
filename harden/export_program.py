"""`harden export model -o hardened.pt2`: the whole model as harden runs it (normalisation inside, recipe modules) as
a torch.export program, PyTorch 2's deployment artifact (what ExecuTorch and AOTInductor take), so a model that came
as a .pt2 goes back as one. Exported with a dynamic batch axis (a program that came for a fixed batch keeps it), the
facts harden writes into an ONNX file's metadata (models/onnx_graph.py: [0, 1] pixels, input size, crop, label
names) in the archive's extra file `harden.json`; read back before it is put in place by harden's own reader (the
checks of models/exported_program.py) and its outputs compared with the model's on the check images."""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import torch

from .checkpoint import temp_beside
from .errors import HardenError
from .export import ExportCheck, compare, export_facts, exported_program_batch, first_line, refuse_detour
from .models import Classifier
from .reparametrized import baked
from .models.exported_program import EXTRA_FILE, as_module, read_program


def export_program(model: Classifier, path: str | os.PathLike, x_check: torch.Tensor, images: str) -> ExportCheck:
    """Export to `path` (atomically) and check it on x_check; the caller decides what a failed check means."""
    path = Path(path)
    model = model.cpu().eval()
    spec = model.spec
    refuse_detour(model, "A torch.export program")
    fixed = exported_program_batch(model) or 0
    dummy = torch.rand(fixed or 2, spec.in_chans, *spec.input_size)
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                dynamic = None if fixed else ({0: torch.export.Dim("batch")},)
                program = torch.export.export(baked(model), (dummy,), dynamic_shapes=dynamic)
                archive = io.BytesIO()  # torch names a file's archive after it: the temporary name must not show
                torch.export.save(program, archive, extra_files={EXTRA_FILE: json.dumps(export_facts(model))})
        except Exception as e:  # noqa: BLE001 - torch.export's errors name the construct it cannot trace
            from .models.onnx_graph import OnnxNet
            back = (" It was read from an ONNX graph, whose converted operators torch.export does not trace: export "
                    "it back to ONNX (-o model.onnx)." if any(isinstance(m, OnnxNet) for m in model.modules()) else "")
            raise HardenError(f"torch.export cannot export this model: {first_line(e).rstrip('.')}.{back}") from None
        with open(tmp, "wb") as f:
            f.write(archive.getvalue())
        module = as_module(read_program(archive.getvalue(), repr(str(path)))[0], fixed)
        with torch.no_grad():
            check = compare(model, lambda b: module(b).numpy(), x_check, images, fixed)
        check.written = ("torch.export program, " + (f"fixed batch of {fixed}, the program's" if fixed
                                                       else "dynamic batch axis"))
        os.replace(tmp, path)
        return check
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
