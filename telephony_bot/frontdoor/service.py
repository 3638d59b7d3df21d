"""The front door as `serve` runs it: Kamailio as a supervised child, plus a health monitor.

`FrontDoor.prepare()` renders the configuration into the run dir and checks it with
`kamailio -c` (so a bad setup fails before any worker starts); `spec()` is the supervisor's
entry for the Kamailio process, whose output becomes `kamailio` log lines; `monitor()` polls
the dispatcher's view of the workers and logs every change of a worker's state (`front door
ready` once every worker is known, then `worker state changed`).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from telephony_bot import log
from telephony_bot.frontdoor import kamailio, rpc
from telephony_bot.frontdoor.render import FrontDoorConfig, write
from telephony_bot.supervisor import WorkerSpec

_log = log.get("frontdoor")
# " 3(17677) WARNING: <script>: front door: ..." / " 0(1) ERROR: dispatcher [x.c:1]: f(): ..."
_LINE = re.compile(r"^\s*\d+\((?P<pid>\d+)\)\s+(?P<level>[A-Z]+):\s+(?P<text>.*)$")
_LEVELS = {
    "DEBUG": "debug",
    "INFO": "info",
    "NOTICE": "info",
    "WARNING": "warning",
    "ERROR": "error",
    "CRITICAL": "error",
    "ALERT": "error",
    "BUG": "error",
}


def default_run_dir(public_port: int) -> Path:
    """Where `serve` keeps the front door's files, and where `frontdoor status` looks."""
    return Path(tempfile.gettempdir()) / f"telephony-bot-front-{public_port}"


def worker_index(duid: str) -> int | None:
    return int(duid[1:]) if duid[:1] == "w" and duid[1:].isdigit() else None


class FrontDoor:
    def __init__(self, cfg: FrontDoorConfig) -> None:
        self.cfg = cfg
        self.states: dict[str, str] = {}
        self.ready = False

    def prepare(self) -> WorkerSpec:
        """Render and check the configuration; the supervisor's spec for Kamailio."""
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in self.cfg.run_dir.glob("*.sock"):  # a previous run's sockets
            stale.unlink(missing_ok=True)
        path = write(self.cfg)
        kamailio.check_config(path)
        _log.info(
            "front door configured",
            sip_port=self.cfg.listen_port,
            workers=",".join(w.uri for w in self.cfg.workers),
            maxload=self.cfg.maxload,
            config=str(path),
        )
        return WorkerSpec(
            index=-1,
            argv=kamailio.argv(path, self.cfg.run_dir),
            sip_port=self.cfg.listen_port,
            name="front door",
            output=self.on_output,
            stop_last=True,
            own_group=True,
        )

    def on_output(self, line: str) -> None:
        """One line of Kamailio's stderr, as a structured log line."""
        line = line.rstrip()
        if not line.strip():
            return
        m = _LINE.match(line)
        if m is None:
            _log.info("kamailio", message=line.strip())
            return
        text = m.group("text")
        if text.startswith("<script>: "):
            text = text[len("<script>: ") :]
        level = _LEVELS.get(m.group("level"), "info")
        getattr(_log, level)("kamailio", message=text, kamailio_pid=int(m.group("pid")))

    async def monitor(self, interval_s: float | None = None) -> None:
        """Log the workers' state as the dispatcher sees it, whenever it changes."""
        interval = interval_s or max(0.5, self.cfg.ping_interval_s / 2)
        reachable = True
        while True:
            try:
                workers = await asyncio.to_thread(rpc.dispatcher_list, self.cfg.run_dir, 1.0)
            except rpc.FrontDoorUnavailableError as exc:
                if self.ready and reachable:
                    _log.warning("front door not answering", error=str(exc))
                reachable = False
                await asyncio.sleep(interval)
                continue
            if not reachable and self.ready:
                _log.info("front door answering again")
            reachable = True
            self._update(workers)
            await asyncio.sleep(interval)

    def _update(self, workers: list[rpc.WorkerState]) -> None:
        if not self.ready and len(workers) == len(self.cfg.workers):
            self.ready = True
            _log.info(
                "front door ready",
                sip_port=self.cfg.listen_port,
                workers=len(workers),
                run_dir=str(self.cfg.run_dir),
            )
        for w in workers:
            previous = self.states.get(w.duid)
            if previous == w.state:
                continue
            self.states[w.duid] = w.state
            if previous is None and w.state == "active":
                continue  # the expected start; only deviations are news
            fields = {"worker": worker_index(w.duid), "uri": w.uri, "state": w.state}
            if previous is not None:
                fields["previous"] = previous
            if w.state == "active":
                _log.info("worker state changed", **fields)
            else:
                _log.warning("worker state changed", **fields)
