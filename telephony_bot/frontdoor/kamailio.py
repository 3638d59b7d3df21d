"""Find the Kamailio binary, check a rendered configuration, build its foreground command.

Kamailio runs as a child of the supervisor: `-DD` keeps the main process in the foreground
(its own children stay attached to it), `-E` logs to stderr, which the supervisor turns into
log lines. The Debian package's own service is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from telephony_bot.errors import ConfigError

PACKAGE = "kamailio"
_SEARCH = ("/usr/sbin", "/usr/local/sbin", "/sbin")
SHM_MB = 64
PKG_MB = 8


def binary(name: str = "kamailio") -> str:
    """Path of `kamailio` (or `kamcmd`); /usr/sbin is searched even when not on PATH."""
    found = shutil.which(name)
    if found:
        return found
    for d in _SEARCH:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    raise ConfigError(
        f"{name} is not installed; the front door (serve --workers N > 1) needs it. "
        f"Install the Debian package `{PACKAGE}` (`make install` runs "
        "scripts/install-system-deps.sh), or run with --front-door none."
    )


def check_config(cfg_path: Path) -> None:
    """`kamailio -c`: parse the configuration and load its modules without starting."""
    res = subprocess.run(
        [binary(), "-c", "-f", str(cfg_path)], capture_output=True, text=True, timeout=30
    )
    if res.returncode != 0:
        lines = [
            ln for ln in (res.stderr + res.stdout).splitlines() if "ERROR" in ln or "CRIT" in ln
        ]
        detail = "\n".join(lines[-8:]) or res.stderr[-2000:]
        raise ConfigError(f"Kamailio rejects {cfg_path}:\n{detail}")


def argv(cfg_path: Path, run_dir: Path) -> tuple[str, ...]:
    """Foreground command line: config, logs to stderr, memory sizes, pid file."""
    return (
        binary(),
        "-f", str(cfg_path),
        "-DD",
        "-E",
        "-m", str(SHM_MB),
        "-M", str(PKG_MB),
        "-P", str(run_dir / "kamailio.pid"),
    )  # fmt: skip
