"""ONNX models as input: timm and torchvision models exported by both of torch's exporters, loaded by harden (its
conversion checked against onnxruntime on load), compared with the torch model. Rows for BENCHMARKS.md "ONNX models
as input". Needs onnxscript (the dev extra) for the dynamo exporter.

    python benchmarks/onnx_input.py [--fixed-batch] [--opset N] [names...]

--fixed-batch: exported at batch 1 without dynamic axes (what `torch.onnx.export(model, torch.rand(1, ...))` writes),
loaded and compared at batch 3. --opset N: the TorchScript exporter alone at opset N (the current exporter writes 18
and later): graphs as old as the ONNX Model Zoo's (7 to 9), which harden converts to opset 13 before onnx2torch."""
import contextlib
import io
import logging
import pathlib
import sys
import tempfile
import time
import warnings

import timm
import torch
import torchvision

import harden
from harden.errors import HardenError
from harden.runtime import set_quiet

NAMES = ["resnet18", "mobilenetv3_small_100", "convnext_atto", "vit_tiny_patch16_224", "deit_tiny_patch16_224",
         "efficientnet_b0", "regnety_002", "swin_tiny_patch4_window7_224", "levit_128s", "mobilevit_xxs",
         "efficientformer_l1", "tv:densenet121", "tv:vgg11_bn", "tv:shufflenet_v2_x0_5", "tv:squeezenet1_0",
         "tv:mnasnet0_5", "tv:inception_v3", "tv:maxvit_t"]
LARGE = ("vit", "swin", "levit", "former", "maxvit", "deit", "vgg")


def model_of(name: str) -> tuple[torch.nn.Module, int]:
    if name.startswith("tv:"):
        m = getattr(torchvision.models, name[3:])(num_classes=10)
    else:
        m = timm.create_model(name, pretrained=False, num_classes=10)
    with torch.no_grad():  # as trained weights: no two tensors equal, no bias all zero (exporters share or drop those)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for n, b in m.named_buffers():
            if n.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    size = 224 if any(k in name for k in LARGE) else (299 if "inception" in name else 64)
    return m.eval(), size


def main(names: list[str], fixed: bool = False, opset: int | None = None) -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    set_quiet(True)
    out = pathlib.Path(tempfile.mkdtemp()) / "model.onnx"
    for name in names:
        for dynamo in (False,) if opset else (False, True):
            tag = f"{name:32s} {'dynamo' if dynamo else 'legacy':7s}" + (f" opset {opset}" if opset else "")
            m, s = model_of(name)
            x = torch.rand(1 if fixed else 2, 3, s, s)
            kw = ({} if fixed else {"dynamic_shapes": ({0: torch.export.Dim("n")},)} if dynamo
                  else {"dynamic_axes": {"x": {0: "n"}}})
            if opset:
                kw["opset_version"] = opset
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    torch.onnx.export(m, (x,), str(out), dynamo=dynamo, input_names=["x"], **kw)
            except Exception as e:  # noqa: BLE001 - the exporter's failure is a row too
                print(f"{tag} EXPORT FAILED {type(e).__name__}: {str(e)[:80]}", flush=True)
                continue
            t = time.time()
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    model = harden.load(out)
                seconds = time.time() - t
                xx = torch.rand(3, 3, s, s)
                with torch.no_grad():
                    ref = m(xx)
                    d = float((model(xx) - ref).abs().max())
                rel = d / max(1.0, float(ref.abs().max()))
                trained = sum(p.numel() for p in model.parameters())
                own = sum(p.numel() for p in m.parameters())
                print(f"{tag} ok  max|diff| {d:.1e} (relative {rel:.1e})  trained {trained:,} of {own:,}  "
                      f"load {seconds:.1f}s", flush=True)
            except HardenError as e:
                print(f"{tag} REFUSED {str(e)[:160]}", flush=True)


if __name__ == "__main__":
    argv = sys.argv[1:]
    opset = int(argv[argv.index("--opset") + 1]) if "--opset" in argv else None
    args = [a for i, a in enumerate(argv) if a != "--fixed-batch" and a != "--opset" and
            not (i and argv[i - 1] == "--opset")]
    main(args or NAMES, fixed="--fixed-batch" in argv, opset=opset)
