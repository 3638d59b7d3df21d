"""Loading dialplans: every mistake an admin can make is reported as
`file:line:column field.path: what was expected`, all of them at once."""

from __future__ import annotations

import json
import re
import textwrap
import wave
from pathlib import Path

import pytest
import yaml

from telephony_bot.dialplan.loader import (
    LoadedPlan,
    PlaceholderEnv,
    json_schema,
    load,
    load_default,
)
from telephony_bot.dialplan.router import effective
from telephony_bot.errors import ConfigError, DialplanError, DialplanIssue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dialplans"
DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"
EXAMPLE_ENV = {
    "HOSPITAL_API_TOKEN": "hospital-token",
    "BANK_API_TOKEN": "bank-token",
    "FIELD_API_TOKEN": "field-token",
    "OPENAI_API_KEY": "sk-test",
}


def write(tmp_path: Path, text: str, name: str = "plan.yaml", *, provider: bool = True) -> Path:
    """The plan `text` in a file. The plans here test other things than the provider: one
    that names none and has no `defaults:` gets `defaults: {provider: echo}` appended (at
    the end, so the lines asserted on stay where they are); `provider=False` writes it as is."""
    path = tmp_path / name
    text = textwrap.dedent(text).lstrip("\n")
    if provider and not re.search(r"^(defaults|extends):|\bprovider:", text, re.M):
        text = text.rstrip("\n") + "\ndefaults: {provider: echo}\n"
    path.write_text(text, encoding="utf-8")
    return path


def _wav(path: Path, rate: int, seconds: float, *, width: int = 2, channels: int = 1) -> Path:
    n = int(rate * seconds)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x10\x00" * (width // 2) * n * channels if width == 2 else b"\x80" * n)
    return path


def problems(path: Path | list[Path], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(DialplanError) as info:
        load(path, env=env or {})
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return [str(i) for i in info.value.issues]


def only(path: Path, env: dict[str, str] | None = None) -> str:
    found = problems(path, env)
    assert len(found) == 1, found
    return found[0]


# ---------- the ten classic mistakes ----------


def test_typo_in_tool_name_says_where_and_suggests_the_right_one() -> None:
    f = FIXTURES / "bad_tool_typo.yaml"
    assert only(f) == (
        f"{f}:11:25 routes[0].tools[1]: unknown tool 'book_slott' (did you mean 'book_slot'?)"
    )


def test_bad_regex_points_at_the_pattern(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - name: day
            match:
              caller: {regex: "(+49"}
        """,
    )
    msg = only(f)
    assert msg.startswith(f"{f}:4:23 routes[0].match.caller.regex: invalid regular expression")
    assert "'(+49'" in msg and "nothing to repeat at position 1" in msg


def test_missing_env_var_names_the_variable_and_the_line(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        providers:
          azure-eu:
            type: azure
            resource: my-resource
            deployment: gpt-realtime
            api_key: "${AZURE_OPENAI_KEY}"
        tools:
          lookup:
            http:
              url: http://127.0.0.1:8080/lookup
              headers: {Authorization: "Bearer ${LOOKUP_TOKEN}"}
        """,
    )
    secret = " (a secret read when the plan is loaded)"
    assert problems(f) == [
        f"{f}:6:14 providers.azure-eu.api_key: environment variable AZURE_OPENAI_KEY is not "
        f"set{secret}",
        f"{f}:11:32 tools.lookup.http.headers.Authorization: "
        f"environment variable LOOKUP_TOKEN is not set{secret}",
    ]
    with pytest.raises(DialplanError) as info:
        load(f, env={})
    # each problem says which variables it is, so `validate` tells secrets from mistakes
    assert [i.unset_env for i in info.value.issues] == [("AZURE_OPENAI_KEY",), ("LOOKUP_TOKEN",)]
    loaded = load(f, env={"AZURE_OPENAI_KEY": "k1", "LOOKUP_TOKEN": "t1"})
    assert loaded.plan.providers["azure-eu"].key() == "k1"
    header = loaded.plan.tools["lookup"].http.headers["Authorization"]  # type: ignore[union-attr]
    assert header.get_secret_value() == "Bearer t1"


def test_a_literal_api_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        providers:
          rt: {type: openai, api_key: sk-live-abcdef}
        """,
    )
    msg = only(f)
    assert msg.startswith(f"{f}:2:31 providers.rt.api_key: a secret is written as an environment")
    assert "sk-live-abcdef" not in msg


def test_unknown_provider(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        providers:
          realtime: {type: openai, model: gpt-realtime}
        routes:
          - name: day
            provider: realtim
        """,
    )
    assert only(f) == (
        f"{f}:5:15 routes[0].provider: unknown provider 'realtim' (did you mean 'realtime'?); "
        "name one under providers: or use echo, local, openai"
    )


