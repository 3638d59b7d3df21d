"""Dialplan file format (pydantic v2; every mapping rejects unknown keys).

```yaml
version: 1
extends: base.yaml            # optional; read by the loader, see loader.py
defaults: {...}               # every call; a route overrides what it sets
providers: {name: {type: openai|azure|compatible|local|echo, model, api_key: "${ENV}"...}}
tools: {name: {description, parameters, timeout_s, http|mqtt|python|builtin: ...}}
routes: [{name, match, hours, provider, voice, instructions, flow, tools, ...}]  # in order
default_route: name           # optional; no match and no default: the call is refused (404)
```

Secrets appear only as `${ENV_VAR}` references; they are resolved from the environment
when the plan is loaded, kept in `EnvText` values that print the reference, never the value.
`load()` here is the short way in (used by the CLI); the loader module has the details.
"""

from __future__ import annotations

import functools
import os
import re
import zoneinfo
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from telephony_bot import keypad, redact, transfer_target
from telephony_bot.dialplan.flow import Flow
from telephony_bot.session.dtmf import (
    INTER_DIGIT_MS,
    INTER_DIGIT_RANGE_MS,
    MAX_DIGITS,
    DtmfSettings,
)
from telephony_bot.session.stall import StallSettings
from telephony_bot.session.turns import MIN_INTERRUPT_MS, MIN_INTERRUPT_RANGE_MS, BargeInSettings

BUILTIN_TOOLS = ("hangup", "transfer", "send_dtmf", "end_call")
BUILTIN_PROVIDERS = ("echo", "local", "openai")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOOLS_WARN_ABOVE = 15
TIMEOUT_MAX_S = 120  # a tool's timeout_s
ASYNC_TIMEOUT_MAX_S = 600  # an async tool's timeout_s

_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$"
_TOOL_NAME = r"^[A-Za-z0-9_\-]{1,64}$"  # what realtime APIs accept as a function name
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_PREFIX = re.compile(r"^\+[0-9]{0,15}$")
UNSET_ENV = "unset_env"  # the error type of a ${VAR} whose variable is not set
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PYTHON_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------- secrets: ${ENV} references ----------


class EnvText:
    """Text that may contain `${ENV_VAR}` references, resolved when the plan is validated.

    str() and repr() show the text as written (names only); `get_secret_value()` gives
    the resolved text. Dumping the model writes the references back, never the values.
    The environment comes from the validation context `{"env": mapping}`, else os.environ.
    """

    __slots__ = ("template", "_value")
    whole_reference_only = False

    def __init__(self, template: str, value: str) -> None:
        self.template = template
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(_ENV_REF.findall(self.template))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.template!r})"

    def __str__(self) -> str:
        return self.template

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.template == self.template  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.template)

    @classmethod
    def _validate(cls, value: Any, info: ValidationInfo) -> EnvText:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {type(value).__name__}")
        if cls.whole_reference_only and not _ENV_REF.fullmatch(value):
            raise ValueError(
                'a secret is written as an environment reference like "${OPENAI_API_KEY}", '
                "never the value itself"
            )
        ctx = info.context if isinstance(info.context, Mapping) else {}
        env: Mapping[str, str] = ctx.get("env", os.environ)
        missing = [n for n in dict.fromkeys(_ENV_REF.findall(value)) if n not in env]
        if missing:
            raise PydanticCustomError(
                UNSET_ENV,
                "environment variable {names} {verb} not set",
                {
                    "names": ", ".join(missing),
                    "verb": "is" if len(missing) == 1 else "are",
                    "unset": tuple(missing),
                },
            )
        return cls(value, _ENV_REF.sub(lambda m: env[m.group(1)], value))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.template),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        if cls.whole_reference_only:
            return {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$"}
        return {"type": "string"}


class EnvRef(EnvText):
    """A secret: exactly one `${ENV_VAR}` reference."""

    whole_reference_only = True


# ---------- small value types ----------


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        at = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regular expression {value!r}: {exc.msg}{at}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]


def _check_sip_uri(value: str) -> str:
    if (why := transfer_target.problem(value)) is not None:
        raise ValueError(why)
    return value


