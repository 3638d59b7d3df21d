"""Where a Realtime session connects: the WebSocket URL, its headers and the protocol dialect.

* OpenAI: ``wss://api.openai.com/v1/realtime?model=M`` with ``Authorization: Bearer``; the
  preview dialect also needs ``OpenAI-Beta: realtime=v1`` (GA must not send it).
* Azure OpenAI: ``wss://<resource>.openai.azure.com/openai/realtime?api-version=V&deployment=D``
  with an ``api-key`` header (or ``Authorization: Bearer`` for an Entra ID token); preview dialect.
* A compatible server (a local emulator, a proxy): any ``ws(s)://`` or ``http(s)://`` base URL.

Nothing here opens a connection. An endpoint's ``repr()`` / ``str()`` never show credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from telephony_bot.realtime.dialect import (
    BETA_HEADER,
    BETA_HEADER_VALUE,
    Dialect,
    check_dialect,
    default_dialect,
)

OPENAI_BASE_URL = "wss://api.openai.com/v1"
PREVIEW_BETA_HEADER = (BETA_HEADER, BETA_HEADER_VALUE)

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_SECRET_HEADER = re.compile(r"authorization|api[-_]?key|token|secret|cookie|password", re.I)
_SECRET_PARAM = re.compile(r"key|token|secret|sig|password|auth", re.I)
_AZURE_RESOURCE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?")
_MASK = "***"


@dataclass(frozen=True, repr=False)
class RealtimeEndpoint:
    """A Realtime WebSocket endpoint. ``headers`` hold the credentials: log `redacted()`."""

    url: str
    headers: dict[str, str] = field(hash=False)
    dialect: Dialect

    def redacted(self) -> dict[str, Any]:
        """The endpoint for logs: header values that carry credentials are masked (an
        ``Authorization`` value keeps its scheme: ``Bearer ***``), and so are URL passwords
        and credential-like query parameters."""
        return {
            "url": redact_url(self.url),
            "headers": {k: _mask_header(k, v) for k, v in self.headers.items()},
            "dialect": self.dialect,
        }

    def __repr__(self) -> str:
        r = self.redacted()
        return (
            f"RealtimeEndpoint(url={r['url']!r}, headers={r['headers']!r}, "
            f"dialect={r['dialect']!r})"
        )

    __str__ = __repr__


def _mask_header(name: str, value: str) -> str:
    if not _SECRET_HEADER.search(name):
        return value
    scheme, sep, _ = value.partition(" ")
    if sep and name.lower() in ("authorization", "proxy-authorization"):
        return f"{scheme} {_MASK}"
    return _MASK


def redact_url(url: str) -> str:
    """``url`` with any password in it and credential-like query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{_MASK}@", 1)
    query = urlencode(
        [
            (k, _MASK if _SECRET_PARAM.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        quote_via=quote,
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _build_url(base_url: str, path: str, params: list[tuple[str, str]]) -> str:
    """``base_url`` (scheme made ws/wss) + ``path`` (unless already there) + ``params``."""
    parts = urlsplit(base_url.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"Realtime base URL must be ws://, wss://, http:// or https://: {redact_url(base_url)}"
        )
    base_path = parts.path.rstrip("/")
    if path and not base_path.endswith(path):
        base_path += path
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params if k not in {q for q, _ in query}]
    return urlunsplit(
        (scheme, parts.netloc, base_path, urlencode(query, quote_via=quote, safe=""), "")
    )


def _require(value: str | None, what: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{what} is required")
    return value.strip()


def openai_endpoint(
    model: str,
    api_key: str,
    dialect: Dialect | None = None,
    base_url: str = OPENAI_BASE_URL,
) -> RealtimeEndpoint:
    """OpenAI's Realtime API for ``model`` (dialect by default from the model name)."""
    model = _require(model, "model")
    api_key = _require(api_key, "OpenAI API key")
    dialect = dialect or default_dialect(model)
    check_dialect(dialect)
    headers = {"Authorization": f"Bearer {api_key}"}
    if dialect == "preview":
        headers[PREVIEW_BETA_HEADER[0]] = PREVIEW_BETA_HEADER[1]
    url = _build_url(base_url, "/realtime", [("model", model)])
    return RealtimeEndpoint(url=url, headers=headers, dialect=dialect)


def azure_endpoint(
    resource_or_base_url: str,
    deployment: str,
    api_version: str,
    api_key: str | None = None,
    bearer_token: str | None = None,
) -> RealtimeEndpoint:
    """Azure OpenAI's Realtime API (preview dialect).

    ``resource_or_base_url`` is the resource name (``myres`` → ``wss://myres.openai.azure.com``)
    or its base URL (``https://myres.openai.azure.com`` or ``.../openai``). Give exactly one of
    ``api_key`` (sent as ``api-key``) and ``bearer_token`` (``Authorization: Bearer``).
    """
    target = _require(resource_or_base_url, "Azure resource name or base URL")
    deployment = _require(deployment, "Azure deployment")
    api_version = _require(api_version, "Azure api-version")
    if (api_key is None) == (bearer_token is None):
        raise ValueError("give exactly one of api_key and bearer_token for Azure OpenAI")
    if "://" in target:
        base = target.rstrip("/")
        if not urlsplit(base).path.rstrip("/").endswith("/openai"):
            base += "/openai"
    elif _AZURE_RESOURCE.fullmatch(target):
        base = f"wss://{target}.openai.azure.com/openai"
    else:
        raise ValueError(f"not an Azure resource name or URL: {target!r}")
    url = _build_url(base, "/realtime", [("api-version", api_version), ("deployment", deployment)])
    if api_key is not None:
        headers = {"api-key": _require(api_key, "Azure api_key")}
    else:
        headers = {"Authorization": f"Bearer {_require(bearer_token, 'Azure bearer_token')}"}
    return RealtimeEndpoint(url=url, headers=headers, dialect="preview")


def compatible_endpoint(
    base_url: str,
    model: str,
    api_key: str | None = None,
    dialect: Dialect = "preview",
) -> RealtimeEndpoint:
    """A server speaking the Realtime protocol at ``base_url`` (``http(s)://`` becomes
    ``ws(s)://``; ``/realtime`` is appended unless the URL already ends with it). The bearer
    header is sent only with an ``api_key``; the preview dialect adds ``OpenAI-Beta``."""
    model = _require(model, "model")
    check_dialect(dialect)
    headers: dict[str, str] = {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key.strip()}"
    if dialect == "preview":
        headers[PREVIEW_BETA_HEADER[0]] = PREVIEW_BETA_HEADER[1]
    url = _build_url(base_url, "/realtime", [("model", model)])
    return RealtimeEndpoint(url=url, headers=headers, dialect=dialect)
