"""Latency benchmark, measured on the wire: real pjsua2 calls (`telephony-bot dial`) into a
worker whose provider is the scripted OpenAI-Realtime server, the echo provider, or
pjmedia's own loopback.

Every UDP datagram on the loopback interface is copied with its kernel receive timestamp
(an AF_PACKET socket in a separate process; needs root or CAP_NET_RAW), so SIP and RTP
times are the wire's, not a caller's jitter buffer's. The scripted server stamps every
event it receives and sends with `time.monotonic()` (CLOCK_MONOTONIC is one clock for all
processes on Linux); kernel timestamps are converted to it. Per trial (one call):

- greeting: 200 OK for the INVITE → first RTP packet of the greeting towards the caller,
  with pre-warm (the default) and without (`--no-prewarm`);
- uplink (caller RTP → provider socket): the caller's first voiced RTP packet → the
  server's receipt of the first voiced `input_audio_buffer.append`;
- downlink (provider delta → RTP): the server's send of the greeting's first audio delta
  → the first voiced RTP packet towards the caller (trials without pre-warm: with it, the
  greeting is generated before the answer and waits for it);
- barge-in: the caller's first voiced RTP packet, sent while the greeting plays → the
  first packet towards the caller that starts 200 ms of silence;
- echo and pjmedia loopback: the caller's first voiced packet → the first voiced packet
  back (the whole engine round trip without a provider socket, and pjmedia's share of it).

The scripted model starts its audio `--model-ms` after `response.create` (300 ms by
default, typical of a realtime model's first audio) and answers connections on loopback
(a real provider adds a TLS and WebSocket handshake, which pre-warm hides too).

Run: `python -m bench.latency`. Writes bench/results/latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import multiprocessing as mp
import os
import pickle
import platform
import re
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import audio, engine
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply

RESULTS = Path(__file__).parent / "results" / "latency.json"
VOICED_DBFS = -40.0
SILENT_DBFS = -45.0
RATE = 16000  # the caller's audio rate
PLAY_AT = 1.2  # the caller starts talking this long after the answer (over the greeting)
TALK_S = 1.5
CALL_S = 3.4

# ---------------------------------------------------------------- wire tap (own process)

_ETH_P_IP = 0x0800
_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
_PACKET_OUTGOING = 4


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]  # fmt: skip


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _udp_only(sock: socket.socket) -> None:
    """Classic BPF: keep IPv4/UDP frames (the Ethernet header of lo is 14 bytes)."""
    prog = (_SockFilter * 4)(
        _SockFilter(0x30, 0, 0, 23),  # ldb [23]: IP protocol
        _SockFilter(0x15, 0, 1, 17),  # jeq #17 (UDP)
        _SockFilter(0x06, 0, 0, 0xFFFF),  # ret: keep
        _SockFilter(0x06, 0, 0, 0),  # ret: drop
    )
    fprog = _SockFprog(4, ctypes.cast(prog, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(memoryview(fprog)))  # type: ignore[arg-type]


def _tap(out_path: str, ports: tuple[int, int], ready: Any, stop: Any) -> None:
    """Record UDP datagrams to/from ports in [lo, hi) with kernel time (monotonic ns)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
    sock.bind(("lo", 0))
    _udp_only(sock)
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.settimeout(0.2)
    offset = min(
        (time.time_ns() - time.monotonic_ns() for _ in range(5)), key=abs
    )  # realtime - monotonic
    lo, hi = ports
    recs: list[tuple[int, int, int, bytes]] = []
    ready.set()
    while not stop.is_set():
        try:
            data, anc, _flags, addr = sock.recvmsg(2048, 64)
        except TimeoutError:
            continue
        if addr[2] == _PACKET_OUTGOING:  # lo shows each datagram twice
            continue
        ihl = (data[14] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", data, 14 + ihl)
        if not (lo <= sport < hi or lo <= dport < hi):
            continue
        t = 0
        for level, kind, val in anc:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", val[:16])
                t = sec * 1_000_000_000 + nsec - offset
        recs.append((t or time.monotonic_ns(), sport, dport, data[14 + ihl + 8 :]))
    Path(out_path).write_bytes(pickle.dumps(recs))


class WireTap:
    """The UDP traffic of a port range on lo, recorded by a child process."""

    def __init__(self, path: Path, ports: tuple[int, int]) -> None:
        ctx = mp.get_context("fork")
        self.path = path
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._proc = ctx.Process(target=_tap, args=(str(path), ports, self._ready, self._stop))

    def __enter__(self) -> WireTap:
        self._proc.start()
        if not self._ready.wait(5):
            raise RuntimeError("wire tap did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(10)

    def packets(self) -> list[tuple[int, int, int, bytes]]:
        return pickle.loads(self.path.read_bytes())


def check_tap_allowed() -> None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP)).close()
    except PermissionError:
        raise SystemExit(
            "bench.latency records the wire with an AF_PACKET socket: run it as root or give "
            "the interpreter CAP_NET_RAW (setcap cap_net_raw+ep $(readlink -f $(which python)))"
        ) from None


