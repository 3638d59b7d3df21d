"""A worker whose sessions send DTMF, then transfer every call (REFER) to a target.

Used by the transfer test to drive the real SipCall.send_dtmf() and transfer() paths and
log each TransferOutcome. Run:
    python -m tests.support.transfer_worker TARGET_URI DIGITS [worker flags]
"""

from __future__ import annotations

import asyncio
import sys

from telephony_bot import cli, log
from telephony_bot.app import CallSetup
from telephony_bot.callport import CallEnded, CallPort, MediaReady, TransferOutcome
from telephony_bot.providers.base import SessionConfig
from telephony_bot.providers.echo import EchoProvider
from telephony_bot.session.settings import SessionOptions
from telephony_bot.sip.carrier import SipCarrier
from telephony_bot.worker import Worker

_log = log.get("transfer-test")


class TransferWorker(Worker):
    target = ""
    dtmf = ""

    def _on_call(self, call: CallPort) -> None:
        task = asyncio.create_task(self._transfer(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _transfer(self, call: CallPort) -> None:
        await call.answer()
        while True:
            ev = await call.events.get()
            if isinstance(ev, MediaReady):
                if self.dtmf:
                    await call.send_dtmf(self.dtmf)
                    await asyncio.sleep(0.2 + 0.25 * len(self.dtmf))
                await call.transfer(self.target)
            elif isinstance(ev, TransferOutcome):
                _log.info(
                    "transfer status",
                    call_id=call.call_id,
                    target=ev.target,
                    status=ev.status_code,
                    final=ev.final,
                )
                if ev.final:
                    await call.hangup("transferred")
            elif isinstance(ev, CallEnded):
                _log.info("call ended", call_id=call.call_id, ended_by=ev.ended_by)
                return


def main() -> None:
    TransferWorker.target = sys.argv[1]
    TransferWorker.dtmf = sys.argv[2]
    args = cli.build_parser().parse_args(["worker", *sys.argv[3:]])
    log.setup(args.log_format, args.log_level, worker=0)
    settings = cli._sip_settings(args, 0)
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(15, stop.set)
        await TransferWorker(
            settings,  # type: ignore[arg-type]
            CallSetup(EchoProvider(), SessionConfig(), SessionOptions()),
            carrier=SipCarrier(settings),  # type: ignore[arg-type]
        ).run(stop)

    asyncio.run(run())
    cli._exit_now(0)


if __name__ == "__main__":
    main()
