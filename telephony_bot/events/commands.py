"""MQTT command topics and payloads: parsing and validation (pure), and dispatch to the
worker's `Control` verbs.

Topics (`P` = mqtt.prefix, `N` = mqtt.node):
- `P/N/calls/<call_id>/cmd/<verb>`  hangup | transfer | say | inject on that call
- `P/N/cmd/<verb>`                  the same with `call_id` in the payload; or originate
- `P/cmd/<verb>`                    any node: the worker holding `call_id` acts, the others
                                    stay silent; `originate` goes to exactly one worker
                                    (an MQTT v5 shared subscription)

Payloads are JSON objects (an empty payload is `{}`):
- hangup    {reason?}
- transfer  {target}: a name of the call's route's transfer_targets, or a number (or a
            tel:/sip: URI of one) outbound.allow matches; anything else is refused
- say       {text, interrupt?: false}       now (interrupt) or after the current reply
- inject    {text} | {image: <base64>, mime?: "image/jpeg"}, role?: "user" | "system"
- originate {to, from?, route?}

Every command is answered with `CommandResult.to_json()` plus `verb` (and `call_id`): on
the MQTT v5 Response Topic with the request's Correlation Data when the request carries
one, else on `<command topic>/reply`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from telephony_bot import transfer_target
from telephony_bot.events.control import CommandResult, Control

MAX_IMAGE_BYTES = 4 * 1024 * 1024
CALL_VERBS = ("hangup", "transfer", "say", "inject")


class CommandError(ValueError):
    """A command that cannot be carried out as sent; the text says why."""


@dataclass(frozen=True)
class CommandTopic:
    verb: str
    call_id: str | None  # from the topic (call scope), else None
    scope: Literal["call", "node", "global"]


def event_topic(prefix: str, node: str, call_id: str, type_: str) -> str:
    if type_ == "cdr":
        return f"{prefix}/{node}/calls/{call_id}/cdr"
    return f"{prefix}/{node}/calls/{call_id}/events/{type_}"


def trunk_status_topic(prefix: str, node: str, trunk: str) -> str:
    """Retained: the trunk's registration as this node sees it (`trunk.registration`)."""
    return f"{prefix}/{node}/status/trunks/{trunk}"


def subscriptions(prefix: str, node: str, verbs: tuple[str, ...]) -> list[str]:
    """What a worker subscribes to for its commands."""
    subs = [f"{prefix}/{node}/calls/+/cmd/+", f"{prefix}/{node}/cmd/+"]
    subs += [f"{prefix}/cmd/{v}" for v in CALL_VERBS if v in verbs]
    if "originate" in verbs:
        group = prefix.replace("/", "_")
        subs.append(f"$share/{group}/{prefix}/cmd/originate")
    return subs


def parse_topic(prefix: str, node: str, topic: str) -> CommandTopic | None:
    """A command topic this worker serves, or None (not a command, or not ours)."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) == 2 and parts[0] == "cmd":
        return CommandTopic(parts[1], None, "global")
    if len(parts) == 3 and parts[0] == node and parts[1] == "cmd":
        return CommandTopic(parts[2], None, "node")
    if len(parts) == 5 and parts[0] == node and parts[1] == "calls" and parts[3] == "cmd":
        if parts[2]:
            return CommandTopic(parts[4], parts[2], "call")
    return None


# ---------------------------------------------------------------- payloads

_CallId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    call_id: _CallId | None = None


class Hangup(_Cmd):
    reason: str = Field("", max_length=200)


class Transfer(_Cmd):
    target: str = Field(pattern=transfer_target.COMMAND_PATTERN)


class Say(_Cmd):
    text: str = Field(min_length=1, max_length=2000)
    interrupt: bool = False


class Inject(_Cmd):
    text: str | None = Field(None, min_length=1, max_length=8000)
    image: str | None = None  # base64
    mime: str = Field("image/jpeg", pattern=r"^image/[a-z0-9.+-]+$")
    role: Literal["user", "system"] = "user"

    @model_validator(mode="after")
    def _one_of(self) -> Inject:
        if (self.text is None) == (self.image is None):
            raise ValueError("give either text or image (base64), not both or neither")
        return self

    def image_bytes(self) -> bytes | None:
        if self.image is None:
            return None
        try:
            data = base64.b64decode(self.image, validate=True)
        except (binascii.Error, ValueError):
            raise CommandError("image is not valid base64") from None
        if not data:
            raise CommandError("image is empty")
        if len(data) > MAX_IMAGE_BYTES:
            raise CommandError(f"image is larger than {MAX_IMAGE_BYTES // 1024 // 1024} MiB")
        return data


class Originate(_Cmd):
    to: str = Field(min_length=1, max_length=64)
    from_: str | None = Field(None, alias="from", max_length=64)
    route: str | None = Field(None, max_length=100)


MODELS: dict[str, type[_Cmd]] = {
    "hangup": Hangup,
    "transfer": Transfer,
    "say": Say,
    "inject": Inject,
    "originate": Originate,
}


def parse_payload(verb: str, payload: bytes | str | None) -> _Cmd:
    """The command for `verb`, validated; CommandError with the reason otherwise."""
    model = MODELS.get(verb)
    if model is None:
        raise CommandError(f"unknown verb {verb!r}; verbs: {', '.join(MODELS)}")
    raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload or ""
    try:
        data: Any = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise CommandError("payload must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CommandError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid command: " + "; ".join(parts)


def target_call(topic: CommandTopic, cmd: _Cmd) -> str | None:
    """The call a command is for (topic first); CommandError when one is needed and missing
    or when the payload names another call than the topic."""
    if isinstance(cmd, Originate):
        if topic.scope == "call":
            raise CommandError("originate is not a call command: send it to <prefix>/cmd/originate")
        return None
    if topic.call_id is not None:
        if cmd.call_id is not None and cmd.call_id != topic.call_id:
            raise CommandError("call_id in the payload differs from the topic's")
        return topic.call_id
    if cmd.call_id is None:
        raise CommandError("call_id is required on this topic")
    return cmd.call_id


async def dispatch(control: Control, call_id: str | None, cmd: _Cmd) -> CommandResult:
    if isinstance(cmd, Originate):
        return await control.originate(cmd.to, cmd.from_, cmd.route)
    assert call_id is not None
    if isinstance(cmd, Hangup):
        return await control.hangup(call_id, cmd.reason)
    if isinstance(cmd, Transfer):
        return await control.transfer(call_id, cmd.target)
    if isinstance(cmd, Say):
        return await control.say(call_id, cmd.text, interrupt=cmd.interrupt)
    if isinstance(cmd, Inject):
        return await control.inject(
            call_id, text=cmd.text, image=cmd.image_bytes(), image_mime=cmd.mime, role=cmd.role
        )
    raise CommandError(f"no handler for {type(cmd).__name__}")
