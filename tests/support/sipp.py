"""Run SIPp (3.6.1, Debian package ``sip-tester``) scenarios from tests/sipp against a UAS.

API
    run_sipp(scenario, "127.0.0.1:5094", local_port=..., media_port=..., calls=..., ...)
        -> SippResult                           blocking: start_sipp() + finish()
    start_sipp(...same arguments...) -> SippProcess (a subprocess.Popen); finish(proc) -> SippResult
        start calls in the background, do something else, then collect the result
    await run_sipp_async(...)                   run_sipp() in a worker thread
    sipp_available(), scenario_path("uac_rtp"), SIPP_DTMF_DIGITS, free_udp_port()
    with running_uas(["-sf", scenario_path("uas_busy")], workdir) as "127.0.0.1:port": a UAS
    Ports(): distinct free ports (.sip(), .media()) for one test

    SippResult(successful, failed, returncode, stdout, stderr, error_log, stats,
               timed_out, screen, rtp_received); .ok, .busy, .counter(name), .describe()
    ``stats`` is the last row of SIPp's -trace_stat CSV (keys such as "SuccessfulCall(C)",
    "FailedCall(C)", "FailedMaxUDPRetrans(C)", "busy(C)", "Retransmissions(C)").

Scenarios (tests/sipp): uac_rtp, uac_dtmf, uac_short, uac_wait_bye (UACs); uas_busy (a busy
line: 486, e.g. a transfer target that refuses); uas_sends_bye is a test peer for the
self-check only.  All UACs send to sip:<service>@<target>, service "bot"
by default (-s).  ``duration_ms`` is -d, the length of every bare ``<pause/>``.

Findings (SIPp 3.6.1 as installed here)

* Receiving RTP.  SIPp cannot report per call that RTP came back.  Its -trace_stat CSV and
  -trace_rtt (SIP response times only) have no RTP columns.  play_pcap_audio only counts what
  it sends ("Total RTP pckts sent" on the screen).  The 3.6.1 rtpstream code never reads its
  sockets (rtpstream_bytes_in is never incremented).  The only receive counter is -rtp_echo:
  "N Total echo RTP pckts 1st stream" on the screen (-trace_screen), summed over all calls, and
  only because SIPp sends every packet back to its sender.  Against an echoing or prompting bot
  this bounces audio back into the engine, so it is not used here.  Rely on the engine's own RTP
  stats.  As a passive caller-side hint, this runner watches the SIPp media socket (-mp,
  127.0.0.1:media_port) in /proc/net/udp while SIPp runs.  Without -rtp_echo SIPp never reads
  that socket, so any rx_queue/drops means datagrams arrived there: SippResult.rtp_received
  (True/False, None if not observable).  It does not count packets and does not check who sent
  them.  The UAC SDPs advertise [media_port], so for every call the engine sends its RTP to
  that socket.
* 486 Busy Here.  Each UAC has ``<recv response="486" optional="true" next="busy"
  counter="busy">``.  Its action makes a check_it <test> fail on purpose, then the scenario
  jumps to a non-2xx ACK (same Via/branch as the INVITE, To with the remote tag).  The call
  counts as FAILED: a run whose one call gets 486 gives successful=0, failed=1, busy=1 and
  returncode 1 (5 calls in one run, the 5th busy: successful=4, failed=1).
  In stats, FailedTestDoesntMatch(C) is 1 and busy(C) is 1; SippResult.busy reads busy(C).
  Any other unexpected final response (480, 503, ...) also fails the call:
  FailedUnexpectedMessage(C), and SIPp's abortCall sends the ACK.
* DTMF pcap.  /usr/share/sip-tester/dtmf_2833_0.pcap carries ONE digit, "0"
  (SIPP_DTMF_DIGITS).  It holds 10 RTP packets, PT 101, RFC 4733 event code 0, volume 10.
  Seven have E=0, 20 ms apart, with durations 0..1920.  The end packet (E=1, duration 2240 =
  280 ms) comes 3 times with the same seq.  SSRC 0x0e05384e.  g711a.pcap is PCMA (PT 8),
  236 packets of 30 ms (240 bytes), about 7.05 s.  This runner also writes pcap/g711u.pcap, a
  PCMU (PT 0) transcode, and uac_rtp/uac_dtmf play the one matching the first payload type in
  the 200 OK answer.  A pjmedia stream drops RTP whose PT is not the negotiated one.
  uac_dtmf plays the audio for -d ms and then the DTMF pcap, which stops the audio.  The DTMF
  pcap starts a new SSRC/seq, as in SIPp's own uac_pcap example.  SIPp 3.6.1 also has
  <exec play_dtmf="digits"/>, which builds RFC 2833 packets itself; it is not used here.
* Ports.  SIPp binds UDP local_ip:local_port (-p, SIP; with -bind_local only on 127.0.0.1).
  It always binds media_port AND media_port+2 (-mp: "audio" and "video" echo sockets), even
  without -rtp_echo.  An explicit -mp is tried once; if it is taken SIPp exits with a fatal
  error.  play_pcap_audio sends from a raw socket, which needs root or CAP_NET_RAW
  (``setcap cap_net_raw+ep /usr/bin/sipp``).  Its UDP source port is [media_port] and it binds
  no port.  The control socket (UDP) is -ci 127.0.0.1 here.  It takes 8888 and, if busy,
  8889..8947 (60 instances); ``control_port`` pins it with -cp.  To run several SIPp at once,
  give each run its own local_port and its own even media_port with media_port+2 free.  For
  example, space media ports by 4 within 15000-19999 and keep them clear of the SIP ports and
  the engine's ports.  Scenarios use [media_port], not [auto_media_port]: the per-call
  ports media_port+4*(n-1) are never bound.
* play_pcap_audio paths.  SIPp 3.6.1 resolves a relative path next to the scenario file
  first, then the current directory.  A value in [brackets] is a -key keyword read at load
  time.  The runner copies/creates the pcaps in <workdir>/pcap/, runs SIPp with cwd=workdir,
  and passes absolute paths as -key pcmu_pcap/pcma_pcap/dtmf_pcap.
* Exit codes: 0 all calls OK; 1 some call failed (scenario load errors also gave 1); 255
  fatal, which includes the global -timeout with -timeout_error ("timed out after" in stderr;
  calls still running are counted neither successful nor failed, so SippResult.timed_out is
  set); 254 a port could not be bound (-p, -mp or -mp+2).  An INVITE with no answer fails
  after 6 sends (5 retransmissions = -max_invite_retrans, starting at 500 ms and doubling),
  about 31.5 s (FailedMaxUDPRetrans(C)).  Use extra=["-max_invite_retrans", "1"] for a fast
  failure.
* Command line used: -nostdin -aa (auto 200 for INFO/NOTIFY/OPTIONS/UPDATE) -bind_local
  -timeout <ceil(timeout_s)>s -timeout_error -trace_stat -stf -fd 1 -trace_screen -trace_err
  (+ -trace_msg).  The runner kills SIPp if it is still alive 10 s after timeout_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIPP_BIN = os.environ.get("SIPP_BIN", "sipp")
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "sipp"
PCAP_SOURCE_DIRS = (Path("/usr/share/sip-tester"), Path("/usr/share/sipp/pcap"))
DTMF_PCAP = "dtmf_2833_0.pcap"
SIPP_DTMF_DIGITS = "0"
"""Digit(s) carried by dtmf_2833_0.pcap, played by uac_dtmf.xml: the single digit "0"."""

_GRACE_S = 10.0  # on top of timeout_s before the runner kills SIPp itself


def sipp_available() -> bool:
    """True if the sipp binary is on PATH."""
    return shutil.which(SIPP_BIN) is not None


def scenario_path(scenario: str | Path) -> Path:
    """Map a name such as "uac_rtp" to tests/sipp/uac_rtp.xml; paths are returned resolved."""
    p = Path(scenario)
    if p.suffix or len(p.parts) > 1:
        return p.resolve()
    return SCENARIO_DIR / f"{p}.xml"


@dataclass(frozen=True)
class SippResult:
    successful: int
    failed: int
    returncode: int
    stdout: str
    stderr: str
    error_log: str
    stats: dict[str, str]
    timed_out: bool = False
    screen: str = ""
    rtp_received: bool | None = None
    messages: str = field(default="", repr=False)
    command: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and not self.timed_out

    @property
    def busy(self) -> int:
        """Calls answered 486 Busy Here (each also counted in ``failed``)."""
        return self.counter("busy")

    def counter(self, name: str) -> int:
        """Cumulative value of a stats column, e.g. "FailedMaxUDPRetrans" or "busy"."""
        return _to_int(self.stats.get(f"{name}(C)", "0"))

    def describe(self) -> str:
        """Short multi-line summary for assertion messages."""
        nonzero = {k: v for k, v in self.stats.items() if k.startswith("Failed") and v != "0"}
        return (
            f"sipp rc={self.returncode} successful={self.successful} failed={self.failed} "
            f"timed_out={self.timed_out} rtp_received={self.rtp_received} {nonzero}\n"
            f"cmd: {' '.join(self.command)}\n"
            f"stderr: {self.stderr[-1500:]}\nerror_log: {self.error_log[-1500:]}"
        )


class SippProcess(subprocess.Popen[bytes]):
    """A running SIPp; pass it to finish()."""

    workdir: Path
    files: dict[str, Path]
    deadline: float
    cleanup: bool
    command: tuple[str, ...]
    media_probe: _MediaProbe


# --------------------------------------------------------------------------- pcaps


def _find_pcap(name: str) -> Path:
    dirs = [Path(d) for d in os.environ.get("SIPP_PCAP_DIR", "").split(os.pathsep) if d]
    for d in [*dirs, *PCAP_SOURCE_DIRS]:
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"{name} not found in {[*dirs, *PCAP_SOURCE_DIRS]}")


def _alaw_to_linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108 if seg == 1 else (t + 0x108) << (seg - 1))
    return t if a & 0x80 else -t


def _linear_to_ulaw(x: int) -> int:
    mask = 0xFF if x >= 0 else 0x7F
    x = min(abs(x), 32635) + 0x84
    exp = min(max(x.bit_length() - 8, 0), 7)
    return ((exp << 4) | ((x >> (exp + 3)) & 0x0F)) ^ mask


_ALAW_TO_ULAW = bytes(_linear_to_ulaw(_alaw_to_linear(a)) for a in range(256))
_LINK_HDR = {0: 4, 1: 14, 101: 0, 108: 4, 113: 16, 276: 20}  # pcap linktype -> L2 header size


def alaw_pcap_to_ulaw(src: Path, dst: Path) -> None:
    """Copy an RTP PCMA (PT 8) pcap, transcoding payloads to PCMU and setting PT 0."""
    data = bytearray(src.read_bytes())
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    l2 = _LINK_HDR[link]
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        pkt = off + 16
        ip = pkt + l2 + (4 if link == 1 and data[pkt + 12 : pkt + 14] == b"\x81\x00" else 0)
        off = pkt + incl
        if data[ip] >> 4 != 4 or data[ip + 9] != 17:  # IPv4 / UDP only
            continue
        udp = ip + (data[ip] & 0x0F) * 4
        rtp = udp + 8
        if data[rtp + 1] & 0x7F != 8:
            continue
        data[udp + 6 : udp + 8] = b"\0\0"  # no UDP checksum (SIPp recomputes it anyway)
        data[rtp + 1] &= 0x80  # keep the marker bit, PT 8 -> 0
        body = rtp + 12 + 4 * (data[rtp] & 0x0F)
        if data[rtp] & 0x10:  # header extension
            body += 4 + 4 * struct.unpack(">H", data[body + 2 : body + 4])[0]
        data[body:off] = data[body:off].translate(_ALAW_TO_ULAW)
    dst.write_bytes(bytes(data))


def prepare_pcaps(workdir: Path) -> dict[str, Path]:
    """Put g711a.pcap, g711u.pcap and the DTMF pcap into workdir/pcap; return -key values."""
    pdir = workdir / "pcap"
    pdir.mkdir(parents=True, exist_ok=True)
    out = {
        "pcma_pcap": pdir / "g711a.pcap",
        "pcmu_pcap": pdir / "g711u.pcap",
        "dtmf_pcap": pdir / DTMF_PCAP,
    }
    for key, src_name in (("pcma_pcap", "g711a.pcap"), ("dtmf_pcap", DTMF_PCAP)):
        if not out[key].exists():
            tmp = pdir / f".{uuid.uuid4().hex}"
            shutil.copyfile(_find_pcap(src_name), tmp)
            os.replace(tmp, out[key])  # atomic: concurrent runs may share the workdir
    if not out["pcmu_pcap"].exists():
        tmp = pdir / f".{uuid.uuid4().hex}"
        alaw_pcap_to_ulaw(out["pcma_pcap"], tmp)
        os.replace(tmp, out["pcmu_pcap"])
    return {k: v.resolve() for k, v in out.items()}


# --------------------------------------------------------------------------- media probe


class _MediaProbe(threading.Thread):
    """Polls /proc/net/udp for SIPp's (never read) media socket while SIPp runs."""

    def __init__(self, proc: subprocess.Popen[bytes], ip: str, port: int) -> None:
        super().__init__(daemon=True)
        self._proc = proc
        native = struct.unpack("=I", socket.inet_aton(ip))[0]
        self._local = f"{native:08X}:{port:04X}"
        self.seen_socket = False
        self.received = False

    def run(self) -> None:
        while True:
            alive = self._proc.poll() is None
            try:
                lines = Path("/proc/net/udp").read_text().splitlines()[1:]
            except OSError:
                return
            for line in lines:
                f = line.split()
                if len(f) >= 13 and f[1] == self._local:
                    self.seen_socket = True
                    if int(f[4].split(":")[1], 16) or int(f[12]):  # rx_queue, drops
                        self.received = True
            if not alive or self.received:
                return
            time.sleep(0.05)

    def result(self) -> bool | None:
        self.join(timeout=1.0)
        return True if self.received else (False if self.seen_socket else None)


