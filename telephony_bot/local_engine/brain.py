"""The offline "brain": runs a dialplan `flow` (telephony_bot.dialplan.flow) one caller
utterance at a time, without a language model.

`FlowRunner` is pure: no I/O, no asyncio, no clock (pass `now`). The caller's words come
in through `hear(text)`, tool replies through `tool_result(...)`; every step returns the
`Action`s to carry out, in order (`Say`, `CallTool`, `Transfer`, `Hangup`).

How an utterance is understood, in the current state:

* every intent is scored against its example phrases: the words are normalised (lower
  case, no punctuation, yes/yeah/yep -> yes), slot values are replaced by the slot's name
  on both sides ("monday" and "on Tuesday" both become `<day>`, "one two three four" and
  "1234" both `<pin>`), then token overlap (weighted: filler words count little, words only
  one intent uses count most, near-spellings count) is combined with a difflib ratio;
* the best intent at or above `ACCEPT` is taken; between `UNSURE` and `ACCEPT` the caller
  is asked first (the intent's `confirm`, or 'Sorry, did you mean "<example>"?'); below
  `UNSURE`, or when nothing matches, the state's fallback speaks and counts a retry; after
  `max_retries` retries the fallback's `then` is followed;
* the intent's slots are taken from the utterance (slots.py); a slot not heard is asked for
  ("Which department: general, cardiology, radiology or orthopedics?"), one at a time;
* with every slot filled, an intent with `confirm` asks it and waits for yes/no ("no" asks
  the state's question again); then its tool is called, and after the tool its `then`.

Key presses come in through `hear` too, as the text the engine gives any model for them
(`keypad.pressed_text`: "The caller pressed the keys: 1234 (ended with #)"), and are taken
as keys, not words: first as the answer to a pending slot question (a `digits` slot takes
the digits, of its `length` when it has one; a `number` slot their value), then as the
intent of this state whose `dtmf` they are ("press 1 for sales"), then as the value of the
first intent's slot that takes them; else the fallback speaks, as for words not understood.

Templates: `{slot}`, `{result.path.0.field}`, the call `variables` (`caller`, `called`,
`header.X-Name`, ...) and `{date}`, `{time}`, `{weekday}` from `now`; a placeholder without a
value renders as "" (never raises). In `Say` text a date slot reads "Monday 4 May", a
yes/no slot "yes"/"no", an enum choice with spaces for underscores. In tool arguments a
value that is one placeholder alone keeps its type (number slot -> int, yes_no -> bool,
digits -> the string of digits, read out digit by digit in `Say` text,
tool result -> as returned); pass `tools` (tool name -> JSON Schema of its parameters) and
the arguments are also coerced to the declared types (a PIN heard as a number is sent as
the string "0412" when the tool declares a string, leading zeros kept).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from telephony_bot import keypad
from telephony_bot.dialplan import templates
from telephony_bot.dialplan.flow import (
    HANGUP,
    REPEAT,
    TRANSFER_PREFIX,
    Flow,
    Intent,
    Slot,
    State,
    ToolCall,
)
from telephony_bot.local_engine import slots as sx
from telephony_bot.local_engine.meaning import Similarity, score_of
from telephony_bot.local_engine.slots import Found, Tok

__all__ = [
    "ACCEPT",
    "UNSURE",
    "Action",
    "CallTool",
    "FlowRunner",
    "Hangup",
    "Say",
    "Transfer",
    "score_intents",
]

ACCEPT = 0.62  # at or above: the intent is taken
UNSURE = 0.42  # at or above (and below ACCEPT): ask the caller first
MARGIN = 0.06  # the best must beat the next intent by this much to be taken without asking
ENUM_COS, ENUM_MARGIN = 0.42, 0.12  # a choice meant, not named (see _enum_by_meaning)
SLOT_EVIDENCE = 0.06  # added to the meaning score per slot value heard (at most two)
MAX_STEPS = 25  # state entries per step before a flow loop is assumed


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class CallTool:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Transfer:
    target: str  # a transfer target name of the route (not the SIP URI)


@dataclass(frozen=True)
class Hangup:
    reason: str


Action = Say | CallTool | Transfer | Hangup


# ---------- intent scoring ----------

STOPWORDS = {
    "i", "me", "my", "a", "an", "the", "to", "for", "on", "in", "at", "of", "is", "it", "it's",
    "its", "be", "am", "are", "was", "do", "can", "could", "would", "will", "like", "i'd",
    "i'm", "im", "id", "want", "please", "thanks", "thank", "you", "and", "or", "so", "um",
    "uh", "er", "erm", "well", "just", "some", "this", "that", "that's", "thats", "there",
    "here", "hello", "hi", "hey", "okay", "ok", "with", "have", "get", "need", "we", "our",
    "your", "us", "what", "about", "mine", "too", "also", "then", "now", "oh",
}  # fmt: skip
_YES_WORDS = {"yes", "yeah", "yep", "yup", "yea", "ya", "yah"}
_NO_WORDS = {"no", "nope", "nah"}


def _canon(word: str) -> str:
    if word in _YES_WORDS:
        return "yes"
    if word in _NO_WORDS:
        return "no"
    return word


def _find_slot(slot: Slot, toks: Sequence[Tok], today: date) -> Found | None:
    if slot.type == "number":
        return sx.find_number(toks)
    if slot.type == "digits":
        return sx.find_digits(toks, slot.length)
    if slot.type == "date":
        return sx.find_date(toks, today)
    if slot.type == "time":
        return sx.find_time(toks)
    if slot.type == "yes_no":
        return sx.find_yes_no(toks)
    if slot.type == "enum":
        return sx.find_enum(toks, slot.values)
    return None


_CODE_SLOT = re.compile(r"(^|_)(id|code|ref|reference)$")
_PRONOUNS = {"i", "i'd", "i'm", "i've", "i'll"}


def _features(
    toks: Sequence[Tok], slots: Mapping[str, Slot], today: date, *, example: bool = False
) -> list[str]:
    """Normalised words, with the intent's typed slot values replaced by `<slot name>`.

    In an `example` of an intent with free-text slots, capitalised words past the first
    (names: "for Anna Schmidt") are sample slot values, not words to listen for."""
    marks: dict[int, tuple[int, str]] = {}
    used = [False] * len(toks)

    def mark(found: Found | None, name: str) -> None:
        if found is None or any(used[found.start : found.end]):
            return
        for k in range(found.start, found.end):
            used[k] = True
        marks[found.start] = (found.end, f"<{name}>")

    has_text = False
    for name, slot in slots.items():
        if slot.type == "text":
            has_text = True
            if _CODE_SLOT.search(name):
                mark(sx.find_code(toks), name)
            continue
        mark(_find_slot(slot, toks, today), name)
    out: list[str] = []
    k = 0
    while k < len(toks):
        if k in marks:
            end, label = marks[k]
            out.append(label)
            k = max(end, k + 1)
            continue
        tok = toks[k]
        name_like = example and has_text and k > 0 and tok.orig[:1].isupper()
        if not used[k] and not (name_like and tok.norm not in _PRONOUNS):
            out.append(_canon(tok.norm))
        k += 1
    return out


def _polarity(toks: Sequence[Tok]) -> str | None:
    """ "yes" / "no" when the utterance starts with a yes/no answer ("yeah that's fine")."""
    found = sx.find_yes_no(toks)
    if found is None:
        return None
    lead = 0
    while lead < len(toks) and toks[lead].norm in ("um", "uh", "er", "erm", "oh", "well", "hmm"):
        lead += 1
    return found.text if found.start <= lead else None


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.startswith("<") or b.startswith("<") or min(len(a), len(b)) < 4:
        return False
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def _contains(words: Sequence[str], part: Sequence[str]) -> bool:
    k = len(part)
    return any(list(words[i : i + k]) == list(part) for i in range(len(words) - k + 1))


def _similarity(heard: Sequence[str], example: Sequence[str], weight: Mapping[str, float]) -> float:
    if not heard or not example:
        return 0.0

    def w(t: str) -> float:
        return weight.get(t, 0.25 if t in STOPWORDS else 1.0)

    ex_total = sum(w(t) for t in example)
    ex_hit = sum(w(t) for t in example if any(_same(t, h) for h in heard))
    he_total = sum(w(t) for t in heard)
    he_hit = sum(w(t) for t in heard if any(_same(t, e) for e in example))
    recall = ex_hit / ex_total if ex_total else 0.0
    precision = he_hit / he_total if he_total else 0.0
    ratio = difflib.SequenceMatcher(None, " ".join(heard), " ".join(example)).ratio()
    score = 0.55 * recall + 0.2 * precision + 0.25 * ratio
    if all(t in STOPWORDS for t in example):
        # "what?": heard inside any question; only an utterance of little else is it
        share = sum(1 for h in heard if any(_same(h, e) for e in example)) / len(heard)
        score = min(score, 0.3 + 0.7 * share)
    content = [t for t in example if t not in STOPWORDS]
    if len(example) >= 2 and len(content) >= 1 and _contains(heard, example):
        score = max(score, 0.9)  # the whole example phrase was said
    return score


@dataclass(frozen=True)
class _Scored:
    score: float
    intent: Intent
    example: str  # the example that matched best, as written in the plan
    words: float = 0.0  # the word matcher's score (its best example)
    cosine: float | None = None  # the closest example in meaning, when meaning is scored
    near: str = ""  # ... and which example that was


def score_intents(
    intents: Sequence[Intent],
    text: str | Sequence[Tok],
    today: date,
    meaning: Similarity | None = None,
) -> list[_Scored]:
    """Every intent scored against `text`, best first (0..1): by its words, and with
    `meaning` also by meaning (`meaning.score_of` the cosine); the higher counts."""
    toks = sx.tokenize(text) if isinstance(text, str) else list(text)
    said = text if isinstance(text, str) else " ".join(t.orig for t in toks)
    cosines: dict[str, float] = {}
    if meaning is not None:
        # a one-word example ("nurse") is near in meaning to too much ("a doctor"): it is
        # matched by its word only
        examples = sorted({ex for i in intents for ex in i.examples if len(ex.split()) > 1})
        cosines = dict(zip(examples, meaning.similarity(said, examples), strict=True))
    prepared = [
        (
            intent,
            [
                (ex, _features(sx.tokenize(ex), intent.slots, today, example=True))
                for ex in intent.examples
            ],
        )
        for intent in intents
    ]
    # words used by a single intent are its keywords: they count more
    users: dict[str, int] = {}
    for _, exs in prepared:
        for word in {t for _, f in exs for t in f}:
            users[word] = users.get(word, 0) + 1
    weight = {
        t: (0.25 if t in STOPWORDS else 1.0) * (1.0 if n <= 1 else 0.6) for t, n in users.items()
    }
    # an intent whose examples open with yes (or no) is this state's answer to a yes/no
    # question: a caller opening with that answer means it, when no other intent does
    polar = _polarity(toks)
    answering = [
        intent
        for intent, exs in prepared
        if polar is not None and any(f[:1] == [polar] for _, f in exs)
    ]
    out: list[_Scored] = []
    for intent, exs in prepared:
        heard = _features(toks, intent.slots, today)
        words, example = 0.0, intent.examples[0] if intent.examples else ""
        for ex, feats in exs:
            s = _similarity(heard, feats, weight)
            if len(answering) == 1 and answering[0] is intent and feats[:1] == [polar]:
                s = max(s, ACCEPT + 0.1)
            if s > words:
                words, example = s, ex
        near = max(intent.examples, key=lambda e: cosines.get(e, -1.0), default="")
        cos = cosines.get(near) if meaning is not None else None
        by_meaning = score_of(cos) if cos is not None else 0.0
        if by_meaning:  # a value the intent takes ("on Tuesday") is evidence for it
            filled = len({t for t in heard if t.startswith("<")})
            by_meaning += SLOT_EVIDENCE * min(filled, 2)
        if by_meaning > words:
            example = near
        out.append(_Scored(max(words, by_meaning), intent, example, words, cos, near))
    out.sort(key=lambda s: -s.score)
    return out


# ---------- templates ----------

_MISSING = object()
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def _walk(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
            idx = int(part)
            value = value[idx] if -len(value) <= idx < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _plain(value: Any) -> str:
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        return ", ".join(_plain(v) for v in value)
    return ""


def _tidy(text: str) -> str:
    """Whitespace of folded YAML, and the ", ." an empty placeholder leaves behind."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r",(?=[.!?])", "", text)
    text = re.sub(r"([.!?])\1+", r"\1", text)
    return text[:1].upper() + text[1:]


