"""ONNX models as input: `harden eval model.onnx`, `harden fix model.onnx`.

An ONNX file is a graph, not a torch module: onnx2torch rebuilds it as one (a torch.fx GraphModule, every ONNX
operator a torch module), after the graph is put in the form it reads (local functions inlined, constants and
aliases of constants folded into initializers) and with the operators of newer opsets it lacks added
(onnx_extra_ops.py). The conversion is checked before anything uses it: onnxruntime runs the file itself on the
same inputs, and the outputs must agree (else the file is refused, with the difference). The graph's float
constants of 5 values or more (convolution kernels, MatMul weights, embeddings, biases) become the module's
trainable weights; smaller ones (a scale, a mean per channel subtracted inside the graph) stay constants.

A graph exported for a fixed batch (`torch.onnx.export` without dynamic axes: input 1x3x224x224) is freed
(_free_batch: its input's batch made symbolic, what the exporter baked the batch into rewritten where that is
plain); the check above then compares a batch of several images with the file run on one at a time.

The architecture is `onnx` and its model_args hold the graph without its weights (the weights are the state dict),
so every checkpoint harden writes from it rebuilds with no ONNX file beside it. Preprocessing is the user's to say
(--mean, --std; an ONNX file carries none), except for files `harden export` wrote: their metadata says that they
take [0, 1] pixels and gives the input size, crop and label names."""
from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import HardenError

ARCH = "onnx"
# float constants this large are weights (trained, kept in the state dict); up to 4 values (a mean or scale per
# channel, resize factors) they stay constants
WEIGHT_MIN = 5
STRIPPED = "harden:weights in the state dict"  # doc_string of an initializer kept as its shape only
META_KEY = "harden"  # metadata_props entry `harden export` writes: what the graph expects
TOLERANCE = 1e-3  # largest |torch - onnxruntime| output difference accepted, relative to the output scale
HALF_TOLERANCE = 2e-2  # the same for a float16 file run in float32: float16's own rounding (3 significant digits)


def looks_like_onnx(path: Path) -> bool:
    """An ONNX model, whatever its name: a protobuf ModelProto with a graph of nodes."""
    try:
        with path.open("rb") as f:
            first = f.read(1)
    except OSError:
        return False
    if first != b"\x08" and path.suffix.lower() != ".onnx":  # field 1, ir_version, comes first as exporters write
        return False
    try:
        import onnx
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not a protobuf of this kind: not ONNX
        return False
    return len(model.graph.node) > 0 and len(model.graph.input) > 0


def external_data_files(path: Path) -> list[Path]:
    """The files an ONNX graph keeps its weights in (saved with external data, as graphs over 2 GB must be); [] for
    anything else. Read only for files no other format claims."""
    from ..formats import sniff_format
    if sniff_format(path) != "unknown" or not looks_like_onnx(path):
        return []
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    names = {entry.value for init in graph.initializer if init.data_location == onnx.TensorProto.EXTERNAL
             for entry in init.external_data if entry.key == "location"}
    return [path.parent / n for n in sorted(names)]


class OnnxNet(nn.Module):
    """The converted graph, fed NCHW pixels (transposed first for a graph that takes NHWC, as TensorFlow's do)."""

    def __init__(self, graph: nn.Module, layout: str = "NCHW"):
        super().__init__()
        self.graph = graph
        self.layout = layout

    def forward(self, x):
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return self.graph(x)


def _library():
    try:
        import onnx
        import onnx2torch
    except ImportError:  # dependencies (pyproject); absent only from a bare environment
        raise HardenError("This is an ONNX model; reading it needs the onnx and onnx2torch libraries "
                          "(pip install onnx onnx2torch).") from None
    from .onnx_extra_ops import register
    register()
    import onnx2torch.converter
    onnx2torch.converter.safe_shape_inference = _shape_inference_without_weights
    return onnx, onnx2torch


def _shape_inference_without_weights(model, **kwargs):
    """onnx2torch's first step, shape inference, on a copy of the graph without its weights (their shapes are what
    it reads; onnx serialises the whole model for it, and writes models over 2 GB to a temporary file): the shapes
    it finds are put into the model. 4 s of a VGG-11's 130 M weights each conversion, now a fraction of a second."""
    import onnx
    lean = _weights_stripped(model)
    inferred = onnx.shape_inference.infer_shapes(lean, **kwargs)
    ranked = _ranks_by_running(model, inferred)
    replaced = {v.name for v in ranked}
    found = [v for v in inferred.graph.value_info if v.name not in replaced] + ranked
    del model.graph.value_info[:]
    model.graph.value_info.extend(found)
    return model