# ---------------------------------------------------------------- packets → times


_ULAW = None


def _pcmu_dbfs(payload: bytes) -> float:
    global _ULAW
    if _ULAW is None:
        from telephony_bot.media.codecs.g711 import ulaw_decode

        _ULAW = np.frombuffer(ulaw_decode(bytes(range(256))), "<i2").astype(np.float64)
    x = _ULAW[np.frombuffer(payload, np.uint8)]
    ms = float(np.mean(x * x)) if x.size else 0.0
    return 10 * math.log10(ms / 32768**2) if ms > 0 else -120.0


def _pcm_dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    ms = float(np.mean(x * x)) if x.size else 0.0
    return 10 * math.log10(ms / 32768**2) if ms > 0 else -120.0


@dataclass
class Flow:
    """One call's RTP on the wire: (time s, dBFS) per PCMU packet, each way."""

    to_engine: list[tuple[float, float]] = field(default_factory=list)
    to_caller: list[tuple[float, float]] = field(default_factory=list)
    ok_200: float | None = None


def flows(packets: list[tuple[int, int, int, bytes]], trials: list[Trial]) -> None:
    by_rtp = {t.rtp_port: t for t in trials}
    by_sip = {t.sip_port: t for t in trials}
    invite_ok = re.compile(rb"^SIP/2\.0 200 .*?\r\nCSeq:\s*\d+\s+INVITE", re.S | re.I)
    for t_ns, sport, dport, payload in packets:
        t = t_ns / 1e9
        if dport in by_sip and by_sip[dport].flow.ok_200 is None and invite_ok.match(payload):
            by_sip[dport].flow.ok_200 = t
            continue
        tr = by_rtp.get(sport) or by_rtp.get(dport)
        if tr is None or len(payload) < 12 or (payload[0] >> 6) != 2:
            continue
        if payload[1] & 0x7F != 0:  # PCMU only (no DTMF events, no RTCP)
            continue
        hdr = 12 + 4 * (payload[0] & 0x0F)
        level = _pcmu_dbfs(payload[hdr:])
        (tr.flow.to_engine if sport == tr.rtp_port else tr.flow.to_caller).append((t, level))


def _first_voiced(seq: list[tuple[float, float]], after: float) -> float | None:
    return next((t for t, lv in seq if t >= after and lv > VOICED_DBFS), None)


def _silence_start(seq: list[tuple[float, float]], after: float, run: int = 10) -> float | None:
    pts = [(t, lv) for t, lv in seq if t >= after]
    for i in range(len(pts) - run + 1):
        if all(lv < SILENT_DBFS for _, lv in pts[i : i + run]):
            return pts[i][0]
    return None


# ---------------------------------------------------------------- trials


@dataclass
class Trial:
    name: str
    sip_port: int
    rtp_port: int
    proc: subprocess.Popen[bytes] | None = None
    report: dict[str, Any] = field(default_factory=dict)
    flow: Flow = field(default_factory=Flow)


