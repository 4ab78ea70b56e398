"""ONNX graphs quantized in the QOperator form (onnxruntime's `quantize_static(..., quant_format=QOperator)`:
QLinearConv, QLinearMatMul and com.microsoft's QLinearAdd, QGemm, ... on 8-bit tensors), rewritten as the QDQ form
harden reads (onnx_graph.py, onnx_extra_ops.py): each quantized operator becomes DequantizeLinear of its inputs, the
float operator, and QuantizeLinear of its output with the operator's own output scale and zero point. That is the
operator's definition (ONNX's QLinearConv and QLinearMatMul; onnxruntime's contrib operators), computed in float:
an integer bias is dequantized with the input scale times the weight scale, as the kernels add it to their int32
accumulator. The graph as written stays what onnxruntime runs, and onnx_graph checks the rewrite against it.

Operators on 8-bit tensors that compute nothing (MaxPool, Slice, Pad, Reshape, Flatten, Transpose) stay as they are:
harden holds 8-bit values as float integers, on which they give the same integers. Quantized operators outside the
list below are refused by name."""
from __future__ import annotations

from typing import Callable

import numpy as np

MS = "com.microsoft"

# op -> (inputs that are (value, scale, zero point) triples, index of the output scale, float op), for the operators
# whose quantized inputs all come first as triples and whose output scale and zero point follow them
_TRIPLES = {
    ("", "QLinearMatMul"): (2, 6, "MatMul"),
    (MS, "QLinearAdd"): (2, 6, "Add"),
    (MS, "QLinearMul"): (2, 6, "Mul"),
    (MS, "QLinearGlobalAveragePool"): (1, 3, "GlobalAveragePool"),
    (MS, "QLinearAveragePool"): (1, 3, "AveragePool"),
    (MS, "QLinearSigmoid"): (1, 3, "Sigmoid"),
    (MS, "QLinearLeakyRelu"): (1, 3, "LeakyRelu"),
}
SPECIAL = {("", "QLinearConv"), (MS, "QGemm"), (MS, "QLinearConcat")}
READ = sorted(op for _, op in [*_TRIPLES, *SPECIAL])


def qoperator_nodes(model) -> list[str]:
    """The QOperator form's quantized operators in the graph (any, read or not), by name."""
    return sorted({n.op_type for n in model.graph.node
                   if (n.domain in ("", "ai.onnx") and n.op_type in ("QLinearConv", "QLinearMatMul"))
                   or (n.domain == MS and (n.op_type.startswith("QLinear") or n.op_type in ("QGemm", "QAttention")))})


class Unreadable(Exception):
    """A QOperator node this rewrite does not read (its message names it)."""


