"""OpenAI Realtime API provider (and Azure OpenAI / compatible servers speaking the same protocol).

The wire format (server event models, client event builders, both dialects: the preview,
`OpenAI-Beta: realtime=v1`, also Azure, and GA) is the wire package `telephony_bot.realtime`.
`protocol` maps server events to the provider port's events; `endpoints` builds the WebSocket
URL and headers; `client` owns the socket. Only `client` opens a connection.
"""
