"""OpenAI Realtime API provider (and Azure OpenAI / compatible servers speaking the same protocol).

`protocol` holds the wire format (server event models, their mapping to the provider port's
events, client event builders) for both dialects: the preview (`OpenAI-Beta: realtime=v1`, also
Azure) and GA. `endpoints` builds the WebSocket URL and headers. Neither opens a connection.
"""
