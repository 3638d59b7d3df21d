"""Tool results that follow later: when the model is told a result will follow, when the
caller hears the filler phrase while it runs, and when the result is handed over.

A tool marked `async: true`, or any tool still running when the route's `tool_window_ms`
closes (realtime models expect a function's output within seconds), is answered at once with
an output saying its result will follow (`providers.base.PENDING_OUTPUT`), and the model is
asked to go on: it tells the caller it is working on it, and the conversation goes on.

When the result arrives it waits for the next quiet moment: no reply being generated or
played, no reply due to a caller's turn that just ended, the caller silent for `quiet_ms`, no
other tool about to answer. Then it is given to the model as a message and the model asked
to reply, so exactly one reply, heard in full, gives it. (The message is not added earlier: a
reply already under way might miss it, and the engine cannot tell such a reply from one that
saw it, so the result would be given twice or not at all.)

While a result is awaited the caller is never left in dead air for long. The model's own
"I am checking" reply (asked for with the pending output) is the first filler; the engine's
filler phrase ("One moment please.") plays `filler_after_ms` into a tool's run only when no
reply is already on its way, and again each time the line has been quiet for
`filler_gap_ms` while a result is still awaited. So dead air lasts at most `filler_gap_ms`.

Pure: no I/O, no asyncio, no clock; every input carries `now_ms` (monotonic milliseconds).
`tool_calls.ToolCalls` feeds it and carries out its actions.
"""

from __future__ import annotations

from dataclasses import dataclass

QUIET_MS = 700  # nobody spoke, nothing played this long: the moment to hand a result over
FILLER_GAP_MS = 4000  # quiet this long while a result is awaited: the filler phrase again
REPLY_WAIT_MS = 3000  # after the caller's turn, its reply is expected this long at most
ASK_WAIT_MS = 8000  # a reply the engine asked for counts as under way this long at most
EARLY_FILLER_MAX_QUEUED_MS = 200  # the first filler never plays over more audio than this


def pending_after_ms(is_async: bool, window_ms: int) -> int:
    """How long a tool may run before the model is told its result will follow."""
    return 0 if is_async else window_ms


@dataclass(frozen=True)
class Line:
    """The call as the policy sees it at one moment."""

    now_ms: int
    bot_queued_ms: int = 0  # bot audio (the model's or a prompt) still to be played
    bot_generating: bool = False  # a reply's audio is arriving
    caller_voice_ms: int | None = None  # the engine VAD's last voiced caller frame
    tools_running: bool = False  # a tool has not answered yet (its answer asks for a reply)


@dataclass(frozen=True)
class Deliver:
    """Give these results to the model (one message each), then ask it to reply."""

    call_ids: tuple[str, ...]


@dataclass(frozen=True)
class AskAgain:
    """The reply asked for with results was refused (another reply was under way): ask
    again; the results themselves are in the conversation already."""


@dataclass(frozen=True)
class PlayFiller:
    """Play the engine's filler phrase: the caller waits for a result in silence."""


Action = Deliver | AskAgain | PlayFiller


class ResultWaits:
    """The results one call awaits and holds, and the line's quiet."""

    def __init__(
        self,
        *,
        quiet_ms: int = QUIET_MS,
        filler_gap_ms: int = FILLER_GAP_MS,
        reply_wait_ms: int = REPLY_WAIT_MS,
        ask_wait_ms: int = ASK_WAIT_MS,
    ) -> None:
        self.quiet_ms = quiet_ms
        self.filler_gap_ms = filler_gap_ms
        self.reply_wait_ms = reply_wait_ms
        self.ask_wait_ms = ask_wait_ms
        self._awaited: set[str] = set()  # told "will follow", result not here yet
        self._ready: list[str] = []  # here, not handed over yet (in arrival order)
        self._asked_ms: int | None = None  # the engine asked for a reply; not done yet
        self._asked_with_results = False
        self._ask_again = False
        self._caller_turn = False  # the provider's VAD: the caller is speaking
        self._turn_ended_ms: int | None = None  # the caller's turn ended; its reply not done
        self._last_sound_ms: int | None = None  # the last moment anything was heard or due

    @property
    def watching(self) -> bool:
        """A result is awaited or held: the line must be watched."""
        return bool(self._awaited or self._ready or self._ask_again)

    @property
    def awaited(self) -> frozenset[str]:
        return frozenset(self._awaited)

    @property
    def held(self) -> tuple[str, ...]:
        return tuple(self._ready)

    # ---- what happened ----

    def pending(self, call_id: str) -> None:
        """The model was told `call_id`'s result will follow."""
        self._awaited.add(call_id)

    def arrived(self, call_id: str) -> None:
        """`call_id`'s result (or its failure) is here."""
        if call_id in self._awaited:
            self._awaited.discard(call_id)
            self._ready.append(call_id)

    def asked(self, now_ms: int, *, with_results: bool = False) -> None:
        """The engine asked the model for a reply."""
        self._asked_ms = now_ms
        self._asked_with_results = with_results

    def response_done(self, now_ms: int) -> None:
        """A reply ended (whoever asked for it)."""
        self._asked_ms = None
        self._asked_with_results = False
        self._turn_ended_ms = None
        self._last_sound_ms = now_ms

    def refused(self) -> None:
        """The model refused the latest request for a reply (one was under way already)."""
        if self._asked_ms is not None and self._asked_with_results:
            self._ask_again = True
        self._asked_ms = None
        self._asked_with_results = False

    def caller_started(self) -> None:
        self._caller_turn = True

    def caller_stopped(self, now_ms: int) -> None:
        self._caller_turn = False
        self._turn_ended_ms = now_ms

    # ---- decisions ----

    def early_filler(self, line: Line) -> bool:
        """A tool has run `filler_after_ms`: play the filler phrase now? Not over other
        audio, and not when a reply is on its way (an async tool's "I am checking")."""
        return (
            line.bot_queued_ms < EARLY_FILLER_MAX_QUEUED_MS
            and not line.bot_generating
            and not self._reply_asked(line.now_ms)
        )

    def step(self, line: Line) -> list[Action]:
        """What to do now, called every few hundred milliseconds while `watching`."""
        now = line.now_ms
        if self._busy(line):
            self._last_sound_ms = now
            return []
        last = self._last_sound_ms if self._last_sound_ms is not None else now
        if line.caller_voice_ms is not None:
            last = max(last, line.caller_voice_ms)
        self._last_sound_ms = last
        quiet = now - last
        if quiet >= self.quiet_ms and (self._ready or self._ask_again):
            ids, self._ready = tuple(self._ready), []
            self._ask_again = False
            self.asked(now, with_results=True)
            self._last_sound_ms = now
            return [Deliver(ids) if ids else AskAgain()]
        if self._awaited and quiet >= self.filler_gap_ms:
            self._last_sound_ms = now
            return [PlayFiller()]
        return []

    def _reply_asked(self, now_ms: int) -> bool:
        return self._asked_ms is not None and now_ms - self._asked_ms < self.ask_wait_ms

    def _busy(self, line: Line) -> bool:
        now = line.now_ms
        return (
            line.bot_queued_ms > 0
            or line.bot_generating
            or line.tools_running
            or self._caller_turn
            or self._reply_asked(now)
            or (self._turn_ended_ms is not None and now - self._turn_ended_ms < self.reply_wait_ms)
        )
