"""Who may start a call here, and how fast: the admission policy for new INVITEs (pure).

One decision per INVITE, taken before PJSIP sets up any media for it (`sip/gate.py` asks,
on PJSIP's thread): admit, or answer it at once with a status and a reason. The checks, in
order:

1. draining → 503 (with Retry-After);
2. trust: the source is a trusted proxy (the front door), or a trunk takes it (its source
   address is in the trunk's `allow` list, or the INVITE carries the trunk's digest
   credentials: 401 challenge when it carries none, 403 when they are wrong), or — with no
   trunk configured — it comes from a loopback or private address (or `allow_any`).
   Anything else: 403;
3. rate: per source and for all sources together (token buckets) → 503;
4. the setup budget: at most `setup_budget` INVITEs handed to PJSIP per `SETUP_WINDOW_S`.
   The pjsua2 wheel's I/O queue has 64 handles; every call's RTP and RTCP sockets take two,
   and a closed socket's handle is reusable only 500 ms later, so calls set up (and torn
   down) faster than that exhaust it and PJSIP aborts the process (measured: a 75 cps
   flood). The budget keeps that from ever happening → 503;
5. capacity: calls live or being set up ≥ the worker's maximum → 486 Busy Here;
6. a source's calls answered but not ACKed ≥ `max_unacked_per_source` → 503: one sender
   cannot fill every line with INVITEs it never completes (a real caller ACKs within
   milliseconds). Trunk calls are exempt (a PBX sends every call from one address); behind
   the front door the source is the caller's own address, which the front door passes on.

Every refusal carries `why`, a closed set of labels for metrics and logs (`REASONS`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from telephony_bot.sliding_window import SlidingWindowLimit

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The wheel's PJSIP: select() I/O queue of PJ_IOQUEUE_MAX_HANDLES = 64, a closed socket's key
# reused after PJ_IOQUEUE_KEY_FREE_DELAY = 500 ms, two sockets (RTP, RTCP) per call.
IOQUEUE_HANDLES = 64
SETUP_WINDOW_S = 0.5
SOCKETS_PER_CALL = 2
RESERVED_HANDLES = 24  # SIP UDP + TCP listener, TCP connections (the wheel accepts ~17), margin

REASONS = (
    "draining",
    "not_allowed",
    "auth_required",
    "auth_failed",
    "rate_source",
    "rate_global",
    "setup_budget",
    "busy",
    "unacked_source",
)
RETRY_AFTER_S = 5
# Set by the front door on the INVITEs it forwards (believed from a trusted proxy only): the
# trunk it admitted the call for, and the caller's own address.
TRUNK_HEADER = "X-Telephony-Bot-Trunk"
SOURCE_HEADER = "X-Telephony-Bot-Source"


def setup_budget(max_calls: int, handles: int = IOQUEUE_HANDLES) -> int:
    """INVITEs PJSIP may take per SETUP_WINDOW_S without running out of I/O queue handles:
    what is left after the live calls' sockets and the reserve, two sockets per setup."""
    free = handles - RESERVED_HANDLES - SOCKETS_PER_CALL * max_calls
    return max(1, free // SOCKETS_PER_CALL)


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Verdict:
    """Admit (`status` 0) or refuse with `status`/`reason`; `why` labels the refusal."""

    status: int = 0
    reason: str = ""
    why: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    trunk: str = ""  # the trunk the call is attributed to ("" none)

    @property
    def admitted(self) -> bool:
        return self.status == 0


@dataclass(frozen=True)
class Credentials:
    """A trunk's digest credentials (the password resolved from the environment or a file)."""

    user: str
    password: str = field(repr=False)
    realm: str = "telephony-bot"


@dataclass(frozen=True)
class TrunkRule:
    """What admission needs of one configured trunk."""

    name: str
    allow: tuple[IpNetwork, ...] = ()
    auth: Credentials | None = None

    def takes_source(self, ip: IpAddress) -> bool:
        return any(ip in net for net in self.allow)


@dataclass(frozen=True)
class Limits:
    rate: float = 20.0  # INVITEs per second, every source together
    burst: int = 20
    per_source_rate: float = 10.0
    per_source_burst: int = 20
    max_unacked_per_source: int = 2
    allow_any: bool = False  # no trunk configured: take INVITEs from any address
    trusted_proxies: tuple[IpAddress, ...] = ()  # the front door: checked there already


@dataclass(frozen=True)
class Load:
    """The worker's state when an INVITE arrives (from the SIP side's call table)."""

    calls: int  # live or being set up
    max_calls: int
    unacked_from_source: int = 0  # the source's calls answered (200 OK) but not ACKed yet
    draining: bool = False


def parse_networks(items: Sequence[str]) -> tuple[IpNetwork, ...]:
    """`192.0.2.0/24`, `2001:db8::/32` or a single address; ValueError names a bad one."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(out)


def is_local_or_private(ip: IpAddress) -> bool:
    """Loopback, RFC 1918/4193 private, link-local or carrier-grade NAT (100.64/10)."""
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return True
    return isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


# ---------------------------------------------------------------- rate limiting


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SourceBuckets:
    """One bucket per source address, the least recently seen forgotten beyond `size`."""

    def __init__(self, rate: float, burst: int, size: int = 4096) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, source: str, now: float) -> bool:
        b = self._buckets.get(source)
        if b is None:
            b = self._buckets[source] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        return b.take(now)


# ---------------------------------------------------------------- digest (RFC 2617 / 7616, MD5)

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
NONCE_TTL_S = 300


def digest_params(header: str) -> dict[str, str]:
    """`Digest username="a", realm="r", ...` → {"username": "a", ...} ({} if not Digest)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _PARAM.finditer(rest)}  # fmt: skip


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(p: Mapping[str, str], password: str, method: str) -> str:
    """The `response` a client with `password` computes for the challenge in `p`."""
    ha1 = _md5(f"{p.get('username', '')}:{p.get('realm', '')}:{password}")
    ha2 = _md5(f"{method}:{p.get('uri', '')}")
    if p.get("qop"):
        return _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}")
    return _md5(f"{ha1}:{p.get('nonce', '')}:{ha2}")


