"""The offline engine's parts, put together: Whisper ASR, piper TTS, the turn detector and
the scripted-flow brain, behind the Realtime-compatible server (`telephony-bot
realtime-server`). Models load once, when the server starts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

from telephony_bot import log
from telephony_bot.local_engine.pipeline import Hangup, Pipeline, Say

_log = log.get("local")

NO_FLOW = (
    "Hello. This line runs on the offline assistant, but no conversation flow is set up "
    "for it yet. Please call again later. Goodbye."
)


class NoFlowBrain:
    """What a session without a `flow` gets: a clear sentence, then the end of the call."""

    def start(self) -> list[Any]:
        return [Say(NO_FLOW), Hangup("no flow configured")]

    def hear(self, text: str) -> list[Any]:
        return []

    def tool_result(self, call_id: str, ok: bool, result: Any) -> list[Any]:
        return []


def brain_factory(instructions: str, tools: list[dict[str, Any]], session: dict[str, Any]) -> Any:
    """A ChatBrain when the route configures a chat LLM (`llm` in `session.update`), else a
    FlowRunner for the route's flow (`flow`), else a clear "no flow" sentence."""
    llm = session.get("llm")
    if isinstance(llm, dict) and llm.get("base_url") and llm.get("model"):
        from telephony_bot.local_engine.chat_brain import ChatBrain, LlmSettings

        settings = LlmSettings.from_session(llm, dict(os.environ))
        _log.info("chat brain", base_url=settings.base_url, model=settings.model)
        return ChatBrain(settings, instructions, tools)
    data = session.get("flow")
    if not data:
        return NoFlowBrain()
    from telephony_bot.dialplan.flow import Flow
    from telephony_bot.local_engine.brain import FlowRunner

    schemas = {t.get("name", ""): t.get("parameters", {}) for t in tools}
    flow = Flow.model_validate(data)
    return FlowRunner(
        flow,
        now=datetime.now(UTC),
        variables=session.get("variables") or {},
        tools=schemas,  # so arguments take the types the tools declare (a PIN stays "0412")
        meaning=_meaning_for(flow),
    )


def _meaning_for(flow: Any) -> Any:
    """The shared sentence-embedding matcher, the flow's examples embedded; None (words
    only) when the model cannot be loaded, said once in the log."""
    from telephony_bot.local_engine import meaning
    from telephony_bot.local_engine.embedder import EmbedderUnavailableError

    try:
        m = meaning.shared()
    except EmbedderUnavailableError as exc:
        _log.warning("intents matched by words only", reason=str(exc))
        return None
    intents = [*flow.anywhere, *(i for st in flow.states.values() for i in st.intents)]
    m.prepare([ex for intent in intents for ex in intent.examples])
    return m


def build_pipeline(workers: int = 2) -> Pipeline:
    from telephony_bot.local_engine.speech import Asr, SpeechDetector, Tts

    t0 = time.monotonic()
    asr = Asr()
    asr.warmup()
    tts = Tts()
    # The first synthesis of a fresh voice is slower (~20 % here, onnxruntime sizing its
    # buffers): spend it now rather than on the first caller's greeting.
    for _ in tts.synthesize("Hello, this is a warm-up. One moment, please."):
        pass
    from telephony_bot.local_engine import meaning

    meaning.shared().similarity("hello", ["hello there"])  # the intent matcher's model
    _log.info("models loaded", seconds=round(time.monotonic() - t0, 2))
    return Pipeline(
        detector_factory=SpeechDetector,
        recognizer=asr,
        synthesizer=tts,
        brain_factory=brain_factory,
        workers=workers,
    )


async def serve(host: str, port: int, workers: int) -> None:
    from telephony_bot.local_engine.server import LocalRealtimeServer

    pipeline = await asyncio.to_thread(build_pipeline, workers)
    server = LocalRealtimeServer(host, port, pipeline)
    await server.start()
    _log.info("realtime server listening", url=server.url, workers=workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        _log.info("realtime server stopped")
