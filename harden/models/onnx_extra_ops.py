"""ONNX operators onnx2torch (1.5) lacks at the opset versions torch's current exporter writes (18-22): registered
into its converter table, so `onnx2torch.convert` reads what `torch.onnx.export(..., dynamo=True)` and newer
exporters produce. Versions that only widened an operator's types reuse the converter of the version before;
the rest are written here or hand over to the older converter where the node uses nothing the new version added
(anything it did use is refused by name, never converted approximately)."""
from __future__ import annotations

import math

import torch
from torch import nn

_DONE = False

# operator versions whose change over the version before was only in the tensor types they take, found by comparing
# schemas (register), except these two: they added `saturate`, which only casts to float8 read
TYPES_ONLY = {19: ("Cast", "CastLike")}


def _prod(x, dim, keepdim):
    for d in sorted((d % x.dim() for d in dim), reverse=True):  # torch.prod takes one axis at a time
        x = torch.prod(x, d, keepdim=keepdim)
    return x


# the reductions whose axes became an input at opset 18: (x, axes, keepdim) -> torch
REDUCERS = {
    "ReduceMean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, d, k: x.abs().sum(dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: x.square().sum(dim=d, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda x, d, k: x.square().sum(dim=d, keepdim=k),
    "ReduceLogSum": lambda x, d, k: x.sum(dim=d, keepdim=k).log(),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}


def _constant(node, graph, i: int, what: str) -> list[int] | None:
    """Input i of the node as a Python list, where it is a constant of the graph (None where the input is absent)."""
    names = node.input_values
    if len(names) <= i or not names[i]:
        return None
    if names[i] not in graph.initializers:
        raise NotImplementedError(f"{node.operation_type} with {what} computed at run time")
    return [int(v) for v in graph.initializers[names[i]].to_torch().reshape(-1).tolist()]


class Reduce(nn.Module):
    def __init__(self, fn, axes: list[int] | None, keepdims: bool):
        super().__init__()
        self.fn, self.axes, self.keepdims = fn, axes, keepdims

    def forward(self, x):
        axes = list(range(x.dim())) if self.axes is None else self.axes  # None: every axis
        return self.fn(x, axes, self.keepdims)


class Reshape(nn.Module):
    """A reshape to a constant shape: 0 keeps the input's size there unless allowzero."""
    def __init__(self, shape: list[int], allowzero: bool):
        super().__init__()
        self.shape, self.allowzero = shape, allowzero

    def forward(self, x):
        shape = self.shape if self.allowzero else [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        return x.reshape(shape)


class ShapedReshape(nn.Module):
    """A reshape to a shape computed at run time, with allowzero=1: a 0 there is a size of 0, not the input's."""
    def forward(self, x, shape):
        return x.reshape([int(s) for s in shape.tolist()])


class Attention(nn.Module):
    """ONNX's Attention (opset 23, what torch's dynamo exporter writes for scaled_dot_product_attention from opset 23
    on): softmax(Q K^T * scale + mask) V on 4-D (batch, heads, sequence, head size) inputs, or 3-D (batch, sequence,
    heads x head size) with the head counts given; fewer key/value heads than query heads are shared (GQA). A
    boolean mask says which pairs take part, a float mask is added, as in torch."""
    def __init__(self, is_causal: bool, scale: float | None, q_heads: int, kv_heads: int):
        super().__init__()
        self.is_causal, self.scale, self.q_heads, self.kv_heads = is_causal, scale, q_heads, kv_heads

    def forward(self, q, k, v, mask=None):
        flat = q.dim() == 3
        if flat:
            n, s = q.shape[:2]
            q = q.reshape(n, s, self.q_heads, -1).transpose(1, 2)
            k = k.reshape(n, k.shape[1], self.kv_heads, -1).transpose(1, 2)
            v = v.reshape(n, v.shape[1], self.kv_heads, -1).transpose(1, 2)
        causal = self.is_causal
        if causal and mask is not None:  # torch takes one or the other: the causal mask folded into the given one
            keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(k.shape[-2] - q.shape[-2])
            mask = mask & keep if mask.dtype == torch.bool else mask.masked_fill(~keep, float("-inf"))
            causal = False
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                             scale=self.scale, enable_gqa=q.shape[1] != k.shape[1])
        return y.transpose(1, 2).reshape(n, s, -1) if flat else y