# --------------------------------------------------------------------------- running


def start_sipp(
    scenario: str | Path,
    target: str,
    *,
    calls: int = 1,
    concurrency: int = 1,
    rate: float = 10,
    duration_ms: int = 1000,
    local_port: int,
    media_port: int,
    timeout_s: float = 60,
    service: str = "bot",
    workdir: Path | None = None,
    extra: Sequence[str] = (),
    local_ip: str = "127.0.0.1",
    recv_timeout_ms: int | None = None,
    control_port: int | None = None,
    trace_msg: bool = False,
) -> SippProcess:
    """Start SIPp in the background (stdout/stderr go to files, never pipes).

    ``recv_timeout_ms`` (-recv_timeout) bounds every <recv> without its own timeout. Use it
    for uac_wait_bye, so a missing BYE gives a failed call (FailedTimeoutOnRecv) and not the
    global timeout. ``trace_msg`` keeps all SIP messages (-trace_msg) in SippResult.messages.
    ``workdir`` (default: a temp dir removed by finish()) receives pcap/ and the log files and
    may be shared by concurrent runs. ``extra`` is appended to the sipp command line.
    """
    scen = scenario_path(scenario)
    if not scen.is_file():
        raise FileNotFoundError(scen)
    cleanup = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="sipp-")) if workdir is None else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    keys = prepare_pcaps(wd)
    tag = f"{scen.stem}-{local_port}-{uuid.uuid4().hex[:8]}"
    files = {
        name: wd / f"{tag}.{name}"
        for name in ("stat.csv", "screen.log", "errors.log", "messages.log", "stdout", "stderr")
    }
    timeout = max(1, math.ceil(timeout_s))  # SIPp arms alarm(whole seconds); 0 = none
    options: list[tuple[str, object]] = [
        ("-sf", scen),
        ("-s", service),
        ("-i", local_ip),
        ("-p", local_port),
        ("-mp", media_port),
        ("-ci", local_ip),
        ("-m", calls),
        ("-l", concurrency),
        ("-r", f"{rate:g}"),
        ("-d", duration_ms),
        ("-timeout", f"{timeout}s"),
        ("-stf", files["stat.csv"]),
        ("-fd", 1),
        ("-screen_file", files["screen.log"]),
        ("-error_file", files["errors.log"]),
    ]
    if recv_timeout_ms is not None:
        options.append(("-recv_timeout", recv_timeout_ms))
    if control_port is not None:
        options.append(("-cp", control_port))
    if trace_msg:
        options.append(("-message_file", files["messages.log"]))
    cmd = [SIPP_BIN, target, "-nostdin", "-aa", "-bind_local", "-timeout_error"]
    cmd += ["-trace_stat", "-trace_screen", "-trace_err"] + (["-trace_msg"] if trace_msg else [])
    for option, value in options:
        cmd += [option, str(value)]
    for key, path in keys.items():
        cmd += ["-key", key, str(path)]
    cmd += list(extra)
    with open(files["stdout"], "wb") as out, open(files["stderr"], "wb") as err:
        proc = SippProcess(cmd, cwd=wd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    proc.workdir, proc.files, proc.cleanup = wd, files, cleanup
    proc.deadline = time.monotonic() + timeout + _GRACE_S
    proc.command = tuple(cmd)
    proc.media_probe = _MediaProbe(proc, local_ip, media_port)
    proc.media_probe.start()
    return proc


def finish(proc: SippProcess) -> SippResult:
    """Wait for SIPp (killing it after timeout_s + grace), collect and parse its output."""
    killed = False
    try:
        proc.wait(timeout=max(0.0, proc.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        killed = True
        proc.send_signal(signal.SIGUSR1)  # soft exit: dump stats, stop placing calls
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    rtp_received = proc.media_probe.result()
    text = {name: _read(path) for name, path in proc.files.items()}
    stats = _parse_stats(text["stat.csv"])
    screen = text["screen.log"]
    successful = _count(stats, "SuccessfulCall", screen, "Successful call")
    failed = _count(stats, "FailedCall", screen, "Failed call")
    stderr = text["stderr"]
    result = SippResult(
        successful=successful,
        failed=failed,
        returncode=proc.returncode,
        stdout=text["stdout"],
        stderr=stderr,
        error_log=text["errors.log"],
        stats=stats,
        timed_out=killed or "timed out after" in stderr,
        screen=screen,
        rtp_received=rtp_received,
        messages=text["messages.log"],
        command=proc.command,
    )
    if proc.cleanup:
        shutil.rmtree(proc.workdir, ignore_errors=True)
    return result


def run_sipp(
    scenario: str | Path,
    target: str,
    *,
    calls: int = 1,
    concurrency: int = 1,
    rate: float = 10,
    duration_ms: int = 1000,
    local_port: int,
    media_port: int,
    timeout_s: float = 60,
    service: str = "bot",
    workdir: Path | None = None,
    extra: Sequence[str] = (),
    local_ip: str = "127.0.0.1",
    recv_timeout_ms: int | None = None,
    control_port: int | None = None,
    trace_msg: bool = False,
) -> SippResult:
    """Run ``scenario`` against ``target`` ("127.0.0.1:5094") and wait: see start_sipp()."""
    return finish(
        start_sipp(
            scenario,
            target,
            calls=calls,
            concurrency=concurrency,
            rate=rate,
            duration_ms=duration_ms,
            local_port=local_port,
            media_port=media_port,
            timeout_s=timeout_s,
            service=service,
            workdir=workdir,
            extra=extra,
            local_ip=local_ip,
            recv_timeout_ms=recv_timeout_ms,
            control_port=control_port,
            trace_msg=trace_msg,
        )
    )


async def run_sipp_async(scenario: str | Path, target: str, **kwargs: Any) -> SippResult:
    """run_sipp() in a worker thread, for asyncio tests (same keyword arguments)."""
    return await asyncio.to_thread(run_sipp, scenario, target, **kwargs)


class Ports:
    """Distinct free UDP ports in 15000-19999 for one test."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def sip(self) -> int:
        port = free_udp_port(exclude=self.used)
        self.used.add(port)
        return port

    def media(self) -> int:
        port = free_udp_port(pair=True, exclude=self.used)
        self.used.update(range(port - 1, port + 4))
        return port


def udp_bound(port: int, ip: str = "127.0.0.1") -> bool:
    """Whether some process has bound UDP `ip:port` (/proc/net/udp)."""
    native = struct.unpack("=I", bytes(int(x) for x in ip.split(".")))[0]
    local = f"{native:08X}:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1] == local for line in lines)


@contextlib.contextmanager
def running_uas(args: list[str], workdir: Path, ports: Ports | None = None) -> Iterator[str]:
    """Run a SIPp UAS (`args`: e.g. ["-sf", scenario_path("uas_busy")], or ["-sn", "uas"]),
    bounded by -timeout and stopped at the end; yields "127.0.0.1:port"."""
    ports = ports or Ports()
    port, media = ports.sip(), ports.media()
    fixed = "-i 127.0.0.1 -bind_local -ci 127.0.0.1 -nostdin -timeout 60s".split()
    cmd = [SIPP_BIN, *fixed, "-p", str(port), "-mp", str(media), *map(str, args)]
    for key, path in prepare_pcaps(workdir).items():
        cmd += ["-key", key, str(path)]
    out_path = workdir / f"uas-{port}.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 5
        while not udp_bound(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, out_path.read_text(errors="replace")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_udp_port(
    lo: int = 15000,
    hi: int = 19999,
    *,
    pair: bool = False,
    exclude: Collection[int] = (),
    ip: str = "127.0.0.1",
) -> int:
    """A UDP port in [lo, hi] that is free right now and not in ``exclude``.

    ``pair``: an even port whose port+2 is free too (what -mp binds). Checked by binding, so
    it is a hint, not a reservation; add the results to ``exclude`` when picking several.
    """
    for _ in range(500):
        port = random.randrange(lo, hi - 1)
        port -= port % 2 if pair else 0
        wanted = (port, port + 2) if pair else (port,)
        if any(p in exclude for p in wanted):
            continue
        socks: list[socket.socket] = []
        try:
            for p in wanted:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((ip, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no free UDP port in {lo}-{hi}")


# --------------------------------------------------------------------------- parsing


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _to_int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def _parse_stats(text: str) -> dict[str, str]:
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return {k: v for k, v in zip(rows[0], rows[-1], strict=False) if k}


def _count(stats: dict[str, str], key: str, screen: str, label: str) -> int:
    if f"{key}(C)" in stats:
        return _to_int(stats[f"{key}(C)"])
    found = re.findall(rf"^\s*{label}\s*\|\s*\d+\s*\|\s*(\d+)", screen, re.M)
    return int(found[-1]) if found else 0
