"""Did the caller get what they called for? Pure: what one call showed, in; a verdict out.

What a call showed (`Observed`) is what a user of the engine can see: the back office's
requests (tool arguments), the call record (tools the engine ran, transfers, who ended the
call), the bot's turns as logged with `logging.transcripts`, and the caller's own recording
(`energy_dbfs` per 20 ms frame, where each of their utterances was said).

Day specs in expectations (`day`, `date_of_birth`): a "YYYY-MM-DD" string, `tomorrow`,
`{in_days: N}`, `{weekday: tuesday}` (the next one after today; also the one a week later,
as "Tuesday" said on a Monday night can mean either), `{day_of_month: 14}` (the next 14th).
A string arg matches case-insensitively; `{contains: x}` matches a substring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

VOICED_DBFS = -45.0  # a received frame above this is the bot speaking
FRAME_MS = 20
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TRANSFER_HANGUP_S = 5.0  # after a transfer the bot ends its leg within this
REPLY_WINDOW_MS = 8000  # a reply later than this after the caller stopped is no reply
GREETING_KEPT = 0.85  # share of the reference greeting a caller must hear over a backchannel


@dataclass
class Observed:
    tool_calls: list[dict[str, Any]]  # {name, args}: the back office's requests (or CDR names)
    bot_turns: list[str]  # what the bot said, in order (turn.assistant texts)
    user_turns: list[str]  # what the engine heard (turn.user texts)
    transfer_target: str | None  # the REFER's target URI (the caller's report)
    after_transfer_s: float | None  # how long the call stayed up after a transfer succeeded
    ended_by: str  # the caller's report: remote (the bot hung up), local, timeout
    duration_s: float  # answer to end, the caller's clock
    energy: list[float]  # dBFS per 20 ms frame received
    utterances: list[tuple[int, int]]  # (start_ms, voiced end_ms) of each caller utterance
    reference_greeting_ms: int = 0  # voiced ms a silent caller hears in the greeting window
    greeting_window_ms: int = 0
    reference_turns: list[str] = field(default_factory=list)  # the greeting's bot turns
    bot_turns_before_caller: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    ok: bool
    why: list[str]  # what failed, for a person to read
    latencies_ms: list[float]  # end of each caller utterance -> first bot audio after it
    lost: int  # caller utterances the engine never heard (no turn.user)
    greeting_cut: bool | None  # None: no backchannel in this item


def resolve_day(spec: Any, today: date) -> set[date]:
    """The dates a day spec accepts."""
    if isinstance(spec, str):
        if spec == "tomorrow":
            return {today + timedelta(days=1)}
        return {date.fromisoformat(spec)}
    if "in_days" in spec:
        return {today + timedelta(days=int(spec["in_days"]))}
    if "weekday" in spec:
        ahead = (WEEKDAYS.index(spec["weekday"]) - today.weekday()) % 7 or 7
        first = today + timedelta(days=ahead)
        return {first, first + timedelta(days=7)}
    if "day_of_month" in spec:
        d = today.replace(day=1)
        for _ in range(3):
            try:
                cand = d.replace(day=int(spec["day_of_month"]))
            except ValueError:
                cand = None
            if cand is not None and cand > today:
                return {cand}
            d = (d + timedelta(days=32)).replace(day=1)
    raise ValueError(f"unknown day spec {spec!r}")


def _arg_ok(key: str, want: Any, got: Any, today: date) -> bool:
    if key in ("day", "date_of_birth") and not isinstance(want, Mapping | bool):
        want = {"date": want}
    if isinstance(want, Mapping) and "contains" in want:
        return isinstance(got, str) and str(want["contains"]).lower() in got.lower()
    if isinstance(want, Mapping) and "date" in want:
        try:
            return date.fromisoformat(str(got)) in resolve_day(str(want["date"]), today)
        except ValueError:
            return False
    if key in ("day", "date_of_birth") and isinstance(want, Mapping):
        try:
            return date.fromisoformat(str(got)) in resolve_day(want, today)
        except ValueError:
            return False
    if isinstance(want, bool):
        return got is want or str(got).lower() == str(want).lower()
    return str(got).strip().lower() == str(want).strip().lower()


def tool_matches(want: Mapping[str, Any], calls: Sequence[Mapping[str, Any]], today: date) -> int:
    """How many of `calls` are the tool `want` names, with its arguments."""
    args = want.get("args") or {}
    return sum(
        1
        for c in calls
        if c["name"] == want["name"]
        and all(_arg_ok(k, v, (c.get("args") or {}).get(k), today) for k, v in args.items())
    )


def voiced_ms(energy: Sequence[float], start_ms: int = 0, end_ms: int | None = None) -> int:
    a = start_ms // FRAME_MS
    b = len(energy) if end_ms is None else min(len(energy), end_ms // FRAME_MS)
    return sum(FRAME_MS for e in energy[a:b] if e > VOICED_DBFS)


def first_voiced_ms(energy: Sequence[float], from_ms: int = 0) -> int | None:
    for i in range(from_ms // FRAME_MS, len(energy)):
        if energy[i] > VOICED_DBFS:
            return i * FRAME_MS
    return None


def first_turn_ms(energy: Sequence[float], pause_ms: int = 1000) -> int:
    """How long the bot's first turn lasts: its first voiced frame to the start of its first
    pause of `pause_ms` (0: the bot never spoke)."""
    start = first_voiced_ms(energy)
    if start is None:
        return 0
    gap = pause_ms // FRAME_MS
    last = start // FRAME_MS
    for i in range(start // FRAME_MS, len(energy)):
        if energy[i] > VOICED_DBFS:
            last = i
        elif i - last >= gap:
            break
    return (last + 1) * FRAME_MS - start


def reply_latency_ms(energy: Sequence[float], end_ms: int) -> float | None:
    """End of the caller's speech -> the bot's first audio after it, on the caller's wire.
    None when the bot was still talking as the caller stopped (no reply to time) or said
    nothing within REPLY_WINDOW_MS."""
    i = end_ms // FRAME_MS
    if any(e > VOICED_DBFS for e in energy[max(0, i - 3) : i]):
        return None
    onset = first_voiced_ms(energy, end_ms)
    if onset is None or onset - end_ms > REPLY_WINDOW_MS:
        return None
    return float(onset - end_ms)


def _contains_any(texts: Sequence[str], words: str | Sequence[str]) -> bool:
    options = [words] if isinstance(words, str) else list(words)
    return any(w.lower() in t.lower() for t in texts for w in options)


def judge(
    item: Mapping[str, Any],
    obs: Observed,
    today: date,
    targets: Mapping[str, str],
) -> Verdict:
    """`targets`: the route's transfer target names -> the URIs the bench gave them."""
    exp: Mapping[str, Any] = item.get("expect") or {}
    why: list[str] = []
    if "tool" in exp:
        want = exp["tool"]
        n = tool_matches(want, obs.tool_calls, today)
        if n < int(want.get("count", 1)):
            seen = [c for c in obs.tool_calls if c["name"] == want["name"]]
            why.append(
                f"{want['name']}{want.get('args') or ''} x{want.get('count', 1)} not called"
                + (f" (called with {[c.get('args') for c in seen]})" if seen else
                   f" (tools called: {[c['name'] for c in obs.tool_calls] or 'none'})")
            )  # fmt: skip
    for name in exp.get("no_tool", []):
        if any(c["name"] == name for c in obs.tool_calls):
            why.append(f"{name} was called")
    if "transfer" in exp:
        names = exp["transfer"] if isinstance(exp["transfer"], list) else [exp["transfer"]]
        uris = {targets.get(n, n) for n in names}
        if obs.transfer_target is None:
            why.append(f"no transfer (wanted {'/'.join(names)})")
        elif not any(u in (obs.transfer_target or "") for u in uris):
            why.append(f"transferred to {obs.transfer_target}, wanted {'/'.join(names)}")
    if exp.get("hangup"):
        left_up = obs.after_transfer_s is not None and obs.after_transfer_s > TRANSFER_HANGUP_S
        if obs.ended_by != "remote" and not left_up:
            why.append(f"the bot did not end the call (ended by {obs.ended_by}"
                       f" after {obs.duration_s:.0f} s)")  # fmt: skip
        elif obs.after_transfer_s is not None and obs.after_transfer_s > TRANSFER_HANGUP_S:
            why.append(f"call left up {obs.after_transfer_s:.0f} s after the transfer")
    if "says" in exp and not _contains_any(obs.bot_turns, exp["says"]):
        why.append(f"the bot never said {exp['says']!r}")
    for word in exp.get("not_says", []):
        if _contains_any(obs.bot_turns, word):
            why.append(f"the bot said {word!r}")
    if "greets_within_s" in exp:
        first = first_voiced_ms(obs.energy)
        if first is None or first > exp["greets_within_s"] * 1000:
            why.append(
                "no greeting" if first is None else f"greeted only after {first / 1000:.1f} s"
            )
    if "greeting_max_s" in exp:
        length = first_turn_ms(obs.energy)
        if length > exp["greeting_max_s"] * 1000:
            why.append(f"greeting talks {length / 1000:.1f} s before the caller can speak")
    if "asks_once" in exp:
        asked = sum(t.lower().count(exp["asks_once"].lower()) for t in obs.bot_turns_before_caller)
        if asked > 1:
            why.append(f"asked {exp['asks_once']!r} {asked} times")
    greeting_cut: bool | None = None
    if exp.get("greeting_kept") and obs.reference_greeting_ms == 0:
        why.append("no greeting to keep: a caller who says nothing hears none")
    elif exp.get("greeting_kept"):
        heard = voiced_ms(obs.energy, 0, obs.greeting_window_ms)
        ref = [r.strip().lower() for r in obs.reference_turns if r.strip()]
        answered = [
            t for t in obs.bot_turns
            if t.strip() and not any(t.strip().lower() in r or r in t.lower() for r in ref)
        ]  # fmt: skip
        short = heard < GREETING_KEPT * obs.reference_greeting_ms
        greeting_cut = short or bool(answered)
        if short:
            why.append(f"greeting cut by the backchannel: heard {heard} of "
                       f"{obs.reference_greeting_ms} ms")  # fmt: skip
        if answered:
            why.append(f"the bot answered the backchannel: {answered[0]!r}")
    backchannel = "backchannel" in item.get("tags", [])
    latencies = [
        lat
        for _, end in ([] if backchannel else obs.utterances)
        if (lat := reply_latency_ms(obs.energy, end)) is not None
    ]
    spoken = 0 if backchannel else len(obs.utterances)
    lost = max(0, spoken - len([t for t in obs.user_turns if t.strip()]))
    if "during_tool" in item.get("tags", []) and why:
        lost = max(lost, 1)  # heard, but ignored while the start state's tool ran
    return Verdict(not why, why, latencies, lost, greeting_cut)