class SplitEven(nn.Module):
    """Split 18's num_outputs: parts of ceil(size / n), the last one smaller."""
    def __init__(self, parts: int, axis: int):
        super().__init__()
        self.parts, self.axis = parts, axis

    def forward(self, x):
        return tuple(torch.split(x, math.ceil(x.shape[self.axis] / self.parts), dim=self.axis))


def _slice_with_tuples(x, flip_dims, pos_axes_slices, neg_axes_slices):
    if flip_dims:
        x = torch.flip(x, dims=flip_dims)
    if pos_axes_slices:
        x = x[tuple(pos_axes_slices)]
    if neg_axes_slices:
        x = x[tuple(neg_axes_slices)]
    return x


# QDQ quantized graphs (onnxruntime's quantize_static default): integer ranges of the types a QuantizeLinear writes
QUANT_RANGES = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767)}  # uint8, int8, uint16, int16


def _quant_params(node, graph) -> tuple[torch.Tensor, torch.Tensor, int, tuple[int, int]]:
    """(scale, zero point, axis, integer range) of a QuantizeLinear/DequantizeLinear whose scale and zero point are
    constants (per tensor or per axis); anything else is refused by name."""
    names = node.input_values
    if node.attributes.get("block_size", 0):
        raise NotImplementedError(f"{node.operation_type} with block_size (blocked quantization)")
    for i in (1, 2):
        if len(names) > i and names[i] and names[i] not in graph.initializers:
            raise NotImplementedError(f"{node.operation_type} with a scale or zero point computed at run time")
    scale = graph.initializers[names[1]].to_torch().float()
    if len(names) > 2 and names[2]:
        zp_init = graph.initializers[names[2]]
        elem = zp_init.proto.data_type
        zero = zp_init.to_torch().float()
    else:
        elem, zero = 2, torch.zeros(())  # no zero point: uint8
    if elem not in QUANT_RANGES:
        raise NotImplementedError(f"{node.operation_type} to ONNX element type {elem} (harden reads 8- and 16-bit "
                                  "integer quantization)")
    return scale, zero, int(node.attributes.get("axis", 1)), QUANT_RANGES[elem]


def _along(t: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    """A per-axis scale or zero point shaped to broadcast along `axis` of an ndim tensor."""
    if t.dim() == 0 or t.numel() == 1:
        return t.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return t.reshape(shape)


class QuantizeFake(nn.Module):
    """QuantizeLinear as float arithmetic: round(x / scale) + zero point, saturated, kept as a float tensor of
    integer values. The rounding passes its gradient straight through (BPDA), as attacks on quantized networks do;
    the saturation's is the true one."""

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, axis: int, qrange: tuple[int, int]):
        super().__init__()
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("zero", zero, persistent=False)
        self.axis, self.low, self.high = axis, float(qrange[0]), float(qrange[1])

    def forward(self, x):
        v = x / _along(self.scale, self.axis, x.dim())
        v = v + (torch.round(v.detach()) - v.detach())  # round half to even, as ONNX does; straight through
        return torch.clamp(v + _along(self.zero, self.axis, x.dim()), self.low, self.high)


class RoundStraightThrough(nn.Module):
    """ONNX Round (half to even, as torch.round) whose gradient passes straight through (BPDA). torch.round's is zero
    everywhere, so a graph that rounds (harden's own export of a quantized graph, an input-quantization defence) would
    stop every gradient attack there and look robust; BPDA is how such a graph is attacked (Athalye et al. 2018)."""

    def forward(self, x):
        # rounded without a graph (harden's BPDA probe, bpda.py, then sees no rounding left to pass through)
        rounded = torch.round(x.detach())
        return x + (rounded - x.detach()) if x.requires_grad else rounded  # without a gradient: the exact value


class DequantizeFake(nn.Module):
    """DequantizeLinear of QuantizeFake's float-held integers: (q - zero point) * scale."""

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, axis: int):
        super().__init__()
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("zero", zero, persistent=False)
        self.axis = axis

    def forward(self, q):
        q = q.float()
        return (q - _along(self.zero, self.axis, q.dim())) * _along(self.scale, self.axis, q.dim())


