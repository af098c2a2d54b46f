"""memgrpc.embed.int8: the packaged model's products as integer ones, checked by running them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from memgrpc.embed import LocalEmbedder
from memgrpc.embed.int8 import cpu_has_int8_dot, with_integer_matmuls
from memgrpc.embed.local import default_model_path

from .conftest import MIXED_TEXTS

# without int8 dot products onnxruntime's int8 kernel may saturate: the server keeps float there,
# and the integer numbers below would not hold
needs_int8_dot = pytest.mark.skipif(not cpu_has_int8_dot(), reason="no VNNI on this CPU")


@pytest.fixture(scope="module")
def integer() -> LocalEmbedder:
    return LocalEmbedder(integer=True)


def test_every_int8_weight_product_of_the_packaged_model_is_rewired() -> None:
    rewired, count = with_integer_matmuls(default_model_path().read_bytes())
    ops = Counter(n.op_type for n in onnx.load_from_string(rewired).graph.node)
    assert count == 36  # 6 layers x (query, key, value, output, 2 feed-forward)
    assert ops["MatMulInteger"] == 36
    assert ops["MatMul"] == 12  # the attention products (of activations) stay float


@needs_int8_dot
def test_integer_vectors_stay_within_rounding_of_the_float_ones(integer: LocalEmbedder) -> None:
    floats = LocalEmbedder(integer=False)
    assert integer.integer and not floats.integer
    a, b = integer.embed_sync(MIXED_TEXTS), floats.embed_sync(MIXED_TEXTS)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosine = (a * b).sum(axis=1)
    assert cosine.mean() > 0.99
    assert cosine.min() > 0.98  # the lowest: texts of a few tokens ("", "ok")
    fact, question, unrelated = integer.embed_sync(
        ["The user's dog is named Biscuit", "What is my dog's name?", "The stock market fell today"]
    )
    assert fact @ question > fact @ unrelated + 0.3


def test_a_text_gets_the_same_vector_alone_or_in_any_batch(integer: LocalEmbedder) -> None:
    batch = integer.embed_sync(MIXED_TEXTS)
    singles = np.vstack([integer.embed_sync([t]) for t in MIXED_TEXTS])
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(integer.embed_sync(MIXED_TEXTS[::-1])[::-1], batch)


def _model(weight: np.ndarray, scale: np.ndarray, opset: int) -> bytes:
    """x [2, 3, K] @ (Cast(weight) * scale), the packaged model's pattern, in a tiny graph."""
    k, n = weight.shape
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["w_q"], ["w_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["w_f", "w_scale"], ["w"]),
            helper.make_node("MatMul", ["x", "w"], ["y"], name="proj"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, n])],
        [numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(scale, "w_scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    return np.asarray(y)


@needs_int8_dot
@pytest.mark.parametrize("opset", [17, 18])  # ReduceMax's axes: attribute, then input
def test_a_rewired_product_computes_the_float_one(opset: int) -> None:
    rng = np.random.default_rng(7)
    weight = rng.integers(-127, 128, size=(64, 5), dtype=np.int8)
    scale = rng.uniform(0.001, 0.01, size=(1, 5)).astype(np.float32)
    x = rng.normal(size=(2, 3, 64)).astype(np.float32)
    x[1, 2] *= 1000  # one loud token: per-token scales keep it from drowning the others
    model = _model(weight, scale, opset)
    rewired, count = with_integer_matmuls(model)
    assert count == 1
    expected, got = _run(model, x), _run(rewired, x)
    err = np.abs(got - expected).max(axis=-1) / np.abs(expected).max(axis=-1)
    assert err.max() < 0.02  # each token within its own rounding (1/127 of its largest value)


def test_a_model_without_int8_weights_is_left_as_is() -> None:
    floats = np.ones((4, 3), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(floats, "w")],
    )
    model = helper.make_model(graph).SerializeToString()
    assert with_integer_matmuls(model) == (model, 0)


def test_a_per_tensor_scale_is_not_this_layout() -> None:
    weight = np.ones((8, 4), np.int8)
    model = _model(weight, np.array(0.5, np.float32), 17)
    assert with_integer_matmuls(model) == (model, 0)


def test_int8_dot_products_are_read_from_the_cpu_flags() -> None:
    assert cpu_has_int8_dot("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_has_int8_dot("flags : fpu avx2 avx_vnni\n")
    assert not cpu_has_int8_dot("flags\t\t: fpu sse4_2 avx2 avx512f\n")
    assert not cpu_has_int8_dot("")


def test_the_default_follows_the_cpu(local_embedder: LocalEmbedder) -> None:
    assert local_embedder.integer == cpu_has_int8_dot()
