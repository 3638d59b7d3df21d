"""The worker's MQTT link (aiomqtt, MQTT v5): call events out, commands in.

One long-lived client per worker process. Events come from a bounded bus subscription
(drop-oldest, counted) and go out as JSON, QoS 1, one at a time and in order, to
`<prefix>/<node>/calls/<call_id>/events/<type>` (the CDR to `.../calls/<call_id>/cdr`).
While the broker is away nothing waits on it: the calls go on, events collect in that
bounded queue, the client reconnects with backoff and then publishes what the queue still
holds (an event whose PUBACK never came is sent again: at least once). The node's status
is the retained `<prefix>/<node>/status` ("online", or "offline" by the broker's will);
each registered trunk's state is the retained `<prefix>/<node>/status/trunks/<trunk>`
(the `trunk.registration` event's JSON).

Commands: see `events.commands` for topics, payloads and replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from telephony_bot import log
from telephony_bot.config import MqttSettings
from telephony_bot.events import commands as cmds
from telephony_bot.events.bus import Bus, Event
from telephony_bot.events.control import CommandResult, Control

_log = log.get("events.mqtt")

RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
PUBLISH_TIMEOUT_S = 5.0
STOP_FLUSH_S = 3.0


class MqttLink:
    def __init__(
        self, settings: MqttSettings, bus: Bus, control: Control, *, worker_id: int = 0
    ) -> None:
        self.settings = settings
        self.control = control
        self.worker_id = worker_id
        self.sub = bus.subscribe("mqtt", maxsize=settings.queue)
        self.connected = False
        self.published = 0
        self.connects = 0
        self.commands = 0
        self._held: Event | None = None  # taken from the queue, PUBACK not yet seen
        self._task: asyncio.Task[None] | None = None
        self._cmd_tasks: set[asyncio.Task[None]] = set()
        self._status_topic = f"{settings.prefix}/{settings.node}/status"

    @property
    def dropped(self) -> int:
        """Events lost because the queue was full (broker away too long)."""
        return self.sub.dropped

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-link")

    async def stop(self) -> None:
        """Publish what is queued (for a few seconds, if connected), then disconnect."""
        deadline = asyncio.get_running_loop().time() + STOP_FLUSH_S
        while (
            self.connected
            and (self.sub.pending() or self._held is not None)
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.02)
        for t in list(self._cmd_tasks):
            t.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.sub.close()

    # ---- connection ----

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=f"{s.prefix}-{s.node}-w{self.worker_id}-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=s.keepalive,
            timeout=PUBLISH_TIMEOUT_S,
            tls_context=s.tls_context(),
            will=aiomqtt.Will(self._status_topic, b"offline", qos=1, retain=True),
        )

    async def _run(self) -> None:
        s = self.settings
        failures = 0
        while True:
            try:
                async with self._client() as client:
                    for topic in cmds.subscriptions(s.prefix, s.node, s.commands):
                        await client.subscribe(topic, qos=1)
                    await client.publish(self._status_topic, b"online", qos=1, retain=True)
                    self.connected = True
                    self.connects += 1
                    _log.info(
                        "mqtt connected",
                        broker=f"{s.host}:{s.port}",
                        tls=s.tls,
                        node=s.node,
                        queued=self.sub.pending(),
                        dropped=self.sub.dropped,
                        reconnect=failures > 0 or self.connects > 1,
                    )
                    failures = 0
                    await self._serve(client)
            except asyncio.CancelledError:
                self.connected = False
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect, never crash
                was = self.connected
                self.connected = False
                delay = RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]
                failures += 1
                level = _log.warning if was or failures == 1 else _log.debug
                level(
                    "mqtt broker unreachable; retrying",
                    broker=f"{s.host}:{s.port}",
                    error=str(exc) or type(exc).__name__,
                    retry_in_s=delay,
                    queued=self.sub.pending(),
                )
                await asyncio.sleep(delay)

    async def _serve(self, client: aiomqtt.Client) -> None:
        tasks = {
            asyncio.create_task(self._publish_events(client), name="mqtt-publish"),
            asyncio.create_task(self._read_commands(client), name="mqtt-commands"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
        raise aiomqtt.MqttError("connection ended")

    # ---- events out ----

    async def _publish_events(self, client: aiomqtt.Client) -> None:
        s = self.settings
        while True:
            ev = self._held or await self.sub.get()
            self._held = ev
            retain = False
            if ev.type == "trunk.registration":
                topic = cmds.trunk_status_topic(s.prefix, s.node, str(ev.data.get("trunk")))
                retain = True
            else:
                topic = cmds.event_topic(s.prefix, s.node, ev.call_id, ev.type)
            body = ev.to_json()
            body.update(node=s.node, worker=self.worker_id)
            payload = json.dumps(body, ensure_ascii=False, default=str).encode()
            await client.publish(topic, payload, qos=1, retain=retain, timeout=PUBLISH_TIMEOUT_S)
            self._held = None
            self.published += 1

    # ---- commands in ----

    async def _read_commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            task = asyncio.create_task(self._command(client, message))
            self._cmd_tasks.add(task)
            task.add_done_callback(self._cmd_tasks.discard)

    async def _command(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        s = self.settings
        topic = str(message.topic)
        parsed = cmds.parse_topic(s.prefix, s.node, topic)
        if parsed is None:
            return
        self.commands += 1
        call_id: str | None = parsed.call_id
        try:
            if parsed.verb in cmds.MODELS and parsed.verb not in s.commands:
                raise cmds.CommandError(f"verb {parsed.verb!r} is disabled on this engine")
            payload = message.payload if isinstance(message.payload, bytes | str) else None
            cmd = cmds.parse_payload(parsed.verb, payload)
            call_id = cmds.target_call(parsed, cmd)
            if (
                parsed.scope == "global"
                and call_id is not None
                and self.control.call(call_id) is None
            ):
                return  # another worker's call: it answers
            result = await cmds.dispatch(self.control, call_id, cmd)
        except cmds.CommandError as exc:
            result = CommandResult(False, str(exc))
        except Exception as exc:  # noqa: BLE001 - a command must never take the link down
            _log.exception("command failed", topic=topic)
            result = CommandResult(False, f"internal error: {type(exc).__name__}")
        _log.info(
            "command",
            call_id=call_id,
            verb=parsed.verb,
            ok=result.ok,
            reason=result.reason or None,
        )
        await self._reply(client, message, topic, parsed.verb, call_id, result)

    async def _reply(
        self,
        client: aiomqtt.Client,
        message: aiomqtt.Message,
        topic: str,
        verb: str,
        call_id: str | None,
        result: CommandResult,
    ) -> None:
        body: dict[str, Any] = {"verb": verb}
        if call_id:
            body["call_id"] = call_id
        body.update(result.to_json())
        props_in = message.properties
        response_topic = getattr(props_in, "ResponseTopic", None) if props_in else None
        props = None
        if response_topic:
            props = Properties(PacketTypes.PUBLISH)
            corr = getattr(props_in, "CorrelationData", None)
            if corr:
                props.CorrelationData = corr
        reply_topic = response_topic or f"{topic}/reply"
        try:
            await client.publish(
                reply_topic,
                json.dumps(body, ensure_ascii=False, default=str).encode(),
                qos=1,
                properties=props,
                timeout=PUBLISH_TIMEOUT_S,
            )
        except Exception as exc:  # noqa: BLE001 - the broker went away: the reply is lost
            _log.warning("command reply not sent", topic=reply_topic, error=str(exc))
