"""Toll fraud: where a call may be transferred (`TransferRules`, one rule whoever asks) and
how many calls a node may originate (`SlidingWindowLimit`), as an attacker with the MQTT or
HTTP credentials would try them; the HTTP statuses a refusal gets."""

from __future__ import annotations

import pytest

from telephony_bot.app import CallSetup
from telephony_bot.callport import CallPort, CarrierCapabilities
from telephony_bot.config import EngineSettings, OutboundSettings, SipSettings
from telephony_bot.errors import CarrierError
from telephony_bot.events.control import CommandResult
from telephony_bot.providers.base import SessionConfig
from telephony_bot.providers.echo import EchoProvider
from telephony_bot.session.settings import SessionOptions
from telephony_bot.sliding_window import SlidingWindowLimit
from telephony_bot.transfer_target import TransferRules
from telephony_bot.worker import Worker
from tests.unit.test_admin_api import AUTH
from tests.unit.test_admin_cluster import cluster
from tests.unit.test_carrier_seam import FakeCarrier

__all__ = ["cluster"]

TRUNK = "sip:10.0.0.5:5060;transport=tcp"
RULES = TransferRules(
    {"advisor": "sip:advisors@pbx.example.com", "card_block": "sip:card-block@pbx.example.com"},
    allow=("+4930*", "100"),
    trunk=TRUNK,
    route="bank-balance",
)
NOT_OURS = "is not a transfer target of route 'bank-balance' (targets: advisor, card_block)"


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        ("advisor", "sip:advisors@pbx.example.com"),  # a name, as the model gives it
        ("sip:card-block@pbx.example.com", "sip:card-block@pbx.example.com"),  # its URI
        ("+4930123456", "sip:+4930123456@10.0.0.5:5060;transport=tcp"),  # an allowed number
        ("tel:+4930123456", "sip:+4930123456@10.0.0.5:5060;transport=tcp"),
        ("sip:+4930123456@10.0.0.5:5060", "sip:+4930123456@10.0.0.5:5060;transport=tcp"),
        ("sips:100@10.0.0.5:5060;user=phone", "sip:100@10.0.0.5:5060;transport=tcp"),
    ],
)
def test_a_target_of_the_route_or_an_allowed_number_through_the_trunk_is_accepted(
    target: str, uri: str
) -> None:
    assert RULES.resolve(target) == (uri, "")
    assert RULES.resolve(uri) == (uri, "")  # what the REFER goes to passes the rules again


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("sip:+900123@evil.example", f"{NOT_OURS}, and outbound.allow does not match +900123"),
        ("sip:+4930123@evil.example", f"{NOT_OURS}; numbers are put through the outbound "
         "trunk (10.0.0.5:5060), not evil.example"),
        ("tel:+900123", f"{NOT_OURS}, and outbound.allow does not match +900123"),
        ("+4940123", f"{NOT_OURS}, and outbound.allow does not match +4940123"),
        ("1000", f"{NOT_OURS}, and outbound.allow does not match 1000"),
        ("nurse", f"{NOT_OURS}, nor a number"),
        ("sip:advisors@evil.example", f"{NOT_OURS}, and outbound.allow does not match advisors"),
        ("sip:evil.example", f"{NOT_OURS}, nor a number"),
    ],
)  # fmt: skip
def test_anything_else_is_refused_with_the_reason(target: str, why: str) -> None:
    assert RULES.resolve(target) == (None, f"{target!r} {why}")


def test_without_an_allow_list_only_the_routes_targets_go_and_no_trunk_means_tel() -> None:
    closed = TransferRules({"desk": "sip:desk@pbx"})
    assert closed.resolve("+4930123")[0] is None  # outbound.allow empty: no number at all
    assert closed.resolve("desk") == ("sip:desk@pbx", "")
    no_trunk = TransferRules({}, allow=("+4930*",))
    assert no_trunk.resolve("+4930123") == ("tel:+4930123", "")
    uri, why = no_trunk.resolve("sip:+4930123@pbx.example.com")
    assert uri is None and why.endswith(
        "the outbound trunk (none is configured), not pbx.example.com"
    )


