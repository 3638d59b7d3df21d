"""MQTT tools: request/reply over MQTT v5 (Response Topic + Correlation Data).

Each call connects, subscribes to a reply topic of its own (`<prefix>/replies/<unique>`),
publishes the model's arguments as JSON to the tool's topic with the MQTT v5 properties
ResponseTopic and CorrelationData, and waits for the reply that carries the same
correlation data (other messages are ignored). The reply's JSON is the tool's output.

A connection per call is deliberate for now: simple and robust (no shared state to
recover after a broker restart), at the cost of one TCP/MQTT handshake per call — a few
milliseconds on a LAN. A shared, reconnecting client can replace it behind the same API.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from telephony_bot import log
from telephony_bot.config import MqttSettings, tls_context
from telephony_bot.errors import ConfigError
from telephony_bot.providers.base import ToolSpec
from telephony_bot.tools.base import CallControl, FunctionTool, ToolError

_log = log.get("tools.mqtt")

_CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class MqttBroker:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None  # CA bundle for the broker's certificate; None: the system's
    client_id_prefix: str = "telephony-bot"

    @classmethod
    def from_settings(cls, m: MqttSettings) -> MqttBroker:
        """The engine's broker (`mqtt:` in --config, TELEPHONY_BOT_MQTT_*), the one its
        events and commands use too."""
        return cls(
            host=m.host,
            port=m.port,
            username=m.username,
            password=m.password.get_secret_value() if m.password else None,
            tls=m.tls,
            ca_file=m.ca_file,
            client_id_prefix=m.prefix,
        )

    def __repr__(self) -> str:
        pw = None if self.password is None else "***"
        return (
            f"MqttBroker(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={pw!r}, tls={self.tls}, ca_file={self.ca_file}, "
            f"client_id_prefix={self.client_id_prefix!r})"
        )

    def tls_context(self) -> ssl.SSLContext | None:
        return tls_context(self.tls, self.ca_file)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def mqtt_tool(
    spec: ToolSpec,
    *,
    broker: MqttBroker,
    topic: str,
    response_timeout_s: float = 5.0,
    timeout_s: float | None = None,
) -> FunctionTool:
    """A tool that asks a service over MQTT and returns its reply (see the module doc).

    `timeout_s` (the executor's bound for the whole call) defaults to the reply timeout
    plus the connect budget, so the tool's own, clearer error comes first."""
    if not topic or any(c in topic for c in "+#"):
        raise ConfigError(f"mqtt tool {spec.name}: topic must be a plain topic, no wildcards")
    if response_timeout_s <= 0:
        raise ConfigError(f"mqtt tool {spec.name}: response_timeout_s must be positive")
    total = timeout_s if timeout_s is not None else response_timeout_s + _CONNECT_TIMEOUT_S

    async def run(args: dict[str, Any], call: CallControl) -> Any:
        return await request(broker, topic, args, response_timeout_s)

    return FunctionTool(spec, run, timeout_s=total, meta={"mqtt": f"{broker.address} {topic}"})


async def request(
    broker: MqttBroker, topic: str, payload: dict[str, Any], response_timeout_s: float
) -> Any:
    """Publish `payload` to `topic` and return the correlated reply's JSON."""
    unique = secrets.token_hex(8)
    reply_topic = f"{broker.client_id_prefix}/replies/{unique}"
    correlation = secrets.token_bytes(16)
    async with AsyncExitStack() as stack:
        client = await _connect(stack, broker, unique)
        try:
            await client.subscribe(reply_topic, qos=1)
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = correlation
            body = json.dumps(payload, ensure_ascii=False)
            t0 = time.monotonic()
            await client.publish(topic, body.encode(), qos=1, properties=props)
            try:
                async with asyncio.timeout(response_timeout_s):
                    async for message in client.messages:
                        got = getattr(message.properties, "CorrelationData", None)
                        if str(message.topic) == reply_topic and got == correlation:
                            _log.debug(
                                "mqtt reply",
                                topic=topic,
                                ms=round((time.monotonic() - t0) * 1000, 1),
                            )
                            return _decode(message.payload)
                        _log.debug("mqtt: ignored uncorrelated message", topic=str(message.topic))
            except TimeoutError:
                raise ToolError(f"no reply from {topic} within {response_timeout_s:g} s") from None
        except aiomqtt.MqttError as exc:
            raise ToolError(f"MQTT connection to {broker.address} lost: {exc}") from None
    raise ToolError(f"MQTT connection to {broker.address} ended before a reply")


async def _connect(stack: AsyncExitStack, broker: MqttBroker, unique: str) -> aiomqtt.Client:
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=f"{broker.client_id_prefix}-{unique}",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=_CONNECT_TIMEOUT_S,
        keepalive=30,
        tls_context=broker.tls_context(),
    )
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            return await stack.enter_async_context(client)
    except MqttConnectError as exc:  # the broker answered CONNACK with a refusal
        raise ToolError(f"MQTT broker {broker.address} refused the connection: {exc}") from None
    except (aiomqtt.MqttError, TimeoutError):
        raise ToolError(f"MQTT broker {broker.address} unreachable") from None


def _decode(payload: Any) -> Any:
    if isinstance(payload, bytes | bytearray):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError("unreadable reply") from None
    elif payload is None:
        return {"ok": True}
    else:
        text = str(payload)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