def test_a_list_of_providers_is_checked_item_by_item(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        providers:
          realtime: {type: openai, model: gpt-realtime}
        routes:
          - name: day
            provider: [realtime, ofline, realtime]
        """,
    )
    found = problems(f)
    assert found == [
        f"{f}:5:26 routes[0].provider[1]: unknown provider 'ofline'; "
        "name one under providers: or use echo, local, openai",
        f"{f}:5:34 routes[0].provider[2]: provider 'realtime' is listed twice",
    ]


def test_a_list_of_providers_becomes_the_routes_fallbacks(tmp_path: Path) -> None:

    f = write(
        tmp_path,
        """
        providers:
          realtime: {type: openai, model: gpt-realtime, api_key_env: RT_KEY}
        defaults:
          provider: [realtime, local, echo]
        """,
    )
    plan = load(f, env={"RT_KEY": "sk-test"}).plan
    route = effective(plan, None)
    assert route.provider_name == "realtime" and route.provider.type == "openai"
    assert [(n, p.type) for n, p in route.fallbacks] == [("local", "local"), ("echo", "echo")]


def test_duplicate_route_name(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - name: day
          - name: night
          - name: day
        """,
    )
    assert only(f) == f"{f}:4:11 routes[2].name: route name 'day' is already used (first at {f}:2)"


def test_bad_time_windows_each_get_their_own_line(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - name: day
            hours:
              timezone: Europe/Berlin
              open:
                mon: "25:00-18:00"
                tue: "18:00-08:00"
                thurs: "08:00-12:00"
                fri: "8am-5pm"
        """,
    )
    found = problems(f)
    assert found[0] == (
        f"{f}:6:14 routes[0].hours.open.mon: '25:00-18:00': start 25:00 is not a time of day "
        "(00:00 to 24:00)"
    )
    assert found[1].startswith(
        f"{f}:7:14 routes[0].hours.open.tue: '18:00-08:00': the end must come after the start"
    )
    assert found[2] == (
        f"{f}:8:9 routes[0].hours.open.thurs: expected 'mon', 'tue', 'wed', 'thu', 'fri', "
        "'sat' or 'sun', got 'thurs' (did you mean 'thu'?)"
    )
    assert found[3] == (
        f'{f}:9:14 routes[0].hours.open.fri: expected a time window like "08:00-18:00", '
        "got '8am-5pm'"
    )
    assert len(found) == 4


def test_bad_timezone(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - name: day
            hours: {timezone: Europe/Berln, open: {mon: "08:00-18:00"}}
        """,
    )
    assert only(f) == (
        f"{f}:3:23 routes[0].hours.timezone: unknown timezone 'Europe/Berln' "
        "(did you mean 'Europe/Berlin'?); use an IANA name like Europe/Berlin"
    )


