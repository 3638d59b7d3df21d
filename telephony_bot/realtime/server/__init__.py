"""The Realtime server core, shared by the offline engine and the scripted test server.

`session.RealtimeSession` (on `connection.RealtimeConnection`: sending, errors, the event loop,
``session.update``) is one connection: the session and its settings, the conversation
items (create, delete, truncate), the input buffer's bookkeeping, responses (create, cancel,
output items, ``response.done`` with usage) and the errors the real API sends. A server
subclasses it with only how it hears (`_append`, its VAD) and how a reply is made
(`_create_response`); `listen` holds the WebSocket handshake both servers share.
"""

from telephony_bot.realtime.server.listen import (
    connection_request,
    reject_unless_realtime,
    serve_realtime,
)
from telephony_bot.realtime.server.response import Ended, OutItem, Resp
from telephony_bot.realtime.server.session import MIN_COMMIT_MS, RealtimeSession

__all__ = [
    "MIN_COMMIT_MS",
    "Ended",
    "OutItem",
    "RealtimeSession",
    "Resp",
    "connection_request",
    "reject_unless_realtime",
    "serve_realtime",
]
