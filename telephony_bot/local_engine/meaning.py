"""How close in meaning a caller's words are to an intent's example sentences: the cosine of
their sentence embeddings (`embedder.py`, all-MiniLM-L6-v2), and the one rule that turns a
cosine into the brain's 0..1 intent score.

The brain scores every intent twice — by words (token overlap, the plan's own phrases: exact
and explainable) and by meaning (this) — and keeps the higher, so a caller who says the
plan's words scores as before and one who says "could I come in to see someone on Tuesday"
still reaches the booking intent.

The scale: on the example plans, a caller meaning an intent scores a cosine of 0.26-0.72
against its closest example, an unrelated request at most 0.15 (bench/embedder.py). So a
cosine of COS_UNSURE maps to the brain's UNSURE (ask first) and COS_ACCEPT to its ACCEPT (act),
linearly, capped below the "whole example said" score of the word matcher.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["COS_ACCEPT", "COS_UNSURE", "Meaning", "Similarity", "score_of", "shared"]

COS_UNSURE = 0.25  # -> brain.UNSURE: the caller is asked first
COS_ACCEPT = 0.40  # -> brain.ACCEPT: the intent is taken
_UNSURE, _ACCEPT, _CAP = 0.42, 0.62, 0.88
RECENT = 16  # utterance vectors kept (several calls share the process's Meaning)


class Similarity(Protocol):
    def similarity(self, text: str, examples: Sequence[str]) -> list[float]:
        """The cosine between `text` and each of `examples`."""
        ...


def score_of(cosine: float) -> float:
    """A cosine as an intent score on the word matcher's 0..1 scale."""
    slope = (_ACCEPT - _UNSURE) / (COS_ACCEPT - COS_UNSURE)
    return float(min(_CAP, max(0.0, _UNSURE + (cosine - COS_UNSURE) * slope)))


class Meaning:
    """Cosines from an embedder; example sentences are embedded once per process."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._recent: dict[str, np.ndarray] = {}  # utterances just heard, oldest first
        self._lock = threading.Lock()

    def prepare(self, examples: Sequence[str]) -> None:
        """Embed these examples now (a flow's, as its call starts) rather than on the first
        utterance."""
        with self._lock:
            todo = sorted({e for e in examples if e not in self._vectors})
            if todo:
                for text, vec in zip(todo, self._embedder.embed(todo), strict=True):
                    self._vectors[text] = vec

    def similarity(self, text: str, examples: Sequence[str]) -> list[float]:
        if not examples or not text.strip():
            return [0.0] * len(examples)
        self.prepare(examples)
        heard = self._heard(text)
        return [float(heard @ self._vectors[e]) for e in examples]

    def _heard(self, text: str) -> np.ndarray:
        """The utterance's vector: one utterance is compared several times (intents,
        then a choice slot's values), embedded once."""
        with self._lock:
            vec = self._recent.get(text)
            if vec is None:
                vec = self._embedder.embed([text])[0]
                self._recent[text] = vec
                while len(self._recent) > RECENT:
                    self._recent.pop(next(iter(self._recent)))
            return vec


_shared: Meaning | None = None
_shared_lock = threading.Lock()


def shared() -> Meaning:
    """The process's one Meaning (loads the embedding model on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from telephony_bot.local_engine.embedder import get_embedder

            _shared = Meaning(get_embedder())
        return _shared
