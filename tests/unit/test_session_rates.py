"""Audio crosses between the carrier's rate and the provider's once, in the session, and
only where they differ: a G.711 call (8 kHz) to the echo or to a G.711 model is never
resampled; to a 24 kHz model it is, once each way."""

from __future__ import annotations

import asyncio

import numpy as np

from telephony_bot.media.bridge import MediaBridge
from telephony_bot.providers.base import SessionConfig
from telephony_bot.providers.echo import EchoProvider
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, SessionOptions
from tests.support.fake_call import FakeCall, FakeProvider

FRAME_8K = 320  # 20 ms at 8 kHz, PCM16


def _speech_like_8k(frames: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(frames * 160) * 3000).clip(-32768, 32767).astype("<i2")
    raw = x.tobytes()
    return [raw[i : i + FRAME_8K] for i in range(0, len(raw), FRAME_8K)]


async def _call_at_8k(log: list[str]) -> FakeCall:
    call = FakeCall(log)
    call.media = MediaBridge(asyncio.get_running_loop(), sample_rate=8000)
    return call


async def test_an_8k_call_to_the_echo_comes_back_bit_for_bit() -> None:
    call = await _call_at_8k([])
    opts = SessionOptions(greeting=None, prewarm=False)
    session = CallSession(call, EchoProvider(), SessionConfig(), opts, CallLimits())  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    while not session.ctx.ready.is_set():
        await asyncio.sleep(0.01)
    assert session.ctx.session.audio_rate == 8000  # type: ignore[union-attr]
    sent = _speech_like_8k(25)
    for f in sent:
        call.media.push_caller_frame(f)
    got: list[bytes] = []
    for _ in range(200):
        await asyncio.sleep(0.005)
        while (frame := call.media.pull_playout_frame()) is not None:
            got.append(frame)
        if len(got) >= len(sent):
            break
    assert got[: len(sent)] == sent  # no resampler touched it
    call.end()
    await asyncio.wait_for(task, 5)


async def test_an_8k_call_to_a_24k_model_is_resampled_once_each_way() -> None:
    log: list[str] = []
    call = await _call_at_8k(log)
    provider = FakeProvider(log, first_audio_s=None)
    opts = SessionOptions(greeting=None, prewarm=False)
    session = CallSession(call, provider, SessionConfig(), opts, CallLimits())  # type: ignore[arg-type]
    received: list[bytes] = []
    task = asyncio.create_task(session.run())
    while not session.ctx.ready.is_set():
        await asyncio.sleep(0.01)

    async def send_audio(pcm: bytes) -> None:
        received.append(pcm)

    session.ctx.session.send_audio = send_audio  # type: ignore[union-attr,method-assign]
    for f in _speech_like_8k(10):
        call.media.push_caller_frame(f)
    while len(received) < 10:
        await asyncio.sleep(0.01)
    assert {len(r) for r in received} == {960}  # 20 ms at 24 kHz for the model
    # the model's 24 kHz reply reaches the 8 kHz media as 8 kHz audio, its length kept
    session.playout.model_audio("item_1", b"\x00\x10" * 24 * 200)  # 200 ms
    assert call.media.queued_ms == 200
    call.end()
    await asyncio.wait_for(task, 5)


async def test_a_sip_calls_media_runs_at_its_port_rate_with_no_resampler() -> None:
    from types import SimpleNamespace

    from telephony_bot.callport import CallOffered
    from telephony_bot.config import SipSettings
    from telephony_bot.media.crossing import PyCrossing
    from telephony_bot.sip.call import SipCall

    class PjCallStandIn:  # only held weakly by the facade
        pass

    for port_rate in (8000, 16000):
        registered: list[MediaBridge] = []
        owner = SimpleNamespace(
            loop=asyncio.get_running_loop(),
            settings=SipSettings(port_rate=port_rate),
            ports=SimpleNamespace(crossing=PyCrossing, register=registered.append),
        )
        pj = PjCallStandIn()
        offer = CallOffered("c1", "sip-1", "100", "200", "", "", "127.0.0.1")
        call = SipCall(owner, pj, offer)  # type: ignore[arg-type]
        assert registered == [call.media]
        assert call.media.sample_rate == call.media.port_rate == port_rate
        assert call.media.frame_bytes == port_rate // 50 * 2