def test_a_sliding_window_allows_the_limit_in_any_window_and_says_when_the_next_is_free() -> None:
    w = SlidingWindowLimit(3, 60)
    assert [w.acquire(t) for t in (0.0, 10.0, 20.0)] == [0.0, 0.0, 0.0]
    assert w.acquire(30.0) == 30.0  # the first slot frees at 60 s
    assert w.acquire(59.9) == pytest.approx(0.1)
    assert w.acquire(60.0) == 0.0  # 0 s left the window
    assert w.acquire(60.5) == pytest.approx(9.5)
    with pytest.raises(ValueError):
        SlidingWindowLimit(0)


class DialingCarrier(FakeCarrier):
    """A carrier with a trunk whose far end never answers: each attempt is counted."""

    capabilities = CarrierCapabilities(originate=True)

    async def originate(self, to: str, *, caller: str, ring_timeout_s: float) -> CallPort:
        self.done.append(f"dial {to}")
        raise CarrierError("the trunk did not answer")


def _worker(max_per_minute: int, node_workers: int = 1) -> tuple[Worker, DialingCarrier]:
    outbound = OutboundSettings(trunk=TRUNK, allow=("*",), max_per_minute=max_per_minute)
    carrier = DialingCarrier()
    worker = Worker(
        SipSettings(),
        CallSetup(EchoProvider(), SessionConfig(), SessionOptions()),
        carrier=carrier,
        engine=EngineSettings(outbound=outbound),
        node_workers=node_workers,
    )
    return worker, carrier


async def test_originate_over_the_nodes_rate_is_refused_before_anything_is_dialed() -> None:
    worker, carrier = _worker(3)
    results = [await worker.originate(f"+4930{i}", None, None) for i in range(5)]
    assert [r.reason for r in results[:3]] == ["the trunk did not answer"] * 3
    assert carrier.done == ["dial +49300", "dial +49301", "dial +49302"]  # not the last two
    refused = results[3]
    assert not refused.ok and refused.data == {"rate_limited": True, "retry_after_s": 60}
    assert refused.reason == (
        "originate refused: at most 3 calls a minute on this node (outbound.max_per_minute); "
        "try again in 60 s"
    )
    # a number outside the allow list never takes a slot (nor does a bad one)
    worker, carrier = _worker(1)
    worker.engine = EngineSettings(outbound=OutboundSettings(trunk=TRUNK, allow=("+4930*",)))
    assert "allow list" in (await worker.originate("+900123", None, None)).reason
    assert (await worker.originate("+4930123", None, None)).reason == "the trunk did not answer"


async def test_the_nodes_rate_is_shared_by_its_workers() -> None:
    worker, carrier = _worker(10, node_workers=4)  # 2 each: never more than 10 in all
    results = [await worker.originate("+4930", None, None) for _ in range(3)]
    assert len(carrier.done) == 2 and results[2].data["rate_limited"]
    assert "at most 2 calls a minute on this worker (the node's 10 shared by 4 workers)" in (
        results[2].reason
    )


async def test_http_refusals_say_forbidden_and_too_many_with_when_to_retry(cluster) -> None:
    client, controls = cluster["client"], cluster["controls"]

    async def refused_transfer(call_id: str, target: str) -> CommandResult:
        return CommandResult(False, "transfer refused: not ours", {"forbidden": True})

    async def limited(to: str, from_: str | None, route: str | None) -> CommandResult:
        controls[0].done.append(("originate", to))
        return CommandResult(False, "originate refused: too many",
                             {"rate_limited": True, "retry_after_s": 17})  # fmt: skip

    controls[1].transfer = refused_transfer
    r = await client.post("/calls/c9/transfer", headers=AUTH, json={"target": "sip:+9@x"})
    assert r.status == 403 and (await r.json())["reason"] == "transfer refused: not ours"
    # worker 0 (idle, picked first) is over its share: the next ready worker dials
    controls[0].originate = limited
    r = await client.post("/originate", headers=AUTH, json={"to": "+4930"})
    assert r.status == 200 and (await r.json())["worker"] == 1
    assert controls[0].done == [("originate", "+4930")]
    # every worker over its share: 429 and Retry-After
    controls[1].originate = limited
    r = await client.post("/originate", headers=AUTH, json={"to": "+4930"})
    assert r.status == 429 and r.headers["Retry-After"] == "17"
    assert (await r.json())["reason"] == "originate refused: too many"
