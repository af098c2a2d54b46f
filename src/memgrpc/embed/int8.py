"""Integer matrix products for the packaged int8 model.

The model keeps each weight matrix as int8 with one scale per output column, turned back into
floats inside the graph (Cast, Mul). ONNX Runtime folds that at load, so every product runs in
float32. Here each such MatMul becomes an int8 product (MatMulInteger: VNNI dot products) of the
same weights and the input quantized per token: one scale per row, from its largest value.
Measured (docs/BENCHMARKS.md): 1.5x less CPU per query, 1.5x the texts per second, LoCoMo recall
unchanged, float and integer vectors mixed in one store unchanged too.

Per token, not per tensor (onnxruntime's DynamicQuantizeMatMul): with one scale for the whole
batch, a text's vector would depend on the texts embedded with it (cosine 0.99 apart); per token
it is the same alone or in any batch, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# constants every rewired product reads, added to the graph once
_TINY, _INV127, _ONE, _ZERO_POINT, _AXES = (
    f"int8/{n}" for n in ("tiny", "inv127", "one", "zero_point", "axes")
)
_SHARED: dict[str, np.ndarray] = {
    _TINY: np.array(1e-12, np.float32),  # an all-zero row keeps a nonzero scale
    _INV127: np.array(1 / 127, np.float32),
    _ONE: np.array(1.0, np.float32),
    _ZERO_POINT: np.array(128, np.uint8),
}


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies int8 with 32-bit sums (x86 VNNI). Without it ONNX Runtime's
    AVX2 kernel adds pairs of products in 16 bits, which can saturate: keep float32 there."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(_INT8_DOT_FLAGS & set(line.partition(":")[2].split()))
    return False


def with_integer_matmuls(model: bytes) -> tuple[bytes, int]:
    """The model with its int8-weight MatMuls as integer products, and how many were rewired
    (0: the model unchanged, e.g. another export passed as ``model_path``)."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    weights = {t.name: t for t in graph.initializer}
    made_by = {out: node for node in graph.node for out in node.output}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    nodes: list[onnx.NodeProto] = []
    rewired = 0
    for node in graph.node:
        found = _int8_weight(node, made_by, weights)
        if found is None:
            nodes.append(node)
            continue
        weight, scale = found
        nodes.extend(_integer_matmul(graph, node, weight, scale, opset))
        rewired += 1
    if not rewired:
        return model, 0
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in _SHARED.items())
    if opset >= 18:
        graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), _AXES))
    del graph.node[:]
    graph.node.extend(nodes)
    _prune(graph)
    return proto.SerializeToString(), rewired


def _int8_weight(
    node: onnx.NodeProto, made_by: dict[str, onnx.NodeProto], weights: dict[str, onnx.TensorProto]
) -> tuple[str, np.ndarray] | None:
    """(int8 weight [K, N], scale [N]) when `node` is MatMul(x, Cast(int8 weight) * scale)."""
    if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
        return None
    mul = made_by.get(node.input[1])
    if mul is None or mul.op_type != "Mul":
        return None
    cast = made_by.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or mul.input[1] not in weights:
        return None
    weight = weights.get(cast.input[0])
    if weight is None or weight.data_type != TensorProto.INT8 or len(weight.dims) != 2:
        return None
    scale = numpy_helper.to_array(weights[mul.input[1]]).astype(np.float32)
    columns = weight.dims[1]
    if scale.size != columns or scale.shape not in ((columns,), (1, columns)):
        return None  # a per-tensor or per-row scale: not this model's layout
    return weight.name, scale.reshape(columns)


def _integer_matmul(
    graph: onnx.GraphProto, node: onnx.NodeProto, weight: str, scale: np.ndarray, opset: int
) -> list[onnx.NodeProto]:
    """x @ (w * scale) as (q(x / s) @ w) * s * scale, with s = max |row of x| / 127 per token
    and q() rounding to uint8 around 128 (MatMulInteger takes uint8 inputs with int8 weights)."""
    p = f"{node.name or node.output[0]}/int8"
    x = node.input[0]
    graph.initializer.append(numpy_helper.from_array(scale, f"{p}/col_scale"))
    make = helper.make_node
    if opset >= 18:  # ReduceMax took its axes as an attribute before opset 18
        row_max = make("ReduceMax", [f"{p}/abs", _AXES], [f"{p}/max"], keepdims=1)
    else:
        row_max = make("ReduceMax", [f"{p}/abs"], [f"{p}/max"], keepdims=1, axes=[-1])
    return [
        make("Abs", [x], [f"{p}/abs"]),
        row_max,
        make("Max", [f"{p}/max", _TINY], [f"{p}/max_nz"]),
        make("Mul", [f"{p}/max_nz", _INV127], [f"{p}/s"]),
        make("Div", [x, f"{p}/s"], [f"{p}/x_s"]),
        make("QuantizeLinear", [f"{p}/x_s", _ONE, _ZERO_POINT], [f"{p}/x_q"]),
        make("MatMulInteger", [f"{p}/x_q", weight, _ZERO_POINT], [f"{p}/y_i"]),
        make("Cast", [f"{p}/y_i"], [f"{p}/y_f"], to=TensorProto.FLOAT),
        make("Mul", [f"{p}/y_f", f"{p}/s"], [f"{p}/y_s"]),
        make("Mul", [f"{p}/y_s", f"{p}/col_scale"], list(node.output), name=node.name),
    ]


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers nothing reads any more (the float weights' Cast and Mul):
    onnxruntime would drop them too, with a warning each."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        live = [n for n in graph.node if any(o in used for o in n.output)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    used |= {i.name for i in graph.input}  # an older export lists its weights as inputs too
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
