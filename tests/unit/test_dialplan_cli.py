"""`telephony-bot dialplan validate | schema | route`, as an admin runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "telephony_bot.cli", "dialplan"]
ENV = {"HOSPITAL_API_TOKEN": "t", "BANK_API_TOKEN": "t", "FIELD_API_TOKEN": "t", "PATH": "/usr/bin"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, env=ENV)


def test_validate_summarises_good_plans_and_lists_every_error_of_bad_ones(tmp_path: Path) -> None:
    ok = _run("validate", *sorted(str(p) for p in (REPO / "dialplans").glob("*.yaml")))
    assert ok.returncode == 0, ok.stderr
    assert "hospital.yaml: OK" in ok.stdout and "+493012345600" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\ntools:\n  book_slot: {builtin: hangup}\n"
        "routes:\n  - name: a\n    tools: [book_slott]\n  - name: a\n"
    )
    res = _run("validate", str(bad))
    assert res.returncode == 1
    assert f"{bad}:6:13 routes[0].tools[0]: unknown tool 'book_slott'" in res.stderr
    assert "did you mean 'book_slot'" in res.stderr
    assert "route name 'a' is already used" in res.stderr  # every error, not just one


def test_validate_without_the_secrets_says_so_and_checks_the_structure_on_request(
    tmp_path: Path,
) -> None:
    bank = str(REPO / "dialplans" / "bank.yaml")
    bare = {"PATH": "/usr/bin"}  # a laptop or CI without the production secrets
    res = subprocess.run([*CLI, "validate", bank], capture_output=True, text=True, cwd=REPO,
                         env=bare)  # fmt: skip
    assert res.returncode == 1
    assert (
        f"{bank}:36:33 tools.lookup_customer.http.headers.Authorization: environment "
        "variable BANK_API_TOKEN is not set (a secret read when the plan is loaded)"
    ) in res.stderr
    assert (
        f"{bank}: the plan is valid but for environment variables not set here (BANK_API_TOKEN): "
        "set them where the engine runs; `dialplan validate --no-secrets` checks the structure "
        "without them"
    ) in res.stderr
    res = subprocess.run([*CLI, "validate", "--no-secrets", bank], capture_output=True,
                         text=True, cwd=REPO, env=bare)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"{bank}: OK (structure only; not set here: BANK_API_TOKEN, OPENAI_API_KEY)" in (
        res.stdout
    )
    # a real mistake is still one, with the missing secret named apart
    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(bank).read_text().replace("timeout_s: 4\n", "timeout_s: four\n", 1))
    res = subprocess.run([*CLI, "validate", str(broken)], capture_output=True, text=True,
                         cwd=REPO, env=bare)  # fmt: skip
    assert res.returncode == 1
    assert "tools.lookup_customer.timeout_s: expected a number" in res.stderr
    assert (
        "besides the other problems, environment variables are not set here (BANK_API_TOKEN)"
        in res.stderr
    )
    res = subprocess.run([*CLI, "validate", "--no-secrets", str(broken)], capture_output=True,
                         text=True, cwd=REPO, env=bare)  # fmt: skip
    assert res.returncode == 1 and "BANK_API_TOKEN" not in res.stderr
    assert "expected a number" in res.stderr


def test_validate_refuses_an_empty_plan_and_one_that_names_no_provider(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    bare = tmp_path / "bare.yaml"
    bare.write_text('version: 1\nroutes:\n  - name: desk\n    match: {number: "+4930111"}\n')
    res = _run("validate", str(empty), str(bare))
    assert res.returncode == 1
    assert f"{empty}:1:1: the dialplan file is empty" in res.stderr
    assert f"{bare}:3:5 routes[0]: route 'desk' names no provider" in res.stderr


def test_schema_is_json_schema_for_editors() -> None:
    res = _run("schema")
    schema = json.loads(res.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "routes" in schema["properties"]


def test_route_explains_the_after_hours_decision() -> None:
    res = _run(
        "route", "dialplans/hospital.yaml", "--to", "+493012345600", "--at",
        "2026-12-24T22:00+01:00",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "outside hours" in res.stdout and "hospital-night" in res.stdout
    day = _run(
        "route", "dialplans/hospital.yaml", "--to", "+493012345600", "--at",
        "2026-12-01T10:00+01:00",
    )  # fmt: skip
    assert "route: hospital-day" in day.stdout


def test_validate_with_an_engine_config_checks_trunk_names_without_needing_its_secrets(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\ndefaults: {provider: local}\nroutes:\n  - name: desk\n"
        "    match: {trunk: pbxx}\n"
    )
    config = tmp_path / "engine.yaml"
    config.write_text(
        "trunks:\n  pbx:\n    register:\n      registrar: sip:pbx.example.com\n"
        "      user: '2001'\n      password_env: PBX_PASSWORD\n"  # not set here
    )
    assert _run("validate", str(plan)).returncode == 0  # no config: any trunk name
    res = _run("validate", "--config", str(config), str(plan))
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"{plan}:5:20 routes[0].match.trunk: no trunk named 'pbxx' in the engine config "
        "(did you mean 'pbx'?); its trunks: pbx"
    )
    res = _run("route", str(plan), "--to", "2001", "--trunk", "pbxx")
    assert res.returncode == 0 and res.stdout.startswith("matched route 'desk': trunk pbxx")


def test_understand_explains_why_a_callers_words_match_and_what_the_flow_does() -> None:
    res = _run(
        "understand", "dialplans/bank.yaml", "--to", "+496955500199", "--state", "identify",
        "I think someone took my wallet, my debit card is gone",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "route: bank-balance-offline; state: identify"
    first = lines[2].split()
    assert first[0] == "lost_card" and "meaning" in lines[2], res.stdout  # ranked first
    assert "('my card was stolen')" in lines[2] or "('I lost my card')" in lines[2]
    assert lines[-1] == "-> Transfer(target='card_block')", res.stdout
    bad = _run("understand", "dialplans/bank.yaml", "--state", "nowhere", "hello")
    assert bad.returncode != 0 and "no state 'nowhere'" in bad.stderr