def _ranks_by_running(model, inferred) -> list:
    """Ranks for the values whose shape inference found none: an old opset's reshape to a shape computed at run time
    (ShuffleNet's channel shuffle exported at opset 7: the sizes go through Shape, Cast and Gather, which inference
    does not follow) leaves every value after it without a rank, and onnx2torch's BatchNorm and pooling converters
    need one. One run of the graph at batch 1 gives them; only the rank is kept (every size unknown), so nothing of
    that batch is baked in (and the conversion is checked against onnxruntime in any case)."""
    import onnx
    shaped = {v.name for v in inferred.graph.value_info if v.type.tensor_type.HasField("shape")}
    shaped |= {v.name for v in list(model.graph.input) + list(model.graph.output)}
    missing = sorted({o for n in model.graph.node for o in n.output if o and o not in shaped})
    if not missing:
        return []
    return [onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype),
                                               [None] * value.ndim)
            for name, value in _run_once(model, missing).items()]


def _prepare(model):
    """The graph in the form onnx2torch reads: local functions inlined; Constant nodes and Identity aliases of
    constants (torch's exporter writes one per shared weight) folded into initializers; no initializer listed as
    an input (old IR versions did)."""
    onnx, _ = _library()
    from onnx import numpy_helper
    try:
        from onnx import inliner
        if len(model.functions):
            model = inliner.inline_local_functions(model)
    except ImportError:
        pass
    g = model.graph
    inits = {i.name for i in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and len(node.output) == 1 and node.attribute and not node.domain:
            attr = node.attribute[0]
            value = None
            if attr.name == "value":
                value = numpy_helper.to_array(attr.t)
            elif attr.name in ("value_float", "value_int"):
                value = np.array(attr.f if attr.name == "value_float" else attr.i,
                                 np.float32 if attr.name == "value_float" else np.int64)
            elif attr.name in ("value_floats", "value_ints"):
                value = np.array(list(attr.floats if attr.name == "value_floats" else attr.ints),
                                 np.float32 if attr.name == "value_floats" else np.int64)
            if value is not None:
                g.initializer.append(numpy_helper.from_array(value, node.output[0]))
                inits.add(node.output[0])
                continue
        if node.op_type == "Identity" and not node.domain and node.input[0] in inits:
            source = next(i for i in g.initializer if i.name == node.input[0])
            alias = onnx.TensorProto()
            alias.CopyFrom(source)
            alias.name = node.output[0]
            g.initializer.append(alias)
            inits.add(alias.name)
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(_topological(keep, inits | {i.name for i in g.input}))
    _unique_module_names(g)
    real = [i for i in g.input if i.name not in inits]
    del g.input[:]
    g.input.extend(real)
    return model


QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
QUANT_TOLERANCE = 5e-2  # the same for a quantized graph: a rounding that float accumulation order flips moves a
# value by one quantum, which the layers after carry on


def is_quantized(model) -> str:
    """'QDQ' for onnxruntime's quantize_static default (QuantizeLinear/DequantizeLinear pairs around float ops),
    'dynamic' for its quantize_dynamic (DynamicQuantizeLinear before MatMulInteger/ConvInteger); '' otherwise."""
    ops = {n.op_type for n in model.graph.node if not n.domain}
    return "dynamic" if "DynamicQuantizeLinear" in ops else "QDQ" if ops & set(QUANT_OPS) else ""


def _weights_dequantized(model):
    """Each DequantizeLinear of constants (a quantized weight or bias, its scale and zero point) folded into the float
    initializer it computes, exactly: the network's weights become float parameters (onnx2torch reads a layer's
    weights only as initializers). The activations' QuantizeLinear/DequantizeLinear stay (onnx_extra_ops)."""
    from onnx import numpy_helper
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    keep, used = [], set()
    for node in g.node:
        names = list(node.input)
        if node.op_type == "DequantizeLinear" and not node.domain and all(n in inits for n in names if n) and \
                not any(a.name == "block_size" and a.i for a in node.attribute):
            q = numpy_helper.to_array(inits[names[0]]).astype(np.float64)
            scale = numpy_helper.to_array(inits[names[1]]).astype(np.float64)
            zero = numpy_helper.to_array(inits[names[2]]).astype(np.float64) if len(names) > 2 and names[2] \
                else np.zeros(())
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.size > 1:  # per axis
                shape = [1] * q.ndim
                shape[axis % q.ndim] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape) if zero.size > 1 else zero
            value = ((q - zero) * scale).astype(np.float32)
            g.initializer.append(numpy_helper.from_array(value, node.output[0]))
            inits[node.output[0]] = g.initializer[-1]
            used.update(n for n in names if n)
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    needed = {n for node in g.node for n in node.input} | {o.name for o in g.output}
    kept = [i for i in g.initializer if i.name not in used or i.name in needed]
    del g.initializer[:]
    g.initializer.extend(kept)
    return model


