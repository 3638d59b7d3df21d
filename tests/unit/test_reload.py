"""Hot reload: good edits apply, bad edits are refused and the last good plan stays."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from telephony_bot.dialplan.reload import PlanWatcher
from telephony_bot.errors import ConfigError


@dataclass(frozen=True)
class Loaded:
    plan: str
    version: str
    files: tuple[Path, ...]


def fake_load(paths):  # the real loader's contract: a plan with version and files, or raise
    p = Path(paths[0])
    text = p.read_text()
    if "BROKEN" in text:
        raise ConfigError(f"{p}:1:1 routes: broken")
    return Loaded(text, hashlib.sha256(text.encode()).hexdigest()[:12], (p,))


def _edit(p: Path, text: str) -> None:
    p.write_text(text)
    st = p.stat()
    os.utime(p, (st.st_atime, st.st_mtime + 5))  # mtime resolution on fast edits


def test_valid_edit_applies_and_broken_edit_keeps_the_last_good_plan(tmp_path: Path) -> None:
    f = tmp_path / "plan.yaml"
    f.write_text("v1")
    applied = []
    w = PlanWatcher([f], fake_load, on_change=applied.append)
    running_call_plan = w.current  # a call in progress holds this
    assert w.check() is False  # nothing changed
    _edit(f, "v2")
    assert w.check() is True and w.current.plan == "v2"
    assert running_call_plan.plan == "v1"  # the running call keeps its plan
    _edit(f, "v3 BROKEN")
    assert w.check() is False
    assert w.current.plan == "v2" and w.rejected == 1 and "broken" in w.last_error
    _edit(f, "v4")
    assert w.check() is True and w.current.plan == "v4" and w.last_error == ""
    assert [a.plan for a in applied] == ["v2", "v4"]
    assert applied[0].version != applied[1].version


def test_first_load_must_succeed(tmp_path: Path) -> None:
    f = tmp_path / "plan.yaml"
    f.write_text("BROKEN")
    with pytest.raises(ConfigError):
        PlanWatcher([f], fake_load)


def test_a_plan_truncated_to_nothing_or_stripped_of_routes_and_provider_is_refused(
    tmp_path: Path,
) -> None:
    from telephony_bot.dialplan.loader import load

    f = tmp_path / "plan.yaml"
    f.write_text('routes:\n  - {name: desk, match: {number: "+4930111"}, provider: local}\n')
    w = PlanWatcher([f], lambda paths: load(paths, env={}))
    good = w.current.version
    _edit(f, "")  # `: > plan.yaml`, a failed deploy: the engine must not answer with echo
    assert w.check() is False
    assert w.current.version == good and w.rejected == 1
    assert "the dialplan file is empty" in w.last_error
    _edit(f, "version: 1\n")
    assert w.check() is False and w.current.version == good and w.rejected == 2
    assert "no routes and no defaults.provider" in w.last_error
    _edit(f, 'routes:\n  - {name: desk, match: {number: "+4930111"}}\n')  # provider lost
    assert w.check() is False and w.current.version == good
    assert "route 'desk' names no provider" in w.last_error
    assert w.current.plan.routes[0].provider == "local"  # calls still get the last good plan