def test_wrong_types(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        defaults:
          max_call_seconds: ten minutes
          recording: maybe
        routes:
          - name: day
            match: {number: +4930123456}
            language: no
            provider: echo
        """,
    )
    assert problems(f) == [
        f"{f}:2:21 defaults.max_call_seconds: expected a number, got 'ten minutes'",
        f"{f}:3:14 defaults.recording: expected true or false, got 'maybe'",
        f"{f}:6:21 routes[0].match.number: YAML read this as the integer 4930123456: write "
        'phone numbers in quotes, e.g. "+4930123456"',
        f"{f}:7:15 routes[0].language: expected text, got false (YAML reads "
        "yes/no/on/off/true/false as booleans: put the text in quotes)",
    ]


def test_unknown_key_points_at_the_key_and_suggests(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        defaults:
          colour: blue
        routes:
          - name: day
            tool: [hangup]
            provider: echo
        """,
    )
    found = problems(f)
    assert found[0].startswith(f"{f}:2:3 defaults.colour: unknown key 'colour'; allowed here: ")
    assert "provider" in found[0] and "transfer_targets" in found[0]
    assert found[1] == f"{f}:5:5 routes[0].tool: unknown key 'tool' (did you mean 'tools'?)"


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert only(missing) == (
        f"{missing}:1:1: cannot read the dialplan file: No such file or directory"
    )
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8 text" in only(binary)


def test_yaml_syntax_error_gives_the_line_of_the_error() -> None:
    f = FIXTURES / "bad_yaml_syntax.yaml"
    assert only(f) == (
        f"{f}:5:3: YAML syntax error: while parsing a flow mapping, expected ',' or '}}', "
        "but got '-' (it began at line 4)"
    )


def test_tabs_and_duplicate_keys_are_reported(tmp_path: Path) -> None:
    f = write(tmp_path, "version: 1\nroutes:\n\t- name: x\n")
    assert only(f).startswith(f"{f}:3:1: YAML syntax error: ")
    g = write(
        tmp_path,
        """
        defaults:
          voice: alloy
          voice: ash
          provider: echo
        """,
        "dup.yaml",
    )
    assert only(g) == f"{g}:3:3 defaults.voice: key 'voice' appears twice (first at line 2)"


# ---------- a plan says what answers its calls: never an implicit echo ----------


def test_an_empty_plan_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")  # a plan truncated to 0 bytes
    assert only(empty) == (
        f"{empty}:1:1: the dialplan file is empty: a plan names the provider its calls get "
        "and its routes (see dialplans/example.yaml)"
    )
    comments = write(tmp_path, "# nothing here yet\n\n", "comments.yaml", provider=False)
    assert "the dialplan file is empty" in only(comments)


def test_a_plan_without_routes_or_provider_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path, "version: 1\n", provider=False)
    assert only(f) == (
        f"{f}:1:1: the plan has no routes and no defaults.provider: calls would have nothing "
        "to talk to; give routes, and a provider (one under providers:, local or openai; "
        "echo only tests the line, playing the caller's voice back)"
    )
    g = write(tmp_path, "defaults:\n  voice: alloy\n", "g.yaml", provider=False)
    assert only(g).startswith(f"{g}:2:3 defaults: the plan has no routes and no defaults.provider")
    # the defaults alone, with a provider, answer every call: a plan may do that on purpose
    ok = write(tmp_path, "defaults: {provider: echo}\n", "ok.yaml", provider=False)
    assert load(ok, env={}).plan.defaults.provider == "echo"


def test_each_route_needs_a_provider_of_its_own_or_from_the_defaults(tmp_path: Path) -> None:
    text = """
        routes:
          - name: day
            match: {number: "+4930100"}
            provider: local
          - name: night
            match: {number: "+4930200"}
        """
    f = write(tmp_path, text, provider=False)
    assert only(f) == (
        f"{f}:5:5 routes[1]: route 'night' names no provider and defaults.provider is not set: "
        "give provider: on the route or in defaults (one under providers:, local or openai; "
        "echo only tests the line, playing the caller's voice back)"
    )
    g = write(tmp_path, text + "defaults: {provider: openai}\n", "g.yaml", provider=False)
    plan = load(g, env={}).plan
    assert [effective(plan, r).provider_name for r in plan.routes] == ["local", "openai"]