# ---------- the runner ----------


@dataclass
class _Pending:
    kind: str  # "slot" | "confirm" | "unsure"
    intent: Intent
    values: dict[str, Found]
    slot: str | None = None
    example: str = ""
    doubt: bool = False  # the intent was a guess: read the values back before acting


@dataclass
class _Waiting:
    call_id: str
    tool: ToolCall
    kind: str  # "state" (entering a state) | "intent"
    then: str | None = None


@dataclass
class _Slot:
    kind: str
    text: str  # canonical text ("0412", "2026-05-04", "yes")
    value: Any  # typed value (int, bool, "2026-05-04", ...)


class FlowRunner:
    """One call's run through a `Flow`. See the module docstring for the behaviour.

    `state`: the current state's name; `slots`: slot values heard so far, typed (int,
    bool, "YYYY-MM-DD", "HH:MM", str); `results`: tool replies by result name; `done`:
    True once the flow transferred or hung up."""

    state: str
    slots: dict[str, Any]
    results: dict[str, Any]
    done: bool

    def __init__(
        self,
        flow: Flow,
        *,
        now: datetime,
        variables: Mapping[str, str] | None = None,
        tools: Mapping[str, Mapping[str, Any]] | None = None,
        meaning: Similarity | None = None,
    ) -> None:
        self.flow = flow
        self.meaning = meaning  # callers' own words matched by meaning too (meaning.py)
        self.now = now
        self.variables = dict(variables or {})
        self.tools = dict(tools or {})
        self.state = flow.start
        self.slots = {}
        self.results = {}
        self.done = False
        self._typed = {}
        self._pending = None
        self._waiting = None
        self._retries = 0
        self._calls = 0
        self._steps = 0
        self._started = False
        self._queued: list[str] = []  # heard while a tool call was outstanding
        self._last_said = ""  # what the bot said last, for `repeat`
        self._before: _Pending | None = None  # the question open before this utterance

    # ----- public steps -----

    @property
    def pending_call(self) -> str | None:
        """The call id of the tool the flow is waiting for, if any."""
        return self._waiting.call_id if self._waiting else None

    def start(self) -> list[Action]:
        """Enter the start state: call its tool (if any), or say its text."""
        if self._started:
            return []
        self._started = True
        self._steps = 0
        return self._said(self._enter(self.flow.start))

    def arrive(self, state: str) -> None:
        """Stand in `state` as if the caller had just been asked its question (for
        explanations, `dialplan understand`): nothing is said or called."""
        self._started, self._waiting, self._pending, self._queued = True, None, None, []
        self.state = state

    def hear(self, text: str) -> list[Action]:
        """One caller utterance (ASR text). While a tool call is outstanding it is kept and
        taken up once the tool answered (see `tool_result`); ignored once the call is done."""
        if not self._started:
            raise RuntimeError("FlowRunner.start() must be called before hear()")
        if self.done:
            return []
        if self._waiting is not None:
            self._queued.append(text)
            return []
        self._steps = 0
        return self._said(self._understand(text))

    def understands(self, text: str) -> bool:
        """Whether `text` means something here (changes nothing): keys, the answer to the
        open slot question, yes/no to an open confirmation, or an intent it would take
        without asking (a vague likeness — "remember" to "repeat that" — is not enough)."""
        if keypad.parse_pressed(text) is not None:
            return True
        toks = sx.tokenize(text)
        pending = self._pending
        if pending is not None and pending.kind == "slot" and pending.slot:
            if self._has(pending.intent.slots[pending.slot], toks):
                return True
        if pending is not None and pending.kind in ("confirm", "unsure"):
            if sx.find_yes_no(toks, strict=True) is not None:
                return True
        return self._best(toks) is not None  # taken without asking: it means something

    def _understand(self, text: str) -> list[Action]:
        pressed = keypad.parse_pressed(text)
        if pressed is not None:
            return self._keys(pressed)
        toks = sx.tokenize(text)
        pending, self._pending = self._pending, None
        self._before = pending
        if pending is None:
            return self._fresh(toks)
        if pending.kind == "slot":
            return self._answer_slot(pending, toks)
        return self._answer_confirm(pending, toks)

    def tool_result(self, call_id: str, ok: bool, result: Any) -> list[Action]:
        """The reply to `CallTool(call_id, ...)`: kept under the ToolCall's `result` name;
        on failure the ToolCall's `on_error` is followed (default: the state's fallback).
        An unknown or stale call id is ignored.

        What the caller said while the tool ran is then taken up in the state the flow is
        in: understood as one of its intents (or an `anywhere` one), it is acted on, and a
        state entered with the tool does not first ask its own question; not understood, it
        is dropped and the flow speaks as it would have (the caller hears the question)."""
        waiting = self._waiting
        if self.done or waiting is None or waiting.call_id != call_id:
            return []
        self._waiting = None
        self._steps = 0
        if ok:
            if waiting.tool.result:
                self.results[waiting.tool.result] = result
            if waiting.kind == "state":
                return self._said(self._take_queued() or self._speak_state())
            return self._said(self._after_tool(self._goto(waiting.then or HANGUP)))
        self._queued.clear()  # the tool failed: the caller is told, and asked again
        if waiting.tool.on_error:
            return self._said(self._goto(waiting.tool.on_error, reason="tool failed"))
        if waiting.kind == "state":  # the state cannot speak without its data
            return self._said(self._goto(self._state().fallback.then, reason="tool failed"))
        return self._said(self._fallback())

    def _after_tool(self, actions: list[Action]) -> list[Action]:
        if self.done or self._waiting is not None or not self._queued:
            return actions
        taken = self._take_queued()
        return taken if taken is not None else actions

    def _take_queued(self) -> list[Action] | None:
        """The actions for what the caller said while a tool ran, when some of it is
        understood in the current state; None otherwise. The queue is emptied."""
        queued, self._queued = self._queued, []
        for text in queued:
            if keypad.parse_pressed(text) is not None:
                return self._understand(text)
            toks = sx.tokenize(text)
            best = self._best(toks)
            if best is not None:
                self._retries = 0
                return self._pursue(best.intent, self._extract(best.intent, toks), confirmed=False)
        return None

    def _said(self, actions: list[Action]) -> list[Action]:
        """Remember what this step says, for `repeat`."""
        said = " ".join(a.text for a in actions if isinstance(a, Say) and a.text)
        if said:
            self._last_said = said
        return actions

    # ----- states -----

    def _state(self) -> State:
        return self.flow.states[self.state]

    def _intents(self) -> list[Intent]:
        """What can be understood now: the state's intents, then the flow's `anywhere`."""
        return [*self._state().intents, *self.flow.anywhere]

    def _rank(self, toks: Sequence[Tok]) -> tuple[_Scored | None, bool]:
        """The best intent for `toks` (None: nothing to match) and whether it is taken
        without asking: at or above ACCEPT, and ahead by MARGIN of every intent that would
        lead elsewhere (or sure at 0.85)."""
        intents = self._intents()
        if not intents or not toks:
            return None, False
        ranked = score_intents(intents, toks, self.now.date(), self.meaning)
        best = ranked[0]
        rivals = [r.score for r in ranked[1:] if r.intent.then != best.intent.then]
        runner_up = rivals[0] if rivals else 0.0
        sure = best.score >= ACCEPT and (best.score - runner_up >= MARGIN or best.score >= 0.85)
        return best, sure

    def _best(self, toks: Sequence[Tok]) -> _Scored | None:
        best, sure = self._rank(toks)
        return best if sure else None

    def _enter(self, name: str) -> list[Action]:
        self._steps += 1
        if self._steps > MAX_STEPS:
            self.done = True
            return [Hangup(f"flow loop at state {name!r}")]
        if name not in self.flow.states:
            self.done = True
            return [Hangup(f"unknown state {name!r}")]
        self.state = name
        self._retries = 0
        self._pending = None
        state = self._state()
        if state.tool is not None:
            return [self._call(state.tool, {}, kind="state")]
        return self._speak_state()

    def _speak_state(self) -> list[Action]:
        state = self._state()
        out: list[Action] = []
        text = self._render(state.say)
        if text:
            out.append(Say(text))
        if not state.intents and state.then is not None:
            out.extend(self._goto(state.then))
        return out

    def _goto(self, target: str, *, reason: str = "completed") -> list[Action]:
        if target == REPEAT:
            self._pending = self._before  # still waiting for the same answer
            return [Say(self._last_said)] if self._last_said else self._speak_state()
        if target == HANGUP:
            self.done = True
            return [Hangup(reason)]
        if target.startswith(TRANSFER_PREFIX):
            self.done = True
            return [Transfer(target[len(TRANSFER_PREFIX) :])]
        return self._enter(target)

    def _fallback(self) -> list[Action]:
        fb = self._state().fallback
        self._retries += 1
        if self._retries > fb.max_retries:
            return self._goto(fb.then, reason="not understood")
        text = self._render(fb.say)
        return [Say(text)] if text else []

    # ----- understanding -----

    def _fresh(self, toks: Sequence[Tok]) -> list[Action]:
        best, sure = self._rank(toks)
        if best is None:
            return self._fallback()
        values = self._extract(best.intent, toks) if best.score >= UNSURE else {}
        if sure:
            self._retries = 0
            return self._pursue(best.intent, values, confirmed=False)
        if best.score < UNSURE:
            return self._fallback()
        if best.intent.slots:  # unsure: ask what is missing, then restate it all
            return self._pursue(best.intent, values, confirmed=False, doubt=True)
        if best.intent.confirm:
            self._pending = _Pending("confirm", best.intent, values)
            return [Say(self._render(best.intent.confirm, values))]
        self._pending = _Pending("unsure", best.intent, values, example=best.example)
        example = best.example.strip().rstrip(".!?")
        return [Say(f'Sorry, did you mean "{example}"?')]

    def _pursue(
        self,
        intent: Intent,
        values: dict[str, Found],
        *,
        confirmed: bool,
        doubt: bool = False,
    ) -> list[Action]:
        """Ask for the first slot not heard yet; with all heard, confirm (when the intent
        asks to, or the match was `doubt`ful: the caller's values are read back), then act."""
        missing = [n for n, sl in intent.slots.items() if n not in values and not sl.optional]
        if missing:
            self._pending = _Pending("slot", intent, values, slot=missing[0], doubt=doubt)
            return [Say(self._ask(missing[0], intent.slots[missing[0]]))]
        # a guess is read back, but not digits typed or said for a check (a PIN: reading it
        # out would leak it; the tool checks it)
        readback = doubt and not all(intent.slots[n].type == "digits" for n in values)
        if (intent.confirm or readback) and not confirmed:
            self._pending = _Pending("confirm", intent, values)
            return [Say(self._restate(intent, values))]
        return self._act(intent, values)

    def _restate(self, intent: Intent, values: Mapping[str, Found]) -> str:
        """The confirmation question, in the caller's values: the intent's `confirm`, or
        the values read back ("Cardiology, Tuesday 8 December: is that right?")."""
        if intent.confirm:
            return self._render(intent.confirm, values)
        said = [
            self._spoken(*self._lookup(name, values)) for name in intent.slots if name in values
        ]
        return _tidy(", ".join(x for x in said if x) + ": is that right?")

    def _act(self, intent: Intent, values: dict[str, Found]) -> list[Action]:
        for name, found in values.items():
            kind = intent.slots[name].type
            self._typed[name] = _Slot(kind, found.text, self._typed_value(kind, found))
            self.slots[name] = self._typed[name].value
        if intent.tool is not None:
            return [self._call(intent.tool, {}, kind="intent", then=intent.then)]
        return self._goto(intent.then)

    def _answer_slot(self, pending: _Pending, toks: Sequence[Tok]) -> list[Action]:
        intent, name = pending.intent, pending.slot or ""
        slot = intent.slots[name]
        if slot.type == "text" or not self._has(slot, toks):
            # the caller may have changed their mind ("nurse!", "another day"): another
            # intent, sure and clearly nearer than the one being asked about
            ranked = score_intents(self._intents(), toks, self.now.date(), self.meaning)
            mine = next((r.score for r in ranked if r.intent is intent), 0.0)
            best = ranked[0] if ranked and toks else None
            if best is not None and best.intent is not intent:
                if best.score >= ACCEPT and best.score - mine >= MARGIN:
                    self._retries = 0
                    values = self._extract(best.intent, toks)
                    return self._pursue(best.intent, values, confirmed=False)
        missing = [n for n in intent.slots if n not in pending.values]
        order = [name, *[n for n in missing if n != name]]
        found = self._extract(intent, toks, order, asked=name)
        values = {**pending.values, **found}
        if name not in found:
            return self._ask_again(intent, values, name, doubt=pending.doubt)
        return self._pursue(intent, values, confirmed=False, doubt=pending.doubt)

    def _ask_again(
        self, intent: Intent, values: dict[str, Found], name: str, *, doubt: bool = False
    ) -> list[Action]:
        """The answer did not fill the slot asked for: ask once more, or give up."""
        fb = self._state().fallback
        self._retries += 1
        if self._retries > fb.max_retries:
            return self._goto(fb.then, reason="not understood")
        self._pending = _Pending("slot", intent, values, slot=name, doubt=doubt)
        ask = self._ask(name, intent.slots[name])
        return [Say(f"Sorry, {ask[0].lower()}{ask[1:]}")]

    def _keys(self, pressed: keypad.Pressed) -> list[Action]:
        """A burst of key presses (see the module docstring)."""
        state = self._state()
        pending, self._pending = self._pending, None
        asked = pending if pending is not None and pending.kind == "slot" else None
        if asked is not None:
            name = asked.slot or ""
            found = _from_keys(asked.intent.slots[name], pressed.digits)
            if found is not None:
                values = {**asked.values, name: found}
                return self._pursue(asked.intent, values, confirmed=False, doubt=asked.doubt)
        for intent in self._intents():
            if intent.dtmf is not None and intent.dtmf == pressed.keys:
                self._retries = 0
                return self._pursue(intent, {}, confirmed=False)
        for intent in state.intents:
            for name, slot in intent.slots.items():
                found = _from_keys(slot, pressed.digits)
                if found is not None:
                    self._retries = 0
                    return self._pursue(intent, {name: found}, confirmed=False)
        if asked is not None:
            return self._ask_again(asked.intent, asked.values, asked.slot or "", doubt=asked.doubt)
        return self._fallback()

    def _answer_confirm(self, pending: _Pending, toks: Sequence[Tok]) -> list[Action]:
        answer = sx.find_yes_no(toks, strict=True)
        if answer is None:
            return self._fresh(toks)  # not an answer: take it as a new request
        if answer.value:
            if pending.kind == "confirm":
                return self._act(pending.intent, pending.values)
            return self._pursue(pending.intent, pending.values, confirmed=False)
        rest = [t for t in toks[answer.end :] if t.norm not in STOPWORDS]
        if rest:  # "no, tuesday": the correction is a new request
            return self._fresh(toks[answer.end :])
        if pending.kind == "unsure":
            return self._fallback()
        text = self._render(self._state().say)  # "no": ask the state's question again
        return [Say(text)] if text else self._fallback()

    def _has(self, slot: Slot, toks: Sequence[Tok]) -> bool:
        if _find_slot(slot, toks, self.now.date()) is not None:
            return True
        return slot.type == "enum" and self._enum_by_meaning(slot, toks) is not None

    def _extract(
        self,
        intent: Intent,
        toks: Sequence[Tok],
        names: Sequence[str] | None = None,
        *,
        asked: str | None = None,
    ) -> dict[str, Found]:
        """The intent's slots (`names`, default all) heard in `toks`. A name slot takes
        words that look like a name (capitalised, as the recogniser writes names), unless
        it is the slot just `asked` for: then the answer is the name."""
        wanted = list(intent.slots) if names is None else list(names)
        today = self.now.date()
        out: dict[str, Found] = {}
        taken: list[tuple[int, int]] = []

        def free(f: Found) -> bool:
            return all(f.end <= s or f.start >= e for s, e in taken)

        for name in wanted:
            slot = intent.slots[name]
            if slot.type == "text":
                continue
            found = _find_slot(slot, toks, today)
            if found is None and slot.type == "enum":
                found = self._enum_by_meaning(slot, toks)
            if found is not None and free(found):
                out[name] = found
                taken.append((found.start, found.end))
        texts = [n for n in wanted if intent.slots[n].type == "text"]
        for name in list(texts):
            if re.search(r"(^|_)(id|code|ref|reference)$", name):
                code = sx.find_code(toks)
                if code is not None and free(code):
                    out[name] = code
                    taken.append((code.start, code.end))
                    texts.remove(name)
        names = [n for n in texts if n.endswith("name") and n != asked]
        if names:  # a name not asked for: the piece of the utterance that looks like one
            # ("That works. The patient is Peter Brown, date of birth ...")
            alone = [p for p in sx.remainder(toks, taken, parts=len(toks)) if _looks_like_name(p)]
            for name, piece in zip(names, alone, strict=False):
                out[name] = Found(piece, piece, -1, -1)
                texts.remove(name)
                taken.extend(sx.span_of(toks, piece, taken))
            texts = [n for n in texts if n not in names]  # not heard: asked for
        if texts:
            pieces = sx.remainder(toks, taken, parts=len(texts))
            for name, piece in zip(texts, pieces, strict=False):
                if name.endswith("name") and piece.islower():
                    piece = piece.title()
                out[name] = Found(piece, piece, -1, -1)
        return out

    def _enum_by_meaning(self, slot: Slot, toks: Sequence[Tok]) -> Found | None:
        """The choice the caller means without naming it ("an x-ray" -> radiology, "my
        knee" -> orthopedics): the closest in meaning, when close (ENUM_COS) and clearly
        closer than the next (ENUM_MARGIN); read back before anything is done with it."""
        if self.meaning is None or not toks or len(slot.values) < 2:
            return None
        said = " ".join(t.orig for t in toks)
        names = [v.replace("_", " ") for v in slot.values]
        ranked = sorted(
            zip(self.meaning.similarity(said, names), slot.values, strict=True), reverse=True
        )
        (best, value), (second, _) = ranked[0], ranked[1]
        if best >= ENUM_COS and best - second >= ENUM_MARGIN:
            return Found(value, value, -1, -1)
        return None

    def _ask(self, name: str, slot: Slot) -> str:
        label = name.replace("_", " ").strip()
        if slot.type == "enum":
            choices = [v.replace("_", " ") for v in slot.values]
            listed = (
                ", ".join(choices[:-1]) + " or " + choices[-1]
                if len(choices) > 1
                else "".join(choices)
            )
            return f"Which {label}: {listed}?"
        if slot.type == "yes_no":
            return f"{label[:1].upper()}{label[1:]}: yes or no?"
        if slot.type == "date" and label in ("day", "date"):
            return f"Which {label}?"
        if slot.type == "time" and label == "time":
            return "What time?"
        return f"What is the {label}?"

    # ----- values -----

    @staticmethod
    def _typed_value(kind: str, found: Found) -> Any:
        if kind == "date" and isinstance(found.value, date):
            return found.value.isoformat()
        return found.value

    def _lookup(self, name: str, overlay: Mapping[str, Found] | None) -> tuple[Any, _Slot | None]:
        """(value, slot info) for a placeholder; value is _MISSING when it has none."""
        head, *rest = name.split(".")
        if overlay and head in overlay and not rest:
            f = overlay[head]
            kind = self._overlay_kind(head)
            info = _Slot(kind, f.text, self._typed_value(kind, f))
            return info.value, info
        if head in self._typed and not rest:
            info = self._typed[head]
            return info.value, info
        if head in self.results:
            return _walk(self.results[head], rest), None
        if name in self.variables:
            return self.variables[name], None
        if name.lower().startswith("header."):
            want = name.lower()
            for key, value in self.variables.items():
                if key.lower() == want:
                    return value, None
            return "", None
        if (text := templates.clock(name, self.now)) is not None:
            return text, None
        return _MISSING, None

    def _overlay_kind(self, name: str) -> str:
        pending = self._pending
        for intent in ([pending.intent] if pending else []) + self._intents():
            if name in intent.slots:
                return intent.slots[name].type
        return "text"

    def _spoken(self, value: Any, info: _Slot | None) -> str:
        if info is not None and info.kind == "date":
            try:
                d = date.fromisoformat(str(info.value))
            except ValueError:
                return str(info.value)
            text = f"{d.strftime('%A')} {d.day} {_MONTH_NAMES[d.month - 1]}"
            if abs((d - self.now.date()).days) > 300:
                text = f"{d.day} {_MONTH_NAMES[d.month - 1]} {d.year}"
            return text
        if info is not None and info.kind == "enum":
            return str(value).replace("_", " ")
        if info is not None and info.kind == "digits":
            return " ".join(str(value))  # a number to read digit by digit, not "twelve..."
        return _plain(value)

    def _render(self, template: str, overlay: Mapping[str, Found] | None = None) -> str:
        def value(name: str) -> str:
            return self._spoken(*self._lookup(name, overlay))

        return _tidy(templates.substitute(template, value))

    # ----- tools -----

    def _call(
        self, tool: ToolCall, overlay: Mapping[str, Found], *, kind: str, then: str | None = None
    ) -> CallTool:
        self._calls += 1
        call_id = f"flow-{self._calls}"
        schema = self.tools.get(tool.name)
        args = self._arg(tool.args, schema, overlay)
        self._waiting = _Waiting(call_id, tool, kind, then)
        return CallTool(call_id, tool.name, args if isinstance(args, dict) else {})

    def _arg(self, value: Any, schema: Any, overlay: Mapping[str, Found]) -> Any:
        schema = schema if isinstance(schema, Mapping) else {}
        if isinstance(value, str):
            if name := templates.sole_placeholder(value):
                raw, info = self._lookup(name, overlay)
                if raw is _MISSING:
                    return _MISSING
                return _coerce(raw, info, schema)
            text = templates.substitute(value, lambda n: _plain(self._lookup(n, overlay)[0]))
            return _coerce(text, None, schema)
        if isinstance(value, Mapping):
            props = (
                schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
            )
            out: dict[str, Any] = {}
            for key, item in value.items():
                got = self._arg(item, props.get(key), overlay)
                if got is not _MISSING:
                    out[str(key)] = got
            return _MISSING if value and not out else out
        if isinstance(value, list):
            items = [self._arg(item, schema.get("items"), overlay) for item in value]
            return [i for i in items if i is not _MISSING]
        return value


