"""A quantized ONNX graph as input: the shared CIFAR-10 ResNet-20 exported by harden, quantized by onnxruntime's
quantize_static (QDQ, int8, per channel, calibrated on 256 training images), by its quantize_dynamic (int8 weights,
activations quantized per batch) and by quantize_static in the QOperator form (QLinearConv, QLinearAdd, QGemm), then
evaluated by harden beside the float model on the same test images: clean accuracy, attacks white-box (BPDA through
the rounding for the quantized graphs), agreement with onnxruntime's own kernels. Rows for BENCHMARKS.md "ONNX graphs
quantized by onnxruntime".

    python benchmarks/onnx_quantized.py [--n 200]

Needs ../shared (the checkpoint and cifar10.npz)."""
import argparse
import contextlib
import io
import pathlib
import tempfile
import time
import warnings

import numpy as np
import torch

import harden
from harden.runtime import set_quiet
from shared_models import shared_resnet20  # benchmarks/ is on the path when run as a script



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    set_quiet(True)
    model, data = shared_resnet20()
    tmp = pathlib.Path(tempfile.mkdtemp())
    x_check, _ = data.images("test", np.arange(8))
    from harden.export import export_onnx
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, tmp / "float.onnx", x_check, "test images")
        quant_pre_process(str(tmp / "float.onnx"), str(tmp / "pre.onnx"))
        import onnx
        name = onnx.load(str(tmp / "pre.onnx")).graph.input[0].name
        x_cal, _ = data.images("train", np.arange(256))
        batches = iter([{name: x_cal[i:i + 32].numpy()} for i in range(0, 256, 32)])

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(batches, None)
        quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True)
        quantize_dynamic(str(tmp / "pre.onnx"), str(tmp / "dynamic.onnx"), weight_type=QuantType.QInt8)
        batches = iter([{name: x_cal[i:i + 32].numpy()} for i in range(0, 256, 32)])
        quantize_static(str(tmp / "pre.onnx"), str(tmp / "qoperator.onnx"), Reader(),
                        quant_format=QuantFormat.QOperator, per_channel=True)
    import onnxruntime as ort
    x, y = data.images("test", np.arange(args.n))
    graphs = {"int8 QDQ (onnxruntime quantize_static)": "int8.onnx",
              "int8 dynamic (onnxruntime quantize_dynamic)": "dynamic.onnx",
              "int8 QOperator (onnxruntime quantize_static, QOperator form)": "qoperator.onnx"}
    models = [("float (the checkpoint)", model)]
    for label, file in graphs.items():
        try:
            quantized = harden.load(tmp / file)
        except harden.HardenError as e:
            print(f"{label}: refused ({e})")
            continue
        session = ort.InferenceSession(str(tmp / file), providers=["CPUExecutionProvider"])
        deployed = np.concatenate([session.run(None, {name: x[i:i + 128].numpy()})[0].argmax(1)
                                   for i in range(0, args.n, 128)])  # batches of the report's size
        with torch.no_grad():
            ours = torch.cat([quantized(x[i:i + 128]) for i in range(0, args.n, 128)]).argmax(1).numpy()
        print(f"{label}: harden's predictions equal onnxruntime's on {(ours == deployed).mean():.1%} of {args.n} "
              f"test images; onnxruntime's clean accuracy {(deployed == y.numpy()).mean():.1%}")
        models.append((label, quantized))
        if file == "int8.onnx":  # the QDQ graph written back by harden's export (float arithmetic that rounds)
            harden.save(quantized, tmp / "int8.safetensors")
            from harden.export import export_onnx
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(harden.load(tmp / "int8.safetensors"), tmp / "int8.exported.onnx", x_check, "test images")
            models.append(("int8 QDQ, exported by harden and read back (Round)", harden.load(tmp / "int8.exported.onnx")))
    print("| model | threat model | clean | FGSM | PGD-50 | AutoPGD-25 | time |")
    print("|---|---|---|---|---|---|---|")
    for label, m in models:
        t = time.time()
        r = harden.evaluate(m, data, n=args.n, attacks=["fgsm", "pgd", "autopgd"], device="cpu", metrics=False,
                            masking_checks=False)
        cells = " | ".join(f"{a.robust_accuracy:.1%}" for a in r.attacks)
        threat = "white-box" + (" (BPDA through the rounding)" if m is not model else "")
        print(f"| {label} | {threat} | {r.clean_accuracy:.1%} | {cells} | {time.time() - t:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