_port_base = 42000 + (os.getpid() % 50) * 200


def _free_pair() -> int:
    """An even UDP port with the next one free (RTP + RTCP), for a caller."""
    global _port_base
    while True:
        _port_base = 42000 + (_port_base - 42000 + 2) % 16000
        p = _port_base
        if engine._is_free(p) and engine._is_free(p + 1):
            return p


def _dial(tmp: Path, port: int, user: str, name: str, *args: str) -> Trial:
    rtp = _free_pair()
    sip = _free_pair()  # even or not, it does not matter for SIP
    tr = Trial(name, sip, rtp)
    tr.proc = subprocess.Popen(
        engine.cli(
            "dial",
            f"sip:{user}@127.0.0.1:{port}",
            "--report",
            str(tmp / f"{name}.json"),
            "--from-user",
            name,
            "--local-port",
            str(sip),
            "--rtp-port",
            str(rtp),
            "--rate",
            str(RATE),
            *args,
        ),  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=engine.REPO,
    )
    return tr


def _finish(tmp: Path, trials: list[Trial]) -> None:
    for tr in trials:
        assert tr.proc is not None
        tr.proc.wait(60)
        path = tmp / f"{tr.name}.json"
        tr.report = json.loads(path.read_text()) if path.exists() else {"answered": False}


def run_rounds(
    tmp: Path, port: int, user: str, prefix: str, n: int, conc: int, *args: str
) -> list[Trial]:
    out: list[Trial] = []
    for start in range(0, n, conc):
        batch = []
        for i in range(start, min(n, start + conc)):
            batch.append(_dial(tmp, port, user, f"{prefix}{i}", *args))
            time.sleep(0.05)  # not all INVITEs in one tick
        _finish(tmp, batch)
        out += batch
    return out


class _BenchServer(ScriptedRealtimeServer):
    """The scripted server, greeting on every connection (not once per server)."""

    def _next_reply(self, *, explicit: bool) -> ScriptedReply:
        if explicit and self.greeting is not None:
            return self.greeting
        return ScriptedReply()


def _plan(tmp: Path, server: ScriptedRealtimeServer, key_env: str) -> Path:
    d = {
        "provider": "openai",
        "instructions": "bench trial {caller}",
        "voice": "alloy",
        "greeting": "",
        "openai": {"model": "gpt-4o-realtime-preview-2024-12-17", "dialect": "preview",
                   "base_url": server.url, "api_key_env": key_env},
    }  # fmt: skip
    path = tmp / "latency-plan.yaml"
    path.write_text(json.dumps({"version": 1, "defaults": d}))
    return path


def _server_times(server: ScriptedRealtimeServer) -> dict[str, dict[str, Any]]:
    """Per trial (by the caller id in its instructions): connection index, times of voiced
    appends received and of audio deltas sent."""
    conns: dict[int, str] = {}
    for ev in server.received:
        if ev.type == "session.update":
            m = re.search(r"bench trial ([\w-]+)", json.dumps(ev.data))
            if m:
                conns.setdefault(ev.conn, m.group(1))
    out: dict[str, dict[str, Any]] = {
        name: {"appends": [], "deltas": [], "update": None} for name in conns.values()
    }
    for ev in server.received:
        name = conns.get(ev.conn)
        if name is None:
            continue
        if ev.type == "input_audio_buffer.append":
            level = _pcm_dbfs(__import__("base64").b64decode(ev.data.get("audio", "")))
            out[name]["appends"].append((ev.t, level))
        elif ev.type == "session.update" and out[name]["update"] is None:
            out[name]["update"] = ev.t
    for ev in server.sent:
        name = conns.get(ev.conn)
        if name is not None and ev.type in ("response.audio.delta", "response.output_audio.delta"):
            out[name]["deltas"].append(ev.t)
    return out


