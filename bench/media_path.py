"""Media-path benchmark: CPU µs per 20 ms frame of every Python-side stage, for 8 kHz and
24 kHz bridge ports, the calls per core that implies, and one end-to-end figure: the CPU of
a real worker process carrying echo calls from SIPp.

Stage by stage, in this process, over many frames of speech-like audio, timed with the
thread's CPU clock (CLOCK_THREAD_CPUTIME_ID: other processes on the machine do not inflate
it). Each stage runs what the engine runs on the live path:

uplink (caller → provider), per 20 ms frame
  port_in       `BridgePort.onFrameReceived`: SWIG frame attributes, framebuf copy out of the
                pjsua2 byte vector, ring push (the director call from C is not included)
  resample_up   8 kHz port only: the port's 8 kHz frame to the session's 24 kHz (`Resampler`)
  bridge_read   `MediaBridge.read_frame()` on asyncio (frame already there: no wake-up)
  wakeup        asyncio wake-up per frame when the loop waits for it (call_soon_threadsafe,
                self-pipe, epoll) — both threads, measured as process CPU
  vad           `FrameVad.process` (24 kHz → 8 kHz resampling, webrtcvad, level)
  turn_policy   the session's per-frame barge-in bookkeeping (`TurnPolicy` and its ledger)
  append_json   `input_audio_buffer.append` as the client builds it: base64 + JSON text
  ws_send       websockets framing and masking of that text frame (sans-I/O, no syscall)

downlink (provider → caller), per 20 ms of bot audio (deltas of 40 ms, as the scripted
server and typical providers send, cost divided by 2)
  ws_recv       websockets parsing of the delta's text frame
  delta_parse   `RealtimeSession._handle`: json + pydantic + base64 decode + event mapping
  session_write the session's downlink work for a delta (`MediaBridge.write`, playout levels,
                `TurnPolicy.bot_audio`)
  bridge_pull   `MediaBridge.pull_playout_frame`
  resample_down 8 kHz port only: 24 kHz → 8 kHz
  port_out      `BridgePort.onFrameRequested`: ring pull, framebuf copy into the vector, SWIG

The engine's ports run at the bridge rate (8 kHz; `--port-rate 24000` makes pjmedia
resample in C instead): the 8 kHz column is the live configuration, the 24 kHz one what
Python pays when pjmedia delivers 24 kHz frames (then pjmedia's resampler runs on its clock
thread, which only the end-to-end figure sees).

Tight loops flatter numpy: on a live call each frame meets cold caches. So the whole
asyncio side is also measured in situ — four real `CallSession`s with the echo provider,
fed at the real 20 ms pace by a thread standing in for pjmedia's clock (thread CPU per call
and frame). The end-to-end figures are the CPU of a worker process (all threads, from
/proc schedstat) carrying 4 SIPp calls, minus its idle CPU: echo calls through the engine
(native ports: the frame callbacks run in C and `port_in`/`port_out` above are not paid),
the same with pjsua2 `AudioMediaPort`s (`--media-port python`, the fallback, which pays
them plus the director calls), and the same calls echoed inside pjmedia with no Python at
all (the floor).

Run: `python -m bench.media_path` (add `--no-e2e` to skip the worker runs).
Writes bench/results/media_path.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "media_path.json"
FRAMES = 3000  # frames per timing run (60 s of audio)
REPEATS = 5
FRAME_MS = 20

UPLINK = ("port_in", "resample_up", "bridge_read", "wakeup", "vad", "turn_policy",
          "append_json", "ws_send")  # fmt: skip
DOWNLINK = ("ws_recv", "delta_parse", "session_write", "bridge_pull", "resample_down",
            "port_out")  # fmt: skip


def _cpu_us_per_call(fn: Callable[[], Any], n: int, repeats: int = REPEATS) -> float:
    """Thread CPU µs per call of fn, best of `repeats` runs of n calls."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time_ns() - t0) / n / 1000)
    return best