SipUri = Annotated[str, AfterValidator(_check_sip_uri)]
RedactPattern = Annotated[str, AfterValidator(redact.check_pattern)]


class NumberPattern(_Strict):
    """One way a phone number can match: exact E.164, an E.164 prefix, or a regex."""

    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None

    @field_validator("exact")
    @classmethod
    def _e164(cls, v: str | None) -> str | None:
        if v is not None and not _E164.match(v):
            raise ValueError(
                f"expected an E.164 number like +4930123456 (a +, then digits only), got {v!r}"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None and not _PREFIX.match(v):
            raise ValueError(f"expected an E.164 prefix like +4930 (a +, then digits), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one(self) -> NumberPattern:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of exact, prefix or regex"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def matches(self, value: str) -> bool:
        if self.exact is not None:
            return value == self.exact
        if self.prefix is not None:
            return value.startswith(self.prefix)
        return re.fullmatch(self.regex or "", value) is not None

    def describe(self) -> str:
        if self.exact is not None:
            return f"equals {self.exact}"
        if self.prefix is not None:
            return f"matches prefix {self.prefix}"
        return f"matches regex {self.regex!r}"


def _patterns_input(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        raise ValueError(
            f'YAML read this as the integer {value}: write phone numbers in quotes, e.g. "+{value}"'
        )
    if isinstance(value, str):
        return [{"exact": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [{"exact": v} if isinstance(v, str) else v for v in value]
    return value


_ONE_PATTERN_JSON: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "description": "exact E.164 number, e.g. +4930123456"},
        {
            "type": "object",
            "properties": {
                "exact": {"type": "string"},
                "prefix": {"type": "string"},
                "regex": {"type": "string"},
            },
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        },
    ]
}
NumberPatterns = Annotated[
    list[NumberPattern],
    BeforeValidator(_patterns_input),
    WithJsonSchema({"anyOf": [_ONE_PATTERN_JSON, {"type": "array", "items": _ONE_PATTERN_JSON}]}),
]


class TimeWindow(NamedTuple):
    """Open from `start` to `end`, minutes since local midnight (end exclusive, ≤ 1440)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _window(value: Any) -> TimeWindow:
    if isinstance(value, TimeWindow):
        return value
    if not isinstance(value, str):
        raise ValueError(f'expected a time window like "08:00-18:00", got {value!r}')
    m = _WINDOW.match(value)
    if not m:
        raise ValueError(f'expected a time window like "08:00-18:00", got {value!r}')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi, label in ((h1, m1, "start"), (h2, m2, "end")):
        if mi > 59 or h > 24 or (h == 24 and mi != 0) or (h == 24 and label == "start"):
            raise ValueError(
                f"{value!r}: {label} {h:02d}:{mi:02d} is not a time of day (00:00 to 24:00)"
            )
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(
            f"{value!r}: the end must come after the start; split a window that runs past "
            'midnight over two days (e.g. fri: "22:00-24:00", sat: "00:00-06:00")'
        )
    return TimeWindow(start, end)


def _windows_input(value: Any) -> Any:
    if value is None or value == "closed":
        return []
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(",")) if v]
    return value


_WINDOWS_JSON: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "description": '"08:00-18:00", "08:00-12:00, 13:00-17:00", "closed"'},
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]
}
Window = Annotated[TimeWindow, BeforeValidator(_window), PlainSerializer(str)]
Windows = Annotated[list[Window], BeforeValidator(_windows_input), WithJsonSchema(_WINDOWS_JSON)]


def _open_input(value: Any) -> Any:
    """Expand weekday ranges: `mon-fri: ...` means each of mon..fri."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, windows in value.items():
        if isinstance(key, str) and "-" in key:
            a, _, b = key.partition("-")
            if a in WEEKDAYS and b in WEEKDAYS and WEEKDAYS.index(a) <= WEEKDAYS.index(b):
                for day in WEEKDAYS[WEEKDAYS.index(a) : WEEKDAYS.index(b) + 1]:
                    out[day] = windows
                continue
        out[key] = windows
    return out


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@functools.lru_cache(maxsize=1)
def _all_timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        import difflib

        close = difflib.get_close_matches(value, _all_timezones(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown timezone {value!r}{hint}; use an IANA name like Europe/Berlin"
        ) from None
    return value


class Hours(_Strict):
    """Opening hours in a timezone. Outside them (and on holidays) the route is closed."""

    timezone: Annotated[str, AfterValidator(_check_timezone)]
    open: Annotated[
        dict[Weekday, Windows],
        BeforeValidator(_open_input),
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": {
                    "pattern": r"^(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?$"
                },
                "additionalProperties": _WINDOWS_JSON,
            }
        ),
    ] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)
    after_hours_route: str | None = None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