def realtime_trials(tmp: Path, n: int, conc: int, model_ms: int) -> dict[str, list[dict]]:
    key_env = "TB_BENCH_REALTIME_KEY"
    os.environ[key_env] = "sk-bench-not-a-key"
    greeting = ScriptedReply(
        pcm=audio.pcm24(audio.tone(700, 4.0, 24000, dbfs=-14)), transcript="A long hello",
        delay_ms=model_ms,
    )  # fmt: skip
    talk = audio.write_wav(tmp / "talk.wav", audio.speech_like(TALK_S, RATE), RATE)
    dial_args = ("--play", str(talk), "--play-at", str(PLAY_AT), "--duration", str(CALL_S))
    results: dict[str, list[dict]] = {}
    server = _BenchServer(greeting=greeting, speech_onset_ms=300)
    server.start()
    try:
        plan = _plan(tmp, server, key_env)
        for mode, extra in (("prewarm", ()), ("no_prewarm", ("--no-prewarm",))):
            with engine.running(tmp, "worker", "--dialplan", str(plan), *extra, name=mode) as eng:
                _warm_up(tmp, eng.sip_port)
                with WireTap(tmp / f"{mode}.tap", (1024, 65536)) as tap:
                    trials = run_rounds(tmp, eng.sip_port, "100", f"{mode}-", n, conc, *dial_args)
                    time.sleep(0.5)
                flows(tap.packets(), trials)
            srv = _server_times(server)
            results[mode] = [_realtime_metrics(tr, srv.get(tr.name)) for tr in trials]
    finally:
        server.stop()
    return results


def _warm_up(tmp: Path, port: int) -> None:
    """One call first: a fresh worker's first call pays imports and allocations."""
    engine.dial(tmp, port, "--duration", "1", name=f"warm-{port}")


def _realtime_metrics(tr: Trial, srv: dict[str, Any] | None) -> dict[str, Any]:
    f = tr.flow
    m: dict[str, Any] = {"trial": tr.name, "answered": bool(tr.report.get("answered"))}
    if f.ok_200 is None or not m["answered"]:
        return m
    greet = _first_voiced(f.to_caller, f.ok_200)
    onset = _first_voiced(f.to_engine, f.ok_200)
    if greet is not None:
        m["greeting_ms"] = (greet - f.ok_200) * 1000
    if onset is not None:
        stop = _silence_start(f.to_caller, onset)
        if stop is not None and greet is not None and greet < onset:
            m["barge_in_ms"] = (stop - onset) * 1000
    if srv is not None:
        if onset is not None:
            arrived = _first_voiced(srv["appends"], onset - 0.005)
            if arrived is not None:
                m["uplink_ms"] = (arrived - onset) * 1000
                # The engine sends its RTP in the same media tick that hands the caller's
                # frame to Python: the last tick before the append arrived is that tick.
                ticks = [t for t, _ in f.to_caller if t <= arrived]
                if ticks and arrived - ticks[-1] < 0.02:
                    m["uplink_python_ms"] = (arrived - ticks[-1]) * 1000
        if srv["deltas"] and greet is not None and srv["deltas"][0] > f.ok_200:
            m["downlink_ms"] = (greet - srv["deltas"][0]) * 1000
        if srv["update"] is not None:
            m["session_update_before_200ok_ms"] = (f.ok_200 - srv["update"]) * 1000
    return m


def round_trip_trials(tmp: Path, n: int, conc: int, *worker_args: str) -> list[dict[str, Any]]:
    talk = audio.write_wav(tmp / "rt.wav", audio.speech_like(0.8, RATE), RATE)
    args = ("--play", str(talk), "--play-at", "0.6", "--duration", "1.8")
    label = "loop" if "--media-loopback" in worker_args else "echo"
    with engine.running(tmp, "worker", *worker_args, name=label) as eng:
        _warm_up(tmp, eng.sip_port)
        with WireTap(tmp / f"{label}.tap", (1024, 65536)) as tap:
            trials = run_rounds(tmp, eng.sip_port, "100", f"{label}-", n, conc, *args)
            time.sleep(0.5)
        flows(tap.packets(), trials)
    out = []
    for tr in trials:
        f = tr.flow
        onset = _first_voiced(f.to_engine, f.ok_200 or 0)
        back = _first_voiced(f.to_caller, onset) if onset is not None else None
        m: dict[str, Any] = {"trial": tr.name}
        if back is not None and onset is not None:
            m["round_trip_ms"] = (back - onset) * 1000
        out.append(m)
    return out


