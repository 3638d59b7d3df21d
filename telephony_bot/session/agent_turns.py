"""When the bot's turns end, and how much of each the caller heard.

Pure bookkeeping on the bridge's cumulative played-ms axis (no I/O, no clock). Each assistant
item occupies the stretch of that axis its audio fills; a turn is reported once its
transcript is known and either all its audio was played (`interrupted=False`), or the
playout was cleared under it (barge-in, a command: `interrupted=True`, `played_ms` = what
had left the bridge), or the call ended (`flush`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AgentTurn:
    item_id: str
    text: str
    interrupted: bool
    played_ms: int


@dataclass
class _Item:
    item_id: str
    start: int = -1  # axis position of its first audio (-1: no audio yet)
    generated: int = 0
    audio_done: bool = False
    text: str | None = None  # final transcript, once known
    cut_at: int | None = None  # played ms when the playout was cleared under it


class AgentTurns:
    def __init__(self) -> None:
        self._items: dict[str, _Item] = {}
        self._end = 0  # axis position where the next queued audio starts

    def _item(self, item_id: str) -> _Item:
        it = self._items.get(item_id)
        if it is None:
            it = self._items[item_id] = _Item(item_id)
        return it

    def audio(self, item_id: str, ms: int, played_total: int) -> None:
        it = self._item(item_id)
        if it.cut_at is not None:
            return
        if it.start < 0:
            it.start = max(self._end, played_total)
            self._end = it.start
        it.generated += ms
        self._end = max(self._end, it.start + it.generated)

    def audio_done(self, item_id: str) -> None:
        self._item(item_id).audio_done = True

    def transcript(self, item_id: str, text: str) -> None:
        self._item(item_id).text = text

    def cleared(self, played_total: int) -> None:
        """Queued bot audio was dropped: items not fully played are cut where they stand.

        An item still streaming is cut too, even if every ms it sent so far has played: a
        model streaming at real time keeps the queue near empty, and what it would have sent
        next is what the caller will not hear."""
        for it in self._items.values():
            unheard = it.start + it.generated > played_total or not it.audio_done
            if it.start >= 0 and it.cut_at is None and unheard:
                it.cut_at = max(0, min(played_total - it.start, it.generated))
            elif it.start < 0 and it.cut_at is None:
                it.cut_at = 0  # nothing of it was heard
        self._end = played_total

    def finished(self, played_total: int) -> list[AgentTurn]:
        """Turns that ended by now (in the order their items began)."""
        out: list[AgentTurn] = []
        for key, it in list(self._items.items()):
            if it.text is None:
                continue
            if it.cut_at is not None:
                out.append(AgentTurn(key, it.text, True, it.cut_at))
            elif it.start < 0:
                if it.audio_done:  # a text-only item (no audio at all)
                    out.append(AgentTurn(key, it.text, False, 0))
                else:
                    continue
            elif it.audio_done and played_total >= it.start + it.generated:
                out.append(AgentTurn(key, it.text, False, it.generated))
            else:
                continue
            del self._items[key]
        return out

    def flush(self, played_total: int) -> list[AgentTurn]:
        """The call ended: every turn with a transcript, heard as far as it was."""
        out = self.finished(played_total)
        for key, it in list(self._items.items()):
            if it.text is None:
                continue
            heard = 0 if it.start < 0 else max(0, min(played_total - it.start, it.generated))
            out.append(AgentTurn(key, it.text, heard < it.generated, heard))
            del self._items[key]
        return out