# ---------- providers ----------


class AzureSettings(_Strict):
    resource: str  # name, or a full https://... base URL
    deployment: str
    api_version: str = "2024-10-01-preview"


class OpenAISettings(_Strict):
    """The built-in `openai` provider (what `provider: openai` means without a named one)."""

    model: str = "gpt-4o-realtime-preview-2024-12-17"
    dialect: Literal["preview", "ga"] | None = None  # default: from the model name
    base_url: str = "wss://api.openai.com/v1"  # any Realtime-compatible endpoint
    api_key_env: str = "OPENAI_API_KEY"  # the key itself never goes in the file
    api_key: EnvRef | None = None  # or "${VAR}", resolved (and checked) at load
    azure: AzureSettings | None = None


class LlmDef(_Strict):
    """An OpenAI-compatible chat-completions endpoint (Ollama, llama.cpp server, vLLM) that
    replaces the scripted flow as the local engine's brain."""

    base_url: str  # e.g. http://127.0.0.1:11434/v1
    model: str
    api_key_env: str | None = None  # variable the local engine reads (the key never travels)
    temperature: float = Field(default=0.3, ge=0, le=2)
    max_tokens: int = Field(default=300, ge=16, le=4096)
    first_token_timeout_s: float = Field(default=8.0, gt=0, le=60)  # then: an apology

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"llm base_url must start with http:// or https://, got {v!r}")
        return v.rstrip("/")


ProviderKind = Literal["openai", "azure", "compatible", "local", "echo"]


class ProviderDef(_Strict):
    """A named provider endpoint a route can pick with `provider: <name>`."""

    type: ProviderKind
    model: str | None = None
    dialect: Literal["preview", "ga"] | None = None
    base_url: str | None = None
    api_key: EnvRef | None = None  # "${VAR}": resolved at load; missing variable = error
    api_key_env: str | None = None  # name of a variable read when a call starts
    resource: str | None = None  # azure
    deployment: str | None = None  # azure
    api_version: str | None = None  # azure
    echo_delay_ms: int | None = Field(default=None, ge=0, le=5000)  # echo
    llm: LlmDef | None = None  # local: a chat LLM instead of the route's scripted flow

    @model_validator(mode="after")
    def _consistent(self) -> ProviderDef:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        azure_fields = [f for f in ("resource", "deployment", "api_version") if getattr(self, f)]
        if self.type == "azure":
            missing = [f for f in ("resource", "deployment") if not getattr(self, f)]
            if missing:
                raise ValueError(f"type azure needs {' and '.join(missing)}")
        elif azure_fields:
            raise ValueError(f"{', '.join(azure_fields)} only apply to type azure")
        if self.type == "compatible" and not self.base_url:
            raise ValueError("type compatible needs base_url (the Realtime-compatible endpoint)")
        if self.type in ("echo", "local") and (self.api_key or self.api_key_env):
            raise ValueError(f"type {self.type} takes no api key")
        if self.echo_delay_ms is not None and self.type != "echo":
            raise ValueError("echo_delay_ms only applies to type echo")
        if self.llm is not None and self.type != "local":
            raise ValueError("llm only applies to type local (the offline engine's brain)")
        return self

    def key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key: the resolved `api_key`, else the `api_key_env` variable's value."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return (os.environ if environ is None else environ).get(self.api_key_env)
        return None


# ---------- tools ----------


DottedPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")]


