"""The local engine's brain when a route configures a chat-completions LLM (`llm:` on a
`type: local` provider): any OpenAI-compatible endpoint — Ollama, a llama.cpp server, vLLM.

It replaces the scripted flow. Every turn asks the LLM for a streamed reply with the
session's tools; the server speaks the text clause by clause while it still streams
(`Stream` action), and tool calls come back to the worker exactly like OpenAI's (the same
executor runs them, `transfer`/`hangup` included). A failing or silent endpoint never leaves
the caller in dead air: the brain says a short apology instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from telephony_bot import log as logmod
from telephony_bot.local_engine.brain import CallTool

log = logmod.get("local.llm")

APOLOGY = "Sorry, I am having trouble answering right now. Could you say that again?"


@dataclass(frozen=True)
class LlmSettings:
    base_url: str  # e.g. http://127.0.0.1:11434/v1 (Ollama), http://127.0.0.1:8080/v1
    model: str
    api_key: str | None = None
    temperature: float = 0.3
    max_tokens: int = 300
    first_token_timeout_s: float = 8.0  # no first token by then: apologise
    total_timeout_s: float = 30.0

    @classmethod
    def from_session(cls, data: dict[str, Any], environ: dict[str, str]) -> LlmSettings:
        """From the `llm` a worker sends in `session.update`; the key is read here, from this
        process's environment (`api_key_env`), so it never travels in the session."""
        key_env = data.get("api_key_env")
        return cls(
            base_url=str(data["base_url"]),
            model=str(data["model"]),
            api_key=environ.get(key_env) if key_env else None,
            temperature=float(data.get("temperature", 0.3)),
            max_tokens=int(data.get("max_tokens", 300)),
            first_token_timeout_s=float(data.get("first_token_timeout_s", 8.0)),
        )


@dataclass(frozen=True)
class Stream:
    """A reply made while it is spoken: `open()` yields text pieces and, last, `CallTool`s."""

    open: Callable[[], AsyncIterator[str | CallTool]]


_BREAK = re.compile(r"[.!?;:](?=\s)|,(?=\s)")


class ClauseChunker:
    """Streamed text → speakable clauses: cut after . ! ? ; : (or a comma once the clause has
    4 words), or at a space after 25 words, so the first words are heard early."""

    def __init__(self, max_words: int = 25) -> None:
        self.max_words = max_words
        self._buf = ""

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._cut()
            if cut is None:
                return out
            clause, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if clause:
                out.append(clause)

    def _cut(self) -> int | None:
        for m in _BREAK.finditer(self._buf):
            if m.group() != "," or len(self._buf[: m.end()].split()) >= 4:
                return m.end()
        words = self._buf.split(" ")
        if len(words) > self.max_words + 1:
            return len(" ".join(words[: self.max_words]))
        return None

    def flush(self) -> str:
        rest, self._buf = self._buf.strip(), ""
        return rest


def chat_tools(session_tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Realtime tool definitions → chat-completions `tools`."""
    out = []
    for t in session_tools:
        if t.get("type", "function") != "function" or not t.get("name"):
            continue
        fn = {"name": t["name"], "parameters": t.get("parameters") or {"type": "object"}}
        if t.get("description"):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


@dataclass
class _Pending:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ChatBrain:
    settings: LlmSettings
    instructions: str
    tools: list[dict[str, Any]] = field(default_factory=list)
    client: Any = None  # an openai.AsyncOpenAI; made from `settings` when None
    messages: list[dict[str, Any]] = field(default_factory=list)
    _fresh: bool = True  # something new since the last reply
    _awaiting: set[str] = field(default_factory=set)  # tool calls without a result yet

    def __post_init__(self) -> None:
        if self.instructions:
            self.messages.append({"role": "system", "content": self.instructions})
        if self.client is None:
            from openai import AsyncOpenAI

            self.client = AsyncOpenAI(
                base_url=self.settings.base_url,
                api_key=self.settings.api_key or "not-needed",
                max_retries=0,
                timeout=self.settings.total_timeout_s,
            )

    # ---- the Brain interface

    def start(self) -> list[Any]:
        return [Stream(self._reply)]

    def hear(self, text: str) -> list[Any]:
        self.messages.append({"role": "user", "content": text})
        self._fresh = True
        return [Stream(self._reply)]

    def tool_result(self, call_id: str, ok: bool, result: Any) -> list[Any]:
        content = result if isinstance(result, str) else json.dumps(result)
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        self._awaiting.discard(call_id)
        self._fresh = True
        return [] if self._awaiting else [Stream(self._reply)]

    # ---- one streamed reply

    async def _reply(self) -> AsyncIterator[str | CallTool]:
        if not self._fresh:  # two turns queued before the first reply ran: answer once
            return
        self._fresh = False
        said: list[str] = []
        calls: dict[int, _Pending] = {}
        # In the history from the first word on, so a turn the caller takes meanwhile
        # comes after it; it holds what was streamed (to the cut, when interrupted).
        msg: dict[str, Any] = {"role": "assistant", "content": None}
        self.messages.append(msg)
        try:
            async for piece in self._stream(calls):
                said.append(piece)
                msg["content"] = "".join(said)
                yield piece
        except (Exception, TimeoutError) as exc:  # noqa: BLE001 - the caller must hear something
            error = str(exc) or type(exc).__name__
            log.warning("llm_failed", error=error, model=self.settings.model)
            calls.clear()
            if not said:
                msg["content"] = APOLOGY
                yield APOLOGY
        finally:
            done = [c for c in calls.values() if c.name]
            if done:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                    for c in done
                ]  # fmt: skip
            if not msg["content"] and not done:
                self.messages.remove(msg)
        for c in calls.values():
            if not c.name:
                continue
            try:
                args = json.loads(c.arguments or "{}")
            except ValueError:
                # not the arguments themselves: they may hold what the plan marks sensitive
                log.warning("llm_bad_tool_arguments", tool=c.name, chars=len(c.arguments or ""))
                args = {}
            self._awaiting.add(c.id)
            yield CallTool(c.id, c.name, args if isinstance(args, dict) else {})

    async def _stream(self, calls: dict[int, _Pending]) -> AsyncIterator[str]:
        kwargs: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [m for m in self.messages if m["content"] or m.get("tool_calls")],
            "stream": True,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        tools = chat_tools(self.tools)
        if tools:
            kwargs["tools"] = tools
        stream = await asyncio.wait_for(
            self.client.chat.completions.create(**kwargs), self.settings.first_token_timeout_s
        )
        it = stream.__aiter__()
        first = True
        while True:
            try:
                timeout = self.settings.first_token_timeout_s if first else None
                chunk = await asyncio.wait_for(it.__anext__(), timeout)
            except StopAsyncIteration:
                return
            first = False
            for choice in chunk.choices or []:
                delta = choice.delta
                if delta is None:
                    continue
                for tc in delta.tool_calls or []:
                    p = calls.setdefault(tc.index or 0, _Pending(id=f"call_{secrets.token_hex(8)}"))
                    if tc.id:
                        p.id = tc.id
                    if tc.function is not None:
                        p.name += tc.function.name or ""
                        p.arguments += tc.function.arguments or ""
                if delta.content:
                    yield delta.content