_NAME_PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "du", "la", "le", "al", "bin"}


def _looks_like_name(piece: str) -> bool:
    """1-4 words, each capitalised (or a particle: "van", "de"): how a recogniser writes a
    person's name inside a sentence."""
    words = piece.split()
    return 1 <= len(words) <= 4 and all(
        w[:1].isupper() or w.lower() in _NAME_PARTICLES for w in words
    )


def _from_keys(slot: Slot, digits: str) -> Found | None:
    """The value typed keys give a slot: a digits slot the digits (of its length), a number
    slot their value; None for any other slot, or keys that are not digits."""
    if not digits.isdigit():
        return None
    if slot.type == "digits" and (slot.length is None or len(digits) == slot.length):
        return Found(digits, digits, -1, -1)
    if slot.type == "number":
        return Found(int(digits), digits, -1, -1)
    return None


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    return t if isinstance(t, str) else None


def _coerce(value: Any, info: _Slot | None, schema: Mapping[str, Any]) -> Any:
    """`value` as the tool's JSON Schema type asks (when it says), else unchanged."""
    want = _schema_type(schema)
    if want is None:
        return value
    if want == "string":
        if info is not None and info.kind in ("number", "yes_no"):
            return info.text if info.kind == "number" else ("true" if info.value else "false")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return _plain(value)
        return value
    if want in ("integer", "number"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip().replace(",", "")
            try:
                num = float(text)
            except ValueError:
                parsed = sx.parse_number(text)
                return value if parsed is None else parsed
            return int(num) if want == "integer" and num.is_integer() else num
        if want == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if want == "boolean":
        if isinstance(value, str):
            yn = sx.parse_yes_no(value)
            return value if yn is None else yn
        return value
    return value