class HttpTool(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: Annotated[str, Field(pattern=r"^https?://")]  # may use {arg} placeholders
    headers: dict[str, EnvText] = Field(default_factory=dict)  # values may use ${ENV}
    body: Literal["json", "none"] = "json"  # json: the arguments as a JSON body
    retries: int = Field(default=0, ge=0, le=5)
    response_path: DottedPath | None = None  # into the JSON reply, e.g. data.slots
    max_bytes: int = Field(default=65536, gt=0, le=10_000_000)


class MqttTool(_Strict):
    topic: Annotated[str, Field(min_length=1)]
    response_timeout_s: float = Field(default=5.0, gt=0, le=ASYNC_TIMEOUT_MAX_S)  # see ToolDef


_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
              "propertyNames", "unevaluatedItems", "unevaluatedProperties")  # fmt: skip
_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _misplaced_sensitive(schema: Any, path: str, top: bool) -> str | None:
    """Where `sensitive` stands in a schema but would do nothing: only a top-level
    parameter (parameters.properties.NAME) is masked."""
    if not isinstance(schema, dict):
        return None
    if "sensitive" in schema and not top:
        return path or "parameters"
    for key, sub in schema.items():
        if key in _SUBSCHEMA:
            found = _misplaced_sensitive(sub, f"{path}.{key}", False)
        elif key in _SUBSCHEMAS and isinstance(sub, list):
            found = next(
                (
                    f
                    for i, s in enumerate(sub)
                    if (f := _misplaced_sensitive(s, f"{path}.{key}[{i}]", False))
                ),
                None,
            )
        elif key in _SCHEMA_MAPS and isinstance(sub, dict):
            found = next(
                (
                    f
                    for name, s in sub.items()
                    if (f := _misplaced_sensitive(s, f"{path}.{key}.{name}", False))
                ),
                None,
            )
        else:
            continue
        if found:
            return found
    return None


def _check_sensitive(value: dict[str, Any]) -> None:
    """`sensitive: true` on a top-level parameter masks its value wherever the call is
    shown (see redact.Privacy); anywhere else it is refused, not silently ignored."""
    props = value.get("properties", {})
    for name, sub in props.items():
        flag = sub.get("sensitive", False)
        if not isinstance(flag, bool):
            raise ValueError(f"parameters.properties.{name}.sensitive must be true or false")
        rest = {k: v for k, v in sub.items() if k != "sensitive"}
        where = _misplaced_sensitive(rest, f"parameters.properties.{name}", True)
        if where is None:
            where = _misplaced_sensitive(
                {k: v for k, v in value.items() if k != "properties"}, "parameters", True
            )
        if where is not None:
            raise ValueError(
                f"sensitive at {where} would do nothing: mark a top-level parameter, "
                "parameters.properties.NAME.sensitive: true"
            )
    if not props and _misplaced_sensitive(value, "parameters", True):
        raise ValueError(
            "sensitive would do nothing here: mark a top-level parameter, "
            "parameters.properties.NAME.sensitive: true"
        )


