"""A real Kamailio registrar for the registration tests, on a free loopback port.

    with running_registrar(tmp, {"2001": "s3cret"}) as reg:     # user -> password
        reg.port, reg.uri                  # sip:127.0.0.1:PORT
        reg.tls_port                       # with tls=TlsFiles: its TLS port (same host)
        reg.bindings()                     # the location table (RPC ul.dump): list[Binding]
        reg.tls_connections()              # far ends of its open TLS connections
        reg.lines("REGISTER")              # its "registrar: ..." log lines containing a word
        reg.restart()                      # a new process on the same port: bindings forgotten
        reg.wait(lambda: ..., what="...")

The configuration is `registrar.cfg.tmpl` beside this file: digest authentication with
plain passwords from an htable (no database), REGISTER challenged with 401, INVITEs to a
registered user routed to its contact, any other INVITE challenged with 407 and then sent
to `out_destination` (the "carrier"). See the template's header.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from telephony_bot.frontdoor import kamailio, rpc
from telephony_bot.frontdoor.render import DEFAULT_MODULE_PATH, render_template
from tests.support.certs import TlsFiles
from tests.support.engine import free_port

T = TypeVar("T")
REALM = "pbx.test"
TEMPLATE = Path(__file__).with_name("registrar.cfg.tmpl")


def kamailio_available() -> bool:
    return any(Path(d, "kamailio").exists() for d in ("/usr/sbin", "/usr/local/sbin"))


def kamailio_tls_available() -> bool:
    return Path(DEFAULT_MODULE_PATH, "tls.so").exists()


@dataclass(frozen=True)
class Binding:
    aor: str  # the user, e.g. "2001"
    contact: str  # as registered, e.g. sip:2001@127.0.0.1:5070;line=...
    received: str  # the source the REGISTER came from when it differs from the contact
    expires: int  # seconds left
    call_id: str
    cseq: int
    user_agent: str


def parse_ul_dump(result: Any) -> list[Binding]:
    out = []
    for domain in (result or {}).get("Domains", []) or []:
        table = (domain.get("Domain") or {}).get("AoRs", []) or []
        for entry in table:
            info = entry.get("Info") or {}
            aor = str(info.get("AoR", ""))
            for c in info.get("Contacts", []) or []:
                contact = c.get("Contact") or {}
                expires = contact.get("Expires", 0)
                out.append(
                    Binding(
                        aor=aor,
                        contact=str(contact.get("Address", "")),
                        received=str(contact.get("Received", "") or ""),
                        expires=int(expires) if str(expires).lstrip("-").isdigit() else 0,
                        call_id=str(contact.get("Call-ID", "")),
                        cseq=int(contact.get("CSeq", 0) or 0),
                        user_agent=str(contact.get("User-Agent", "")),
                    )
                )
    return out


class Registrar:
    def __init__(
        self,
        run_dir: Path,
        users: dict[str, str],
        out_destination: str = "sip:127.0.0.1:9",
        port: int | None = None,
        host: str = "127.0.0.1",
        prefix: list[str] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """`host`, `prefix`: where it listens, and a command its own runs under (e.g. `ip
        netns exec NS` for a registrar in a network namespace); `tls`: the certificate and
        key of a TLS listener on `tls_port` besides UDP and TCP."""
        self.run_dir = run_dir
        self.host = host
        self.prefix = prefix or []
        self.port = port or free_port()
        self.users = users
        self.out_destination = out_destination
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0
        self.log_path = run_dir / "registrar.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def _cfg(self) -> Path:
        creds = "\n".join(f'\t$sht(creds=>{u}) = "{p}";' for u, p in self.users.items())
        text = render_template(
            TEMPLATE.read_text(),
            {
                "run_dir": str(self.run_dir),
                "module_path": DEFAULT_MODULE_PATH,
                "port": str(self.port),
                "host": self.host,
                "realm": REALM,
                "credentials": creds,
                "out_destination": self.out_destination,
                **self._tls_values(),
            },
        )
        path = self.run_dir / "registrar.cfg"
        path.write_text(text)
        return path

    def _tls_values(self) -> dict[str, str]:
        if self.tls is None:
            return {"tls_listen": "", "tls_modules": ""}
        modules = [
            'loadmodule "tls.so"',
            'modparam("tls", "tls_method", "TLSv1.2+")',
            f'modparam("tls", "certificate", "{self.tls.cert}")',
            f'modparam("tls", "private_key", "{self.tls.key}")',
            'modparam("tls", "verify_certificate", 0)',
            'modparam("tls", "require_certificate", 0)',
        ]
        return {
            "tls_listen": f"enable_tls=yes\nlisten=tls:{self.host}:{self.tls_port}",
            "tls_modules": "\n".join(modules),
        }

    def start(self, timeout_s: float = 10.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob("*.sock"):
            stale.unlink(missing_ok=True)
        cfg = self._cfg()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, kamailio.binary(), "-f", str(cfg), "-DD", "-E",
                 "-m", "32", "-M", "4", "-P", str(self.run_dir / "registrar.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the registrar exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(rpc.FrontDoorUnavailableError):
                rpc.call(self.run_dir, "core.version", timeout=0.5)
                return
            time.sleep(0.05)
        raise RuntimeError(f"the registrar did not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self) -> None:
        """Stop and start again on the same port: every binding is forgotten (db_mode 0)."""
        self.stop()
        self.start()

    def bindings(self, user: str | None = None) -> list[Binding]:
        found = parse_ul_dump(rpc.call(self.run_dir, "ul.dump"))
        return [b for b in found if user is None or b.aor == user]

    def tls_connections(self) -> list[str]:
        """The far ends ("IP:port") of its open TLS connections (RPC core.tcp_list)."""
        conns = rpc.call(self.run_dir, "core.tcp_list") or []
        return [f"{c['src_ip']}:{c['src_port']}" for c in conns if c.get("type") == "TLS"]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def lines(self, word: str = "") -> list[str]:
        """Its 'registrar: ...' decisions, in order, those containing `word`."""
        out = []
        for line in self.log().splitlines():
            m = re.search(r"registrar: (.*)$", line)
            if m and word in m.group(1):
                out.append(m.group(1))
        return out

    def wait(self, check: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"registrar: {what or 'condition'} not seen in {timeout}s; its log:\n"
                    + "\n".join(self.lines()[-30:])
                )
            time.sleep(0.1)


@contextlib.contextmanager
def running_registrar(
    tmp: Path, users: dict[str, str], out_destination: str = "sip:127.0.0.1:9", **kw: Any
) -> Iterator[Registrar]:
    reg = Registrar(tmp / "registrar", users, out_destination, **kw)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()
