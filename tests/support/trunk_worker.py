"""A worker whose incoming calls are attributed to trunks by an `X-Trunk` header.

A stand-in for the real attribution (source address, digest auth, registration), so the SIP
endpoint's per-trunk SRTP choice (one account per mode, picked per INVITE) is tested on real
calls. Everything else is the real worker: settings, engine config, carrier, echo sessions.
Run:
    python -m tests.support.trunk_worker [worker flags]
"""

from __future__ import annotations

import asyncio
import sys

from telephony_bot import cli, log
from telephony_bot.app import CallSetup
from telephony_bot.providers.base import SessionConfig
from telephony_bot.providers.echo import EchoProvider
from telephony_bot.session.settings import SessionOptions
from telephony_bot.sip.carrier import SipCarrier
from telephony_bot.sip.sipmsg import parse_request
from telephony_bot.worker import Worker


def trunk_of(_source: str, message: str) -> str | None:
    return parse_request(message).headers.get("X-Trunk") or None


def main() -> None:
    args = cli.build_parser().parse_args(["worker", *sys.argv[1:]])
    log.setup(args.log_format, args.log_level, worker=0)
    engine = cli._engine_settings(args)
    settings = cli._sip_settings(args, 0, engine)
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(15, stop.set)
        await Worker(
            settings,  # type: ignore[arg-type]
            CallSetup(EchoProvider(), SessionConfig(), SessionOptions()),
            carrier=SipCarrier(settings, trunk_of=trunk_of),  # type: ignore[arg-type]
            engine=engine,
        ).run(stop)

    asyncio.run(run())
    cli._exit_now(0)


if __name__ == "__main__":
    main()