def _frames(rate: int, n: int) -> list[bytes]:
    from tests.support.audio import speech_like

    x = speech_like(n * FRAME_MS / 1000 + 0.1, rate)
    step = rate * FRAME_MS // 1000
    return [x[i * step : (i + 1) * step].astype("<i2").tobytes() for i in range(n)]


class _Cycle:
    """Hands out the frames of a list in turn (cheap: an index and a modulo)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.i = 0

    def next(self) -> Any:
        self.i = (self.i + 1) % len(self.items)
        return self.items[self.i]


def stage_costs(port_rate: int, frames: int = FRAMES) -> dict[str, float]:
    """CPU µs per 20 ms frame of each stage, for a bridge port at `port_rate`."""
    import pjsua2 as pj

    from telephony_bot.media.bridge import MediaBridge
    from telephony_bot.media.resample import Resampler
    from telephony_bot.media.vad import FrameVad, frame_dbfs
    from telephony_bot.providers.openai import protocol as p
    from telephony_bot.session.ledger import PlayoutLedger
    from telephony_bot.session.turns import TurnPolicy
    from telephony_bot.sip import framebuf
    from telephony_bot.sip.media_port import BridgePort

    out: dict[str, float] = {}
    loop = asyncio.new_event_loop()
    fb = framebuf.select()
    port_frames = _Cycle(_frames(port_rate, 500))
    pcm24 = _Cycle(_frames(24000, 500))

    # ---- uplink ----
    bridge = MediaBridge(loop, sample_rate=port_rate, inbound_max_ms=10_000_000)
    port = BridgePort(fb, port_rate)
    port.attach(bridge)
    rx = pj.MediaFrame()
    rx.type = pj.PJMEDIA_FRAME_TYPE_AUDIO

    def port_in() -> None:
        fb.write(rx.buf, port_frames.next())  # (fills the vector as pjmedia would; ~2 µs)
        port.onFrameReceived(rx)

    fill_only = _cpu_us_per_call(lambda: fb.write(rx.buf, port_frames.next()), frames)
    out["port_in"] = max(0.0, _cpu_us_per_call(port_in, frames) - fill_only)
    while bridge.crossing.pop() is not None:  # drop the frames port_in queued
        pass

    if port_rate != 24000:
        up = Resampler(port_rate, 24000)
        out["resample_up"] = _cpu_us_per_call(lambda: up.process(port_frames.next()), frames)
    else:
        out["resample_up"] = 0.0

    async def read_all(n: int) -> None:
        for _ in range(n):
            await bridge.read_frame()

    def bridge_read_run(n: int) -> float:
        for _ in range(n):
            bridge.push_caller_frame(b"")
        t0 = time.thread_time_ns()
        loop.run_until_complete(read_all(n))
        return (time.thread_time_ns() - t0) / n / 1000

    out["bridge_read"] = min(bridge_read_run(frames) for _ in range(REPEATS))
    out["wakeup"] = _wakeup_cost(loop, port_rate, min(frames, 1000))

    vad = FrameVad()
    out["vad"] = _cpu_us_per_call(lambda: vad.process(pcm24.next()), frames)

    policy = TurnPolicy(ledger=PlayoutLedger(level=frame_dbfs))
    clock = [0]

    def turn_policy() -> None:
        clock[0] += FRAME_MS
        now = clock[0]
        policy.played(now, None, now)
        policy.caller_frame(False, -60.0, now)
        policy.tick(now)

    out["turn_policy"] = _cpu_us_per_call(turn_policy, frames)
    out["append_json"] = _cpu_us_per_call(lambda: p.input_audio_append_text(pcm24.next()), frames)
    out["ws_send"] = _ws_send_cost(p.input_audio_append_text(pcm24.next()).encode(), frames)

    # ---- downlink ----
    delta_events = [_delta_event(pcm24.items[i] + pcm24.items[i + 1]) for i in range(0, 400, 2)]
    deltas = _Cycle(delta_events)
    out["ws_recv"] = _ws_recv_cost([d.encode() for d in delta_events], frames) / 2
    out["delta_parse"] = _delta_parse_cost(deltas, frames) / 2

    out_bridge = MediaBridge(loop, sample_rate=24000, playout_max_ms=10_000_000)
    policy2 = TurnPolicy(ledger=PlayoutLedger(level=frame_dbfs))
    pcm40 = _Cycle([pcm24.items[i] + pcm24.items[i + 1] for i in range(0, 400, 2)])

    def session_write() -> None:
        pcm = pcm40.next()
        clock[0] += 40
        out_bridge.write(pcm)
        policy2.bot_audio("item_1", len(pcm) // 48, clock[0], pcm)

    def session_write_run() -> float:
        n = frames // 2
        t0 = time.thread_time_ns()
        for _ in range(n):
            session_write()
        us = (time.thread_time_ns() - t0) / n / 1000
        policy2.playout_cleared(clock[0])
        out_bridge.clear()
        return us

    out["session_write"] = min(session_write_run() for _ in range(REPEATS)) / 2

    play = MediaBridge(loop, sample_rate=port_rate, playout_max_ms=10_000_000)
    blob = b"".join(port_frames.items)

    def bridge_pull_run() -> float:
        play.clear()
        while play.queued_ms < frames * FRAME_MS:
            play.write(blob)
        t0 = time.thread_time_ns()
        for _ in range(frames):
            play.pull_playout_frame()
        return (time.thread_time_ns() - t0) / frames / 1000

    out["bridge_pull"] = min(bridge_pull_run() for _ in range(REPEATS))

    if port_rate != 24000:
        down = Resampler(24000, port_rate)
        out["resample_down"] = _cpu_us_per_call(lambda: down.process(pcm24.next()), frames)
    else:
        out["resample_down"] = 0.0

    class _Feed:
        frame_bytes = port_rate * FRAME_MS // 1000 * 2

        def push_caller_frame(self, pcm: bytes) -> None:
            pass

        def pull_playout_frame(self) -> bytes:
            return port_frames.next()

    oport = BridgePort(fb, port_rate)
    oport.bridge = _Feed()
    tx = pj.MediaFrame()
    feed_only = _cpu_us_per_call(oport.bridge.pull_playout_frame, frames)
    out["port_out"] = max(
        0.0, _cpu_us_per_call(lambda: oport.onFrameRequested(tx), frames) - feed_only
    )
    loop.close()
    return {k: round(v, 2) for k, v in out.items()}


def _wakeup_cost(loop: asyncio.AbstractEventLoop, port_rate: int, n: int) -> float:
    """Process CPU per frame of waking the asyncio loop for a frame it awaits, beyond the
    push and read themselves: a producer thread pushes a frame every 2 ms; the same run
    without pushes (the producer still sleeps) is the baseline."""
    from telephony_bot.media.bridge import MediaBridge

    frame = b"\x00" * (port_rate * FRAME_MS // 1000 * 2)

    def run(push: bool) -> float:
        bridge = MediaBridge(loop, sample_rate=port_rate)
        done = threading.Event()

        def producer() -> None:
            for _ in range(n):
                time.sleep(0.002)
                if push:
                    bridge.push_caller_frame(frame)
            done.set()

        async def consume() -> None:
            if push:
                for _ in range(n):
                    await bridge.read_frame()
            else:
                await asyncio.to_thread(done.wait)

        t = threading.Thread(target=producer)
        c0 = time.process_time_ns()
        t.start()
        loop.run_until_complete(consume())
        t.join()
        return (time.process_time_ns() - c0) / n / 1000

    best_push = min(run(True) for _ in range(3))
    best_base = min(run(False) for _ in range(3))
    return max(0.0, best_push - best_base)


def _delta_event(pcm: bytes) -> str:
    return json.dumps(
        {
            "type": "response.audio.delta",
            "event_id": "event_B3kz2N8QpX4rT1vY7mJ9c",
            "response_id": "resp_B3kz2N8QpX4rT1vY7mJ9d",
            "item_id": "item_B3kz2N8QpX4rT1vY7mJ9e",
            "output_index": 0,
            "content_index": 0,
            "delta": base64.b64encode(pcm).decode(),
        }
    )


def _delta_parse_cost(deltas: _Cycle, frames: int) -> float:
    from telephony_bot.providers.base import SessionConfig
    from telephony_bot.providers.openai.client import RealtimeSession
    from telephony_bot.providers.openai.endpoints import compatible_endpoint

    loop = asyncio.new_event_loop()
    try:
        ep = compatible_endpoint("ws://127.0.0.1:1/v1", "m", None, "preview")
        sess = RealtimeSession(ep, SessionConfig(provider="openai"))
        q = sess._queue

        def handle() -> None:
            sess._handle(deltas.next())
            q.get_nowait()

        return _cpu_us_per_call(handle, frames // 2)
    finally:
        loop.close()


def _open_protocol() -> Any:
    """The client side of an open WebSocket connection (sans-I/O, as the engine's client)."""
    from websockets.protocol import Protocol, Side, State

    return Protocol(Side.CLIENT, state=State.OPEN, max_size=None)


def _ws_send_cost(text: bytes, frames: int) -> float:
    proto = _open_protocol()

    def send() -> None:
        proto.send_text(text)
        proto.data_to_send()

    return _cpu_us_per_call(send, frames)


def _ws_recv_cost(texts: list[bytes], frames: int) -> float:
    from websockets.frames import OP_TEXT, Frame

    proto = _open_protocol()
    wire = _Cycle([Frame(OP_TEXT, t).serialize(mask=False, extensions=[]) for t in texts])

    def recv() -> None:
        proto.receive_data(wire.next())
        proto.events_received()

    return _cpu_us_per_call(recv, frames // 2)


# ---------------------------------------------------------------- end to end (real worker)


def _thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time of every thread of a process by thread name, ns (schedstat: no 10 ms tick
    rounding). pjmedia's clock thread is "clock", asyncio's is "python"."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[name] = out.get(name, 0) + int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return out


def _cpu_pct(pid: int, seconds: float) -> tuple[float, dict[str, float]]:
    a, t = _thread_cpu_ns(pid), time.monotonic()
    time.sleep(seconds)
    b, dt = _thread_cpu_ns(pid), time.monotonic() - t
    per = {k: (v - a.get(k, 0)) / 1e9 / dt * 100 for k, v in b.items()}
    return sum(per.values()), {k: round(v, 2) for k, v in per.items() if v >= 0.01}


def end_to_end(
    tmp: Path, *worker_args: str, calls: int = 4, seconds: float = 12.0
) -> dict[str, Any]:
    """CPU of one worker with `calls` calls from SIPp (PCMU), minus its idle CPU."""
    from tests.support import engine
    from tests.support.sipp import finish, free_udp_port, sipp_available, start_sipp

    if not sipp_available():
        raise RuntimeError("the end-to-end figure needs SIPp (apt-get install sip-tester)")
    out: dict[str, Any] = {"worker_args": " ".join(worker_args)}
    with engine.running(tmp, "worker", *worker_args, name="media-path") as eng:
        pid = eng.proc.pid
        time.sleep(2)
        out["idle_worker_cpu_pct"] = round(min(_cpu_pct(pid, 3)[0] for _ in range(2)), 2)
        sip = free_udp_port()
        media = free_udp_port(pair=True, exclude={sip, sip + 1, sip + 2})
        run = start_sipp(
            "uac_rtp", f"127.0.0.1:{eng.sip_port}", calls=calls, concurrency=calls, rate=100,
            duration_ms=int((seconds + 5) * 1000), local_port=sip, media_port=media, workdir=tmp,
        )  # fmt: skip
        eng.wait_for("media ready", calls)
        time.sleep(1.5)
        busy, threads = _cpu_pct(pid, seconds)
        res = finish(run)
    out["calls_ok"] = res.successful
    out["calls"] = calls
    out["busy_worker_cpu_pct"] = round(busy, 2)
    out["threads_cpu_pct"] = threads
    pct = (busy - out["idle_worker_cpu_pct"]) / calls
    out["cpu_pct_per_call"] = round(pct, 3)
    out["calls_per_core"] = int(100 / pct) if pct > 0 else None
    return out


# ---------------------------------------------------------------- report


def summarise(stages: dict[str, float]) -> dict[str, float]:
    up = sum(stages[k] for k in UPLINK)
    down = sum(stages[k] for k in DOWNLINK)
    per_call_pct = (up + down) * (1000 / FRAME_MS) / 1e6 * 100  # % of a core
    return {
        "uplink_us_per_frame": round(up, 1),
        "downlink_us_per_frame": round(down, 1),
        "total_us_per_frame": round(up + down, 1),
        "python_cpu_pct_per_call": round(per_call_pct, 3),
        "calls_per_core_python_only": int(100 / per_call_pct) if per_call_pct else 0,
    }


def table(data: dict[str, Any]) -> str:
    s8, s24 = data["stages_us"]["8000"], data["stages_us"]["24000"]
    lines = ["| stage (CPU µs per 20 ms frame) | 8 kHz port | 24 kHz port |", "|---|---|---|"]
    for k in UPLINK + DOWNLINK:
        lines.append(f"| {'↑' if k in UPLINK else '↓'} {k} | {s8[k]} | {s24[k]} |")
    m8, m24 = data["summary"]["8000"], data["summary"]["24000"]
    for k in ("uplink_us_per_frame", "downlink_us_per_frame", "total_us_per_frame",
              "python_cpu_pct_per_call", "calls_per_core_python_only"):  # fmt: skip
        lines.append(f"| **{k}** | {m8[k]} | {m24[k]} |")
    loop = data.get("session_loop_us", {})
    if loop:
        lines.append(
            f"| **asyncio side in situ: 4 echo sessions at the real 20 ms pace, per call and "
            f"frame** | {loop.get('8000')} | {loop.get('24000')} |"
        )
    for key, what in (
        ("end_to_end", "echo calls through the engine"),
        ("end_to_end_pjmedia_loopback", "calls echoed inside pjmedia (no Python: the floor)"),
    ):
        e2e = data.get(key)
        if e2e:
            lines.append(
                f"\nEnd to end, one worker, {e2e['calls']} SIPp calls (PCMU), {what}: "
                f"**{e2e['cpu_pct_per_call']} % of a core per call** (busy "
                f"{e2e['busy_worker_cpu_pct']} %, idle {e2e['idle_worker_cpu_pct']} %, threads "
                f"{e2e['threads_cpu_pct']}) → {e2e['calls_per_core']} calls per core"
            )
    lines.append(f"\n{data.get('machine', '')}, {data.get('date', '')}")
    return "\n".join(lines)


def measure(e2e: bool = True, frames: int = FRAMES) -> dict[str, Any]:
    from telephony_bot import log
    from telephony_bot.sip.endpoint_config import new_endpoint
    from telephony_bot.sip.pjlog import quiet_stdout

    log.setup(level="warning")
    data: dict[str, Any] = {"stages_us": {}, "summary": {}, "session_loop_us": {}}
    ep = new_endpoint()  # ports and frames look their library instance up
    try:
        for rate in (8000, 24000):
            st = stage_costs(rate, frames)
            data["stages_us"][str(rate)] = st
            data["summary"][str(rate)] = summarise(st)
    finally:
        with quiet_stdout():
            ep.libDestroy()
    for rate in (8000, 24000):
        data["session_loop_us"][str(rate)] = round(session_loop_cost(rate), 1)
    if e2e:
        with tempfile.TemporaryDirectory() as d:
            data["end_to_end"] = end_to_end(Path(d), "--provider", "echo")
            data["end_to_end_pjsua2_ports"] = end_to_end(
                Path(d), "--provider", "echo", "--media-port", "python"
            )
            data["end_to_end_pjmedia_loopback"] = end_to_end(
                Path(d), "--media-loopback", "--provider", "echo"
            )
    data["frames_per_run"] = frames
    data["timer"] = "thread CPU time (CLOCK_THREAD_CPUTIME_ID), best of 5 runs"
    data["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    data["date"] = time.strftime("%Y-%m-%d")
    return data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-e2e", action="store_true", help="skip the real-worker CPU run")
    ap.add_argument("--frames", type=int, default=FRAMES)
    ap.add_argument("--label", default="", help="also store the result under this label")
    args = ap.parse_args(argv)
    data = measure(e2e=not args.no_e2e, frames=args.frames)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["history"] = old.get("history", {})
    if args.label:
        data["history"][args.label] = {
            "summary": data["summary"],
            "session_loop_us": data["session_loop_us"],
            "end_to_end": data.get("end_to_end"),
            "end_to_end_pjsua2_ports": data.get("end_to_end_pjsua2_ports"),
            "end_to_end_pjmedia_loopback": data.get("end_to_end_pjmedia_loopback"),
            "date": data["date"],
        }
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))


# ---------------------------------------------------------------- the whole asyncio side


class _FakeCall:
    """A `CallPort` whose media bridge is fed by a thread standing in for pjmedia's clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port_rate: int, n: int) -> None:
        from telephony_bot.callport import CallOffered
        from telephony_bot.media.bridge import MediaBridge

        self.call_id = f"bench{n}"
        self.offer = CallOffered(self.call_id, "", "100", "dial", "", "", "127.0.0.1")
        self.media = MediaBridge(loop, sample_rate=port_rate, port_rate=port_rate)
        self.events: asyncio.Queue[Any] = asyncio.Queue()

    async def answer(self) -> None:
        pass

    async def reject(self, status_code: int, reason: str = "") -> None:
        pass

    async def hangup(self, reason: str = "normal") -> None:
        pass

    async def transfer(self, target: str) -> None:
        pass

    async def send_dtmf(self, digits: str) -> None:
        pass


def session_loop_cost(port_rate: int, calls: int = 4, ticks: int = 400) -> float:
    """asyncio-thread CPU µs per call and 20 ms frame of the whole echo path in Python:
    `calls` real `CallSession`s with the echo provider, fed by a thread that plays
    pjmedia's clock (a tick every 20 ms, as the real one: the session's time windows then
    hold what they hold on a call)."""
    from telephony_bot.callport import CallEnded
    from telephony_bot.providers.base import SessionConfig
    from telephony_bot.providers.echo import EchoProvider
    from telephony_bot.session.lifecycle import run_call
    from telephony_bot.session.settings import CallLimits, SessionOptions
    from telephony_bot.session.turns import BargeInSettings
    from telephony_bot.sip.media_port import TickWaker

    frames = _Cycle(_frames(port_rate, 500))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        fakes = [_FakeCall(loop, port_rate, i) for i in range(calls)]
        options = SessionOptions(barge_in=BargeInSettings(enabled=False))  # as app.py for echo
        tasks = [
            asyncio.create_task(
                run_call(c, EchoProvider(), SessionConfig(), CallLimits(), options)  # type: ignore[arg-type]
            )
            for c in fakes
        ]
        await asyncio.sleep(0.2)
        waker = TickWaker()
        warm = 25

        def clock() -> None:
            for _ in range(ticks + warm):
                time.sleep(0.02)
                for c in fakes:
                    waker.tick()
                    c.media.pull_playout_frame()
                for c in fakes:
                    waker.received(c.media, c.media.push_caller_frame(frames.next(), False))

        t = threading.Thread(target=clock)
        t.start()
        while fakes[0].media.stats.frames_in < warm:
            await asyncio.sleep(0.01)
        c0 = time.thread_time_ns()
        f0 = sum(c.media.stats.frames_in for c in fakes)
        await asyncio.to_thread(t.join)
        await asyncio.sleep(0.05)
        used = time.thread_time_ns() - c0
        n = sum(c.media.stats.frames_in for c in fakes) - f0
        for c in fakes:
            c.events.put_nowait(CallEnded(c.call_id, "remote", 200, "bye"))
        await asyncio.gather(*tasks)
        return used / n / 1000

    return min(asyncio.run(main()) for _ in range(2))


if __name__ == "__main__":
    main()
