"""HTTP tools: the model's arguments sent to an integrator's web service.

The URL is a template: `{name}` placeholders are filled from the arguments (URL-quoted);
the other arguments go in a JSON body (POST/PUT/PATCH with `body="json"`) or else in the
query string. Connect errors and 5xx answers are retried with a short backoff, never 4xx.
Each attempt is bounded by what is left of the tool's timeout. The answer is read up to
`max_bytes`; JSON is returned as a value (optionally one part of it, `response_path`),
plain text as text. Header values (secrets) are never logged.

One `aiohttp.ClientSession` is shared per event loop; call `close_sessions()` at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp

from telephony_bot import log
from telephony_bot.errors import ConfigError
from telephony_bot.providers.base import ToolSpec
from telephony_bot.tools.base import CallControl, FunctionTool, ToolError

_log = log.get("tools.http")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_BACKOFF_S = (0.2, 0.5)
_EXCERPT_CHARS = 160
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    """The running loop's shared session, created on first use."""
    loop = asyncio.get_running_loop()
    for old in [lp for lp in _sessions if lp.is_closed()]:
        del _sessions[old]  # its loop is gone: nothing can be closed any more
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),  # each attempt has its own deadline
            headers={"User-Agent": "telephony-bot"},
        )
        _sessions[loop] = session
    return session


async def close_sessions() -> None:
    """Close the running loop's shared session (at shutdown, or at the end of a test)."""
    loop = asyncio.get_running_loop()
    session = _sessions.pop(loop, None)
    if session is not None and not session.closed:
        await session.close()
    for old in [lp for lp in _sessions if lp.is_closed()]:
        del _sessions[old]


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix (connect error, 5xx)."""


def http_tool(
    spec: ToolSpec,
    *,
    method: str = "POST",
    url: str,
    headers: dict[str, str] | None = None,
    body: Literal["json", "none"] = "json",
    retries: int = 2,
    response_path: str | None = None,
    max_bytes: int = 16384,
    timeout_s: float = 8.0,
) -> FunctionTool:
    """A tool that calls `method url` with the model's arguments; see the module doc."""
    method = method.upper()
    if method not in _METHODS:
        raise ConfigError(f"http tool {spec.name}: method must be one of {', '.join(_METHODS)}")
    if body not in ("json", "none"):
        raise ConfigError(f"http tool {spec.name}: body must be 'json' or 'none'")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"http tool {spec.name}: url must start with http:// or https://")
    if retries < 0 or max_bytes <= 0 or timeout_s <= 0:
        raise ConfigError(f"http tool {spec.name}: retries, max_bytes and timeout_s out of range")
    placeholders = set(_PLACEHOLDER.findall(url))
    props = spec.parameters.get("properties")
    if isinstance(props, dict):
        unknown = sorted(placeholders - set(props))
        if unknown:
            raise ConfigError(f"http tool {spec.name}: url uses undeclared arguments {unknown}")
    send_json = body == "json" and method in _BODY_METHODS
    fixed_headers = dict(headers or {})

    async def run(args: dict[str, Any], call: CallControl) -> Any:
        deadline = time.monotonic() + timeout_s
        full_url = _fill(url, args)
        rest = {k: v for k, v in args.items() if k not in placeholders}
        kwargs: dict[str, Any] = {"headers": fixed_headers}
        if send_json:
            kwargs["json"] = rest
        elif rest:
            kwargs["params"] = _query(rest)
        attempts = retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                data, ctype, charset = await _attempt(
                    spec.name, method, full_url, kwargs, max_bytes, remaining, timeout_s
                )
            except _Retryable as exc:
                last = str(exc)
                _log.info(
                    "http tool attempt failed", tool=spec.name, url=url, attempt=attempt, why=last
                )
                if attempt < attempts:
                    delay = _BACKOFF_S[min(attempt - 1, len(_BACKOFF_S) - 1)]
                    if deadline - time.monotonic() <= delay:
                        break
                    await asyncio.sleep(delay)
                continue
            return _decode(data, ctype, charset, response_path)
        n = f"{attempt} attempt" + ("s" if attempt > 1 else "")
        raise ToolError(f"{last} (after {n})" if last else f"{spec.name} ran out of time")

    return FunctionTool(spec, run, timeout_s=timeout_s, meta={"http": f"{method} {url}"})


