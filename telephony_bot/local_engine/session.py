"""One engine session: the shared Realtime server core (`telephony_bot.realtime.server`)
hearing through the pipeline's detector and recognizer, and answering with its brain and
synthesizer (clause by clause, paced by the shared `work_pool`)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection

from telephony_bot import log as logmod
from telephony_bot.providers.base import followed_result, is_pending_output, said_exactly
from telephony_bot.realtime import server_events as se
from telephony_bot.realtime.audio import WireInput, WireOutput
from telephony_bot.realtime.dialect import Dialect
from telephony_bot.realtime.server import (
    Ended,
    OutItem,
    RealtimeSession,
    Resp,
)
from telephony_bot.realtime.server_events import Event, new_id

from . import cut_speech
from .chat_brain import ClauseChunker, Stream
from .pipeline import (
    FRAME_BYTES,
    FRAME_MS,
    CallTool,
    Hangup,
    Pipeline,
    Say,
    SpeechEnd,
    SpeechPause,
    Transfer,
    split_clauses,
)
from .turn_end import TurnEndPolicy
from .work_pool import WorkPool

log = logmod.get("local")

BYTES_PER_MS = 48  # 24 kHz PCM16 mono
CHUNK_BYTES = 100 * BYTES_PER_MS  # audio deltas of 100 ms
PLAYOUT_MARGIN_S = 0.3  # a playing reply's next TTS chunk is due this long before its audio ends


def _words(text: str) -> int:
    return len(text.split())


_DONE = object()


async def _aiter(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


def _next_chunk(it: Iterator[bytes]) -> Any:
    return next(it, _DONE)


def _text_of(result: Any) -> str:
    """A recognizer's transcript: a str, or an object's `.text`."""
    return str(result if isinstance(result, str) else getattr(result, "text", "")).strip()


# ---------------------------------------------------------------- per-connection state


@dataclass
class _Speculation:
    """The transcript of a turn's audio up to a pause (`SpeechPause.at_ms`), made while the
    caller may still go on: it decides how soon the pause ends the turn, and is the turn's
    transcript if the turn ends there. `result`: (text, pool wait ms, ASR ms)."""

    at_ms: int
    result: asyncio.Future[tuple[str, float, float]]


@dataclass(kw_only=True)
class _SpokenItem(OutItem):
    clauses: list[str] = field(default_factory=list)  # all it was to say, clause by clause
    starts: list[float] = field(default_factory=list)  # audio ms where each clause began
    complete: bool = False  # every clause was synthesised

    def truncate(self, audio_end_ms: int) -> None:
        super().truncate(audio_end_ms)
        self.audio_ms = float(audio_end_ms)  # what is left of it is what the caller heard


@dataclass(kw_only=True)
class _Resp(Resp):
    input_text_words: int = 0
    queue_wait_ms: float = 0.0  # ASR of the turn it answers + its TTS, waiting for the pool
    asr_ms: float = 0.0
    first_audio_at: float | None = None  # monotonic time of its first audio delta
    audio_sent_ms: float = 0.0
    late_ms: float = 0.0  # audio made later than a real-time listener needed it (gaps)


class Engine(Protocol):
    """What a session uses of its server (`server.LocalRealtimeServer`): the speech parts
    and the pool they run in."""

    pipeline: Pipeline

    @property
    def pool(self) -> WorkPool: ...


class EngineSession(RealtimeSession):
    """One client connection to the engine."""

    def __init__(self, server: Engine, ws: ServerConnection, dialect: Dialect, model: str) -> None:
        super().__init__(ws, dialect, se.default_session(dialect, model))
        self.srv = server
        self.model = model
        self.detector = server.pipeline.detector_factory()
        self.brain: Any = None
        self.started = False  # brain.start() called
        # Items a client gives before any audio or response are the conversation so far (a
        # reconnect, another engine taking over): the brain replays them to where the caller
        # is, saying nothing, so it neither greets again nor answers old questions.
        self.restoring = True
        self.restored = 0
        self.pending: list[Any] = []  # actions not yet turned into a response
        self.auto_response_due = False
        self._frame_buf = b""
        self.wire_in = WireInput()
        self.buffer = bytearray()  # input audio since the last commit/clear
        self.stream_ms = 0  # stream time of all appended audio
        self.audio_ms_since_response = 0.0
        self.text_words_since_response = 0
        self.speech_item_id = ""
        self._asr_wait_ms = 0.0  # of the last transcribed turn, for its response's metadata
        self._asr_ms = 0.0
        self._turn_lock = asyncio.Lock()
        # The caller cut the bot off: what it had still to say (None: no cut to resume),
        # spoken again if what the caller said over it was only a backchannel.
        self.cut_left: str | None = None
        self.cut_unsaid: list[str] = []
        # A tool's answer that came while the caller was talking waits for their words, so
        # the flow hears them first (and does not ask its next question over them); so does
        # the response asked for meanwhile.
        self._held: list[tuple[str, bool, Any]] = []
        self._deferred = False
        self._spec: _Speculation | None = None  # the current turn's latest pause
        self._speculating = False  # a pause's transcription is in flight
        self._next_pause: tuple[_Speculation, bytes] | None = None  # waiting for it
        self._apply_turn_detection()

    def _ensure_brain(self) -> Any:
        if self.brain is None:
            self.brain = self.srv.pipeline.brain_factory(
                self.instructions, self.tools, copy.deepcopy(self.session)
            )
        return self.brain

    # ---- session

    async def _check_session(self, sess: Event, event_id: str | None) -> bool:
        return await self._check_formats(sess, event_id, "The local engine")

    def _session_changed(self, old: Event) -> None:
        fmt = self.format_of("input")
        if fmt != self.wire_in.name:
            self.wire_in = WireInput(fmt)
            self._frame_buf = b""
        self._apply_turn_detection()

    def _apply_turn_detection(self) -> None:
        """The session's `silence_duration_ms` is the most silence that ends a turn: the
        detector's upper bound, and the policy's wait after unfinished words."""
        upper = int(self._td("silence_duration_ms", 500))
        self.turn_end = TurnEndPolicy(max_ms=upper)
        if hasattr(self.detector, "silence_ms"):
            self.detector.silence_ms = upper

    # ---- hearing

    def _restored(self) -> None:
        if self.restoring:
            self.restoring = False
            if self.restored:
                log.info("conversation restored", items=self.restored, started=self.started)

    async def _append(self, raw: bytes) -> None:
        self._restored()
        pcm = self.wire_in.to_pcm24(raw)
        self.buffer += pcm
        self.audio_ms_since_response += len(pcm) / BYTES_PER_MS
        buf = self._frame_buf + pcm
        n = len(buf) // FRAME_BYTES
        self._frame_buf = buf[n * FRAME_BYTES :]
        for i in range(n):
            frame_start_ms = self.stream_ms
            self.stream_ms += FRAME_MS
            if self.turn_detection is None:
                continue
            frame = buf[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
            for dev in self.detector.process(frame, frame_start_ms) or []:
                if isinstance(dev, SpeechPause):
                    self._on_pause(dev)
                elif isinstance(dev, SpeechEnd) or getattr(dev, "pcm", None) is not None:
                    await self._on_speech_end(dev)
                else:  # SpeechStart(at_ms)
                    await self._on_speech_start(dev)

    def _buffered_ms(self) -> float:
        return len(self.buffer) / BYTES_PER_MS

    async def _commit_buffer(self) -> None:
        item_id = self.speech_item_id or new_id("item")
        self.speech_item_id = ""
        await self._commit(item_id, bytes(self.buffer), auto=False)

    def _clear_buffer(self) -> None:
        self.buffer = bytearray()
        self.speech_item_id = ""

    async def _on_speech_start(self, dev: Any) -> None:
        start = getattr(dev, "at_ms", None)
        if start is None:
            start = self.stream_ms
        # Like OpenAI, audio_start_ms includes the prefix padding (the pre-roll).
        start = max(0, int(start) - int(self._td("prefix_padding_ms", 300)))
        self.speech_item_id = await self._speech_started(start)

    def _on_pause(self, dev: SpeechPause) -> None:
        """The caller paused: transcribe what they said so far, then let the words decide
        how soon this pause ends the turn (`turn_end`). One transcription in flight per
        session (a newer pause waits for it, an older waiting one is dropped), so a caller
        who pauses between words does not fill the shared pool; a pause the caller talks
        through makes a stale one, which `conclude` ignores."""
        spec = _Speculation(dev.at_ms, asyncio.get_running_loop().create_future())
        self._spec = spec
        if self._speculating:
            self._next_pause = (spec, dev.pcm)
        else:
            self._speculating = True
            self._spawn(self._speculate(spec, dev.pcm))

    async def _speculate(self, spec: _Speculation, pcm: bytes) -> None:
        try:
            await self._speculate_one(spec, pcm)
        finally:
            self._speculating = False
            if self._next_pause is not None and not self.closed:
                (nxt, nxt_pcm), self._next_pause = self._next_pause, None
                self._speculating = True  # (the turn may have ended there: it awaits this)
                self._spawn(self._speculate(nxt, nxt_pcm))

    async def _speculate_one(self, spec: _Speculation, pcm: bytes) -> None:
        t0 = time.monotonic()
        try:
            # Due now like a final transcription: if the pause ends the turn, the caller waits.
            result, wait_ms = await self.srv.pool.run(self.srv.pipeline.recognizer.transcribe, pcm)
        except Exception as exc:  # the turn's end transcribes again and reports the failure
            spec.result.set_exception(exc)
            spec.result.exception()  # retrieved: no "never retrieved" warning
            return
        text = _text_of(result)
        spec.result.set_result((text, wait_ms, (time.monotonic() - t0) * 1000 - wait_ms))
        needed = self.turn_end.silence_needed_ms(text)
        log.debug("local_pause_heard", at_ms=spec.at_ms, silence_needed_ms=needed)
        conclude = getattr(self.detector, "conclude", None)
        if self._spec is spec and conclude is not None and not self.closed:
            end = conclude(spec.at_ms, needed)
            if end is not None:
                try:
                    await self._on_speech_end(end)
                except Ended:
                    pass

    async def _on_speech_end(self, dev: Any) -> None:
        end = getattr(dev, "at_ms", None)
        if end is None:
            end = self.stream_ms
        item_id = self.speech_item_id or new_id("item")
        self.speech_item_id = ""
        spec, self._spec = self._spec, None
        if spec is not None and spec.at_ms != end:
            spec = None  # the caller spoke after that pause: its words are not all of the turn
        await self.send("input_audio_buffer.speech_stopped", audio_end_ms=int(end), item_id=item_id)
        auto = bool(self._td("create_response", True))
        await self._commit(item_id, dev.pcm, auto=auto, spec=spec)

    async def _commit(
        self, item_id: str, pcm: bytes, *, auto: bool, spec: _Speculation | None = None
    ) -> None:
        self.buffer = bytearray()
        item = await self._commit_item(item_id)
        if auto:
            self.auto_response_due = True
        self._spawn(self._transcribe_turn(item, pcm, auto, spec))

    async def _recognize(self, pcm: bytes, spec: _Speculation | None) -> tuple[str, float, float]:
        """The turn's transcript, pool wait and ASR time (ms): the one made at its last pause
        if there is one (the wait is then what was left of it), else made now."""
        t0 = time.monotonic()
        if spec is not None:
            try:
                text, _wait, _asr = await asyncio.shield(spec.result)
                return text, 0.0, (time.monotonic() - t0) * 1000
            except Exception:  # noqa: BLE001 - transcribed again below, where it is reported
                pass
        result, wait_ms = await self.srv.pool.run(  # due now: the caller waits
            self.srv.pipeline.recognizer.transcribe, pcm
        )
        return _text_of(result), wait_ms, (time.monotonic() - t0) * 1000 - wait_ms

    async def _transcribe_turn(
        self, item: Event, pcm: bytes, auto: bool, spec: _Speculation | None = None
    ) -> None:
        # The lock keeps turns in order: transcripts reach the brain as they were spoken.
        async with self._turn_lock:
            try:
                text, wait_ms, asr_ms = await self._recognize(pcm, spec)
            except Exception as exc:
                log.exception("local_transcription_failed", item_id=item["id"])
                await self.send(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=item["id"],
                    content_index=0,
                    error={
                        "type": "transcription_error",
                        "code": None,
                        "message": str(exc),
                        "param": None,
                    },
                )
                await self._after_turn(auto)
                return
            self._asr_wait_ms = wait_ms
            self._asr_ms = asr_ms
            log.info(
                "local_transcribed",
                item_id=item["id"],
                queue_wait_ms=round(wait_ms, 1),
                asr_ms=round(asr_ms, 1),
                audio_ms=len(pcm) // BYTES_PER_MS,
                at_pause=spec is not None,
            )
            await self._transcribed(item, text, len(pcm) / BYTES_PER_MS)
            if (resume := self._resume_after(text, len(pcm) / BYTES_PER_MS)) is not None:
                log.info("local_resumed", heard=text, words=_words(resume))
                self.pending = [Say(resume), *self.pending]
            elif text:
                self.text_words_since_response += _words(text)
                self.pending.extend(self._brain_hear(text))
            await self._after_turn(auto)

    async def _after_turn(self, auto: bool) -> None:
        """The caller's turn is in: tool answers held meanwhile reach the flow, and the
        response due (by turn detection, or asked for meanwhile) starts."""
        if self.speech_item_id:
            return  # the caller is talking again: the next turn's end does this
        self._release_held()
        due = (auto and self.auto_response_due) or self._deferred
        if due and self.active is None:
            self.auto_response_due = self._deferred = False
            if self.pending or not self.started:
                await self._start_response()

    def _resume_after(self, text: str, turn_ms: float) -> str | None:
        """After a cut, what to say again when `text` (what the caller said over the bot)
        was only a backchannel or a noise (`cut_speech.resumes`); None when there is
        nothing to resume or the caller meant it."""
        left, unsaid = self.cut_left, self.cut_unsaid
        if left is None:
            return None
        self.cut_left, self.cut_unsaid = None, []
        resume = " ".join(x for x in [left, *unsaid] if x)
        if not resume:
            return None
        understands = getattr(self._ensure_brain(), "understands", None)
        understood = True if understands is None else bool(understands(text))
        return resume if cut_speech.resumes(text, turn_ms, understood=understood) else None

    def _on_truncate(self, entry: OutItem, audio_end_ms: int, ok: bool) -> None:
        if ok and isinstance(entry, _SpokenItem) and entry.type == "message":
            self.cut_left = cut_speech.unheard(
                entry.clauses,
                entry.starts,
                heard_ms=audio_end_ms,
                generated_ms=entry.audio_ms,
                complete=entry.complete,
            )

    def _caller_mid_turn(self) -> bool:
        """The caller is speaking, or their last turn is still being transcribed."""
        return bool(self.speech_item_id) or self._turn_lock.locked()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for call_id, ok, result in held:
            self.pending.extend(self._ensure_brain().tool_result(call_id, ok, result) or [])

    def _brain_hear(self, text: str) -> list[Any]:
        brain = self._ensure_brain()
        actions: list[Any] = []
        if not self.started:
            self.started = True
            actions.extend(brain.start() or [])
        actions.extend(brain.hear(text) or [])
        return actions

    def _on_client_item(self, item: Event) -> None:
        if self.restoring:
            self._replay(item)
            return
        kind = item.get("type")
        if (answer := _tool_answer(item)) is not None:
            if self._caller_mid_turn():
                self._held.append(answer)
                return
            call_id, ok, result = answer
            brain = self._ensure_brain()
            self.pending.extend(brain.tool_result(call_id, ok, result) or [])
        elif kind == "message" and item.get("role", "user") == "user":
            text = _user_text(item)
            if text:
                self.text_words_since_response += _words(text)
                self.pending.extend(self._brain_hear(text))

    def _replay(self, item: Event) -> None:
        """One item of the conversation so far: the brain's state follows it, its words are
        not said again."""
        self.restored += 1
        brain = self._ensure_brain()
        kind, role = item.get("type"), item.get("role", "user")
        if kind == "message" and role == "assistant" and not self.started:
            self.started = True  # the bot has spoken: its greeting is behind us
            brain.start()
        elif (answer := _tool_answer(item)) is not None:
            brain.tool_result(*answer)
        elif kind == "message" and role == "user":
            if text := _user_text(item):
                self._brain_hear(text)

    # ---- responses

    async def _create_response(self, ev: Event, event_id: str | None) -> None:
        self._restored()
        self.auto_response_due = False
        response = ev.get("response")
        text = said_exactly(response.get("instructions")) if isinstance(response, dict) else None
        if text is not None:
            # A fixed sentence (greeting, operator's `say`): spoken as is. A greeting is
            # followed by the flow's start (a lookup tool, say); later, the brain's own next
            # actions wait for the next response.
            if self.started:
                await self._start_response([Say(text)])
            else:
                self.started = True
                first = [Say(text), *(self._ensure_brain().start() or []), *self.pending]
                self.pending = []
                await self._start_response(first)
            return
        if self._held or self._caller_mid_turn():
            self._deferred = True  # answered once the caller's words are in (_after_turn)
            return
        await self._start_response()

    def _new_out_item(self, resp: Resp, kind: str, **fields: Any) -> OutItem:
        return _SpokenItem(id=new_id("item"), type=kind, output_index=len(resp.items), **fields)

    async def _start_response(self, only: list[Any] | None = None) -> None:
        if only is not None:
            actions = only
        elif not self.started:
            self.started = True
            actions = list(self._ensure_brain().start() or []) + self.pending
        else:
            actions = self.pending
        if only is None:
            self.pending = []
        self.cut_left, self.cut_unsaid = None, []
        resp = _Resp(
            id=new_id("resp"),
            input_audio_ms=self.audio_ms_since_response,
            input_text_words=self.text_words_since_response,
            queue_wait_ms=self._asr_wait_ms,
            asr_ms=self._asr_ms,
        )
        self.audio_ms_since_response = 0.0
        self.text_words_since_response = 0
        self._asr_wait_ms = self._asr_ms = 0.0
        await self._begin_response(resp, lambda: self._run_response(resp, actions))

    async def _run_response(self, resp: _Resp, actions: list[Any]) -> None:
        try:
            while actions:
                action = actions.pop(0)
                if isinstance(action, Say):
                    if action.text.strip():
                        await self._say(resp, action.text)
                elif isinstance(action, Stream):
                    if await self._run_stream(resp, action):
                        break
                elif isinstance(action, CallTool):
                    args = action.arguments
                    await self._function_call(
                        resp,
                        action.call_id or new_id("call"),
                        action.name,
                        args if isinstance(args, str) else json.dumps(args),
                    )
                    break
                elif isinstance(action, Transfer):
                    await self._function_call(
                        resp,
                        new_id("call"),
                        "transfer",
                        json.dumps({"destination": action.target}),
                    )
                    break
                elif isinstance(action, Hangup):
                    await self._function_call(
                        resp, new_id("call"), "hangup", json.dumps({"reason": action.reason})
                    )
                    break
                else:
                    log.warning("local_unknown_action", action=repr(action))
            # After a tool call the rest waits for the tool's output and the next response.create.
            self.pending = actions + self.pending
            await self._finish(resp)
        except Ended:
            # Cut off: what it was still to say may be resumed (see `_resume_after`); what
            # it was still to do (a lookup, a transfer, a hang-up) is still done.
            self.cut_unsaid = [a.text for a in actions if isinstance(a, Say)]
            self.pending = [a for a in actions if not isinstance(a, Say)] + self.pending
        except Exception as exc:  # a failing TTS/brain must not leave the response open
            log.exception("local_response_failed", response_id=resp.id)
            if not resp.ended and not self.closed:
                self._stop(resp)
                try:
                    await self._close_open_items(resp)
                    await self._send_done(
                        resp,
                        "failed",
                        {"type": "failed", "error": {"type": "server_error", "message": str(exc)}},
                    )
                except Ended:
                    pass

    async def _say(self, resp: _Resp, text: str) -> None:
        clauses = split_clauses(text)
        await self._speak(resp, _aiter(clauses), planned=clauses)

    async def _run_stream(self, resp: _Resp, stream: Stream) -> bool:
        """Speak a reply while it is still being made; then its tool calls. True: tools."""
        tools: list[CallTool] = []

        async def clauses() -> AsyncIterator[str]:
            chunker = ClauseChunker()
            gen = stream.open()
            try:
                while (piece := await self._next_or_end(resp, gen)) is not None:
                    if isinstance(piece, CallTool):
                        tools.append(piece)
                        continue
                    for clause in chunker.feed(piece):
                        yield clause
                if rest := chunker.flush():
                    yield rest
            finally:
                await gen.aclose()  # an interrupted reply stops the LLM's stream too

        await self._speak(resp, clauses())
        for t in tools:
            args = t.arguments
            await self._function_call(
                resp, t.call_id, t.name, args if isinstance(args, str) else json.dumps(args)
            )
        return bool(tools)

    @staticmethod
    async def _next_or_end(resp: _Resp, gen: AsyncIterator[Any]) -> Any:
        """The stream's next piece (None at its end); Ended as soon as the response is
        cancelled — the LLM is not waited for, and its generator sees the cancellation."""
        nxt = asyncio.ensure_future(anext(gen, None))
        if not nxt.done():
            ended = asyncio.ensure_future(resp.ended_evt.wait())
            await asyncio.wait({nxt, ended}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
        if resp.ended:
            nxt.cancel()
            await asyncio.gather(nxt, return_exceptions=True)
            raise Ended
        return nxt.result()

    async def _speak(
        self, resp: _Resp, clauses: AsyncIterator[str], planned: list[str] | None = None
    ) -> None:
        """One audio message item, clause by clause as `clauses` yields them (none: no item);
        `planned`: all of them, when known before they are spoken."""
        try:
            await self._speak_clauses(resp, clauses, planned)
        finally:
            await clauses.aclose()  # type: ignore[attr-defined]

    async def _speak_clauses(
        self, resp: _Resp, clauses: AsyncIterator[str], planned: list[str] | None
    ) -> None:
        out: OutItem | None = None
        ids: Event = {}
        synth = self.srv.pipeline.synthesizer
        pending = b""
        async for clause in clauses:
            if out is None:
                out, ids = await self._open_message(resp, wire=WireOutput(self.format_of("output")))
                if isinstance(out, _SpokenItem) and planned is not None:
                    out.clauses = list(planned)
            if isinstance(out, _SpokenItem):
                out.starts.append(out.audio_ms)
                if planned is None:
                    out.clauses.append(clause)
            if out.transcript and not out.transcript.endswith(" "):
                clause = " " + clause
            it = iter(synth.synthesize(clause, resp.cancel))
            said = False
            while True:
                playing_until = (
                    None
                    if resp.first_audio_at is None
                    else resp.first_audio_at + resp.audio_sent_ms / 1000
                )
                chunk, wait_ms = await self.srv.pool.run(
                    _next_chunk,
                    it,
                    deadline=None if playing_until is None else playing_until - PLAYOUT_MARGIN_S,
                )
                if playing_until is None:
                    resp.queue_wait_ms += wait_ms  # the caller hears silence meanwhile
                else:
                    resp.late_ms += max(0.0, (time.monotonic() - playing_until) * 1000)
                if resp.ended:
                    raise Ended
                if chunk is _DONE:
                    break
                if not said:  # the clause's words go out with its first audio
                    said = True
                    await self._transcript_delta(resp, out, ids, clause)
                pending += chunk
                while len(pending) >= CHUNK_BYTES:
                    await self._play(resp, out, ids, pending[:CHUNK_BYTES])
                    pending = pending[CHUNK_BYTES:]
            if not said:
                await self._transcript_delta(resp, out, ids, clause)
            # Flush the clause's tail now rather than hold it while the next clause is made.
            cut = len(pending) // 2 * 2
            await self._play(resp, out, ids, pending[:cut])
            pending = pending[cut:]
        if out is not None:
            if isinstance(out, _SpokenItem):
                out.complete = True
            out.status = "completed"
            await self._close_item(resp, out)

    async def _play(self, resp: _Resp, out: OutItem, ids: Event, pcm: bytes) -> None:
        if not pcm:
            return
        if resp.first_audio_at is None:
            resp.first_audio_at = time.monotonic()
        resp.audio_sent_ms += len(pcm) / BYTES_PER_MS
        wire = out.wire.from_pcm24(pcm) if out.wire else pcm
        await self._audio_delta(resp, out, ids, wire, len(pcm) / BYTES_PER_MS)

    def _text_tokens(self, resp: Resp) -> tuple[int, int]:
        assert isinstance(resp, _Resp)
        out_text = 0
        for out in resp.items:
            if out.type == "message":
                out_text += _words(out.transcript)
            else:
                out_text += _words(out.name + " " + out.arguments)
        return resp.input_text_words, out_text

    def _decorate_done(self, resp: Resp, obj: Event) -> None:
        assert isinstance(resp, _Resp)
        obj["metadata"] = {
            "queue_wait_ms": round(resp.queue_wait_ms, 1),
            "asr_ms": round(resp.asr_ms, 1),
            "late_ms": round(resp.late_ms, 1),
        }
        log.info(
            "local_response_done",
            response_id=resp.id,
            status=obj["status"],
            queue_wait_ms=round(resp.queue_wait_ms, 1),
            late_ms=round(resp.late_ms, 1),
            audio_ms=round(sum(o.audio_ms for o in resp.items)),
        )

    async def _after_done(self, resp: Resp) -> None:
        if (
            self.auto_response_due
            and self.active is None
            and not self.closed
            and not self._turn_lock.locked()
        ):
            # A turn finished while this response was still streaming (interrupt_response off).
            self.auto_response_due = False
            if self.pending:
                await self._start_response()


def _user_text(item: Event) -> str:
    """The words of a user (or system) message item."""
    texts = [
        str(part.get("text") or "")
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") in ("input_text", "text")
    ]
    return " ".join(t for t in texts if t).strip()


def _tool_answer(item: Event) -> tuple[str, bool, Any] | None:
    """A tool's answer in an item, as the brain takes it: `(call_id, ok, decoded result)`:
    a function call's output, or the system message giving a result that was to follow
    (`providers.base.result_follows`). None for any other item, and for the output that
    only says the result will follow: the brain goes on waiting for it."""
    kind = item.get("type")
    if kind == "function_call_output":
        if is_pending_output(str(item.get("output"))):
            return None
        return (str(item.get("call_id", "")), *_tool_output(item.get("output")))
    if kind == "message" and item.get("role") == "system":
        followed = followed_result(_user_text(item))
        if followed is not None:
            call_id, ok, output = followed
            decoded_ok, result = _tool_output(output)
            return call_id, ok and decoded_ok, result
    return None


def _tool_output(raw: Any) -> tuple[bool, Any]:
    """A tool's output as the brain takes it: (ok, the decoded result)."""
    try:
        result: Any = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        result = raw
    return not (isinstance(result, dict) and result.get("error") not in (None, False, "")), result