def test_without_a_dialplan_the_command_line_must_name_the_provider() -> None:
    with pytest.raises(ConfigError, match="no dialplan: give --dialplan FILE .* --provider echo"):
        load_default(None)
    with pytest.raises(ConfigError, match="unknown provider 'ehco'; without a dialplan: echo"):
        load_default("ehco")
    assert effective(load_default("echo").plan, None).provider.type == "echo"


def test_a_placeholder_environment_checks_structure_and_lists_what_is_not_set(
    tmp_path: Path,
) -> None:
    f = write(
        tmp_path,
        """
        providers:
          rt: {type: openai, api_key: "${RT_KEY}"}
          other: {type: openai, api_key_env: OTHER_KEY}
        defaults:
          provider: rt
          voice: 42
        """,
    )
    env = PlaceholderEnv({"OTHER_KEY": "set"})
    found = problems(f, env)  # type: ignore[arg-type]
    assert found == [f"{f}:6:10 defaults.voice: expected text, got 42"]  # the real mistake
    assert list(env.unset) == ["RT_KEY"]
    f.write_text(f.read_text().replace("voice: 42", "voice: ash"))
    env = PlaceholderEnv({})
    plan = load(f, env=env).plan
    assert list(env.unset) == ["RT_KEY", "OTHER_KEY"]
    assert plan.providers["rt"].key() == "${RT_KEY}"  # the reference stands in for the value
    with pytest.raises(DialplanError, match="RT_KEY is not set"):
        load(f, env={})  # the engine's own loading stays strict


# ---------- more mistakes ----------


def test_instructions_file_missing_and_present(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - name: day
            instructions_file: prompts/day.txt
        """,
    )
    msg = only(f)
    assert msg.startswith(f"{f}:3:24 routes[0].instructions_file: cannot read instructions file")
    assert str(tmp_path / "prompts" / "day.txt") in msg and "No such file" in msg

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "day.txt").write_text("You help {caller}.", encoding="utf-8")
    loaded = load(f, env={})
    assert loaded.files == (f, tmp_path / "prompts" / "day.txt")

    assert effective(loaded.plan, loaded.plan.routes[0]).instructions == "You help {caller}."


def test_after_hours_and_default_route_must_name_a_route(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - name: day
            hours:
              timezone: Europe/Berlin
              open: {mon-fri: "08:00-18:00"}
              after_hours_route: nihgt
          - name: night
        default_route: evening
        """,
    )
    assert problems(f) == [
        f"{f}:6:26 routes[0].hours.after_hours_route: no route is named 'nihgt' "
        "(did you mean 'night'?)",
        f"{f}:8:16 default_route: no route is named 'evening'",
    ]


def test_more_than_15_tools_is_accepted_with_a_warning(tmp_path: Path) -> None:
    names = [f"tool_{i:02d}" for i in range(17)]
    tools = "\n".join(f"  {n}: {{mqtt: {{topic: t/{n}}}}}" for n in names)
    f = write(
        tmp_path,
        f"tools:\n{tools}\nroutes:\n  - name: big\n    tools: [{', '.join(names)}]\n",
    )
    loaded = load(f, env={})
    assert len(loaded.plan.routes[0].tools or []) == 17
    assert loaded.warnings == (
        f"{f}:21:12 routes[0].tools: 17 tools on one route: models choose the right function "
        "less reliably above 15; consider splitting the route",
    )


def test_error_in_a_base_plan_points_into_the_base_file() -> None:
    child = FIXTURES / "extends_child.yaml"
    base = FIXTURES / "base_bad.yaml"
    # in the merged plan the base's route is routes[2]; the message uses the base file's path
    assert only(child) == (
        f"{base}:7:13 routes[0].tools[0]: unknown tool 'hangupp' (did you mean 'hangup'?)"
    )


