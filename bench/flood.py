"""Flood bench: a lone worker and the front door (`serve --workers 2`) under INVITE floods
while a real call is live.

For each target and each flood, from an address of its own (127.0.0.2, .3, ...): a pjsua2
caller on 127.0.0.1 is in an echo call and plays speech all through the flood; SIPp sends
* well-formed INVITEs at 25, 50, 100 and 200 per second for FLOOD_S seconds (each answered
  call ACKed and hung up after 100 ms: `uac_short`),
* INVITEs it never ACKs (`uac_no_ack`) at 50 per second,
and a raw socket sends malformed INVITEs (an absurd CSeq, no To header, garbage) at 100 per
second; a first run without any flood is the control for the live call's audio. Measured:
whether the engine stayed up (no crash, no restart), whether the live call's echo came back
whole (100 ms pieces found in the recording), how many flood INVITEs were answered, refused
(and why), or left unanswered, and how long after the flood's last INVITE a legitimate
caller (127.0.0.1) is answered.

Writes bench/results/flood.json and prints a table. Run: `python -m bench.flood` (about 3
minutes; `--flood-s` to change the length of each flood).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench import report
from tests.support import audio, engine
from tests.support.sipp import finish, free_udp_port, start_sipp
from tests.support.sipraw import RawSip, invite

RESULTS = Path(__file__).parent / "results" / "flood.json"
RATE = 16000
RATES = (25, 50, 100, 200)
MALFORMED_RATE = 100
UNACKED_RATE = 50
_sources = (f"127.0.0.{i}" for i in itertools.count(2))


def _flood_sipp(
    scenario: str, port: int, rate: int, seconds: float, src: str, tmp: Path
) -> tuple[Any, float]:
    sip = free_udp_port(ip=src)
    proc = start_sipp(
        scenario, f"127.0.0.1:{port}", calls=int(rate * seconds), concurrency=max(50, rate * 3),
        rate=rate, duration_ms=100, local_port=sip, local_ip=src,
        media_port=free_udp_port(pair=True, exclude={sip}, ip=src), workdir=tmp,
        timeout_s=seconds + 20, extra=["-max_invite_retrans", "1", "-recv_timeout", "6000"],
    )  # fmt: skip
    return proc, time.monotonic() + seconds


def _malformed(port: int, src: str, seconds: float) -> tuple[dict[str, int], threading.Thread]:
    """Send malformed INVITEs for `seconds`; count the 400s that come back (the listening
    thread returned goes on for 3 s more: join it before reading the count)."""
    counts = {"sent": 0, "answered_400": 0}
    stop = time.monotonic() + seconds
    s = RawSip(src)

    def listen() -> None:
        s.sock.settimeout(0.5)
        while time.monotonic() < stop + 3:
            try:
                data = s.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                break
            if data.startswith(b"SIP/2.0 400 "):
                counts["answered_400"] += 1
        s.sock.close()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    n = 0
    start = time.monotonic()
    while time.monotonic() < stop:
        kind = n % 3
        if kind == 2:
            msg = os.urandom(200)
        else:
            msg, _ = invite(s, "127.0.0.1", port, drop=("To",) if kind == 1 else (),
                            extra="X-Api-Key: flood-secret")  # fmt: skip
            if kind == 0:
                msg = msg.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999999999999 INVITE")
        s.send(msg, ("127.0.0.1", port))
        n += 1
        counts["sent"] += 1
        time.sleep(max(0.0, start + n / MALFORMED_RATE - time.monotonic()))
    return counts, t


def _legit_after(port: int, tmp: Path, flood_end: float, name: str) -> float | None:
    """Seconds from the flood's last INVITE to a legitimate caller's 200 OK (tries for 20 s)."""
    while time.monotonic() < flood_end:
        time.sleep(0.01)
    deadline = flood_end + 20
    i = 0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        rep = engine.dial(tmp, port, "--duration", "0.5", "--timeout", "5", name=f"{name}-{i}")
        i += 1
        if rep["answered"]:
            return round(t0 - flood_end + (rep["setup_ms"] or 0) / 1000, 2)
        time.sleep(0.2)
    return None


def _metrics(admin_port: int) -> dict[str, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read()
    out: dict[str, int] = {}
    for m in re.finditer(rb'telephony_bot_invites_refused_total\{reason="(\w+)"\} (\S+)', text):
        out[m.group(1).decode()] = int(float(m.group(2)))
    return out


def _refusals(eng: engine.EngineProc, target: str, admin_port: int) -> dict[str, int]:
    counts = dict(_metrics(admin_port)) if admin_port else {}
    if target == "frontdoor":
        from telephony_bot.frontdoor import rpc
        from telephony_bot.frontdoor.service import default_run_dir

        for k, v in rpc.refusals(default_run_dir(eng.sip_port)).items():
            counts[f"front door: {k}"] = v
    return counts


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _alive(eng: engine.EngineProc, target: str) -> bool:
    if eng.proc.poll() is not None:
        return False
    if target == "frontdoor":
        return not eng.events("worker exited; restarting")
    return True


def run_flood(
    eng: engine.EngineProc, target: str, kind: str, rate: int, seconds: float, tmp: Path,
    admin_port: int,
) -> dict[str, Any]:  # fmt: skip
    src = next(_sources)
    wav = audio.write_wav(tmp / "speech.wav", audio.speech_like(seconds + 1.5, RATE), RATE)
    tag = f"{target}-{kind}-{rate}-{uuid.uuid4().hex[:4]}"
    before = _refusals(eng, target, admin_port)
    live = engine.dial_async(
        tmp, eng.sip_port, "--play", str(wav), "--play-at", "1.0",
        "--duration", str(seconds + 5), "--record", str(tmp / f"{tag}.wav"),
        "--rate", str(RATE), name=f"live-{tag}",
    )  # fmt: skip
    time.sleep(1.0)
    row: dict[str, Any] = {"target": target, "flood": kind, "rate_per_s": rate, "source": src}
    if kind == "none":  # the control: the same live call, no flood
        flood_end = time.monotonic() + seconds
        after_s = _legit_after(eng.sip_port, tmp, flood_end, f"after-{tag}")
        row.update(sent=0)
    elif kind == "malformed":
        flood_end = time.monotonic() + seconds
        sent, listener = _malformed(eng.sip_port, src, seconds)
        after_s = _legit_after(eng.sip_port, tmp, flood_end, f"after-{tag}")
        listener.join()
        row.update(sent=sent["sent"], answered_400=sent["answered_400"])
    else:
        scenario = "uac_short" if kind == "well-formed" else "uac_no_ack"
        proc, flood_end = _flood_sipp(scenario, eng.sip_port, rate, seconds, src, tmp)
        after_s = _legit_after(eng.sip_port, tmp, flood_end, f"after-{tag}")
        res = finish(proc)
        row.update(sent=int(rate * seconds), answered=res.successful, failed=res.failed,
                   unanswered=res.counter("FailedMaxUDPRetrans"))  # fmt: skip
    live.wait(60)
    rep = engine.read_report(tmp, f"live-{tag}")
    sent_pcm, _ = audio.read_wav(wav)
    got, _ = audio.read_wav(tmp / f"{tag}.wav")
    echo = audio.echo_pieces(sent_pcm, got, RATE)
    row.update(
        engine_up=_alive(eng, target),
        live_call_answered=bool(rep.get("answered")),
        live_audio_intact=echo.intact,
        live_audio_pieces_broken=f"{echo.broken}/{echo.pieces}",
        legit_answered_after_s=after_s,
        refused=_diff(_refusals(eng, target, admin_port), before),
    )
    return row


def run(seconds: float, tmp: Path) -> dict[str, Any]:
    rows = []
    floods = [("none", 0)] + [("well-formed", r) for r in RATES] + [
        ("unacked", UNACKED_RATE), ("malformed", MALFORMED_RATE)]  # fmt: skip
    for target in ("worker", "frontdoor"):
        admin = engine.free_port()
        if target == "worker":
            eng = engine.start(tmp, "worker", "--provider", "echo", "--admin-port", str(admin),
                               "--grace", "2", name="flood-worker")  # fmt: skip
        else:
            eng = engine.start(
                tmp, "serve", "--workers", "2", "--provider", "echo", "--grace", "2",
                "--admin-port", str(admin), ready_event="front door ready", name="flood-front",
            )  # fmt: skip
            eng.wait_for("worker listening", 2)
        try:
            for kind, rate in floods:
                row = run_flood(eng, target, kind, rate, seconds, tmp, admin)
                print(json.dumps(row), flush=True)
                rows.append(row)
                time.sleep(2)  # calls of the flood still ending
        finally:
            eng.stop()
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "flood_s": seconds,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood-s", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = run(args.flood_s, Path(tmp))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(report.flood(data))


if __name__ == "__main__":
    main()