def _qdq_form(model, path: Path):
    """A QOperator graph rewritten in the QDQ form (onnx_qoperator.py); one it cannot rewrite refused by name."""
    from .onnx_qoperator import Unreadable, as_qdq
    try:
        return as_qdq(model)
    except Unreadable as e:
        raise HardenError(f"{str(path)!r} is quantized in the QOperator form, and harden cannot read its {e}. Quantize "
                          "the float model in the QDQ form instead (onnxruntime's quantize_static default), which harden "
                          "reads whatever the operators.") from None


def _unique_module_names(g) -> None:
    """onnx2torch names each node's module from its name, numbering repeats (`Gather`, `Gather_1`): a node already
    called `Gather_1` (onnxruntime's optimiser writes such names beside `/Gather`) then shares a module name with
    another and one of them is lost. Such nodes are renamed; names that do not collide are kept (they name the taps)."""
    from onnx2torch.onnx_graph import OnnxGraph
    taken: set[str] = set()
    counters: dict[str, int] = {}
    for i, node in enumerate(g.node):
        base = OnnxGraph.generate_node_name(node)
        k = counters.get(base, 0)
        counters[base] = k + 1
        unique = base + (f"_{k}" if k else "")
        if unique in taken:  # the numbering reached a name a node already has: give this node one of its own
            node.name = f"{node.name or node.op_type}_harden{i}"
            unique = OnnxGraph.generate_node_name(node)
        taken.add(unique)


def _topological(nodes: list, available: set[str]) -> list:
    """The nodes in an order where each comes after the nodes whose outputs it reads (onnx2torch reads them in file
    order; a tool may write them otherwise). Already ordered (the usual case, one pass): unchanged; otherwise a stable
    topological sort; nodes whose inputs nothing makes (a subgraph's outer values) keep their places at the end."""
    have = set(available) | {""}
    for node in nodes:
        if not all(i in have for i in node.input):
            break
        have.update(node.output)
    else:
        return nodes
    import heapq
    producer = {o: k for k, node in enumerate(nodes) for o in node.output}
    waiting = [sum(1 for i in set(node.input) if i in producer) for node in nodes]
    readers: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        for i in set(node.input):
            if i in producer:
                readers.setdefault(producer[i], []).append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    ordered: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        ordered.append(k)
        for r in readers.get(k, ()):
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    placed = set(ordered)
    return [nodes[k] for k in ordered] + [node for k, node in enumerate(nodes) if k not in placed]


OLDEST_READ = 11  # graphs of older opsets are converted to UPGRADE_TO first
UPGRADE_TO = 13