def test_extends_merges_maps_and_puts_the_extending_routes_first() -> None:
    loaded = load(FIXTURES / "extends_child_good.yaml", env={})
    plan = loaded.plan
    assert [r.name for r in plan.routes] == ["special", "overridden", "shared"]
    assert plan.route("overridden").voice == "coral"  # type: ignore[union-attr]
    assert plan.defaults.voice == "alloy" and plan.defaults.language == "de-DE"
    assert plan.defaults.transfer_targets == {
        "desk": "sip:desk@example.com",
        "nurse": "sip:nurse@example.com",
    }
    assert [p.name for p in loaded.files] == ["extends_base_good.yaml", "extends_child_good.yaml"]
    # a list of files is the same as the later one extending the earlier
    listed = load([FIXTURES / "extends_base_good.yaml", FIXTURES / "good_minimal.yaml"], env={})
    assert [r.name for r in listed.plan.routes] == ["main", "fallback", "shared", "overridden"]


def test_extends_loop_and_missing_base(tmp_path: Path) -> None:
    a = write(tmp_path, "extends: b.yaml\ndefaults: {provider: echo}\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\ndefaults: {provider: echo}\n", "b.yaml")
    assert only(a) == (
        f"{tmp_path / 'b.yaml'}:1:10 extends: extends goes round in a circle: "
        "a.yaml → b.yaml → a.yaml"
    )
    c = write(tmp_path, "extends: [base.yaml]\ndefaults: {provider: echo}\n", "c.yaml")
    assert only(c) == (
        f"{c}:1:11 extends[0]: cannot read base plan '{tmp_path / 'base.yaml'}': no such file"
    )


def test_many_mistakes_are_reported_together_in_file_order() -> None:
    f = FIXTURES / "bad_many.yaml"
    found = problems(f)
    assert [x.split(" ", 1)[0] for x in found] == [
        f"{f}:4:3",
        f"{f}:8:23",
        f"{f}:9:15",
        f"{f}:10:11",
        f"{f}:11:23",
        f"{f}:12:16",
    ]
    assert "unknown key 'colour'" in found[0]
    assert "invalid regular expression" in found[1]
    assert "unknown provider 'opnai' (did you mean 'openai'?)" in found[2]
    assert "route name 'day' is already used" in found[3]
    assert "expected a number, got 'lots'" in found[4]
    assert "no route is named 'nigth'" in found[5]


def test_missing_required_field_and_transfer_without_targets(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        routes:
          - match: {number: "+4930123"}
            tools: [transfer]
            on_error: {say: sorry.wav, transfer: desk}
        """,
    )
    _wav(tmp_path / "sorry.wav", 8000, 0.5)
    assert problems(f) == [
        f"{f}:2:5 routes[0].name: missing required field 'name'",
        f"{f}:3:13 routes[0].tools[0]: the transfer tool needs transfer_targets (name: sip:uri) "
        "on the route or in defaults",
        f"{f}:4:42 routes[0].on_error.transfer: unknown transfer target 'desk' "
        "(transfer_targets: none are defined)",
    ]


def test_tool_definition_mistakes(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        tools:
          both:
            python: "mypkg.tools:book"
            mqtt: {topic: a/b}
          bad_params:
            parameters: {type: object, properties: {day: {type: strin}}}
            builtin: hangup
          url_arg:
            parameters: {type: object, properties: {day: {type: string}}}
            http: {url: "http://127.0.0.1:8080/slots/{dya}"}
        """,
    )
    found = problems(f)
    assert found[0] == (
        f"{f}:3:5 tools.both: a tool needs exactly one of http, mqtt, python or builtin "
        "(got mqtt, python)"
    )
    assert found[1].startswith(
        f"{f}:6:17 tools.bad_params.parameters: parameters.properties.day.type is not valid "
        "JSON Schema"
    )
    assert found[2] == (
        f"{f}:10:17 tools.url_arg.http.url: the url uses {{dya}}, which is not an argument in "
        "parameters.properties (did you mean 'day'?)"
    )


