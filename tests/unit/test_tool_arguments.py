"""The model's tool arguments are checked against the tool's JSON Schema before it runs."""

from __future__ import annotations

import pytest

from telephony_bot.tools.base import ToolError
from telephony_bot.tools.executor import check_arguments

SCHEMA = {
    "type": "object",
    "properties": {
        "department": {"type": "string", "enum": ["general", "cardiology"]},
        "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
        "party": {"type": "integer", "minimum": 1},
    },
    "required": ["department", "time"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"time": "09:30"}, "'department' is a required property"),
        ({"department": "dentistry", "time": "09:30"}, "at department: 'dentistry' is not one of"),
        ({"department": "general", "time": "half past nine"}, "at time: 'half past nine' does"),
        ({"department": "general", "time": "09:30", "party": 0}, "at party: 0 is less than"),
        ({"department": "general", "time": "09:30", "x": 1}, "Additional properties"),
        ([], "arguments must be a JSON object"),
    ],
)
def test_bad_arguments_become_an_error_the_model_can_read(args: object, message: str) -> None:
    with pytest.raises(ToolError, match=None) as exc:
        check_arguments(SCHEMA, args)
    assert message in str(exc.value)


def test_good_arguments_pass() -> None:
    check_arguments(SCHEMA, {"department": "general", "time": "09:30", "party": 2})