def _check_parameters(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("type") != "object":
        raise ValueError('parameters must be a JSON Schema object: start with "type: object"')
    props = value.get("properties", {})
    if not isinstance(props, dict):
        raise ValueError("parameters.properties must be a mapping of argument name to schema")
    for name, sub in props.items():
        if not isinstance(sub, dict):
            raise ValueError(f"parameters.properties.{name} must be a schema (a mapping)")
    required = value.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError("parameters.required must be a list of argument names")
    for r in required:
        if r not in props:
            raise ValueError(f"parameters.required names {r!r}, which is not in properties")
    _check_sensitive(value)
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError
    except ImportError:  # the structural checks above still hold
        return value
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise ValueError(
            f"parameters{'.' + where if where else ''} is not valid JSON Schema: {exc.message}"
        ) from None
    return value


class ToolDef(_Strict):
    """A tool, defined once; routes list it by name. Exactly one of http/mqtt/python/builtin.

    `async: true`: the model is told at once that the result will follow and the
    conversation goes on; the result is given to it when it arrives (session/result_waits.py).
    Such a tool may run up to ASYNC_TIMEOUT_MAX_S, any other up to TIMEOUT_MAX_S."""

    description: str = ""
    parameters: Annotated[dict[str, Any], AfterValidator(_check_parameters)] = Field(
        default_factory=lambda: {"type": "object"}
    )
    is_async: bool = Field(default=False, alias="async")
    timeout_s: float = Field(default=8.0, gt=0, le=ASYNC_TIMEOUT_MAX_S)
    http: HttpTool | None = None
    mqtt: MqttTool | None = None
    python: str | None = None  # "module:function", sync or async
    builtin: Literal["hangup", "transfer", "send_dtmf", "end_call"] | None = None

    @field_validator("python")
    @classmethod
    def _python_ref(cls, v: str | None) -> str | None:
        if v is not None and not _PYTHON_REF.match(v):
            raise ValueError(f'expected "module:function", e.g. "mypkg.tools:book", got {v!r}')
        return v

    @field_validator("timeout_s")
    @classmethod
    def _timeout(cls, v: float, info: ValidationInfo) -> float:
        if v > TIMEOUT_MAX_S and not info.data.get("is_async", False):
            raise ValueError(
                f"at most {TIMEOUT_MAX_S} s; a tool that may take longer must be async "
                f"(async: true allows up to {ASYNC_TIMEOUT_MAX_S} s)"
            )
        return v

    @field_validator("mqtt")
    @classmethod
    def _reply_timeout(cls, v: MqttTool | None, info: ValidationInfo) -> MqttTool | None:
        if v is not None and v.response_timeout_s > TIMEOUT_MAX_S and not info.data.get("is_async"):
            raise ValueError(
                f"response_timeout_s is at most {TIMEOUT_MAX_S} s; a tool that may wait longer "
                f"must be async (async: true allows up to {ASYNC_TIMEOUT_MAX_S} s)"
            )
        return v

    @field_validator("builtin")
    @classmethod
    def _not_async(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("is_async", False):
            raise ValueError(
                f"builtin {v} answers at once and cannot be async: async applies to http, "
                "mqtt and python tools"
            )
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ToolDef:
        kinds = [k for k in ("http", "mqtt", "python", "builtin") if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = f" (got {', '.join(kinds)})" if kinds else ""
            raise ValueError(f"a tool needs exactly one of http, mqtt, python or builtin{got}")
        return self

    @property
    def sensitive(self) -> frozenset[str]:
        """The parameters marked `sensitive: true`: their values are masked wherever the
        call is shown (events, logs, the call record, the admin page); the tool and the
        model get them as they are."""
        props = self.parameters.get("properties", {})
        return frozenset(n for n, s in props.items() if s.get("sensitive") is True)

    @property
    def model_parameters(self) -> dict[str, Any]:
        """The parameters' JSON Schema as the model is given it: without `sensitive`."""
        props = self.parameters.get("properties")
        if not props:
            return self.parameters
        clean = {n: {k: v for k, v in s.items() if k != "sensitive"} for n, s in props.items()}
        return {**self.parameters, "properties": clean}

    @property
    def kind(self) -> Literal["http", "mqtt", "python", "builtin"]:
        for k in ("http", "mqtt", "python", "builtin"):
            if getattr(self, k) is not None:
                return k  # type: ignore[return-value]
        raise AssertionError("validated ToolDef has a kind")


# ---------- defaults and routes ----------


class BargeIn(_Strict):
    """The admin's side of `session.turns.BargeInSettings` (defaults and bounds from there)."""

    enabled: bool = True
    min_interrupt_ms: int = Field(
        default=MIN_INTERRUPT_MS, ge=MIN_INTERRUPT_RANGE_MS[0], le=MIN_INTERRUPT_RANGE_MS[1]
    )

    def settings(self, *, interruptible: bool = True) -> BargeInSettings:
        """The policy's settings for a call whose provider is (or is not) `interruptible`."""
        return BargeInSettings(
            enabled=self.enabled and interruptible, min_interrupt_ms=self.min_interrupt_ms
        )


class Stall(_Strict):
    """The admin's side of `session.stall.StallSettings`: when a provider counts as stalled
    (it stopped answering, its connection is alive or not) and the call moves on."""

    filler_ms: int = Field(default=2000, ge=500, le=10000)  # silence before a filler
    reply_timeout_ms: int = Field(default=5000, ge=1000, le=60000)  # no response.created
    audio_gap_ms: int = Field(default=4000, ge=1000, le=60000)  # a reply stopped mid-way
    reconnect_ms: int = Field(default=700, ge=0, le=10000)  # a lost connection not back
    enabled: bool = True

    @model_validator(mode="after")
    def _filler_first(self) -> Stall:
        if self.filler_ms >= min(self.reply_timeout_ms, self.audio_gap_ms):
            raise ValueError(
                "filler_ms must be less than reply_timeout_ms and audio_gap_ms "
                "(the caller hears a filler before the call moves on)"
            )
        return self

    def settings(self) -> StallSettings:
        return StallSettings(
            filler_ms=self.filler_ms,
            reply_timeout_ms=self.reply_timeout_ms,
            audio_gap_ms=self.audio_gap_ms,
            reconnect_ms=self.reconnect_ms,
            enabled=self.enabled,
        )


def _terminator_input(value: Any) -> Any:
    if value is None:
        raise ValueError(
            'write the terminator in quotes, e.g. terminator: "#" (a bare # starts a YAML '
            'comment); "" for none'
        )
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(value)
    return value


def _check_terminator(value: str) -> str:
    if value and (len(value) != 1 or value not in keypad.KEYS):
        raise ValueError(f'expected one DTMF key (0-9, *, #, A-D) or "" for none, got {value!r}')
    return value


class Dtmf(_Strict):
    """The admin's side of `session.dtmf.DtmfSettings`: what the caller's keys do."""

    to_model: bool = True  # each burst of keys becomes a user item the model answers
    terminator: Annotated[
        str,
        BeforeValidator(_terminator_input),
        AfterValidator(_check_terminator),
        WithJsonSchema({"type": "string", "pattern": r"^[0-9*#A-D]?$"}),
    ] = "#"
    inter_digit_ms: int = Field(
        default=INTER_DIGIT_MS, ge=INTER_DIGIT_RANGE_MS[0], le=INTER_DIGIT_RANGE_MS[1]
    )
    max_digits: int = Field(default=MAX_DIGITS, ge=1, le=MAX_DIGITS)
    interrupt: bool = True  # a key pressed while the bot speaks cuts it off
    # the keys are masked in events, logs, the call record and the admin page (a PIN);
    # the model still gets them
    mask: bool = False

    def settings(self) -> DtmfSettings:
        return DtmfSettings(
            to_model=self.to_model,
            terminator=self.terminator,
            inter_digit_ms=self.inter_digit_ms,
            max_digits=self.max_digits,
            interrupt=self.interrupt,
        )


class OnError(_Strict):
    """When the call cannot go on because every provider of the route failed for good: what
    the caller hears, and where they go. (A tool that fails is not such a case: the model
    is told and goes on.)"""

    # A recorded prompt: a WAV file, relative to the plan file. Not a text: with every
    # provider gone there is no voice left to speak one (the offline voice speaks English
    # only, and loading it in a worker is not done); `telephony-bot say` records English.
    say: str | None = Field(default=None, min_length=1)
    transfer: str | None = None  # a transfer target name

    _pcm: bytes | None = PrivateAttr(default=None)  # `say`, read: 24 kHz PCM16 mono


# A provider, or an ordered list of them: the first serves the call; when it cannot (not
# reachable, a fatal error, reconnects exhausted) the next takes over with the conversation.
ProviderChoice = str | Annotated[list[str], Field(min_length=1, max_length=4)]


class Defaults(_Strict):
    """Settings for every call; a route overrides each field it sets."""

    # names under providers:, or echo | local | openai. No default: a plan names the
    # provider its calls get (here, or on each route) - never an implicit echo.
    provider: ProviderChoice | None = None
    echo_delay_ms: int = Field(default=0, ge=0, le=5000)
    max_call_seconds: float = Field(default=0, ge=0)
    idle_seconds: float = Field(default=0, ge=0)
    model: str | None = None  # overrides the provider's model
    language: str | None = None  # BCP 47, e.g. de-DE
    instructions: str = ""
    instructions_file: str | None = None  # relative to the plan file
    voice: str = ""
    greeting: str | None = None  # None: none; "": the model greets; text: say exactly this
    audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] = "pcm16"
    barge_in: BargeIn = BargeIn()
    stall: Stall = Stall()
    dtmf: Dtmf = Dtmf()  # the caller's keys: to the model, terminator, timeout, barge-in
    tools: list[str] = Field(default_factory=list)  # names from tools:, or builtins
    transfer_targets: dict[str, SipUri] = Field(default_factory=dict)  # name -> SIP URI
    filler_after_ms: int = Field(default=700, ge=100, le=10000)
    # A tool still running this long after the model called it is answered "the result
    # will follow" (an async tool at once); its result is given when it arrives. Realtime
    # models expect a function's output within about 5 s.
    tool_window_ms: int = Field(default=5000, ge=500, le=TIMEOUT_MAX_S * 1000)
    # Open the model's session and prepare the greeting while the call still rings, and
    # answer once the greeting is ready (at most prewarm_max_wait_ms of extra ringing).
    prewarm: bool = True
    prewarm_max_wait_ms: int = Field(default=2000, ge=0, le=10000)
    openai: OpenAISettings = OpenAISettings()
    recording: bool = False
    on_error: OnError | None = None
    flow: Flow | None = None  # the offline engine's script
    # patterns masked in the transcripts the call publishes and logs: card, iban, regex:...
    redact: list[RedactPattern] = Field(default_factory=list)

    _instructions_text: str | None = PrivateAttr(default=None)  # instructions_file, read

    @model_validator(mode="after")
    def _one_instructions(self) -> Defaults:
        if self.instructions and self.instructions_file:
            raise ValueError("give instructions or instructions_file, not both")
        return self


_TRUNK_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"  # as trunk_config.TRUNK_NAME


def _names_input(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


TrunkNames = Annotated[
    list[Annotated[str, Field(pattern=_TRUNK_NAME)]],
    BeforeValidator(_names_input),
    Field(min_length=1),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _TRUNK_NAME},
                {"type": "array", "items": {"type": "string", "pattern": _TRUNK_NAME}},
            ],
            "description": "trunk name(s) of the engine config's `trunks:`",
        }
    ),
]


