"""A chat-completions server for tests, speaking the OpenAI streaming wire format exactly as
Ollama / llama.cpp / vLLM do (`POST /v1/chat/completions`, `stream: true` → server-sent
`chat.completion.chunk` events, tool calls as indexed argument fragments, `data: [DONE]`).

No language model runs here, so replies come from a small script over the conversation it is
sent, streamed a word at a time with a real delay. Every request body is kept (`requests`) so
tests can check the history and tools the brain sends.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

Reply = list[tuple[str, Any]]  # ("text", str) | ("tool", (name, args))


def scripted_reply(messages: list[dict[str, Any]]) -> Reply:
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        data = json.loads(last.get("content") or "{}")
        return [("text", f"It is {data.get('temp')} degrees in Paris. Anything else?")]
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        return [("text", "Hello, this is the assistant, how can I help you today?")]
    text = str(users[-1].get("content", "")).lower()
    if "weather" in text:
        return [("text", "Let me check."), ("tool", ("get_weather", {"city": "Paris"}))]
    if "bye" in text:
        return [("tool", ("hangup", {"reason": "caller said goodbye"}))]
    return [("text", f"You said {text}. Is there anything else?")]


class ChatServer:
    def __init__(self, word_delay_s: float = 0.03, first_token_delay_s: float = 0.05) -> None:
        self.word_delay_s = word_delay_s
        self.first_token_delay_s = first_token_delay_s
        self.requests: list[dict[str, Any]] = []
        self.hang = False  # accept, then never send a token
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if not body.get("stream"):
            return web.json_response({"error": {"message": "only stream: true here"}}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.hang:
            await self._stopping.wait()
            return resp
        cid, created, model = "chatcmpl-test", int(time.time()), body.get("model", "")

        async def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())

        await asyncio.sleep(self.first_token_delay_s)
        await chunk({"role": "assistant", "content": ""})
        finish = "stop"
        for i, (kind, value) in enumerate(scripted_reply(body.get("messages", []))):
            if kind == "text":
                for k, word in enumerate(str(value).split(" ")):
                    await chunk({"content": word if k == 0 else " " + word})
                    await asyncio.sleep(self.word_delay_s)
                if i == 0:
                    await chunk({"content": " "})
            else:
                name, args = value
                finish = "tool_calls"
                call = {"index": 0, "id": f"call_{len(self.requests)}", "type": "function",
                        "function": {"name": name, "arguments": ""}}  # fmt: skip
                await chunk({"tool_calls": [call]})
                text = json.dumps(args)
                for k in range(0, len(text), 5):  # arguments arrive in fragments
                    await chunk(
                        {"tool_calls": [{"index": 0, "function": {"arguments": text[k : k + 5]}}]}
                    )
        await chunk({}, finish)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