class DynamicQuantizeFake(nn.Module):
    """DynamicQuantizeLinear as float arithmetic: uint8 with the scale and zero point the whole tensor's range gives
    (as onnxruntime computes them, per batch), the integers kept as floats; the rounding's gradient passes straight
    through and the scale is held constant for it (BPDA)."""

    def forward(self, x):
        lo, hi = torch.clamp(x.detach().min(), max=0.0), torch.clamp(x.detach().max(), min=0.0)
        scale = (hi - lo) / 255.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero tensor: any scale gives zeros
        zero = torch.clamp(torch.round(-lo / scale), 0.0, 255.0)
        v = x / scale
        v = v + (torch.round(v.detach()) - v.detach())
        return torch.clamp(v + zero, 0.0, 255.0), scale, zero


def _zero_of(node, graph, i: int) -> torch.Tensor | None:
    """Input i (a zero point) as a float constant, None where it is absent; a zero point computed at run time (a
    DynamicQuantizeLinear's) is an input of the module instead."""
    names = node.input_values
    if len(names) <= i or not names[i]:
        return torch.zeros(())
    return graph.initializers[names[i]].to_torch().float() if names[i] in graph.initializers else None


def _integer_weight(node, graph, what: str) -> torch.Tensor:
    name = node.input_values[1]
    if name not in graph.initializers:
        raise NotImplementedError(f"{node.operation_type} with {what} computed at run time")
    return graph.initializers[name].to_torch().float()


class MatMulIntegerFake(nn.Module):
    """MatMulInteger, (A - a_zero) @ (B - b_zero), in float, B a constant (the quantized weight, less its zero point
    per column)."""

    def __init__(self, weight: torch.Tensor, a_zero: torch.Tensor | None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.register_buffer("a_zero", a_zero if a_zero is not None else torch.zeros(()), persistent=False)
        self.runtime_zero = a_zero is None

    def forward(self, a, a_zero=None):
        return (a - (a_zero if self.runtime_zero else self.a_zero)) @ self.weight


class ConvIntegerFake(nn.Module):
    """ConvInteger (2-D), conv(x - x_zero, w - w_zero) in float; onnxruntime pads x with its zero point, which is
    zero padding of x - x_zero."""

    def __init__(self, weight: torch.Tensor, x_zero: torch.Tensor | None, stride, padding, dilation, groups: int):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.register_buffer("x_zero", x_zero if x_zero is not None else torch.zeros(()), persistent=False)
        self.runtime_zero = x_zero is None
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, x_zero=None):
        x = x - (x_zero if self.runtime_zero else self.x_zero)
        top, left, bottom, right = self.padding
        if (top, left) != (bottom, right):
            x, pad = torch.nn.functional.pad(x, (left, right, top, bottom)), (0, 0)
        else:
            pad = (top, left)
        return torch.nn.functional.conv2d(x, self.weight, None, self.stride, pad, self.dilation, self.groups)


