"""The SIP side of admission: each new INVITE (raw, from the gate on PJSIP's thread, or the
offer in `onIncomingCall` when the gate is not there) → `telephony_bot.admission` →
refusal or admission, counted by reason and logged once per source and reason a while.

The front door (a trusted proxy) names the trunk it admitted a call for in
`X-Telephony-Bot-Trunk` and the caller's address in `X-Telephony-Bot-Source`; from anyone
else both are ignored.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping

from telephony_bot import log
from telephony_bot.admission import SOURCE_HEADER, Admission, Limits, Load, Verdict
from telephony_bot.config import EngineSettings
from telephony_bot.sip.early import CallTimers
from telephony_bot.sip.sipmsg import has_to_tag, parse_request
from telephony_bot.trunk_config import trunk_rules

_log = log.get("sip.admission")
LOG_EVERY_S = 30.0

# the worker's state for a source ip: (calls live or being set up, that source's pending)
LoadOf = Callable[[str], tuple[int, int]]


class InboundGuard:
    def __init__(
        self,
        admission: Admission,
        load_of: LoadOf,
        *,
        max_calls: int,
        draining: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        line_trunk: Callable[[str], str] = lambda _uri: "",
    ) -> None:
        """`line_trunk`: the registered trunk whose Contact token a Request-URI carries."""
        self.admission = admission
        self.line_trunk = line_trunk
        self.load_of = load_of
        self.max_calls = max_calls
        self.draining = draining
        self.refused: Counter[str] = Counter()  # by Verdict.why (metrics)
        self._clock = clock
        self._throttle = log.Throttle(LOG_EVERY_S)
        self._trunks: OrderedDict[str, str] = OrderedDict()  # SIP Call-ID → trunk admitted
        self._lock = threading.Lock()

    # ---- the gate's callback (PJSIP's thread) ----

    def decide(
        self, ip: str, port: int, raw: bytes
    ) -> tuple[int, str, list[tuple[str, str]]] | None:
        req = parse_request(raw.decode("latin-1"))
        if has_to_tag(req.headers.get("To", "")):
            return None  # a re-INVITE: its dialog decides
        verdict = self.check(ip, port, req.method, req.headers, self.line_trunk(req.request_uri))
        if verdict.admitted:
            return None
        return verdict.status, verdict.reason, list(verdict.headers)

    # ---- one decision ----

    def caller_address(self, ip: str, headers: Mapping[str, str]) -> str:
        """Who is calling: the source, or behind the front door the address it passes on."""
        if self.admission.is_trusted_proxy(ip):
            return headers.get(SOURCE_HEADER, "").strip() or ip
        return ip

    def check(
        self, ip: str, port: int, method: str, headers: Mapping[str, str], line_trunk: str = ""
    ) -> Verdict:
        calls, unacked = self.load_of(self.caller_address(ip, headers))
        load = Load(calls, self.max_calls, unacked, self.draining())
        with self._lock:
            verdict = self.admission.check(ip, method, headers, load, line_trunk)
            if verdict.admitted:
                trunk = verdict.trunk
                call_id = headers.get("Call-ID", "")
                if trunk and call_id:
                    self._trunks[call_id] = trunk
                    while len(self._trunks) > 256:
                        self._trunks.popitem(last=False)
                return verdict
            self.refused[verdict.why] += 1
            show, held = self._throttle.hit(f"{ip}/{verdict.why}", self._clock())
        if show:
            busy = verdict.why == "busy"  # the name operators know for a full worker
            _log.warning(
                "call rejected with 486: worker is full" if busy else "INVITE refused",
                source=f"{ip}:{port}",
                status=verdict.status,
                why=verdict.why,
                calls=calls,
                held_back=held,
            )
        return verdict

    def trunk_of(self, sip_call_id: str) -> str:
        """The trunk an admitted INVITE was attributed to (once; "" if none)."""
        with self._lock:
            return self._trunks.pop(sip_call_id, "")


def admission_from(
    engine: EngineSettings,
    max_calls: int,
    trusted_proxies: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[Admission, CallTimers]:
    """The worker's admission policy and call timers from the engine config (`sip.admission`,
    `trunks`) and the front door's address(es); ConfigError when a trunk's secret is unset."""
    a = engine.sip.admission
    proxies = tuple(ipaddress.ip_address(p) for p in (*a.trusted_proxies, *trusted_proxies))
    limits = Limits(
        rate=a.rate,
        burst=a.burst,
        per_source_rate=a.per_source_rate,
        per_source_burst=a.per_source_burst,
        max_unacked_per_source=a.max_unacked_per_source,
        allow_any=a.allow_any,
        trusted_proxies=proxies,
    )
    admission = Admission(trunk_rules(engine.trunks, env), limits, max_calls=max_calls)
    return admission, CallTimers(a.ack_timeout_s, a.answer_timeout_s)