# ---------------------------------------------------------------- report


def stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    v = np.array(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(v, 50)), 1),
        "p95": round(float(np.percentile(v, 95)), 1),
        "max": round(float(v.max()), 1),
        "min": round(float(v.min()), 1),
    }


ROWS = [
    ("greeting_after_200ok_prewarm", "greeting after 200 OK, pre-warm (default)", 300),
    ("greeting_after_200ok_no_prewarm", "greeting after 200 OK, without pre-warm", 300),
    ("uplink", "engine uplink: caller RTP → provider socket", 20),
    ("uplink_python_part", "… of which Python: media tick → provider socket", None),
    ("downlink", "engine downlink: provider delta → RTP", 20),
    ("barge_in", "barge-in: caller speech onset → bot silent (wire)", 150),
    ("echo_round_trip", "echo provider: caller RTP → echoed RTP (both ways, no socket)", None),
    ("pjmedia_loopback_round_trip", "pjmedia loopback only: caller RTP → RTP back", None),
]


def table(data: dict[str, Any]) -> str:
    lines = ["| measure (ms) | n | p50 | p95 | max | target |", "|---|---|---|---|---|---|"]
    for key, label, target in ROWS:
        s = data["stats"].get(key, {"n": 0})
        lines.append(
            f"| {label} | {s.get('n', 0)} | {s.get('p50', '-')} | {s.get('p95', '-')} | "
            f"{s.get('max', '-')} | {'≤ ' + str(target) if target else ''} |"
        )
    lines.append(
        f"\nscripted model: first audio {data['model_ms']} ms after response.create; "
        f"{data['concurrency']} calls at a time; {data['machine']}, {data['date']}, "
        f"{data['seconds']} s"
    )
    return "\n".join(lines)


def measure(trials: int, conc: int, model_ms: int) -> dict[str, Any]:
    check_tap_allowed()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rt = realtime_trials(tmp, trials, conc, model_ms)
        echo = round_trip_trials(tmp, trials, conc, "--provider", "echo")
        loop = round_trip_trials(
            tmp, max(8, trials // 3), conc, "--media-loopback", "--provider", "echo"
        )

    def col(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [r[key] for r in rows if key in r]

    allrt = rt["prewarm"] + rt["no_prewarm"]
    data: dict[str, Any] = {
        "stats": {
            "greeting_after_200ok_prewarm": stats(col(rt["prewarm"], "greeting_ms")),
            "greeting_after_200ok_no_prewarm": stats(col(rt["no_prewarm"], "greeting_ms")),
            "uplink": stats(col(allrt, "uplink_ms")),
            "uplink_python_part": stats(col(allrt, "uplink_python_ms")),
            "downlink": stats(col(rt["no_prewarm"], "downlink_ms")),
            "barge_in": stats(col(allrt, "barge_in_ms")),
            "echo_round_trip": stats(col(echo, "round_trip_ms")),
            "pjmedia_loopback_round_trip": stats(col(loop, "round_trip_ms")),
            "session_update_before_200ok_prewarm": stats(
                col(rt["prewarm"], "session_update_before_200ok_ms")
            ),
        },
        "answered": {k: sum(r["answered"] for r in v) for k, v in rt.items()},
        "trials": {"realtime": rt, "echo": echo, "loopback": loop},
        "model_ms": model_ms,
        "concurrency": conc,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.monotonic() - t0),
    }
    return data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=32, help="calls per scenario (default 32)")
    ap.add_argument("--concurrency", type=int, default=4, help="calls at a time (default 4)")
    ap.add_argument("--model-ms", type=int, default=300, help="scripted model's first audio")
    args = ap.parse_args(argv)
    data = measure(args.trials, args.concurrency, args.model_ms)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