def test_flow_mistakes_point_into_the_flow(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        defaults:
          tools: [book]
        tools:
          book: {http: {url: "http://127.0.0.1:8080/book"}}
        routes:
          - name: day
            flow:
              start: welcome
              states:
                welcome:
                  say: "Hello {callr}"
                  intents:
                    - name: book
                      examples: [book me in]
                      slots: {day: date}
                      tool: {name: boook, args: {day: "{dya}"}}
                      then: confirmd
                  fallback: {then: "transfer:nurse"}
                confirmed:
                  say: Booked for {day}.
                  then: hangup
            provider: echo
        """,
    )
    assert problems(f) == [
        f"{f}:11:16 routes[0].flow.states.welcome.say: placeholder {{callr}} is not a slot, "
        "a tool result or a call value (did you mean 'caller'?)",
        f"{f}:16:28 routes[0].flow.states.welcome.intents[0].tool.name: tool 'boook' is not "
        "one of this route's tools (did you mean 'book'?) (route tools: book)",
        f"{f}:16:47 routes[0].flow.states.welcome.intents[0].tool.args.day: placeholder {{dya}} "
        "is not a slot, a tool result or a call value (did you mean 'day'?)",
        f"{f}:17:21 routes[0].flow.states.welcome.intents[0].then: unknown state 'confirmd' "
        "(did you mean 'confirmed'?)",
        f"{f}:18:28 routes[0].flow.states.welcome.fallback.then: unknown transfer target "
        "'nurse' (transfer_targets: none are defined)",
    ]


def test_unknown_template_placeholders_are_warnings(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        defaults:
          instructions: "Caller {caller} rang {calld} at {time}; ticket {header.X-Ticket}."
          provider: echo
        """,
    )
    loaded = load(f, env={})
    assert loaded.warnings == (
        f"{f}:2:17 defaults.instructions: placeholder {{calld}} is not known and stays as "
        "written (did you mean 'called'?); known: {caller}, {called}, {date}, {time}, "
        "{weekday}, {header.Name}",
    )


def test_wrong_version_and_top_level_not_a_mapping(tmp_path: Path) -> None:
    f = write(tmp_path, "version: 2\n")
    assert only(f) == f"{f}:1:10 version: expected 1, got 2"
    g = write(tmp_path, "- just\n- a list\n", "list.yaml", provider=False)
    assert (
        only(g) == f"{g}:1:1: the top level must be a mapping (version:, defaults:, routes:, ...)"
    )


# ---------- what a loaded plan carries ----------


def test_version_hash_changes_with_content_only(tmp_path: Path) -> None:
    text = "version: 1\nroutes:\n  - name: day\n    voice: alloy\n    provider: echo\n"
    f = write(tmp_path, text)
    v1 = load(f, env={}).version
    assert len(v1) == 12 and int(v1, 16) >= 0
    assert load(f, env={}).version == v1
    f.write_text(
        "# a comment an admin added\n"
        "routes: [{voice: alloy, name: day, provider: echo}]\nversion: 1\n"
    )
    assert load(f, env={}).version == v1  # same content, different layout
    f.write_text(text.replace("alloy", "ash"))
    assert load(f, env={}).version != v1


