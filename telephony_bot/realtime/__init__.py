"""The OpenAI Realtime wire protocol, shared by its client and its servers.

* `dialect`: the two dialects' names (events, audio formats, session keys) and how a server
  tells which one a connection speaks.
* `events`: server events as pydantic models and `parse_server_event` (the client reads them).
* `client_events`: the client events a session sends, as JSON-ready dicts.
* `server_events`: the objects and events a server sends (items, responses, usage, errors,
  the default session).
* `audio`: a server's audio on the wire (24 kHz PCM16 or G.711) to and from 24 kHz PCM16.
* `server`: the server core (sessions, items, responses, truncation, usage) that the offline
  engine and the scripted test server extend with how a reply is made.

Nothing here but `server` opens a socket; the mapping of server events to the provider port
is client logic and lives in `telephony_bot.providers.openai.protocol`.
"""
