"""One Realtime connection on the server side, with everything that does not depend on how
the server hears or what it says.

A subclass supplies:

* `_append(raw)`: the decoded bytes of ``input_audio_buffer.append`` (its VAD runs here),
  `_buffered_ms()`, `_commit_buffer()` and `_clear_buffer()`;
* `_create_response(ev, event_id)`: a ``response.create`` with no response active; it opens
  one with `_begin_response` and streams it with `_open_message`, `_audio_delta`,
  `_transcript_delta`, `_function_call` and `_close_item`, then `_finish`;
* `_text_tokens(resp)` for the usage; and, if it wants them, the hooks `_accept`,
  `_check_session`, `_session_changed`, `_on_client_item`, `_on_truncate`, `_on_received`,
  `_on_sent`, `_decorate_done` and `_after_done`.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection

from telephony_bot.realtime import server_events as se
from telephony_bot.realtime.dialect import Dialect
from telephony_bot.realtime.server.connection import Handler, RealtimeConnection
from telephony_bot.realtime.server.response import Ended, OutItem, Resp
from telephony_bot.realtime.server_events import Event, new_id

MIN_COMMIT_MS = 100  # the real API refuses to commit less than 100 ms of audio


class RealtimeSession(RealtimeConnection):
    """The server side of one Realtime connection (see the module doc for what to supply)."""

    conversation_id = "conv_local"

    def __init__(self, ws: ServerConnection, dialect: Dialect, session: Event) -> None:
        super().__init__(ws, dialect, session)
        # the conversation: item id -> item dict (user/tool items) or OutItem (assistant)
        self.items: dict[str, Event | OutItem] = {}

    def _handlers(self) -> dict[str, Handler]:
        return super()._handlers() | {
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "conversation.item.create": self.on_item_create,
            "conversation.item.truncate": self.on_truncate,
            "conversation.item.delete": self.on_item_delete,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
        }

    async def _item_created(self, item: Event, previous_item_id: str | None) -> None:
        if self.dialect == "preview":
            await self.send(
                "conversation.item.created", previous_item_id=previous_item_id, item=item
            )
        else:
            await self.send("conversation.item.added", previous_item_id=previous_item_id, item=item)
            await self.send("conversation.item.done", previous_item_id=previous_item_id, item=item)

    def _last_item_id(self) -> str | None:
        return next(reversed(self.items), None) if self.items else None

    # ---- input audio buffer

    async def on_append(self, ev: Event, event_id: str | None) -> None:
        audio = ev.get("audio")
        if not isinstance(audio, str):
            await self._missing("audio", event_id)
            return
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self.error(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                param="audio",
                event_id=event_id,
            )
            return
        await self._append(raw)

    async def on_commit(self, ev: Event, event_id: str | None) -> None:
        ms = self._buffered_ms()
        if ms < MIN_COMMIT_MS:
            await self.error(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                event_id=event_id,
            )
            return
        await self._commit_buffer()

    async def on_clear(self, ev: Event, event_id: str | None) -> None:
        self._clear_buffer()
        await self.send("input_audio_buffer.cleared")

    async def _speech_started(self, audio_start_ms: int) -> str:
        """Announce the caller's speech (cutting in on the active response when the session
        says so); the id of the user item it will become."""
        item_id = new_id("item")
        await self.send(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
        )
        if self.active is not None and self._td("interrupt_response", True):
            await self._cancel(self.active, "turn_detected")
        return item_id

    async def _commit_item(self, item_id: str) -> Event:
        """The buffer becomes a user item: ``committed``, then the item joins the conversation."""
        previous = self._last_item_id()
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = se.user_audio_item(item_id)
        self.items[item_id] = item
        await self._item_created(item, previous)
        return item

    async def _transcribed(self, item: Event, transcript: str, audio_ms: float) -> None:
        item["content"][0]["transcript"] = transcript
        extra: Event = {}
        if self.dialect == "ga":
            extra["usage"] = {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item["id"],
            content_index=0,
            transcript=transcript,
            **extra,
        )

    # ---- conversation items

    async def on_item_create(self, ev: Event, event_id: str | None) -> None:
        item = ev.get("item")
        if not isinstance(item, dict):
            await self._missing("item", event_id)
            return
        kind = item.get("type")
        if kind not in ("message", "function_call", "function_call_output"):
            await self.error(
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', "
                "and 'function_call_output'.",
                param="item.type",
                event_id=event_id,
            )
            return
        if kind == "function_call_output" and not item.get("call_id"):
            await self._missing("item.call_id", event_id)
            return
        full: Event = {"id": item.get("id") or new_id("item"), "object": "realtime.item"}
        full.update({k: v for k, v in item.items() if k != "id"})
        full.setdefault("status", "completed")
        previous = ev.get("previous_item_id") or self._last_item_id()
        self.items[full["id"]] = full
        self._on_client_item(full)
        await self._item_created(full, previous)

    async def on_item_delete(self, ev: Event, event_id: str | None) -> None:
        item_id = ev.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.items:
            await self.error(
                f"Error deleting item: the item with id '{item_id}' does not exist.",
                param="item_id",
                event_id=event_id,
            )
            return
        del self.items[item_id]
        await self.send("conversation.item.deleted", item_id=item_id)

    async def on_truncate(self, ev: Event, event_id: str | None) -> None:
        item_id = ev.get("item_id")
        content_index = ev.get("content_index", 0)
        audio_end_ms = ev.get("audio_end_ms")
        entry = self.items.get(item_id) if isinstance(item_id, str) else None
        if not isinstance(entry, OutItem) or entry.type != "message":
            await self.error(
                f"Item with item_id '{item_id}' not found or is not an assistant audio message.",
                param="item_id",
                event_id=event_id,
            )
            return
        if content_index != 0:
            await self.error(
                f"Invalid value: {content_index}. Content index out of range.",
                param="content_index",
                event_id=event_id,
            )
            return
        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            await self.error(
                "Invalid 'audio_end_ms': expected a non-negative integer.",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        generated = entry.audio_ms
        ok = audio_end_ms <= generated + 1e-6
        self._on_truncate(entry, audio_end_ms, ok)
        if not ok:
            await self.error(
                f"Audio content of {int(round(generated))}ms is already shorter than "
                f"{audio_end_ms}ms",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        entry.truncate(audio_end_ms)
        await self.send(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    # ---- responses

    async def on_response_create(self, ev: Event, event_id: str | None) -> None:
        if self.active is not None:
            await self.error(
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                event_id=event_id,
            )
            return
        await self._create_response(ev, event_id)

    async def on_response_cancel(self, ev: Event, event_id: str | None) -> None:
        if self.active is None:
            await self.error(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                event_id=event_id,
            )
            return
        await self._cancel(self.active, "client_cancelled")

    def _response_obj(self, resp: Resp, status: str, details: Event | None) -> Event:
        return se.response_object(
            resp.id,
            status,
            details,
            [item.as_item(self.dialect) for item in resp.items],
            self.dialect,
            conversation_id=self.conversation_id,
            voice=self.session.get("voice", "alloy"),
            output_audio_format=self.format_of("output"),
        )

    async def _begin_response(
        self, resp: Resp, stream: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """`resp` becomes the active response: ``response.created``, then `stream()` runs."""
        self.active = resp
        created = self._response_obj(resp, "in_progress", None)
        created["usage"] = None
        await self.send("response.created", response=created)
        resp.task = self._spawn(stream())

    async def _add_output_item(self, resp: Resp, out: OutItem) -> None:
        if resp.ended:
            raise Ended
        previous = self._last_item_id()
        resp.items.append(out)
        self.items[out.id] = out
        item = out.as_item(self.dialect)
        await self.rsend(
            resp,
            "response.output_item.added",
            response_id=resp.id,
            output_index=out.output_index,
            item=item,
        )
        if self.dialect == "preview":
            await self.rsend(
                resp, "conversation.item.created", previous_item_id=previous, item=item
            )
        else:
            await self.rsend(resp, "conversation.item.added", previous_item_id=previous, item=item)

    def _new_out_item(self, resp: Resp, kind: str, **fields: Any) -> OutItem:
        return OutItem(id=new_id("item"), type=kind, output_index=len(resp.items), **fields)

    async def _open_message(self, resp: Resp, **fields: Any) -> tuple[OutItem, Event]:
        """A new audio message item with its content part; (the item, its content ids)."""
        out = self._new_out_item(resp, "message", **fields)
        await self._add_output_item(resp, out)
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "content_index": 0,
        }
        out.part_added = True
        await self.rsend(
            resp,
            "response.content_part.added",
            **ids,
            part={"type": self.names["part_type"], "transcript": ""},
        )
        return out, ids

    async def _transcript_delta(self, resp: Resp, out: OutItem, ids: Event, text: str) -> None:
        await self.rsend(resp, self.names["transcript_delta"], **ids, delta=text)
        out.transcript += text
        out.transcript_deltas += 1

    async def _audio_delta(
        self, resp: Resp, out: OutItem, ids: Event, wire: bytes, ms: float
    ) -> None:
        """`ms` of audio, `wire` in the session's output format."""
        await self.rsend(
            resp, self.names["audio_delta"], **ids, delta=base64.b64encode(wire).decode("ascii")
        )
        out.audio_ms += ms

    async def _function_call(
        self, resp: Resp, call_id: str, name: str, args: str, *, pieces: int = 1
    ) -> None:
        """A function call item, its arguments streamed in up to `pieces` deltas."""
        out = self._new_out_item(resp, "function_call", call_id=call_id, name=name)
        await self._add_output_item(resp, out)
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "call_id": call_id,
        }
        size = max(1, math.ceil(len(args) / max(1, min(pieces, len(args)))))
        for delta in [args[i : i + size] for i in range(0, len(args), size)] or [args]:
            await self.rsend(resp, "response.function_call_arguments.delta", **ids, delta=delta)
        await self.rsend(
            resp, "response.function_call_arguments.done", **ids, name=name, arguments=args
        )
        out.arguments = args
        out.arguments_done = True
        out.status = "completed"
        await self._close_item(resp, out)

    async def _close_item(self, resp: Resp, out: OutItem, *, raw: bool = False) -> None:
        """Send the still-missing closing events of an output item; raw=True when the
        response was cancelled (otherwise a response that ended meanwhile stops here)."""

        def check() -> None:
            if not raw and resp.ended:
                raise Ended

        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "content_index": 0,
        }
        if out.type == "message" and out.part_added:
            if not out.audio_done:
                check()
                out.audio_done = True
                await self.send(self.names["audio_done"], **ids)
            if not out.transcript_done:
                check()
                out.transcript_done = True
                await self.send(self.names["transcript_done"], **ids, transcript=out.transcript)
            if not out.part_done:
                check()
                out.part_done = True
                await self.send(
                    "response.content_part.done",
                    **ids,
                    part={"type": self.names["part_type"], "transcript": out.transcript},
                )
        if not out.item_done:
            check()
            out.item_done = True
            item = out.as_item(self.dialect)
            await self.send(
                "response.output_item.done",
                response_id=resp.id,
                output_index=out.output_index,
                item=item,
            )
            if self.dialect == "ga":
                await self.send("conversation.item.done", previous_item_id=None, item=item)

    def _stop(self, resp: Resp) -> None:
        resp.end()
        if self.active is resp:
            self.active = None

    async def _cancel(self, resp: Resp, reason: str) -> None:
        if resp.ended:
            return
        self._stop(resp)  # the streaming task sends nothing more from here on
        await self._close_open_items(resp)
        await self._send_done(resp, "cancelled", {"type": "cancelled", "reason": reason})

    async def _close_open_items(self, resp: Resp) -> None:
        for out in resp.items:
            if not out.item_done:
                out.status = "incomplete"
                await self._close_item(resp, out, raw=True)

    async def _finish(
        self, resp: Resp, status: str = "completed", details: Event | None = None
    ) -> None:
        if resp.ended:
            raise Ended
        self._stop(resp)
        await self._send_done(resp, status, details)

    def _usage(self, resp: Resp) -> Event:
        in_text, out_text = self._text_tokens(resp)
        out_audio = sum(
            se.audio_tokens(out.audio_ms, 20) for out in resp.items if out.type == "message"
        )
        return se.usage(
            in_text=in_text,
            in_audio=se.audio_tokens(resp.input_audio_ms, 10),
            out_text=out_text,
            out_audio=out_audio,
        )

    async def _send_done(self, resp: Resp, status: str, details: Event | None) -> None:
        obj = self._response_obj(resp, status, details)
        obj["usage"] = self._usage(resp)
        self._decorate_done(resp, obj)
        await self.send("response.done", response=obj)
        await self._after_done(resp)

    # ---- what a server supplies

    async def _append(self, raw: bytes) -> None:
        raise NotImplementedError

    def _buffered_ms(self) -> float:
        raise NotImplementedError

    async def _commit_buffer(self) -> None:
        raise NotImplementedError

    def _clear_buffer(self) -> None:
        raise NotImplementedError

    async def _create_response(self, ev: Event, event_id: str | None) -> None:
        raise NotImplementedError

    def _text_tokens(self, resp: Resp) -> tuple[int, int]:
        """(input, output) text tokens of a response."""
        raise NotImplementedError

    # ---- hooks (no-ops here)

    def _on_client_item(self, item: Event) -> None:
        """The client added `item` to the conversation."""

    def _on_truncate(self, entry: OutItem, audio_end_ms: int, ok: bool) -> None:
        """A truncation was asked for (ok: within the audio generated)."""

    def _decorate_done(self, resp: Resp, obj: Event) -> None:
        """`obj` (the response of ``response.done``, with usage) is about to go out."""

    async def _after_done(self, resp: Resp) -> None:
        """``response.done`` went out."""
