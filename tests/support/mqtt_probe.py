"""An MQTT client for tests (paho, MQTT v5, its own thread): records every message on the
topics it watches and sends commands, with or without a v5 Response Topic."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Msg:
    t: float
    topic: str
    payload: Any  # parsed JSON, or text
    correlation: bytes | None


class MqttProbe:
    def __init__(self, host: str, port: int, watch: str = "#") -> None:
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(watch, 1), ("probe/replies/#", 1)])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("probe could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        raw = msg.payload.decode("utf-8", "replace")
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        with self._cond:
            self.messages.append(Msg(time.monotonic(), msg.topic, payload, corr))
            self._cond.notify_all()

    def wait_for(
        self, pred: Callable[[Msg], bool], count: int = 1, timeout: float = 15.0
    ) -> list[Msg]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [m.topic for m in self.messages][-30:]
                    raise AssertionError(f"{count} matching MQTT messages not seen; last: {seen}")
                self._cond.wait(left)

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            out = [m.payload for m in self.messages if "/events/" in m.topic]
        return [e for e in out if type_ is None or e.get("type") == type_]

    def wait_event(self, type_: str, count: int = 1, timeout: float = 15.0) -> list[dict]:
        msgs = self.wait_for(
            lambda m: "/events/" in m.topic and m.topic.endswith("/" + type_), count, timeout
        )
        return [m.payload for m in msgs]

    def command(
        self, topic: str, payload: dict[str, Any] | str, *, v5_reply: bool = False,
        timeout: float = 30.0,
    ) -> dict[str, Any]:  # fmt: skip
        """Send a command and return its reply (v5 Response Topic, or `<topic>/reply`)."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        props = None
        corr = uuid.uuid4().bytes
        if v5_reply:
            reply_topic = f"probe/replies/{uuid.uuid4().hex[:8]}"
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = corr
        else:
            reply_topic = f"{topic}/reply"
        start = len(self.messages)
        self.client.publish(topic, body, qos=1, properties=props).wait_for_publish(5)
        msgs = self.wait_for(
            lambda m: m.topic == reply_topic and self.messages.index(m) >= start
            and (not v5_reply or m.correlation == corr),
            timeout=timeout,
        )  # fmt: skip
        reply: dict[str, Any] = msgs[0].payload
        return reply

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
