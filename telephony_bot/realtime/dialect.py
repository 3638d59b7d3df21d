"""The two Realtime dialects: what differs between them, in one place.

* ``"preview"``: the beta protocol (header ``OpenAI-Beta: realtime=v1``; Azure speaks it too):
  ``response.audio.delta``, a flat ``session``, formats ``pcm16`` / ``g711_ulaw`` / ``g711_alaw``.
* ``"ga"``: ``gpt-realtime``: ``response.output_audio.delta``, a nested ``session``
  (``type: "realtime"``, ``audio.input`` / ``audio.output``), formats ``{"type": "audio/pcm",
  "rate": 24000}`` / ``{"type": "audio/pcmu"}`` / ``{"type": "audio/pcma"}``.
"""

from __future__ import annotations

from typing import Any, Literal

Dialect = Literal["preview", "ga"]
DIALECTS: tuple[Dialect, ...] = ("preview", "ga")

BETA_HEADER = "OpenAI-Beta"
BETA_HEADER_VALUE = "realtime=v1"


def check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown Realtime dialect {dialect!r}; expected 'preview' or 'ga'")


def default_dialect(model: str) -> Dialect:
    """``"ga"`` for the ``gpt-realtime*`` models, ``"preview"`` for the rest (the client's
    choice when none is configured)."""
    return "ga" if model.startswith("gpt-realtime") else "preview"


def request_dialect(model: str, beta_header: str | None) -> Dialect:
    """The dialect a server answers a connection in: GA for a ``gpt-realtime*`` model or when
    the client sent no ``OpenAI-Beta`` header; else the preview."""
    return "ga" if model.startswith("gpt-realtime") or not beta_header else "preview"


# ---------------------------------------------------------------- event names

#: The response events and content-part type whose names differ by dialect.
NAMES: dict[Dialect, dict[str, str]] = {
    "preview": {
        "audio_delta": "response.audio.delta",
        "audio_done": "response.audio.done",
        "transcript_delta": "response.audio_transcript.delta",
        "transcript_done": "response.audio_transcript.done",
        "part_type": "audio",
    },
    "ga": {
        "audio_delta": "response.output_audio.delta",
        "audio_done": "response.output_audio.done",
        "transcript_delta": "response.output_audio_transcript.delta",
        "transcript_done": "response.output_audio_transcript.done",
        "part_type": "output_audio",
    },
}

# ---------------------------------------------------------------- session keys

#: Session keys that exist in one dialect only; the real API rejects the others as unknown.
PREVIEW_ONLY_SESSION_KEYS = (
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "input_audio_transcription",
    "turn_detection",
    "max_response_output_tokens",
)
GA_ONLY_SESSION_KEYS = ("type", "audio", "output_modalities")


def foreign_session_keys(dialect: Dialect) -> tuple[str, ...]:
    """The session keys of the other dialect."""
    return PREVIEW_ONLY_SESSION_KEYS if dialect == "ga" else GA_ONLY_SESSION_KEYS


# ---------------------------------------------------------------- audio formats

#: The canonical format names (the preview's spelling).
FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")

_PREVIEW_FORMATS = {name: name for name in FORMATS}
_GA_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_ALIASES = _PREVIEW_FORMATS | {str(v["type"]): k for k, v in _GA_FORMATS.items()}


def canonical(name: str) -> str | None:
    """``'pcm16'`` | ``'g711_ulaw'`` | ``'g711_alaw'`` for a format name in either dialect
    (``g711_ulaw`` or ``audio/pcmu``); None if unknown."""
    return _ALIASES.get(name)


def audio_format(fmt: str, dialect: Dialect) -> str | dict[str, Any]:
    """A session audio format as the dialect writes it (preview: ``"pcm16"``; GA:
    ``{"type": "audio/pcm", "rate": 24000}``)."""
    check_dialect(dialect)
    table: dict[str, Any] = _PREVIEW_FORMATS if dialect == "preview" else _GA_FORMATS
    if fmt not in table:
        raise ValueError(f"unsupported audio format {fmt!r}; expected one of {sorted(table)}")
    value = table[fmt]
    return dict(value) if isinstance(value, dict) else value


def session_formats(session: dict[str, Any], dialect: Dialect) -> list[tuple[str, str]]:
    """``(param, format name)`` for every audio format a session (or an update) sets, in the
    dialect's spelling; a GA PCM format at another rate reads ``audio/pcm@RATE``."""
    out: list[tuple[str, str]] = []
    if dialect == "preview":
        for key in ("input_audio_format", "output_audio_format"):
            if key in session:
                out.append((f"session.{key}", str(session[key])))
        return out
    audio = session.get("audio")
    if isinstance(audio, dict):
        for side in ("input", "output"):
            fmt = (audio.get(side) or {}).get("format")
            if isinstance(fmt, dict):
                name = str(fmt.get("type"))
                if name == "audio/pcm" and fmt.get("rate", 24000) != 24000:
                    name = f"audio/pcm@{fmt.get('rate')}"
                out.append((f"session.audio.{side}.format", name))
    return out


def supported_formats(dialect: Dialect) -> str:
    """The formats a server takes, as an error message lists them."""
    if dialect == "preview":
        return "pcm16, g711_ulaw, g711_alaw"
    return "audio/pcm (rate 24000), audio/pcmu, audio/pcma"