class Match(_Strict):
    """All given conditions must hold. An empty match matches every call."""

    number: NumberPatterns | None = None  # the dialed number
    caller: NumberPatterns | None = None  # the caller id
    headers: dict[str, Regex] = Field(default_factory=dict)  # SIP header name -> regex (search)
    # the trunk the call came through (engine config `trunks:`), one name or a list
    trunk: TrunkNames | None = None


class Route(_Strict):
    """Who gets what: a route applies to calls its `match` (and `hours`) accept."""

    name: Annotated[str, Field(pattern=_NAME)]
    match: Match = Match()
    hours: Hours | None = None
    provider: ProviderChoice | None = None
    model: str | None = None
    voice: str | None = None
    language: str | None = None
    instructions: str | None = None
    instructions_file: str | None = None
    greeting: str | None = None
    flow: Flow | None = None
    tools: list[str] | None = None  # replaces defaults.tools when given
    tool_window_ms: int | None = Field(default=None, ge=500, le=TIMEOUT_MAX_S * 1000)
    barge_in: BargeIn | None = None
    stall: Stall | None = None
    dtmf: Dtmf | None = None  # replaces defaults.dtmf when given
    prewarm: bool | None = None
    max_call_seconds: float | None = Field(default=None, ge=0)
    idle_seconds: float | None = Field(default=None, ge=0)
    recording: bool | None = None
    transfer_targets: dict[str, SipUri] | None = None  # added to defaults.transfer_targets
    on_error: OnError | None = None
    redact: list[RedactPattern] | None = None  # replaces defaults.redact when given

    _instructions_text: str | None = PrivateAttr(default=None)  # instructions_file, read

    @model_validator(mode="after")
    def _one_instructions(self) -> Route:
        if self.instructions is not None and self.instructions_file is not None:
            raise ValueError("give instructions or instructions_file, not both")
        return self


class Dialplan(_Strict):
    version: Literal[1] = 1
    extends: str | list[str] | None = Field(default=None, exclude=True)  # loader resolves it
    defaults: Defaults = Defaults()
    providers: dict[Annotated[str, Field(pattern=_NAME)], ProviderDef] = Field(default_factory=dict)
    tools: dict[Annotated[str, Field(pattern=_TOOL_NAME)], ToolDef] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    default_route: str | None = None  # used when no route matches; none: refuse (404)

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)