def test_version_covers_instructions_files(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("one")
    f = write(tmp_path, "defaults:\n  instructions_file: p.txt\n  provider: echo\n")
    v1 = load(f, env={}).version
    (tmp_path / "p.txt").write_text("two")
    assert load(f, env={}).version != v1


def test_secrets_never_appear_in_repr_str_or_dump(tmp_path: Path) -> None:
    secret, token = "sk-very-secret-0001", "tok-very-secret-0002"
    f = write(
        tmp_path,
        """
        providers:
          rt: {type: openai, model: gpt-realtime, api_key: "${RT_KEY}"}
        tools:
          t:
            http:
              url: http://127.0.0.1:8080/t
              headers: {Authorization: "Bearer ${TOKEN}"}
        """,
    )
    loaded = load(f, env={"RT_KEY": secret, "TOKEN": token})
    plan = loaded.plan
    for text in (repr(plan), str(plan), plan.model_dump_json(), repr(loaded), str(loaded)):
        assert secret not in text and token not in text
    assert "${RT_KEY}" in repr(plan) and "${TOKEN}" in plan.model_dump_json()
    assert plan.providers["rt"].key() == secret
    dumped = json.loads(plan.model_dump_json())
    assert dumped["providers"]["rt"]["api_key"] == "${RT_KEY}"


def test_load_raises_a_config_error_naming_file_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path, "defaults:\n  provider: echo\n  colour: blue\n")
    with pytest.raises(ConfigError) as info:
        load(f)
    assert isinstance(info.value, DialplanError)
    assert str(info.value).startswith(f"{f}:3:3 defaults.colour: unknown key 'colour'")


def test_issue_format() -> None:
    issue = DialplanIssue("dialplans/hospital.yaml", 14, 7, "routes[2].tools[1]", "bad")
    assert str(issue) == "dialplans/hospital.yaml:14:7 routes[2].tools[1]: bad"
    assert str(DialplanIssue("a.yaml", 1, 1, "", "unreadable")) == "a.yaml:1:1: unreadable"
    err = DialplanError([issue, issue])
    assert str(err).count("\n") == 1 and isinstance(err, ConfigError)


# ---------- the shipped example plans ----------


def _examples() -> list[Path]:
    found = sorted(DIALPLANS.glob("*.yaml"))
    assert {p.name for p in found} >= {
        "example.yaml",
        "hospital.yaml",
        "bank.yaml",
        "public_service.yaml",
        "field_inspection.yaml",
    }
    return found


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_every_shipped_dialplan_validates(path: Path) -> None:
    loaded = load(path, env=EXAMPLE_ENV)
    assert isinstance(loaded, LoadedPlan)
    assert loaded.warnings == ()
    if path.name != "example.yaml":
        plan = loaded.plan
        assert plan.routes and plan.default_route
        from telephony_bot.dialplan.router import effective

        for route in plan.routes:
            eff = effective(plan, route)
            assert eff.instructions.strip(), route.name  # for a realtime model
            assert eff.flow is not None, route.name  # for the offline engine
            for uri in eff.transfer_targets.values():
                assert "@example.com" in uri or "127.0.0.1" in uri
            for tool in eff.tools.values():
                if tool.http is not None:
                    assert tool.http.url.startswith("http://127.0.0.1:8080/")


def test_example_plans_need_their_env_vars() -> None:
    msg = str(problems(DIALPLANS / "bank.yaml", env={}))
    assert "environment variable BANK_API_TOKEN is not set" in msg


def test_json_schema_is_valid_and_accepts_the_examples() -> None:
    from jsonschema import Draft202012Validator

    s = json_schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["title"] == "telephony-bot dialplan"
    Draft202012Validator.check_schema(s)
    validator = Draft202012Validator(s)
    for path in _examples():
        data = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == [], path.name
    assert not validator.is_valid({"routes": [{"name": "x", "colour": "blue"}]})
    assert not validator.is_valid({"providers": {"p": {"type": "openai", "api_key": "sk-1"}}})


