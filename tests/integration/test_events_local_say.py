"""`say` on the offline engine: a response.create whose instructions ask for an exact text
is spoken verbatim by the local Realtime server (its scripted flow cannot follow free
instructions), and the flow goes on afterwards as if nothing had happened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("openai")

from telephony_bot.providers.local.server import LocalRealtimeServer  # noqa: E402
from telephony_bot.providers.openai.protocol import say_exactly  # noqa: E402
from tests.integration.test_local_server_protocol import (  # noqa: E402
    PREVIEW_MODEL,
    PREVIEW_SESSION,
    Parts,
    _client,
    _until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def server() -> AsyncIterator[tuple[LocalRealtimeServer, Parts]]:
    parts = Parts()
    srv = LocalRealtimeServer("127.0.0.1", 0, parts.pipeline)
    await srv.start()
    try:
        yield srv, parts
    finally:
        await srv.stop()


async def test_the_local_engine_speaks_a_say_text_verbatim_and_its_flow_goes_on(
    server: tuple[LocalRealtimeServer, Parts],
) -> None:
    srv, parts = server
    async with _client(srv).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session=PREVIEW_SESSION)
        await _until(conn, "session.updated", log)
        await conn.response.create()  # the flow's greeting
        await _until(conn, "response.done", log)

        log.clear()
        text = "Your parcel left the depot at nine; it arrives tomorrow."
        await conn.response.create(response={"instructions": say_exactly(text)})
        done = await _until(conn, "response.done", log)
        assert done.response.status == "completed"
        spoken = next(e for e in log if e.type == "response.audio_transcript.done").transcript
        assert spoken == text
        assert parts.synthesizer.calls[-2:] == [
            "Your parcel left the depot at nine; ",
            "it arrives tomorrow.",
        ]  # synthesized clause by clause, as any reply
        assert any(e.type == "response.audio.delta" for e in log)

        # other instructions do not make the flow say them (it follows its script)
        log.clear()
        await conn.response.create(response={"instructions": "Be brief."})
        await _until(conn, "response.done", log)
        assert not [e for e in log if e.type == "response.audio_transcript.done"]