def opset(model) -> int | None:
    """The graph's version of the default (ai.onnx) operator set."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _upgraded(model):
    """A graph of an opset before 11 (the ONNX Model Zoo's classic classifiers are opset 7 to 9; torch's exporter
    wrote 9 by default until 2021) converted by onnx's version converter to opset 13, whose operators onnx2torch
    reads (it has no converter for BatchNormalization-7, MaxPool-1, Slice-1, Upsample). The converted graph is then
    checked against onnxruntime running the file as it is, as every graph is. None where the graph is recent, or
    where the converter cannot convert it (onnx2torch then names the operator it lacks)."""
    version = opset(model)
    if version is None or version >= OLDEST_READ:
        return None
    from onnx import version_converter
    try:
        newer = version_converter.convert_version(model, UPGRADE_TO)
    except Exception:  # noqa: BLE001 - the converter's errors on an operator it has no adapter for
        return None
    newer.ir_version = max(newer.ir_version, 7)  # the converter keeps the file's; opset 13 is IR 7's (shape
    return newer  # inference of an IR 3 graph whose weights are no longer listed as inputs finds no shapes)


def _takes_bytes(model) -> bool:
    """A graph fed 8-bit pixels (a deployment graph with its preprocessing inside) whose every use of them is a cast
    to float: fed float pixel values 0-255 instead (the casts then change nothing), so gradients reach the input."""
    from onnx import TensorProto
    inputs = list(model.graph.input)
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != TensorProto.UINT8:
        return False
    moved, frontier = set(), [inputs[0].name]  # the pixels, and what only moves them (a transpose to NCHW)
    while frontier:
        value = frontier.pop()
        moved.add(value)
        for node in (n for n in model.graph.node if value in n.input):
            if node.op_type in MOVES_VALUES and node.input[0] == value:
                frontier.extend(o for o in node.output if o not in moved)
            elif not (node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT
                                                     for a in node.attribute)):
                return False
    inputs[0].type.tensor_type.elem_type = TensorProto.FLOAT
    kept = [v for v in model.graph.value_info if v.name not in moved]  # their types were uint8: inferred again
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return True


MOVES_VALUES = ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Slice")


def _takes_float16(model) -> bool:
    """A float16 graph: its input, or its weights (a graph fed 8-bit pixels casts them to float16)."""
    from onnx import TensorProto
    inputs = list(model.graph.input)
    return (len(inputs) == 1 and inputs[0].type.tensor_type.elem_type == TensorProto.FLOAT16) or \
        any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)


def _as_float32(model):
    """A float16 graph (a model exported after .half(), for deployment) in float32: its constants widened (exactly),
    its casts to float16 made casts to float32, its values' types float32. Subgraphs (If, Loop) are not visited: a
    classifier has none, and the check against the file itself would catch one."""
    from onnx import AttributeProto, TensorProto, numpy_helper
    half, single = TensorProto.FLOAT16, TensorProto.FLOAT

    def widened(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name)
    g = model.graph
    for init in g.initializer:
        if init.data_type == half:
            init.CopyFrom(widened(init))
    for value in list(g.input) + list(g.output) + list(g.value_info):
        if value.type.tensor_type.elem_type == half:
            value.type.tensor_type.elem_type = single
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == half:
                attr.i = single
            elif attr.type == AttributeProto.TENSOR and attr.t.data_type == half:
                attr.t.CopyFrom(widened(attr.t))
    return model


def _dims(value_info) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _input(model, path: Path, hints: dict[str, Any]) -> tuple[str, list[int | None], str]:
    """(name, dims, layout) of the graph's one image input (channels from `hints` where the graph leaves them open:
    NCHW then)."""
    inputs = list(model.graph.input)
    if len(inputs) != 1:
        raise HardenError(f"{str(path)!r} is an ONNX graph with {len(inputs)} inputs "
                          f"({', '.join(i.name for i in inputs)}); harden evaluates classifiers of one image input.")
    dims = _dims(inputs[0])
    elem = inputs[0].type.tensor_type.elem_type
    if elem != 1:  # TensorProto.FLOAT
        raise HardenError(f"{str(path)!r} takes {_elem_name(elem)} input; harden attacks and trains graphs that take "
                          "float32 or float16 pixels, or 8-bit pixels cast to float inside (export it so).")
    dims, layout = layout_of(dims, hints, repr(str(path)))
    return inputs[0].name, dims, layout


def layout_of(dims: list[int | None], hints: dict[str, Any], where: str) -> tuple[list[int | None], str]:
    """(N, C, H, W dims, layout) of a graph's 4-D image input: channels first where axis 1 holds 1 or 3 (or up to 4
    and axis 3 does not), last where axis 3 does; `hints["in_chans"]` where both axes are symbolic (NCHW then)."""
    if len(dims) != 4:
        raise HardenError(f"{where} takes a rank-{len(dims)} input {dims}; harden reads image classifiers taking "
                          "N x C x H x W (or N x H x W x C).")
    if dims[1] in (1, 3) or (dims[1] is not None and dims[1] <= 4 and dims[3] not in (1, 3)):
        return dims, "NCHW"
    if dims[1] is None and dims[3] is None and hints.get("in_chans"):
        return [dims[0], int(hints["in_chans"]), dims[2], dims[3]], "NCHW"
    if dims[3] in (1, 3, 4):
        return [dims[0], dims[3], dims[1], dims[2]], "NHWC"
    raise HardenError(f"{where} takes an input of shape {dims}, whose channel axis harden cannot tell (not 1 "
                      "or 3 channels at axis 1 or 3).")


def _elem_name(elem: int) -> str:
    import onnx
    return onnx.TensorProto.DataType.Name(elem).lower()


def _free_batch(model, batch: int):
    """A copy whose input batch is symbolic. What an exporter baked the fixed batch into is rewritten where that is
    plain: a reshape of batch-dependent values to a constant shape starts with -1 (its first size a multiple of the
    batch: Swin's windows are batch x windows); a constant concatenated to batch-dependent values (a ViT's class
    token) and an expansion to a constant shape that starts with the batch are expanded to the input's batch instead.
    Anything else shows at the check against the file, image by image."""
    onnx, _ = _library()
    from onnx import helper, numpy_helper
    shapes = {v.name: _dims(v) for v in list(_shape_inference_without_weights(model).graph.value_info)}
    free = onnx.ModelProto()
    free.CopyFrom(model)
    g = free.graph
    source = g.input[0].name
    for value in list(g.input) + list(g.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = "batch"
    del g.value_info[:]
    inits = {i.name: i for i in g.initializer}
    dependent = {source}  # values computed from the input
    for node in g.node:
        if any(i in dependent for i in node.input):
            dependent.update(node.output)
    computed = [n.input[1] for n in g.node if n.op_type in ("Reshape", "Expand") and len(n.input) > 1
                and n.input[1] not in inits and n.input[1] not in dependent]
    if computed:  # shapes the TorchScript exporter computes from constants at run time: their values, as constants
        for name, value in _constant_values(model, computed).items():
            folded = numpy_helper.from_array(value.astype(np.int64), f"{name}__folded")
            g.initializer.append(folded)
            inits[folded.name] = folded
            for node in g.node:
                if node.op_type in ("Reshape", "Expand") and len(node.input) > 1 and node.input[1] == name:
                    node.input[1] = folded.name
    before: dict[int, list] = {}  # nodes to insert before node k

    def constant(values, name):
        g.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def batch_shape(rest: list[int], k: int, key: str) -> str:
        """A shape computed at run time, inserted before node k: the input's batch, then `rest`."""
        out = f"harden_batch_shape_{key}"
        before.setdefault(k, []).append(helper.make_node(
            "Concat", ["harden_batch_size", constant(rest, f"{out}_rest")], [out], name=out, axis=0))
        return out

    for k, node in enumerate(g.node):
        if node.op_type == "Reshape" and node.input[0] in dependent and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).astype(np.int64).tolist()
            if not shape or shape[0] <= 0 or shape[0] % batch:
                continue
            out, inp = shapes.get(node.output[0]), shapes.get(node.input[0])
            if -1 not in shape[1:] and 0 not in shape[1:]:
                new = [-1] + shape[1:]
            elif out and all(d is not None for d in out):
                new = [-1] + out[1:]
            elif inp and all(d is not None for d in inp) and shape[1:].count(-1) == 1 and 0 not in shape[1:]:
                # `x.view(x.size(0), -1)` exported at an old opset: [1, -1] computed from constants, so shape
                # inference gives no output shape; the -1 is what the input's sizes leave
                fill = int(np.prod(inp)) // int(np.prod([d for d in shape if d != -1]))
                new = [-1] + [fill if d == -1 else d for d in shape[1:]]
            else:
                continue
            node.input[1] = constant(new, f"{node.input[1]}__batch_free_{k}")
        elif node.op_type == "Expand" and node.input[1] in inits and node.input[0] not in dependent:
            shape = numpy_helper.to_array(inits[node.input[1]]).astype(np.int64).tolist()
            if shape and shape[0] == batch:
                node.input[1] = batch_shape(shape[1:], k, str(k))
        elif node.op_type == "Concat" and any(i in dependent for i in node.input):
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            for j, name in enumerate(node.input):
                init = inits.get(name)
                if init is None or axis == 0 or not len(init.dims) or init.dims[0] != batch:
                    continue
                expanded = f"{name}__batch_expanded_{k}_{j}"
                target = batch_shape([int(d) for d in init.dims[1:]], k, f"{k}_{j}")
                before[k].append(helper.make_node("Expand", [name, target], [expanded], name=expanded))
                node.input[j] = expanded
    if before:
        nodes = list(g.node)
        del g.node[:]
        g.node.append(helper.make_node("Shape", [source], ["harden_batch_size"], name="harden_batch_size", start=0,
                                       end=1))
        for k, node in enumerate(nodes):
            g.node.extend(before.get(k, []))
            g.node.append(node)
    return free


