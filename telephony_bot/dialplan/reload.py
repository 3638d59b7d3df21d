"""Hot reload: watch the dialplan files; a valid new plan applies to new calls, an invalid
one is rejected with its errors logged and the last good plan kept.

Running calls keep the plan they started with (they hold a reference to it); every call
records the version (content hash) of its plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from telephony_bot import log
from telephony_bot.errors import ConfigError

_log = log.get("dialplan")


def _stamp(files: Sequence[Path]) -> tuple[tuple[str, float, int], ...]:
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_mtime, st.st_size))
        except OSError:
            out.append((str(f), -1.0, -1))
    return tuple(out)


class PlanWatcher:
    """Holds the current plan and swaps it when the files change and still validate.

    `load` is the loader (`dialplan.loader.load`); it returns an object with `.version` and
    `.files`, or raises ConfigError. `on_change(plan)` is called after each applied plan.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        load: Callable[[Sequence[str | Path]], Any],
        on_change: Callable[[Any], None] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.paths = list(paths)
        self._load = load
        self.on_change = on_change
        self.interval_s = interval_s
        self.current = load(self.paths)  # the first load must succeed: fail at start-up
        self._stamp = _stamp(self.current.files)
        self.rejected = 0
        self.last_error = ""

    def check(self) -> bool:
        """Reload if the files changed. True when a new plan was applied."""
        stamp = _stamp(self.current.files)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            new = self._load(self.paths)
        except ConfigError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            _log.error(
                "dialplan change rejected; calls keep using the last good plan",
                version=self.current.version,
                errors=str(exc),
            )
            return False
        self.last_error = ""  # the files load again (perhaps back to the current plan)
        if new.version == self.current.version:
            return False
        old = self.current.version
        self.current = new
        self._stamp = _stamp(new.files)
        _log.info("dialplan reloaded", version=new.version, previous=old)
        if self.on_change is not None:
            self.on_change(new)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive a bad edit
                _log.error("dialplan watcher error", error=str(exc))
