"""A call's conversation as the caller lived it: what they said, what the bot said as far as
they heard it (the ledger's truncation), the tools the model called and what they answered,
and what an integrator injected. Pure bookkeeping; the session fills it, and a provider
session that connects or reconnects is given it (`SessionConfig.history`), so the model goes
on where the caller is and never greets again.
"""

from __future__ import annotations

from telephony_bot.providers.base import HistoryItem
from telephony_bot.session.ledger import AgentTurn


def heard_text(turn: AgentTurn) -> str:
    """The words of a reply the caller heard: all of them, or for a reply cut short the
    share its heard audio bears to its whole audio (at least one word once any was heard)."""
    if not turn.interrupted or turn.generated_ms <= 0:
        return turn.text
    words = turn.text.split()
    share = min(1.0, max(0.0, turn.played_ms / turn.generated_ms))
    n = round(len(words) * share)
    if n == 0 and turn.played_ms > 0 and words:
        n = 1
    return " ".join(words[:n])


class Conversation:
    def __init__(self) -> None:
        self._items: list[HistoryItem] = []

    def items(self) -> tuple[HistoryItem, ...]:
        return tuple(self._items)

    def user(self, text: str) -> None:
        if text.strip():
            self._items.append(HistoryItem("user", text.strip()))

    def assistant(self, turn: AgentTurn) -> None:
        """A bot turn once it ended (played out, cut, or the call ended)."""
        text = heard_text(turn)
        if text:
            self._items.append(HistoryItem("assistant", text))

    def injected(self, *, text: str | None = None, image: str | None = None, role: str) -> None:
        if text is not None:
            self._items.append(HistoryItem("system" if role == "system" else "user", text))
        if image is not None:
            self._items.append(HistoryItem("image", image))

    def function_call(self, call_id: str, name: str, arguments: str) -> None:
        self._items.append(
            HistoryItem("function_call", call_id=call_id, name=name, arguments=arguments)
        )

    def function_output(self, call_id: str, output: str) -> None:
        self._items.append(HistoryItem("function_output", output, call_id=call_id))

    def followed_result(self, text: str) -> None:
        """A tool's result the model was told would follow (`providers.base.result_follows`),
        given to it as a system message."""
        self._items.append(HistoryItem("system", text))