def test_inherited_transfer_tool_is_checked_per_route(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        defaults:
          tools: [transfer]
          provider: echo
        routes:
          - name: a
            transfer_targets: {desk: "sip:desk@example.com"}
          - name: b
        """,
    )
    assert only(f) == (
        f"{f}:2:11 defaults.tools[0]: the transfer tool needs transfer_targets (name: sip:uri) "
        "on the route or in defaults (route 'b' uses the default tools)"
    )


# ---------- on_error.say: a recorded prompt ----------

SAY_PLAN = """
defaults:
  transfer_targets: {desk: "sip:desk@127.0.0.1:5070"}
  on_error: {say: %s, transfer: desk}
  provider: echo
"""


def test_on_error_say_is_read_with_the_plan_and_its_contents_are_part_of_the_version(
    tmp_path: Path,
) -> None:
    (tmp_path / "prompts").mkdir()
    wav = _wav(tmp_path / "prompts" / "sorry.wav", 8000, 0.5)
    f = write(tmp_path, SAY_PLAN % "prompts/sorry.wav")
    first = load(f, env={})
    on_error = first.plan.defaults.on_error
    assert on_error is not None and on_error._pcm is not None
    assert len(on_error._pcm) == 24000  # 0.5 s at 24 kHz, 16-bit: resampled once, at load
    assert wav in first.files  # hot reload watches the recording too
    _wav(wav, 8000, 0.75)  # a new recording: a new plan version
    assert load(f, env={}).version != first.version


@pytest.mark.parametrize(
    ("say", "make", "expected"),
    [
        ("Sorry, a colleague will help you.", None, "say takes a recorded prompt, a .wav file "
         "relative to the plan, not 'Sorry, a colleague will help you.': when every provider "
         "has failed there is no voice left to speak a text"),
        ("gone.wav", None, "cannot use prompt '{dir}/gone.wav': no such file"),
        ("loud.wav", {"rate": 8000, "seconds": 0.2, "width": 1}, "need 16-bit PCM samples, "
         "the file has 8-bit"),
        ("long.wav", {"rate": 8000, "seconds": 31}, "31.0 s long: a prompt may last 30 s at most"),
        ("odd.wav", {"rate": 11025, "seconds": 0.2}, "sample rate 11025 Hz: use one of"),
    ],
)  # fmt: skip
def test_on_error_say_that_cannot_be_played_is_refused_at_its_line(
    tmp_path: Path, say: str, make: dict[str, float] | None, expected: str
) -> None:
    if make is not None:
        _wav(tmp_path / say, int(make["rate"]), make["seconds"], width=int(make.get("width", 2)))
    f = write(tmp_path, SAY_PLAN % json.dumps(say))
    found = only(f)
    assert found.startswith(f"{f}:3:19 defaults.on_error.say: "), found
    assert expected.format(dir=tmp_path) in found, found


def test_match_trunk_must_name_a_trunk_of_the_engine_config(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        routes:
          - name: pbx-line
            match:
              trunk: pbxx
          - name: providers
            match:
              trunk: [sip_a, pbx]
        """,
    )
    with pytest.raises(DialplanError) as err:
        load(path, trunks=["pbx", "sip_a"])
    assert str(err.value) == (
        f"{path}:5:14 routes[0].match.trunk: no trunk named 'pbxx' in the engine config "
        "(did you mean 'pbx'?); its trunks: pbx, sip_a"
    )
    assert load(path).plan.routes[0].match.trunk == ["pbxx"]  # without a config: any name
    assert load(path, trunks=["pbxx", "sip_a", "pbx"]).plan.routes[1].match.trunk == [
        "sip_a",
        "pbx",
    ]


def test_a_greeting_the_flows_start_says_again_is_a_warning_at_the_greeting(
    tmp_path: Path,
) -> None:
    """The offline engine says the greeting, then the flow's start state: a sentence in
    both is heard twice (field_inspection.yaml asked for the site twice)."""
    path = write(
        tmp_path,
        """
        version: 1
        providers: {offline: {type: local}}
        defaults:
          provider: offline
          flow:
            start: ask
            states:
              ask: {say: "Which site did you inspect?", then: hangup}
        routes:
          - name: twice
            match: {number: "+4930100"}
            greeting: "Inspection logging. Which site did you inspect?"
          - name: once
            match: {number: "+4930200"}
            greeting: "Inspection logging."
        """,
    )
    warnings = load(path).warnings
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{path}:12:15 routes[0].greeting: the greeting and the flow's")
    assert "'which site did you inspect'" in warnings[0]
