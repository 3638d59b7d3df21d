"""A real Mosquitto broker for tests, on a free loopback port, killed at the end.

    with running_mosquitto() as broker:      # or the `mosquitto_broker` fixture
        ... broker.host, broker.port ...
        broker.stop()                        # e.g. to test an unreachable broker

`mosquitto_available()` says whether the binary is installed (scripts/install-system-deps.sh).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.certs import TlsFiles

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )


def mosquitto_available() -> bool:
    return mosquitto_binary() is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Mosquitto:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)
    conf: Path | None = None

    def restart(self, start_timeout_s: float = 5.0) -> None:
        """Start the broker again on the same port (after `stop()`), e.g. after an outage."""
        assert self._stopped and self.conf is not None, "restart() follows stop()"
        binary = mosquitto_binary()
        assert binary is not None
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            with open(self.log_path, "ab") as log_file:
                self.proc = subprocess.Popen(
                    [binary, "-c", str(self.conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            while self.proc.poll() is None and not _accepts(self.port):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if self.proc.poll() is None and _accepts(self.port):
                self._stopped = False
                return
            time.sleep(0.1)  # the port may still be in TIME_WAIT: try again
        raise RuntimeError(f"mosquitto did not restart on port {self.port}:\n{self.log()}")

    def stop(self) -> None:
        """Kill the broker (idempotent); its port then refuses connections."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def running_mosquitto(
    start_timeout_s: float = 5.0,
    tls: TlsFiles | None = None,
    users: dict[str, str] | None = None,
) -> Iterator[Mosquitto]:
    """Start `mosquitto` on a free 127.0.0.1 port, wait until it accepts, stop it after.
    With `tls`, the listener speaks TLS only, with that certificate; with `users` (name:
    password), only they may connect."""
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (scripts/install-system-deps.sh)")
    with tempfile.TemporaryDirectory(prefix="mosquitto-") as tmp:
        auth = "allow_anonymous true\n"
        if users:
            passwd = Path(tmp) / "passwd"
            for i, (name, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", "-b", *create, str(passwd), name, password],
                    check=True,
                    capture_output=True,
                )
            auth = f"allow_anonymous false\npassword_file {passwd}\n"
        broker: Mosquitto | None = None
        for _ in range(3):  # a free port can be taken between the probe and the bind
            port = free_port()
            conf = Path(tmp) / "mosquitto.conf"
            # the broker reads its files after it drops root: stay the user who owns them
            tls_lines = f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n" if tls else ""
            conf.write_text(
                f"listener {port} {HOST}\n{tls_lines}{auth}persistence false\n"
                f"log_dest stderr\nuser {getpass.getuser()}\n"
            )
            log_path = Path(tmp) / f"mosquitto-{port}.log"
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [binary, "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            candidate = Mosquitto(HOST, port, proc, log_path, conf=conf)
            deadline = time.monotonic() + start_timeout_s
            while time.monotonic() < deadline and proc.poll() is None and not _accepts(port):
                time.sleep(0.05)
            if proc.poll() is None and _accepts(port):
                broker = candidate
                break
            candidate.stop()
        if broker is None:
            raise RuntimeError(f"mosquitto did not start:\n{candidate.log()}")
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def mosquitto_broker() -> Iterator[Mosquitto]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed (scripts/install-system-deps.sh)")
    with running_mosquitto() as broker:
        yield broker