def register() -> None:
    """Add the converters (once)."""
    global _DONE
    if _DONE:
        return
    # onnx2torch's Slice indexes with a list of slices, which torch deprecates (to be read as a tensor index some
    # day): the same slicing with a tuple
    from onnx2torch.node_converters import slice as onnx_slice
    onnx_slice._do_slice = _slice_with_tuples
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    def older(op: str, version: int):
        """The converter of the operator's version before `version`."""
        prev = defs.get_schema(op, max_inclusive_version=version - 1).since_version
        return _CONVERTER_REGISTRY.get(OperationDescription("", op, prev))

    def add(op: str, version: int):
        def deco(fn):
            if OperationDescription("", op, version) not in _CONVERTER_REGISTRY:
                add_converter(op, version)(fn)
            return fn
        return deco

    def result(module, node, inputs):
        return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
            inputs=tuple(inputs), outputs=node.output_values))

    for op in REDUCERS:
        @add(op, 18)
        def _reduce(node, graph, op=op):
            axes = _constant(node, graph, 1, "axes")
            if not axes and node.attributes.get("noop_with_empty_axes", 0):
                return result(nn.Identity(), node, node.input_values[:1])
            return result(Reduce(REDUCERS[op], axes or None, bool(node.attributes.get("keepdims", 1))), node,
                          node.input_values[:1])

    # onnx2torch refuses allowzero=1 (written by torch's dynamo exporter, its default since torch 2.9) and has no
    # Reshape-19/21: every version from 14 (where allowzero came in) goes through this one
    own_reshape = _CONVERTER_REGISTRY[OperationDescription("", "Reshape", 14)]

    def _reshape(node, graph):
        allowzero = bool(node.attributes.get("allowzero", 0))
        if node.input_values[1] in graph.initializers:
            return result(Reshape(_constant(node, graph, 1, "shape"), allowzero), node, node.input_values[:1])
        if allowzero:
            return result(ShapedReshape(), node, node.input_values)
        return own_reshape(node, graph)

    for version in (14, 19, 21):
        _CONVERTER_REGISTRY[OperationDescription("", "Reshape", version)] = _reshape

    # onnx2torch's LayerNormalization takes the normalised shape from shape inference's record of its input, which
    # the TorchScript exporter's graphs of Swin, MobileViT, EfficientFormer leave wrong; the scale's own shape is
    # the normalised shape (the operator's definition), so it is read from there
    layer_norm = OperationDescription("", "LayerNormalization", 17)
    onnx2torch_layer_norm = _CONVERTER_REGISTRY[layer_norm]

    def _layer_norm(node, graph):
        names = node.input_values
        if not all(n in graph.initializers for n in names[1:]):
            return onnx2torch_layer_norm(node, graph)
        scale = graph.initializers[names[1]].to_torch()
        module = nn.LayerNorm(tuple(scale.shape), eps=float(node.attributes.get("epsilon", 1e-5)),
                              bias=len(names) > 2 and bool(names[2]))
        with torch.no_grad():
            module.weight.copy_(scale)
            if module.bias is not None:
                module.bias.copy_(graph.initializers[names[2]].to_torch())
        return result(module, node, names[:1])
    _CONVERTER_REGISTRY[layer_norm] = _layer_norm

    for version in (11, 22):
        _CONVERTER_REGISTRY[OperationDescription("", "Round", version)] = \
            lambda node, graph: result(RoundStraightThrough(), node, node.input_values[:1])

    for version in (10, 13, 19, 21):
        @add("QuantizeLinear", version)
        def _quantize(node, graph):
            scale, zero, axis, qrange = _quant_params(node, graph)
            return result(QuantizeFake(scale, zero, axis, qrange), node, node.input_values[:1])

        @add("DequantizeLinear", version)
        def _dequantize(node, graph):
            scale, zero, axis, _ = _quant_params(node, graph)
            return result(DequantizeFake(scale, zero, axis), node, node.input_values[:1])

    @add("DynamicQuantizeLinear", 11)
    def _dynamic_quantize(node, graph):
        return result(DynamicQuantizeFake(), node, node.input_values[:1])

    def runtime(node, graph, *indices):
        """The node's inputs that are not constants, by index (a data input; a zero point computed at run time)."""
        names = node.input_values
        return [names[i] for i in indices if len(names) > i and names[i] and names[i] not in graph.initializers]

    @add("MatMulInteger", 10)
    def _matmul_integer(node, graph):
        weight = _integer_weight(node, graph, "B") - _zero_of(node, graph, 3)
        return result(MatMulIntegerFake(weight, _zero_of(node, graph, 2)), node, runtime(node, graph, 0, 2))

    @add("ConvInteger", 10)
    def _conv_integer(node, graph):
        a = node.attributes
        weight = _integer_weight(node, graph, "W")
        if weight.dim() != 4 or a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
            raise NotImplementedError("ConvInteger other than 2-D with explicit pads")
        w_zero = _zero_of(node, graph, 3)
        weight = weight - (w_zero.reshape(-1, 1, 1, 1) if w_zero.numel() > 1 else w_zero)
        pads = list(a.get("pads", [0, 0, 0, 0]))
        module = ConvIntegerFake(weight, _zero_of(node, graph, 2), tuple(a.get("strides", [1, 1])),
                                 (pads[0], pads[1], pads[2], pads[3]), tuple(a.get("dilations", [1, 1])),
                                 int(a.get("group", 1)))
        return result(module, node, runtime(node, graph, 0, 2))

    @add("Gelu", 20)
    def _gelu(node, graph):
        return result(nn.GELU(approximate=str(node.attributes.get("approximate", "none"))), node, node.input_values)

    @add("Split", 18)
    def _split(node, graph):
        if len(node.input_values) > 1 and node.input_values[1]:
            return older("Split", 18)(node, graph)
        parts = int(node.attributes.get("num_outputs", len(node.output_values)))
        return result(SplitEven(parts, int(node.attributes.get("axis", 0))), node, node.input_values[:1])

    for version in (23, 24, 25):
        @add("Attention", version)
        def _attention(node, graph):
            a = node.attributes
            used = [o for o in node.output_values if o]
            unsupported = ("a key/value cache" if any(node.input_values[4:]) else
                           "qk_matmul_output_mode" if a.get("qk_matmul_output_mode", 0) else
                           "softcap" if a.get("softcap", 0.0) else
                           "a window" if a.get("left_window_size", -1) != -1 or a.get("right_window_size", -1) != -1
                           else "more than one output" if len(used) > 1 else "")
            if unsupported:
                raise NotImplementedError(f"Attention with {unsupported}")
            scale = a.get("scale")
            module = Attention(bool(a.get("is_causal", 0)), float(scale) if scale is not None else None,
                               int(a.get("q_num_heads", 0)), int(a.get("kv_num_heads", 0)))
            inputs = node.input_values[:4] if len(node.input_values) > 3 and node.input_values[3] else \
                node.input_values[:3]
            return result(module, node, inputs)

    def without(op: str, version: int, unused):
        """The older converter, where the node uses none of what `version` added (unused(node) names it if so)."""
        @add(op, version)
        def _older(node, graph):
            added = unused(node)
            if added:
                raise NotImplementedError(f"{op} {version} with {added}")
            return older(op, version)(node, graph)

    without("AveragePool", 19, lambda n: "dilations" if any(d != 1 for d in n.attributes.get("dilations", [1])) else "")
    for version in (18, 19, 21):
        without("Pad", version, lambda n: "axes" if len(n.input_values) > 3 and n.input_values[3] else
                ("wrap mode" if n.attributes.get("mode") == "wrap" else ""))
    for version in (18, 19):
        without("Resize", version, lambda n: "antialias" if n.attributes.get("antialias", 0) else
                ("axes" if n.attributes.get("axes") else
                 ("keep_aspect_ratio_policy" if n.attributes.get("keep_aspect_ratio_policy", "stretch") != "stretch"
                  else ("half_pixel_symmetric" if n.attributes.get("coordinate_transformation_mode") ==
                        "half_pixel_symmetric" else ""))))
    for version in sorted(TYPES_ONLY):
        for op in TYPES_ONLY[version]:
            key = OperationDescription("", op, version)
            try:
                known = defs.get_schema(op, max_inclusive_version=version).since_version == version
            except defs.SchemaError:
                known = False
            if known and key not in _CONVERTER_REGISTRY:
                fn = older(op, version)
                if fn is not None:
                    _CONVERTER_REGISTRY[key] = fn
    # the versions that changed nothing but the types they take (opsets 19-25 re-versioned Reshape, Flatten, Shape,
    # Transpose, Conv, ... for 4-bit, 8-bit and 16-bit float types): found by comparing each version's inputs,
    # outputs and attributes with the version before; the check against onnxruntime still judges the result
    schemas = sorted((sc for sc in defs.get_all_schemas_with_history() if sc.domain == ""),
                     key=lambda sc: sc.since_version)
    for schema in schemas:
        key = OperationDescription("", schema.name, schema.since_version)
        if key in _CONVERTER_REGISTRY or schema.since_version <= 1:
            continue
        try:
            before = defs.get_schema(schema.name, max_inclusive_version=schema.since_version - 1)
        except defs.SchemaError:
            continue
        previous = _CONVERTER_REGISTRY.get(OperationDescription("", schema.name, before.since_version))
        if previous is not None and _signature(before) == _signature(schema):
            _CONVERTER_REGISTRY[key] = previous
    _DONE = True


def _signature(schema) -> tuple:
    """What a node of this operator version may say: its inputs and outputs (names, optional or variadic) and its
    attributes (name, type, required, default); the types a version accepts are left out."""
    attributes = sorted((name, int(a.type), bool(a.required), a.default_value.SerializeToString())
                        for name, a in schema.attributes.items())
    return ([(i.name, int(i.option)) for i in schema.inputs], [(o.name, int(o.option)) for o in schema.outputs],
            attributes, schema.min_input, schema.max_input, schema.min_output, schema.max_output)