class Nonces:
    """Stateless nonces: a time stamp signed with a per-process key, valid NONCE_TTL_S."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def make(self, now: float) -> str:
        stamp = f"{int(now):x}"
        return stamp + "." + self._sign(stamp)

    def fresh(self, nonce: str, now: float) -> bool:
        stamp, _, sig = nonce.partition(".")
        if not hmac.compare_digest(sig, self._sign(stamp)):
            return False
        try:
            issued = int(stamp, 16)
        except ValueError:
            return False
        return 0 <= now - issued <= NONCE_TTL_S

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]


# ---------------------------------------------------------------- the decision


class Admission:
    """The policy for one worker (or a lone engine): `check()` per new INVITE."""

    def __init__(
        self,
        trunks: Sequence[TrunkRule] = (),
        limits: Limits | None = None,
        *,
        max_calls: int,
        nonces: Nonces | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self.trunks = tuple(trunks)
        self.limits = limits or Limits()
        self.budget = setup_budget(max_calls)
        lim = self.limits
        now = self._now()
        self._global = TokenBucket(lim.rate, lim.burst, now)
        self._sources = SourceBuckets(lim.per_source_rate, lim.per_source_burst)
        self._setups = SlidingWindowLimit(self.budget, SETUP_WINDOW_S)
        self._nonces = nonces or Nonces()

    def _now(self) -> float:
        return self._clock()

    def is_trusted_proxy(self, source_ip: str) -> bool:
        try:
            return ipaddress.ip_address(source_ip) in self.limits.trusted_proxies
        except ValueError:
            return False

    @property
    def open_to_private_only(self) -> bool:
        """No trunk and not `allow_any`: loopback and private sources only."""
        return not self.trunks and not self.limits.allow_any

    def check(
        self,
        source_ip: str,
        method: str,
        headers: Mapping[str, str],
        load: Load,
        line_trunk: str = "",
    ) -> Verdict:
        """The verdict for a new INVITE from `source_ip` with `headers` (canonical names).
        `line_trunk`: the trunk whose registration's Contact token (`line=`) the Request-URI
        carries — the INVITE comes from where that trunk's registrar sends its calls."""
        lim = self.limits
        now = self._now()
        if load.draining:
            return _refuse(503, "Service Unavailable", "draining", retry=True)
        try:
            ip = ipaddress.ip_address(source_ip)
        except ValueError:
            return _refuse(403, "Forbidden", "not_allowed")
        proxy = ip in lim.trusted_proxies
        if proxy:  # the front door checked the caller; it names the trunk it admitted
            trust = Verdict(trunk=headers.get(TRUNK_HEADER, "") or line_trunk)
        elif line_trunk:  # sent to the Contact we registered with that trunk (HMAC token)
            trust = Verdict(trunk=line_trunk)
        else:
            trust = self._trust(ip, method, headers)
        if not trust.admitted:
            return trust
        if not proxy and not self._sources.take(source_ip, now):
            return _refuse(503, "Service Unavailable", "rate_source", retry=True)
        if not self._global.take(now):
            return _refuse(503, "Service Unavailable", "rate_global", retry=True)
        if not self._setups.allow(now):
            return _refuse(503, "Service Unavailable", "setup_budget", retry=True)
        if load.calls >= load.max_calls:
            return _refuse(486, "Busy Here", "busy")
        if not trust.trunk and load.unacked_from_source >= lim.max_unacked_per_source:
            return _refuse(503, "Service Unavailable", "unacked_source", retry=True)
        self._setups.add(now)
        return trust

    def _trust(self, ip: IpAddress, method: str, headers: Mapping[str, str]) -> Verdict:
        if not self.trunks:
            if self.limits.allow_any or is_local_or_private(ip):
                return Verdict()
            return _refuse(403, "Forbidden", "not_allowed")
        for t in self.trunks:  # by address: the first trunk whose list holds the source
            if t.takes_source(ip) and t.auth is None:
                return Verdict(trunk=t.name)
        auth_trunks = [t for t in self.trunks if t.auth is not None and
                       (not t.allow or t.takes_source(ip))]  # fmt: skip
        if not auth_trunks:
            return _refuse(403, "Forbidden", "not_allowed")
        return self._digest(auth_trunks, method, headers)

    def _digest(self, trunks: list[TrunkRule], method: str, headers: Mapping[str, str]) -> Verdict:
        wall = self._wall()
        p = digest_params(headers.get("Authorization", ""))
        if not p or not p.get("nonce") or not p.get("response"):
            return self._challenge(trunks[0], wall, stale=False)
        for t in trunks:
            cred = t.auth
            assert cred is not None
            if p.get("username") != cred.user or p.get("realm") != cred.realm:
                continue
            if not self._nonces.fresh(p["nonce"], wall):
                return self._challenge(t, wall, stale=True)
            want = digest_response(p, cred.password, method)
            if hmac.compare_digest(want, p.get("response", "")):
                return Verdict(trunk=t.name)
            break
        return _refuse(403, "Forbidden", "auth_failed")

    def _challenge(self, trunk: TrunkRule, wall: float, *, stale: bool) -> Verdict:
        assert trunk.auth is not None
        value = (f'Digest realm="{trunk.auth.realm}", nonce="{self._nonces.make(wall)}", '
                 f'algorithm=MD5, qop="auth"' + (", stale=true" if stale else ""))  # fmt: skip
        return Verdict(401, "Unauthorized", "auth_required", (("WWW-Authenticate", value),))


def _refuse(status: int, reason: str, why: str, *, retry: bool = False) -> Verdict:
    headers = (("Retry-After", str(RETRY_AFTER_S)),) if retry else ()
    return Verdict(status, reason, why, headers)
