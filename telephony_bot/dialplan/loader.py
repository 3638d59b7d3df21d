"""Read dialplan files into a checked `Dialplan`, or say exactly what is wrong and where.

Every problem found (YAML syntax, unknown keys, wrong types, bad regexes or time windows,
unknown tools or providers, missing environment variables, ...) becomes one line
`file:line:column field.path: what was expected`; all of them are raised together as a
`DialplanError`. Warnings (too many tools, unknown template placeholders) do not stop loading.

`extends: base.yaml` (or a list) at the top of a file loads the base first and deep-merges
the file over it: mappings merge key by key, other values are replaced, and the file's
`routes` come first, then the base's (a route with the same name replaces the base's
route). `extends: [a.yaml, b.yaml]` is `b.yaml` over `a.yaml`; `load([a, b])` is the same.
Problems inside a base file point into the base file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from telephony_bot.dialplan import templates
from telephony_bot.dialplan.flow import Flow, check_flow, check_keys, repeated_opening
from telephony_bot.dialplan.schema import (
    BUILTIN_PROVIDERS,
    BUILTIN_TOOLS,
    TOOLS_WARN_ABOVE,
    UNSET_ENV,
    Defaults,
    Dialplan,
    Dtmf,
)
from telephony_bot.errors import ConfigError, DialplanError, DialplanIssue
from telephony_bot.session import prompts

__all__ = ["LoadedPlan", "PlaceholderEnv", "json_schema", "load"]

_TOP_NOT_MAPPING = "the top level must be a mapping (version:, defaults:, routes:, ...)"
_EMPTY = (
    "the dialplan file is empty: a plan names the provider its calls get and its routes "
    "(see dialplans/example.yaml)"
)
_NAME_ONE = (
    "one under providers:, local or openai; echo only tests the line, playing the caller's "
    "voice back"
)
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class LoadedPlan:
    plan: Dialplan
    version: str  # first 12 hex digits of the sha256 of the plan's canonical content
    files: tuple[Path, ...]  # every file read: plan files (bases first), instructions files
    warnings: tuple[str, ...]


def json_schema() -> dict[str, Any]:
    """JSON Schema of a dialplan file, for editors (`telephony-bot dialplan schema`)."""
    schema = Dialplan.model_json_schema()
    schema["title"] = "telephony-bot dialplan"
    schema.setdefault("description", "Routes phone calls to prompts, voices, providers and tools.")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def load(
    paths: str | Path | Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    trunks: Collection[str] | None = None,
) -> LoadedPlan:
    """Load one plan file, or several merged in order (each later one over the earlier).

    `env` resolves `${VAR}` references (default: os.environ). `trunks`: the engine config's
    trunk names, which `match.trunk` must use (None: no engine config, any name goes).
    Raises DialplanError.
    """
    if isinstance(paths, str | Path):
        path_list = [Path(paths)]
    else:
        path_list = [Path(p) for p in paths]
    if not path_list:
        raise DialplanError([DialplanIssue("<none>", 1, 1, "", "no dialplan file given")])
    loader = _Loader(os.environ if env is None else env)
    loader.trunks = None if trunks is None else tuple(trunks)
    return loader.run(path_list)


# ---------- located YAML ----------


@dataclass(frozen=True)
class _Mark:
    file: str
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class _Node:
    value: Any  # dict[Any, _Node] | list[_Node] | scalar
    mark: _Mark
    path: tuple[Any, ...]  # path inside its own file
    key_mark: _Mark | None = None


def _mark(file: str, m: yaml.Mark | None) -> _Mark:
    return _Mark(file, m.line + 1, m.column + 1) if m is not None else _Mark(file, 1, 1)


def _fmt_path(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class _Loader:
    env: Mapping[str, str]
    issues: list[DialplanIssue] = field(default_factory=list)
    warnings: list[DialplanIssue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    nodes: dict[tuple[Any, ...], _Node] = field(default_factory=dict)
    instructions: dict[tuple[Any, ...], str] = field(default_factory=dict)
    prompts: dict[tuple[Any, ...], bytes] = field(default_factory=dict)  # on_error.say, read
    trunks: tuple[str, ...] | None = None  # the engine config's trunk names (None: unchecked)

    # ----- reporting -----

    def error(
        self, mark: _Mark, path: Sequence[Any], message: str, unset_env: tuple[str, ...] = ()
    ) -> None:
        self.issues.append(
            DialplanIssue(mark.file, mark.line, mark.column, _fmt_path(path), message, unset_env)
        )

    def warn(self, mark: _Mark, path: Sequence[Any], message: str) -> None:
        self.warnings.append(
            DialplanIssue(mark.file, mark.line, mark.column, _fmt_path(path), message)
        )

    def at(
        self, path: tuple[Any, ...], message: str, *, key: bool = False, warn: bool = False
    ) -> None:
        """Report at a path of the merged plan (its node must exist)."""
        node = self.nodes.get(path)
        while node is None and path:
            path = path[:-1]
            node = self.nodes.get(path)
        assert node is not None
        mark = node.key_mark if key and node.key_mark else node.mark
        (self.warn if warn else self.error)(mark, node.path, message)

    # ----- the steps -----

    def run(self, paths: list[Path]) -> LoadedPlan:
        merged: _Node | None = None
        for p in paths:
            node = self.load_file(p, [])
            if node is not None:
                merged = node if merged is None else _merge(merged, node, top=True)
        if merged is None:
            self.fail()
        assert merged is not None
        data = self.index(merged, ())
        plan: Dialplan | None = None
        try:
            plan = Dialplan.model_validate(data, context={"env": self.env})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                self.pydantic_issue(err, data)
        self.cross_check(data)
        if self.issues or plan is None:
            self.fail()
        assert plan is not None
        for path, text in self.instructions.items():
            target: BaseModel = plan.defaults if path[0] == "defaults" else plan.routes[path[1]]
            target._instructions_text = text  # type: ignore[attr-defined]
        for path, pcm in self.prompts.items():
            scope = plan.defaults if path[0] == "defaults" else plan.routes[path[1]]
            assert scope.on_error is not None
            scope.on_error._pcm = pcm
        canonical = json.dumps(
            {
                "plan": data,
                "instructions_files": [
                    self.instructions[k] for k in sorted(self.instructions, key=str)
                ],
                "prompts": [
                    hashlib.sha256(self.prompts[k]).hexdigest()
                    for k in sorted(self.prompts, key=str)
                ],
            },
            sort_keys=True,
            default=str,
            ensure_ascii=False,
        )
        version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        warnings = tuple(str(w) for w in _ordered(self.warnings, self.files))
        return LoadedPlan(plan, version, tuple(self.files), warnings)

    def fail(self) -> typing.NoReturn:
        raise DialplanError(_ordered(self.issues, self.files))

    def load_file(self, path: Path, chain: list[Path]) -> _Node | None:
        display = str(path)
        root = self.parse(path, display)
        if root is None:
            return None
        if not isinstance(root.value, dict):
            self.error(root.mark, (), _TOP_NOT_MAPPING)
            return None
        ext = root.value.pop("extends", None)
        if ext is None:
            return root
        self.files.remove(path)  # listed after its bases
        items = ext.value if isinstance(ext.value, list) else [ext]
        here = path.resolve()
        merged: _Node | None = None
        for item in items:
            if not isinstance(item.value, str) or not item.value:
                self.error(item.mark, item.path, "expected the file name of a base plan")
                continue
            base = path.parent / item.value
            resolved = base.resolve()
            if resolved in (*chain, here):
                loop = " → ".join(p.name for p in (*chain, here, resolved))
                self.error(item.mark, item.path, f"extends goes round in a circle: {loop}")
                continue
            if not base.is_file():
                self.error(
                    item.mark, item.path, f"cannot read base plan {str(base)!r}: no such file"
                )
                continue
            node = self.load_file(base, [*chain, here])
            if node is not None:
                merged = node if merged is None else _merge(merged, node, top=True)
        self.files.append(path)
        return root if merged is None else _merge(merged, root, top=True)

    def parse(self, path: Path, display: str) -> _Node | None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            why = f"cannot read the dialplan file: not UTF-8 text ({exc.reason})"
            self.error(_Mark(display, 1, 1), (), why)
            return None
        except OSError as exc:
            why = exc.strerror or str(exc)
            self.error(_Mark(display, 1, 1), (), f"cannot read the dialplan file: {why}")
            return None
        self.files.append(path)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:  # zero bytes, or nothing but comments
                self.error(_Mark(display, 1, 1), (), _EMPTY)
                return None
            return self.build(node, loader, display, (), set())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = exc.problem or "invalid YAML"
            if exc.context:
                what = f"{exc.context}, {what}"
            opened = exc.context_mark
            if opened is not None and mark is not None and opened.line != mark.line:
                what += f" (it began at line {opened.line + 1})"
            self.error(_mark(display, mark), (), f"YAML syntax error: {what}")
        except yaml.YAMLError as exc:
            self.error(_Mark(display, 1, 1), (), f"YAML syntax error: {exc}")
        finally:
            loader.dispose()
        return None

    def build(
        self,
        node: yaml.Node,
        loader: yaml.SafeLoader,
        file: str,
        path: tuple[Any, ...],
        active: set[int],
    ) -> _Node:
        mark = _mark(file, node.start_mark)
        if id(node) in active:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to itself", node.start_mark
            )
        if isinstance(node, yaml.ScalarNode):
            return _Node(loader.construct_object(node, deep=True), mark, path)
        active = active | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            items = [
                self.build(child, loader, file, (*path, i), active)
                for i, child in enumerate(node.value)
            ]
            return _Node(items, mark, path)
        assert isinstance(node, yaml.MappingNode)
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[Any, _Node] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            kmark = _mark(file, knode.start_mark)
            if key in out:
                first = out[key].key_mark or out[key].mark
                self.error(
                    kmark, (*path, key), f"key {key!r} appears twice (first at line {first.line})"
                )
            child = self.build(vnode, loader, file, (*path, key), active)
            child.key_mark = kmark
            out[key] = child
        return _Node(out, mark, path)

    def index(self, node: _Node, path: tuple[Any, ...]) -> Any:
        """Plain data of the merged tree; remembers each merged path's node."""
        self.nodes[path] = node
        if isinstance(node.value, dict):
            return {k: self.index(v, (*path, k)) for k, v in node.value.items()}
        if isinstance(node.value, list):
            return [self.index(v, (*path, i)) for i, v in enumerate(node.value)]
        return node.value

    # ----- pydantic errors -----

    def pydantic_issue(self, err: Mapping[str, Any], data: Any) -> None:
        loc: tuple[Any, ...] = tuple(err["loc"])
        kind = err["type"]
        cur = data
        resolved: list[Any] = []
        is_key = False
        missing: Any = None
        for i, part in enumerate(loc):
            if part == "[key]":
                is_key = True
                break
            if isinstance(cur, dict) and not isinstance(part, int | float) and part in cur:
                cur = cur[part]
                resolved.append(part)
            elif isinstance(cur, dict) and isinstance(part, int) and part in cur:
                cur = cur[part]
                resolved.append(part)
            elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                cur = cur[part]
                resolved.append(part)
            elif kind == "missing" and i == len(loc) - 1:
                missing = part
        node = self.nodes[tuple(resolved)]
        key = is_key or kind == "extra_forbidden"
        mark = node.key_mark if key and node.key_mark else node.mark
        path = node.path if missing is None else (*node.path, missing)
        unset: tuple[str, ...] = ()
        if kind == UNSET_ENV:
            unset = tuple((err.get("ctx") or {}).get("unset", ()))
        self.error(mark, path, _message(err, loc), unset)

    # ----- cross references -----

    def cross_check(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        defaults = _dict(data.get("defaults"))
        providers = _dict(data.get("providers"))
        tools = _dict(data.get("tools"))
        routes = data.get("routes") if isinstance(data.get("routes"), list) else []
        tool_names = set(tools) | set(BUILTIN_TOOLS)
        provider_names = set(providers) | set(BUILTIN_PROVIDERS)
        route_names: dict[str, int] = {}

        # tools: url placeholders are arguments
        for tname, tdef in tools.items():
            tdef = _dict(tdef)
            http = _dict(tdef.get("http"))
            url = http.get("url")
            params = _dict(tdef.get("parameters"))
            props = _dict(params.get("properties"))
            if isinstance(url, str):
                for ph in re.findall(r"\{([^{}]*)\}", url):
                    if ph not in props:
                        self.at(
                            ("tools", tname, "http", "url"),
                            f"the url uses {{{ph}}}, which is not an argument in "
                            f"parameters.properties{_did_you_mean(ph, props)}",
                        )

        # providers: api_key_env should be set
        for pname, pdef in providers.items():
            var = _dict(pdef).get("api_key_env")
            if isinstance(var, str) and var not in self.env:
                self.at(
                    ("providers", pname, "api_key_env"),
                    f"environment variable {var} is not set: calls using provider {pname!r} "
                    "will fail until it is",
                    warn=True,
                )

        # every call gets a provider the plan names: never an implicit one
        d_provider = defaults.get("provider")
        if not routes and d_provider is None:
            self.at(
                ("defaults",) if "defaults" in data else (),
                "the plan has no routes and no defaults.provider: calls would have nothing "
                f"to talk to; give routes, and a provider ({_NAME_ONE})",
            )

        # defaults
        self.check_scope(("defaults",), defaults, tool_names, provider_names)
        d_targets = _dict(defaults.get("transfer_targets"))
        d_tools = defaults.get("tools") if isinstance(defaults.get("tools"), list) else []
        self.check_targets(
            ("defaults",), defaults, None if routes else ("defaults", "tools"), tools, d_targets
        )

        for i, route in enumerate(routes):
            if not isinstance(route, dict):
                continue
            base = ("routes", i)
            name = route.get("name")
            if isinstance(name, str):
                if name in route_names:
                    first = self.nodes[("routes", route_names[name], "name")]
                    self.at(
                        (*base, "name"),
                        f"route name {name!r} is already used (first at "
                        f"{first.mark.file}:{first.mark.line})",
                    )
                else:
                    route_names[name] = i
            self.check_scope(base, route, tool_names, provider_names)
            if route.get("provider") is None and d_provider is None:
                self.at(
                    base,
                    f"route {name!r} names no provider and defaults.provider is not set: "
                    f"give provider: on the route or in defaults ({_NAME_ONE})",
                )
            r_tools = route.get("tools") if "tools" in route else d_tools
            r_tools = r_tools if isinstance(r_tools, list) else []
            targets = dict(d_targets)
            targets.update(_dict(route.get("transfer_targets")))
            if "tools" in route:
                self.check_targets(base, route, (*base, "tools"), tools, targets)
            else:
                self.check_targets(
                    base,
                    route,
                    ("defaults", "tools"),
                    tools,
                    targets,
                    f" (route {name!r} uses the default tools)",
                )
            if len(r_tools) > TOOLS_WARN_ABOVE:
                self.at(
                    (*base, "tools") if "tools" in route else ("defaults", "tools"),
                    f"{len(r_tools)} tools on one route: models choose the right function less "
                    f"reliably above {TOOLS_WARN_ABOVE}; consider splitting the route",
                    warn=True,
                )
            # the offline flow, checked against this route's tools, targets and keys
            r_dtmf = route.get("dtmf") if "dtmf" in route else defaults.get("dtmf")
            if "flow" in route:
                self.check_flow((*base, "flow"), route.get("flow"), r_tools, targets, r_dtmf, "")
            elif "flow" in defaults:
                self.check_flow(
                    ("defaults", "flow"),
                    defaults.get("flow"),
                    r_tools,
                    targets,
                    r_dtmf,
                    f" (route {name!r} uses the default flow)",
                )
            self.check_opening(base, route, defaults)
        if not routes and "flow" in defaults:
            self.check_flow(
                ("defaults", "flow"),
                defaults.get("flow"),
                d_tools,
                d_targets,
                defaults.get("dtmf"),
                "",
            )
            self.check_opening(None, {}, defaults)

        for i, route in enumerate(routes):
            self.check_trunks(("routes", i, "match", "trunk"), _dict(_dict(route).get("match")))
            hours = _dict(_dict(route).get("hours"))
            ahr = hours.get("after_hours_route")
            if isinstance(ahr, str):
                if ahr not in route_names:
                    self.at(
                        ("routes", i, "hours", "after_hours_route"),
                        f"no route is named {ahr!r}{_did_you_mean(ahr, route_names)}",
                    )
                elif ahr == _dict(route).get("name"):
                    self.at(
                        ("routes", i, "hours", "after_hours_route"),
                        "a route cannot be its own after-hours route",
                    )
        default_route = data.get("default_route")
        if isinstance(default_route, str) and default_route not in route_names:
            self.at(
                ("default_route",),
                f"no route is named {default_route!r}{_did_you_mean(default_route, route_names)}",
            )

    def check_trunks(self, path: tuple[Any, ...], match: Mapping[str, Any]) -> None:
        """`match.trunk` names trunks of the engine config (when the plan is loaded with one)."""
        names = match.get("trunk")
        if self.trunks is None or names is None:
            return
        for j, name in enumerate([names] if isinstance(names, str) else list(names or [])):
            if isinstance(name, str) and name not in self.trunks:
                known = ", ".join(self.trunks) or "none"
                at = path if isinstance(names, str) else (*path, j)
                self.at(
                    at,
                    f"no trunk named {name!r} in the engine config"
                    f"{_did_you_mean(name, self.trunks)}; its trunks: {known}",
                )

    def check_scope(
        self,
        base: tuple[Any, ...],
        scope: Mapping[str, Any],
        tool_names: set[str],
        provider_names: set[str],
    ) -> None:
        """Checks shared by defaults and routes: provider, tool names, instructions."""
        provider = scope.get("provider")
        named: list[tuple[tuple[int, ...], str]] = []
        if isinstance(provider, str):
            named = [((), provider)]
        elif isinstance(provider, list):  # in order of failover: each must exist, none twice
            named = [((i,), p) for i, p in enumerate(provider) if isinstance(p, str)]
        seen: set[str] = set()
        for where, p in named:
            if p in seen:
                self.at((*base, "provider", *where), f"provider {p!r} is listed twice")
                continue
            seen.add(p)
            if p not in provider_names:
                self.at(
                    (*base, "provider", *where),
                    f"unknown provider {p!r}{_did_you_mean(p, provider_names)}; "
                    f"name one under providers: or use {', '.join(BUILTIN_PROVIDERS)}",
                )
        tools = scope.get("tools")
        if isinstance(tools, list):
            seen: set[str] = set()
            for j, t in enumerate(tools):
                if not isinstance(t, str):
                    continue
                if t not in tool_names:
                    self.at(
                        (*base, "tools", j), f"unknown tool {t!r}{_did_you_mean(t, tool_names)}"
                    )
                elif t in seen:
                    self.at((*base, "tools", j), f"tool {t!r} is listed twice", warn=True)
                seen.add(t)
        ifile = scope.get("instructions_file")
        if isinstance(ifile, str) and ifile:
            node = self.nodes[(*base, "instructions_file")]
            where = Path(node.mark.file).parent / ifile
            try:
                text = where.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                self.at(
                    (*base, "instructions_file"),
                    f"cannot read instructions file {str(where)!r}: {why} "
                    "(the path is relative to the plan file)",
                )
            else:
                self.files.append(where)
                self.instructions[base] = text
                self.check_placeholders((*base, "instructions_file"), text)
        for key in ("instructions", "greeting"):
            if isinstance(scope.get(key), str):
                self.check_placeholders((*base, key), scope[key])
        say = _dict(scope.get("on_error")).get("say")
        if isinstance(say, str) and say:
            self.read_prompt((*base, "on_error", "say"), say)

    def read_prompt(self, path: tuple[Any, ...], name: str) -> None:
        """`on_error.say`: a recorded prompt, read now (a call whose model is gone must not
        find the file missing), its contents part of the plan's version."""
        node = self.nodes[path]
        where = Path(node.mark.file).parent / name
        if not name.lower().endswith(".wav"):
            self.at(
                path,
                f"say takes a recorded prompt, a .wav file relative to the plan, not {name!r}: "
                "when every provider has failed there is no voice left to speak a text "
                '(record it, e.g. telephony-bot say "..." --out sorry.wav --rate 24000)',
            )
            return
        try:
            pcm = prompts.read_wav(where)
        except prompts.PromptError as exc:
            self.at(path, f"cannot use prompt {str(where)!r}: {exc} (relative to the plan file)")
            return
        self.files.append(where)
        self.prompts[path[:-2]] = pcm

    def check_placeholders(self, path: tuple[Any, ...], text: str) -> None:
        for name in dict.fromkeys(templates.unknown_placeholders(text)):
            hint = _did_you_mean(name, templates.KNOWN)
            self.at(
                path,
                f"placeholder {{{name}}} is not known and stays as written{hint}; known: "
                "{caller}, {called}, {date}, {time}, {weekday}, {header.Name}",
                warn=True,
            )

    def check_targets(
        self,
        base: tuple[Any, ...],
        scope: Mapping[str, Any],
        tools_from: tuple[Any, ...] | None,
        tool_defs: Mapping[str, Any],
        targets: Mapping[str, Any],
        suffix: str = "",
    ) -> None:
        """The transfer tool and on_error.transfer need targets. `tools_from`: where the
        tools list in effect is written (None: do not check it here)."""

        def is_transfer(t: Any) -> bool:
            if not isinstance(t, str):
                return False
            if t in tool_defs:
                return _dict(tool_defs[t]).get("builtin") == "transfer"
            return t == "transfer"

        listed = self.nodes.get(tools_from) if tools_from is not None else None
        if listed is not None and isinstance(listed.value, list) and not targets:
            for j, t in enumerate(listed.value):
                if is_transfer(t.value):
                    self.at(
                        (*tools_from, j),  # type: ignore[misc]
                        "the transfer tool needs transfer_targets (name: sip:uri) on the route "
                        f"or in defaults{suffix}",
                    )
        on_error = _dict(scope.get("on_error"))
        target = on_error.get("transfer")
        if isinstance(target, str) and target not in targets:
            have = ", ".join(sorted(targets)) or "none are defined"
            self.at(
                (*base, "on_error", "transfer"),
                f"unknown transfer target {target!r}{_did_you_mean(target, targets)} "
                f"(transfer_targets: {have})",
            )

    def check_opening(
        self, base: tuple[Any, ...] | None, route: dict[Any, Any], defaults: dict[Any, Any]
    ) -> None:
        """Warn when the greeting and the flow's start state say the same sentence: the
        offline engine says the greeting, then the start state, so the caller hears it
        twice."""
        own = base is not None and "greeting" in route
        greeting = route.get("greeting") if own else defaults.get("greeting")
        raw = route.get("flow") if "flow" in route else defaults.get("flow")
        if not isinstance(greeting, str) or raw is None:
            return
        try:
            flow = Flow.model_validate(raw)
        except ValidationError:
            return  # already reported
        sentence = repeated_opening(greeting, flow)
        if sentence is not None:
            where = (*base, "greeting") if own and base is not None else ("defaults", "greeting")
            self.at(
                where,
                f"the greeting and the flow's start state {flow.start!r} both say "
                f"{sentence!r}: on the offline engine the greeting is followed by the start "
                "state's say, so callers hear it twice; let the greeting say who answers "
                "and the start state ask, or drop the start state's say",
                warn=True,
            )

    def check_flow(
        self,
        path: tuple[Any, ...],
        raw: Any,
        tools: list[Any],
        targets: Mapping[str, Any],
        dtmf: Any,
        suffix: str,
    ) -> None:
        try:
            flow = Flow.model_validate(raw)
            keys = Dtmf.model_validate(dtmf if dtmf is not None else {})
        except ValidationError:
            return  # already reported by the plan's validation
        names = [t for t in tools if isinstance(t, str)]
        problems = check_flow(flow, tools=names, transfer_targets=list(targets))
        problems += check_keys(
            flow, to_model=keys.to_model, terminator=keys.terminator, max_digits=keys.max_digits
        )
        for problem in problems:
            self.at((*path, *problem.loc), problem.message + suffix, warn=problem.warning)


# ---------- helpers ----------


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _did_you_mean(word: str, choices: Collection[Any]) -> str:
    strs = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(word, strs, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _merge(base: _Node, over: _Node, *, top: bool) -> _Node:
    if not (isinstance(base.value, dict) and isinstance(over.value, dict)):
        return over
    out = dict(base.value)
    for key, node in over.value.items():
        if key not in out:
            out[key] = node
        elif (
            top
            and key == "routes"
            and isinstance(node.value, list)
            and isinstance(out[key].value, list)
        ):
            names = {_route_name(r) for r in node.value} - {None}
            kept = [r for r in out[key].value if _route_name(r) not in names]
            out[key] = _Node([*node.value, *kept], node.mark, node.path, node.key_mark)
        else:
            out[key] = _merge(out[key], node, top=False)
    return _Node(out, over.mark, over.path, over.key_mark)


def _route_name(node: _Node) -> Any:
    if isinstance(node.value, dict) and "name" in node.value:
        name = node.value["name"].value
        return name if isinstance(name, str) else None
    return None


def _ordered(issues: list[DialplanIssue], files: list[Path]) -> list[DialplanIssue]:
    order = {str(f): i for i, f in enumerate(files)}
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda x: (order.get(x.file, -1), x.line, x.column))


_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list",
    "date_type": "a date like 2026-12-25",
    "date_parsing": "a date like 2026-12-25",
    "date_from_datetime_parsing": "a date like 2026-12-25",
    "date_from_datetime_inexact": "a date like 2026-12-25",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return (
            f"{str(value).lower()} (YAML reads yes/no/on/off/true/false as booleans: "
            "put the text in quotes)"
        )
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _message(err: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    msg: str = err["msg"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        return f"missing required field {loc[-1]!r}"
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = _did_you_mean(str(loc[-1]), allowed) if allowed else ""
        tail = f"; allowed here: {', '.join(allowed)}" if allowed and not hint else ""
        return f"unknown key {loc[-1]!r}{hint}{tail}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"expected {expected}, got {_describe(value)}{hint}"
    if kind == UNSET_ENV:
        return f"{msg} (a secret read when the plan is loaded)"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value error|Assertion failed), ", "", msg)
    if kind == "string_pattern_mismatch":
        return f"{_describe(value)} does not have the expected form (pattern {ctx.get('pattern')})"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}"
    text = re.sub(r"^Input should be ", "expected ", msg)
    text = re.sub(r"^Input ", "the value ", text)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text += f", got {value!r}"
    return text


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            structured = [
                a
                for a in members
                if typing.get_origin(_strip(a)) in (list, dict)
                or (isinstance(_strip(a), type) and issubclass(_strip(a), BaseModel))
            ]
            tp = (structured or members)[0]
        else:
            return tp


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts (for did-you-mean on unknown keys)."""
    tp: Any = Dialplan
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if isinstance(part, str) and part in tp.model_fields:
                tp = tp.model_fields[part].annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [n for n, f in tp.model_fields.items() if not f.exclude]
    return []


def load_default(provider: str | None) -> LoadedPlan:
    """The plan a worker runs without --dialplan: the built-in defaults on `provider` (the
    command line's --provider). Without one there is nothing to answer calls with: the
    engine never falls back to the echo provider on its own (ConfigError)."""
    if provider is None:
        raise ConfigError(
            "no dialplan: give --dialplan FILE (dialplans/example.yaml runs offline), or "
            "--provider echo to answer every call with the echo diagnostic"
        )
    if provider not in BUILTIN_PROVIDERS:
        raise ConfigError(
            f"unknown provider {provider!r}; without a dialplan: {', '.join(BUILTIN_PROVIDERS)}"
        )
    plan = Dialplan(defaults=Defaults(provider=provider))
    digest = hashlib.sha256(plan.model_dump_json().encode()).hexdigest()[:12]
    return LoadedPlan(plan=plan, version=digest, files=(), warnings=())


class PlaceholderEnv(Mapping[str, str]):
    """The environment for checking a plan's structure on a machine without its secrets
    (`dialplan validate --no-secrets`): a variable that is not set reads as the reference
    itself, and is remembered in `unset`. The engine never loads with this."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.unset: dict[str, None] = {}  # in the order met

    def __getitem__(self, name: str) -> str:
        if name in self._env:
            return self._env[name]
        self.unset[name] = None
        return "${" + name + "}"

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)
