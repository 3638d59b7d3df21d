"""One call's session: answer, then pump audio between the call and a provider session.

This is the minimal core: caller frames → provider, provider audio → playout, call events
logged (DTMF, transfer outcomes), a maximum call duration, and a clean end whichever side
hangs up. Turn-taking, barge-in and tools build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from telephony_bot import log
from telephony_bot.callport import (
    CallEnded,
    CallPort,
    DtmfReceived,
    MediaReady,
    TransferOutcome,
)
from telephony_bot.errors import CallGoneError
from telephony_bot.providers.base import AudioDelta, Provider, SessionConfig

_log = log.get("session")


@dataclass
class CallResult:
    call_id: str
    ended_by: str = "local"
    reason: str = ""
    dtmf: list[str] = field(default_factory=list)
    media: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CallLimits:
    ring_ms: int = 0
    max_call_seconds: float = 0.0


async def run_call(
    call: CallPort, provider: Provider, config: SessionConfig, limits: CallLimits
) -> CallResult:
    """Drive one call from offer to end. Never raises for call-level failures."""
    result = CallResult(call.call_id)
    with log.bind_call(call.call_id):
        try:
            await _run(call, provider, config, limits, result)
        except Exception as exc:  # noqa: BLE001 - one broken call must not touch others
            _log.exception("session failed", error=str(exc))
            with contextlib.suppress(Exception):
                await call.hangup("session error")
        finally:
            call.media.close()
        _log.info(
            "call ended",
            ended_by=result.ended_by,
            reason=result.reason,
            dtmf="".join(result.dtmf),
            **result.media,
        )
    return result


async def _run(
    call: CallPort,
    provider: Provider,
    config: SessionConfig,
    limits: CallLimits,
    result: CallResult,
) -> None:
    # Watch call events from the start: the caller may hang up while it is still ringing.
    ended = asyncio.create_task(_watch_events(call, result), name="events")
    try:
        if limits.ring_ms:
            await asyncio.wait({ended}, timeout=limits.ring_ms / 1000)
        if ended.done():
            _log.info("caller hung up before answer")
            return
        try:
            await call.answer()
        except CallGoneError:
            await ended
            return
        await _converse(call, provider, config, limits, ended)
    finally:
        ended.cancel()
        await asyncio.gather(ended, return_exceptions=True)


async def _converse(
    call: CallPort,
    provider: Provider,
    config: SessionConfig,
    limits: CallLimits,
    ended: asyncio.Task[None],
) -> None:
    session = await provider.connect(config)
    tasks = {
        asyncio.create_task(_uplink(call, session), name="uplink"),
        asyncio.create_task(_downlink(call, session), name="downlink"),
    }
    if limits.max_call_seconds:
        tasks.add(asyncio.create_task(_limit(call, limits.max_call_seconds), name="limit"))
    try:
        await ended
    finally:
        for t in tasks:
            t.cancel()
        await session.close()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _uplink(call: CallPort, session: object) -> None:
    send = session.send_audio  # type: ignore[attr-defined]
    while pcm := await call.media.read_frame():
        await send(pcm)


async def _downlink(call: CallPort, session: object) -> None:
    async for ev in session.events():  # type: ignore[attr-defined]
        if isinstance(ev, AudioDelta):
            call.media.write(ev.pcm)


async def _watch_events(call: CallPort, result: CallResult) -> None:
    while True:
        ev = await call.events.get()
        if isinstance(ev, MediaReady):
            _log.info("media ready", codec=ev.codec)
        elif isinstance(ev, DtmfReceived):
            result.dtmf.append(ev.digit)
            _log.info("dtmf", digit=ev.digit, method=ev.method, duration_ms=ev.duration_ms)
        elif isinstance(ev, TransferOutcome):
            _log.info("transfer status", target=ev.target, status=ev.status_code, final=ev.final)
        elif isinstance(ev, CallEnded):
            result.ended_by = ev.ended_by
            result.reason = f"{ev.status_code} {ev.reason}".strip()
            result.media = dict(ev.media)
            return


async def _limit(call: CallPort, seconds: float) -> None:
    await asyncio.sleep(seconds)
    _log.info("maximum call duration reached", max_call_seconds=seconds)
    await call.hangup("max_call_seconds")
