"""Start the engine's own processes for integration tests, and read their JSON logs."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Each test run starts its RTP ranges at a place of its own, so two runs on one machine
# (a developer's and CI's) do not hand the same ports to two engines.
_rtp_bases = itertools.count(20000 + (os.getpid() % 100) * 400, 200)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def next_rtp_base() -> int:
    """The first of 200 RTP ports that are free now (ranges wrap below 60000)."""
    for _ in range(200):
        base = 20000 + (next(_rtp_bases) - 20000) % 40000
        if all(_is_free(base + i) for i in range(0, 200, 2)):
            return base
    raise RuntimeError("no free RTP range")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "telephony_bot.cli", *args]


@dataclass
class EngineProc:
    """A running `telephony-bot worker|serve` with JSON logs in a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    sip_port: int

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"log event {name!r} x{count} not seen in {timeout}s; log:\n"
            + self.log_path.read_text(errors="replace")[-4000:]
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(
                    f"engine did not stop within {timeout:g} s (calls still up get the "
                    f"--grace period first); log tail:\n{tail}"
                ) from None
        else:
            code = self.proc.returncode
        with contextlib.suppress(ProcessLookupError):  # anything left in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        return code


def start(
    tmp: Path,
    command: str = "worker",
    *args: str,
    ready_event: str = "worker listening",
    ready_count: int = 1,
    name: str = "engine",
    prefix: list[str] | None = None,
) -> EngineProc:
    """Start `telephony-bot COMMAND` (or `prefix` + the same flags) and wait until ready."""
    port = free_port()
    if command == "serve" and "--workers" in args:
        n = int(args[list(args).index("--workers") + 1])
        if _front_door(args, n):
            n += 1  # the front door on the public port, the workers on the ports after it
        while not all(_is_free(port + i) for i in range(n)):
            port = free_port()
    log_path = tmp / f"{name}-{port}.log"
    argv = (prefix or cli(command)) + [

        "--sip-host", "127.0.0.1",
        "--sip-port", str(port),
        "--rtp-port", str(next_rtp_base()),
        "--log-format", "json",
        *args,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(
            argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
            start_new_session=True,  # its own process group: serve's workers die with it
        )
    eng = EngineProc(proc, log_path, port)
    try:
        eng.wait_for(ready_event, ready_count)
    except BaseException:
        eng.kill()  # never leave an engine running behind a failed test
        raise
    return eng


def _front_door(args: tuple[str, ...], workers: int) -> bool:
    mode = args[list(args).index("--front-door") + 1] if "--front-door" in args else "auto"
    return mode == "kamailio" or (mode == "auto" and workers > 1)


def _is_free(port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def serve_front_door(tmp: Path, *extra: str, grace: float = 2) -> EngineProc:
    """`serve --workers 2` with the echo provider behind the Kamailio front door, once both
    workers listen (the caller stops it)."""
    eng = start(
        tmp, "serve", "--workers", "2", "--provider", "echo", "--grace", f"{grace:g}", *extra,
        ready_event="front door ready",
    )  # fmt: skip
    try:
        eng.wait_for("worker listening", 2)
    except BaseException:
        eng.kill()
        raise
    return eng


@contextlib.contextmanager
def running(tmp: Path, command: str = "worker", *args: str, **kw: Any) -> Iterator[EngineProc]:
    eng = start(tmp, command, *args, **kw)
    try:
        yield eng
    finally:
        eng.stop()


_PJ_CLIENT_ABORT = b"pj_mutex_unlock: Assertion `mutex->owner == pj_thread_this()' failed"


def dial(
    tmp: Path,
    port: int,
    *args: str,
    name: str = "dial",
    user: str = "100",
    params: str = "",
    scheme: str = "sip",
) -> dict[str, Any]:
    """Run `telephony-bot dial` against the engine and return its JSON report."""
    report = tmp / f"{name}.json"
    uri = f"{scheme}:{user}@127.0.0.1:{port}{params}"
    for attempt in (1, 2):
        res = subprocess.run(
            cli("dial", uri, "--report", str(report), *args),
            capture_output=True,
            timeout=120,
            cwd=REPO,
        )
        # The caller's own PJSIP (not the engine under test) now and then aborts on a lock
        # released by another of its threads (seen on TLS connections refused under load):
        # that caller is placed once more, the engine's side of both attempts stays in its log.
        if report.exists() or _PJ_CLIENT_ABORT not in res.stderr or attempt == 2:
            break
        print(f"dial: the test caller aborted in PJSIP, calling again: {res.stderr!r}")
    assert report.exists(), f"dial wrote no report: {res.stdout!r} {res.stderr!r}"
    data: dict[str, Any] = json.loads(report.read_text())
    data["_exit_code"] = res.returncode
    data["_stdout"] = res.stdout.decode(errors="replace")
    return data


def dial_async(tmp: Path, port: int, *args: str, name: str = "dial") -> subprocess.Popen[bytes]:
    report = tmp / f"{name}.json"
    return subprocess.Popen(
        cli("dial", f"sip:100@127.0.0.1:{port}", "--report", str(report), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )


def read_report(tmp: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / f"{name}.json").read_text())
    return data


def proc_resources(pid: int) -> dict[str, int]:
    """Threads, open file descriptors and sockets of a live process (Linux /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    fds = list(fd_dir.iterdir())
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                sockets += 1
    threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    return {"threads": threads, "fds": len(fds), "sockets": sockets}
