"""MQTT request/reply tools against a real Mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from telephony_bot.providers.base import FunctionCall, ToolSpec
from telephony_bot.tools.base import FunctionTool, ToolError
from telephony_bot.tools.executor import ToolExecutor
from telephony_bot.tools.mqtt import MqttBroker, mqtt_tool
from tests.support.mosquitto import Mosquitto, free_port, mosquitto_available, running_mosquitto

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

TOPIC = "bank/balance/request"
SPEC = ToolSpec(
    "get_balance",
    "Account balance",
    {"type": "object", "properties": {"account": {"type": "string"}}, "required": ["account"]},
)
REPLY = {"balance": "1234.56", "currency": "EUR"}


class FakeCall:
    call_id = "call-mqtt"

    async def hangup_after_playout(self, reason: str) -> None: ...

    async def transfer(self, target: str) -> tuple[bool, str]:
        return False, "no"

    async def send_dtmf(self, digits: str) -> None: ...


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as running:
        yield running


def props(response_topic: str | None = None, correlation: bytes | None = None) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        p.ResponseTopic = response_topic
    if correlation is not None:
        p.CorrelationData = correlation
    return p


@asynccontextmanager
async def responder(
    broker: Mosquitto, *, stray_first: bool = False
) -> AsyncIterator[list[dict[str, Any]]]:
    """A back-office service: answers each request on its ResponseTopic, echoing the
    CorrelationData; with `stray_first` it first sends a reply with the wrong one."""
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def serve() -> None:
        async with aiomqtt.Client(
            broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5, identifier="svc"
        ) as client:
            await client.subscribe(TOPIC, qos=1)
            ready.set()
            async for message in client.messages:
                seen.append(json.loads(message.payload))
                reply_to = message.properties.ResponseTopic
                corr = message.properties.CorrelationData
                if stray_first:
                    stray = json.dumps({"balance": "0.00", "currency": "XXX"})
                    await client.publish(reply_to, stray, qos=1, properties=props(None, b"wrong"))
                    await client.publish(reply_to, stray, qos=1)  # no correlation at all
                answer = json.dumps(REPLY)
                await client.publish(reply_to, answer, qos=1, properties=props(None, corr))

    task = asyncio.create_task(serve())
    try:
        async with asyncio.timeout(5):
            await ready.wait()
        yield seen
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, aiomqtt.MqttError):
            pass


def make_tool(broker: Mosquitto, response_timeout_s: float = 3.0) -> FunctionTool:
    return mqtt_tool(
        SPEC,
        broker=MqttBroker(host=broker.host, port=broker.port),
        topic=TOPIC,
        response_timeout_s=response_timeout_s,
    )


async def test_request_reply_returns_the_service_answer(broker: Mosquitto) -> None:
    tool = make_tool(broker)
    async with responder(broker) as seen:
        result = await tool.run({"account": "DE89 3704"}, FakeCall())
    assert result == REPLY
    assert seen == [{"account": "DE89 3704"}]


async def test_through_the_executor_and_concurrent_calls(broker: Mosquitto) -> None:
    tool = make_tool(broker)
    executor = ToolExecutor({SPEC.name: tool}, FakeCall())
    async with responder(broker) as seen:
        results = await asyncio.gather(
            *(
                executor.run(FunctionCall(f"fc{i}", SPEC.name, json.dumps({"account": str(i)})))
                for i in range(5)
            )
        )
    assert all(r.ok for r in results), [r.output for r in results]
    assert [json.loads(r.output) for r in results] == [REPLY] * 5
    assert sorted(s["account"] for s in seen) == [str(i) for i in range(5)]


async def test_uncorrelated_replies_are_ignored(broker: Mosquitto) -> None:
    tool = make_tool(broker)
    async with responder(broker, stray_first=True):
        assert await tool.run({"account": "1"}, FakeCall()) == REPLY


async def test_no_responder_times_out(broker: Mosquitto) -> None:
    tool = make_tool(broker, response_timeout_s=0.8)
    t0 = time.monotonic()
    with pytest.raises(ToolError, match=rf"no reply from {TOPIC} within 0.8 s"):
        await tool.run({"account": "1"}, FakeCall())
    assert 0.7 <= time.monotonic() - t0 < 2.0


async def test_stopped_broker_is_unreachable_quickly(broker: Mosquitto) -> None:
    tool = make_tool(broker)
    broker.stop()
    t0 = time.monotonic()
    with pytest.raises(ToolError, match=rf"MQTT broker 127\.0\.0\.1:{broker.port} unreachable"):
        await tool.run({"account": "1"}, FakeCall())
    assert time.monotonic() - t0 < 1.0


async def test_never_started_broker_is_unreachable_through_the_executor() -> None:
    port = free_port()
    tool = mqtt_tool(SPEC, broker=MqttBroker(port=port), topic=TOPIC)
    executor = ToolExecutor({SPEC.name: tool}, FakeCall())
    result = await executor.run(FunctionCall("fc", SPEC.name, json.dumps({"account": "1"})))
    assert not result.ok
    assert json.loads(result.output) == {"error": f"MQTT broker 127.0.0.1:{port} unreachable"}


def test_password_is_masked_in_repr() -> None:
    b = MqttBroker(username="bot", password="hunter2")
    assert "hunter2" not in repr(b)
    assert "***" in repr(b)
