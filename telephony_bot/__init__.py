"""telephony_bot: a SIP voice-bot engine bridging phone calls to realtime speech sessions."""

__version__ = "0.1.0"