def _constant_values(model, names: list[str]) -> dict[str, np.ndarray]:
    """The values of graph values that do not depend on the input (shapes computed from constants), by running the
    graph once on zeros of its input's fixed shape; {} where onnxruntime cannot."""
    return {n: v for n, v in _run_once(model, names).items() if v.dtype.kind in "iu"}


def _run_once(model, names: list[str]) -> dict[str, np.ndarray]:
    """The named values of one run of the graph on zeros of its input's shape (a symbolic size as 1); {} where
    onnxruntime cannot run it."""
    onnx, _ = _library()
    from onnx import helper
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    dims = [d or 1 for d in _dims(model.graph.input[0])]
    elem = {1: np.float32, 10: np.float16, 2: np.uint8}.get(model.graph.input[0].type.tensor_type.elem_type, np.float32)
    try:
        import onnxruntime as ort
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = session.run(names, {model.graph.input[0].name: np.zeros(dims, elem)})
    except Exception:  # noqa: BLE001 - then those shapes stay as they are (and the check decides)
        return {}
    return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}


def _weights_stripped(model):
    """A copy with each float initializer of WEIGHT_MIN values or more kept as its shape alone (the state dict
    holds it)."""
    onnx, _ = _library()
    lean = onnx.ModelProto()
    lean.CopyFrom(model)
    for init in lean.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) >= WEIGHT_MIN:
            name, dims = init.name, list(init.dims)
            init.Clear()
            init.name, init.data_type, init.doc_string = name, onnx.TensorProto.FLOAT, STRIPPED
            init.dims.extend(dims)
    return lean