async def _attempt(
    name: str,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    max_bytes: int,
    remaining: float,
    timeout_s: float,
) -> tuple[bytes, str, str | None]:
    """One request: (body, content type, charset) of a 2xx, or an error."""
    try:
        async with asyncio.timeout(remaining):
            async with _session().request(method, url, **kwargs) as resp:
                status = resp.status
                if status >= 500:
                    raise _Retryable(f"the service failed: {status} {resp.reason or ''}".strip())
                if status >= 400:
                    excerpt = _excerpt(await _read(resp, 4 * _EXCERPT_CHARS, cap=True))
                    msg = f"the service refused: {status} {resp.reason or ''}".strip()
                    raise ToolError(f"{msg}: {excerpt}" if excerpt else msg)
                if status >= 300 or status < 200:
                    raise ToolError(f"unexpected answer from the service: {status}")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise ToolError(f"response too large (> {max_bytes} bytes)")
                data = await _read(resp, max_bytes)
                return data, resp.content_type, resp.charset
    except TimeoutError:
        raise ToolError(f"{name} did not answer within {timeout_s:g} s") from None
    except aiohttp.ClientSSLError as exc:
        raise ToolError(f"TLS error talking to the service: {type(exc).__name__}") from None
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
        # ServerDisconnected is mostly a pooled keep-alive connection the server had closed.
        host = urlsplit(url).netloc
        raise _Retryable(f"cannot reach {host}: {type(exc).__name__}") from None
    except aiohttp.InvalidURL:
        raise ToolError("the arguments do not make a valid URL") from None
    except aiohttp.ClientError as exc:
        raise ToolError(f"request failed: {type(exc).__name__}") from None


async def _read(resp: aiohttp.ClientResponse, limit: int, *, cap: bool = False) -> bytes:
    """At most `limit` bytes of the body; more is an error unless `cap` (just cut it)."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await resp.content.read(limit + 1 - len(buf))
        if not chunk:
            return bytes(buf)
        buf += chunk
    if cap:
        return bytes(buf[:limit])
    raise ToolError(f"response too large (> {limit} bytes)")


def _fill(template: str, args: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in args or args[key] is None:
            raise ToolError(f"missing argument {key!r} for the URL")
        return quote(_scalar(args[key]), safe="")

    return _PLACEHOLDER.sub(sub, template)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _query(args: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, _scalar(v)) for k, v in args.items() if v is not None]


def _excerpt(data: bytes) -> str:
    text = _CONTROL.sub("", data.decode("utf-8", errors="replace"))
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


def _decode(data: bytes, ctype: str, charset: str | None, path: str | None) -> Any:
    """The body as the model should see it: JSON value (or part), or trimmed text."""
    if not data.strip():
        if path:
            raise ToolError(f"the response is empty, it has no {path!r}")
        return {"ok": True}
    try:
        text = data.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise ToolError("unreadable response") from None
    if _CONTROL.search(text):
        raise ToolError("unreadable response")
    stripped = text.strip()
    is_json = ctype == "application/json" or ctype.endswith("+json")
    if is_json or (path and stripped[:1] in ("{", "[")):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            raise ToolError("unreadable response (invalid JSON)") from None
        return _extract(value, path) if path else value
    if path:
        raise ToolError(f"the response is not JSON, it has no {path!r}")
    return stripped


def _extract(value: Any, path: str) -> Any:
    """`data.slots` / `items.0.name`: dict keys and list indexes, dot-separated."""
    cur = value
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif (
            isinstance(cur, list)
            and re.fullmatch(r"-?\d+", part)
            and -len(cur) <= int(part) < len(cur)
        ):
            cur = cur[int(part)]
        else:
            raise ToolError(f"the response has no {path!r} (no {part!r})")
    return cur