def as_qdq(model):
    """The graph with each QOperator node rewritten as DequantizeLinear -> float op -> QuantizeLinear (in place);
    raises Unreadable naming the first node it cannot rewrite."""
    from onnx import helper, numpy_helper
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}__qdq{counter[0]}"

    def const(name: str, what: str) -> np.ndarray:
        if name not in inits:
            raise Unreadable(f"{what} computed at run time")
        return numpy_helper.to_array(inits[name])

    def add_init(values: np.ndarray, base: str) -> str:
        name = fresh(base)
        g.initializer.append(numpy_helper.from_array(values, name))
        inits[name] = g.initializer[-1]
        return name

    out_nodes = []

    def dq(value: str, scale: str, zero: str, axis: int | None = None) -> str:
        name = fresh(value)
        attrs = {"axis": axis} if axis is not None else {}
        out_nodes.append(helper.make_node("DequantizeLinear", [value, scale, zero] if zero else [value, scale],
                                          [name], name=fresh("dq"), **attrs))
        return name

    def q(value: str, scale: str, zero: str, output: str) -> None:
        out_nodes.append(helper.make_node("QuantizeLinear", [value, scale, zero] if zero else [value, scale],
                                          [output], name=fresh("q")))

    def attrs_of(node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def float_bias(bias: str, in_scale: str, w_scale: str, what: str) -> str:
        """An int32 bias as the float the kernel adds: bias x input scale x weight scale."""
        b = const(bias, what).astype(np.float64)
        scale = const(in_scale, "an input scale").astype(np.float64) * const(w_scale, "a weight scale").astype(
            np.float64)
        return add_init((b * scale).astype(np.float32), bias)

    rewrite: dict[tuple[str, str], Callable] = {}

    def conv(node):
        i = list(node.input) + [""] * (9 - len(node.input))
        w_axis = 0 if const(i[4], "a weight scale").size > 1 else None
        ins = [dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], w_axis)]
        if i[8]:
            ins.append(float_bias(i[8], i[1], i[4], "a bias"))
        y = fresh(node.output[0])
        out_nodes.append(helper.make_node("Conv", ins, [y], name=fresh(node.name or "conv"), **attrs_of(node)))
        q(y, i[6], i[7], node.output[0])

    def gemm(node):
        i = list(node.input) + [""] * (9 - len(node.input))
        a = attrs_of(node)
        if a.get("transA", 0):
            raise Unreadable("QGemm with transA")
        b_axis = (0 if a.get("transB", 0) else 1) if const(i[4], "a weight scale").size > 1 else None
        ins = [dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], b_axis)]
        if i[6]:
            ins.append(float_bias(i[6], i[1], i[4], "a bias"))
        if not i[7]:  # no output scale: QGemm's output is float
            out_nodes.append(helper.make_node("Gemm", ins, [node.output[0]], name=fresh(node.name or "gemm"), **a))
            return
        y = fresh(node.output[0])
        out_nodes.append(helper.make_node("Gemm", ins, [y], name=fresh(node.name or "gemm"), **a))
        q(y, i[7], i[8], node.output[0])

    def concat(node):
        i = list(node.input)
        ins = [dq(i[k], i[k + 1], i[k + 2]) for k in range(2, len(i), 3)]
        y = fresh(node.output[0])
        out_nodes.append(helper.make_node("Concat", ins, [y], name=fresh(node.name or "concat"), **attrs_of(node)))
        q(y, i[0], i[1], node.output[0])

    rewrite[("", "QLinearConv")] = conv
    rewrite[(MS, "QGemm")] = gemm
    rewrite[(MS, "QLinearConcat")] = concat

    def by_triples(node, triples: int, out_at: int, op: str):
        i = list(node.input) + [""] * (out_at + 2 - len(node.input))
        a = attrs_of(node)
        if a.pop("channels_last", 0):  # onnxruntime's NHWC variant: the float operators take NCHW
            raise Unreadable(f"{node.op_type} with channels_last")
        ins = []
        for k in range(triples):
            scale = i[3 * k + 1]
            axis = None
            if op == "MatMul" and k == 1 and const(scale, "a weight scale").size > 1:
                axis = 1  # QLinearMatMul's per-column scale of its second input
            ins.append(dq(i[3 * k], scale, i[3 * k + 2], axis))
        y = fresh(node.output[0])
        out_nodes.append(helper.make_node(op, ins, [y], name=fresh(node.name or op.lower()), **a))
        q(y, i[out_at], i[out_at + 1], node.output[0])

    for node in g.node:
        key = ("" if node.domain in ("", "ai.onnx") else node.domain, node.op_type)
        if key in rewrite:
            rewrite[key](node)
        elif key in _TRIPLES:
            by_triples(node, *_TRIPLES[key])
        elif key[0] == MS and (node.op_type.startswith("QLinear") or node.op_type in ("QGemm", "QAttention")):
            raise Unreadable(f"{node.op_type} (harden reads {', '.join(READ)})")
        else:
            out_nodes.append(node)
    del g.node[:]
    g.node.extend(out_nodes)
    used = {n for node in g.node for n in node.input}
    kept = [i for i in g.initializer if i.name in used or i.name in {o.name for o in g.output}]
    del g.initializer[:]
    g.initializer.extend(kept)
    return model