def _with_zeros(model):
    """The stripped weights back as zeros of their shape (the state dict is loaded over them)."""
    from onnx import numpy_helper
    for init in model.graph.initializer:
        if init.doc_string == STRIPPED:
            name, dims = init.name, list(init.dims)
            init.CopyFrom(numpy_helper.from_array(np.zeros(dims, np.float32), name))
    return model


def encode(model) -> str:
    return base64.b64encode(zlib.compress(model.SerializeToString(), 6)).decode("ascii")


def decode(text: str):
    onnx, _ = _library()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(zlib.decompress(base64.b64decode(text)))
    except (ValueError, zlib.error) as e:
        raise HardenError(f"The ONNX graph kept in this checkpoint's metadata is damaged ({e}).") from None
    return model


def _convert(model, where: str) -> nn.Module:
    """onnx2torch's module for the graph, its float constants of WEIGHT_MIN values or more made trainable."""
    _, onnx2torch = _library()
    try:
        graph = onnx2torch.convert(model)
    except NotImplementedError as e:
        raise HardenError(f"{where}: onnx2torch cannot convert this ONNX graph to torch ({e}); harden needs the "
                          "graph as a torch module to compute gradients. Export the model from its training code "
                          "instead (a state dict, or torch.save), or to ONNX at opset 17.") from None
    except Exception as e:  # noqa: BLE001 - whatever the converter raises on a graph it misreads
        raise HardenError(f"{where}: onnx2torch failed on this ONNX graph ({type(e).__name__}: {e}).") from None
    for module in graph.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue  # running statistics stay statistics
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.is_floating_point() and buf.numel() >= WEIGHT_MIN:
                del module._buffers[name]
                module.register_parameter(name, nn.Parameter(buf.detach().clone()))
    return graph.eval()


