"""Talking to the engine's admin API from tests (stdlib HTTP, no extra client)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOKEN = "adm-T0ken-never-in-logs-4711"


def http(
    method: str, url: str, token: str | None = TOKEN, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    text = raw.decode("utf-8", "replace")
    return status, json.loads(text) if "json" in ctype else text


def until(fn: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `fn` until it returns something truthy; its last value in the error otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s; last: {last!r}")


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted(m.group(2)[1:-1].split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return 0.0


def serve_with_admin(tmp: Path, plan: Path, admin_port: int) -> Any:
    """`telephony-bot serve` with two workers and the admin API, once every worker is ready.
    No front door: the tests call each worker on its own port, to know where a call is."""
    from tests.support import engine

    eng = engine.start(
        tmp, "serve", "--workers", "2", "--dialplan", str(plan), "--admin-port", str(admin_port),
        "--grace", "3", "--front-door", "none",
        ready_event="worker admin API listening", ready_count=2, name="serve",
    )  # fmt: skip
    try:
        until(lambda: http("GET", f"http://127.0.0.1:{admin_port}/health", None)[0] == 200,
              20, "every worker ready")  # fmt: skip
    except BaseException:
        eng.kill()
        raise
    return eng