def build(model_args: dict[str, Any], where: str = "onnx") -> nn.Module:
    """The architecture `onnx` from its model_args (the graph without its weights, the input layout)."""
    text = (model_args or {}).get("graph")
    if not isinstance(text, str):
        raise HardenError("The architecture 'onnx' needs its graph (kept in the model_args of checkpoints harden "
                          "writes from an ONNX file); give the ONNX file itself.")
    global _CHECKED
    if _CHECKED is not None and _CHECKED[0] == text:  # the module read_onnx just built and checked: no third build
        net, _CHECKED = _CHECKED[1], None
        return net
    return OnnxNet(_convert(_with_zeros(decode(text)), where), str(model_args.get("layout", "NCHW")))


_CHECKED: tuple[str, nn.Module] | None = None  # read_onnx's last module rebuilt from the weights-free graph


def _run_onnxruntime(model, name: str, x: np.ndarray, batch: int | None, literal: bool = False) -> np.ndarray:
    """The graph's first output from onnxruntime; `literal`: with its graph optimisations off (each node run as
    written, a quantized graph's QuantizeLinear/DequantizeLinear not fused into integer kernels)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if literal:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    if batch is None:
        return np.asarray(session.run(None, {name: x})[0])
    return np.concatenate([np.asarray(session.run(None, {name: x[i:i + batch]})[0]) for i in range(0, len(x), batch)])


def _first_output(out) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return out


def read_onnx(path: Path, hints: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of an ONNX file: the graph converted and checked against onnxruntime. `hints`: the
    channels and input size where the graph's input shape leaves them open (a transformers folder's configuration)."""
    onnx, _ = _library()
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file or missing external data
        raise HardenError(f"{str(path)!r} is not a readable ONNX model ({type(e).__name__}: {e}).") from None
    newer = _upgraded(model)  # before _prepare: the converter needs old IR versions' initializers listed as inputs
    model = _prepare(model)
    from .onnx_qoperator import qoperator_nodes
    half, quantized = _takes_float16(model), "QOperator" if qoperator_nodes(model) else is_quantized(model)
    original = model  # the file as onnxruntime runs it; a copy only where the float16/8-bit steps change the graph
    if half or quantized or any(i.type.tensor_type.elem_type == onnx.TensorProto.UINT8 for i in model.graph.input):
        original = onnx.ModelProto()
        original.CopyFrom(model)
    if newer is not None:  # onnxruntime still runs the file's own graph
        model = _prepare(newer)
    if half:
        model = _as_float32(model)
    if quantized == "QOperator":
        model = _qdq_form(model, path)
    if quantized:
        model = _weights_dequantized(model)
    as_bytes = _takes_bytes(model)
    name, dims, layout = _input(model, path, hints or {})
    graph_size = [dims[2], dims[3]] if dims[2] and dims[3] else None
    size = graph_size or (hints or {}).get("input_size")  # the size the check runs at
    fixed = dims[0]
    graph = _free_batch(model, fixed) if fixed else model
    n = 2 * fixed if fixed else 3
    x = torch.rand(n, dims[1], *(size or [224, 224]), generator=torch.Generator().manual_seed(0))
    if as_bytes:
        x = (x * 255).round()
    feed = x.permute(0, 2, 3, 1).contiguous() if layout == "NHWC" else x
    feed_type = {2: np.uint8, 10: np.float16}.get(original.graph.input[0].type.tensor_type.elem_type, np.float32)
    try:
        # a quantized graph as written (each QuantizeLinear and DequantizeLinear run as such): what harden computes;
        # onnxruntime's own optimisation fuses them into integer kernels, measured against it below
        expected = _run_onnxruntime(original, name, feed.numpy().astype(feed_type), fixed, literal=quantized)
        expected = expected.astype(np.float32)
        fused = _run_onnxruntime(original, name, feed.numpy().astype(feed_type), fixed).astype(np.float32) \
            if quantized else None
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors on a graph it cannot run
        raise HardenError(f"onnxruntime cannot run {str(path)!r} on {n} images of {tuple(feed.shape[1:])} "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[0][:300]}).") from None
    lean = encode(_weights_stripped(graph))
    net = OnnxNet(_convert(graph, str(path)), layout)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    rebuilt = build({"graph": lean, "layout": layout}, str(path))
    rebuilt.load_state_dict(state, strict=True)
    batch = (f" at a batch of {n} (the file is exported for a fixed batch of {fixed}: re-export it with a dynamic "
             "batch axis, torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}) or dynamic_shapes)"
             if fixed else "")
    try:
        with torch.no_grad():
            outs = [_first_output(m(x)) for m in (net, rebuilt)]
    except Exception as e:  # noqa: BLE001 - a shape the graph fixed, met at another batch
        raise HardenError(f"{str(path)!r}: the graph converted to torch fails{batch} ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:200]}).") from None
    worst = max(float((torch.as_tensor(o).reshape(expected.shape) - torch.from_numpy(expected)).abs().max())
                if tuple(o.shape) == expected.shape else float("inf") for o in outs)
    scale = float(np.abs(expected).max())
    if not worst <= (HALF_TOLERANCE if half else QUANT_TOLERANCE if quantized else TOLERANCE) * max(1.0, scale):
        raise HardenError(f"{str(path)!r}: the graph converted to torch gives other outputs than onnxruntime gives "
                          f"for the file{batch} (largest difference {worst:.3g} where outputs reach {scale:.3g}); "
                          "harden will not attack or train a model that is not the file's.")
    global _CHECKED
    _CHECKED = (lean, rebuilt)
    meta: dict[str, Any] = {"arch": ARCH, "model_args": {"graph": lean, "layout": layout},
                            "in_chans": int(dims[1]), "num_classes": int(expected.shape[-1])}
    if graph_size:
        meta["input_size"] = graph_size
    if as_bytes:  # [0, 1] pixels -> the 0-255 values the graph's casts took: harden's normalisation does it
        meta.update(mean=[0.0] * int(dims[1]), std=[1 / 255] * int(dims[1]))
        meta["onnx_input"] = "8-bit pixels, fed as float 0-255"
    if quantized:
        from ..runtime import warn
        kernels = float(np.abs(fused - expected).max())
        agree = float((fused.argmax(-1) == expected.argmax(-1)).mean())
        batch_note = (" per batch, as onnxruntime quantizes each batch with the range of the whole batch"
                      if quantized == "dynamic" else "")
        rewritten = (" (each quantized operator read as DequantizeLinear, the float operator and QuantizeLinear)"
                     if quantized == "QOperator" else "")
        warn(f"{str(path)!r} is a quantized ({quantized}) graph{rewritten}: harden runs its quantization as float "
             f"arithmetic with the same rounding{batch_note} (outputs within {worst:.2g} of onnxruntime's running the "
             f"graph as written, where they reach {scale:.2g}; onnxruntime's fused integer kernels differ from that by "
             f"up to {kernels:.2g}, the same class for {agree:.0%} of the check's images), its weights dequantized to "
             "float; gradients pass the rounding straight through (BPDA), so white-box attacks are BPDA attacks.")
        meta["onnx_quantized"] = (f"{quantized}: weights dequantized to float, activations' rounding with BPDA "
                                  "gradients")
    rounds = sum(n.op_type == "Round" and not n.domain for n in model.graph.node)
    if rounds and not quantized:
        from ..runtime import warn
        warn(f"{str(path)!r} rounds ({rounds} Round node{'s' if rounds > 1 else ''}: a quantized model exported as "
             "float, or an input-quantization defence): gradients pass the rounding straight through (BPDA), so "
             "white-box attacks are BPDA attacks.")
        meta["onnx_rounds"] = f"{rounds} Round nodes, with BPDA gradients"
    if half:
        from ..runtime import warn
        warn(f"{str(path)!r} is a float16 graph: harden attacks and trains it in float32 (its outputs within "
             f"{worst:.2g} of the file's, where they reach {scale:.2g}); `harden export` writes float32.")
        meta["onnx_float16"] = True
    meta.update(_export_meta(model))
    return state, meta


def _export_meta(model) -> dict[str, Any]:
    """What `harden export` wrote into the file's metadata_props: [0, 1] pixels (its normalisation is inside the
    graph), input size, crop, interpolation, label names, data."""
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            try:
                found = json.loads(prop.value)
            except ValueError:
                return {}
            return found if isinstance(found, dict) else {}
    return {}


def summary(model_args: dict[str, Any]) -> str:
    """A line for `inspect`: the graph's size, not its bytes."""
    try:
        g = decode(str(model_args.get("graph"))).graph
    except HardenError:
        return "damaged"
    ops = sorted({n.op_type for n in g.node})
    return f"{len(g.node)} nodes ({', '.join(ops[:12])}{', ...' if len(ops) > 12 else ''}), input {model_args.get('layout')}"
