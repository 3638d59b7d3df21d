"""What of a call may leave it as it was said or typed: the one place values are masked in
what a call publishes (events, the call record, the admin page) and logs.

- `Redactor`: the patterns a route names (`redact: [card, iban, "regex:..."]`), applied to
  the transcripts it publishes and logs. `card`: 13 to 19 digits, in groups or not, that
  pass the Luhn check; `iban`: an IBAN whose check digits are right (ISO 13616, mod 97);
  `regex:EXPR`: anything the expression matches. Digits as the speech recogniser wrote
  them: a number spoken as words ("four one one one") is not recognised as one.
- `Privacy`: one call's rules: the redactor, the tool parameters the plan marks
  `sensitive: true` (their values masked wherever a tool call is shown: events, logs, the
  call record, the admin page; the tool itself gets the real value), DTMF digits masked
  when the route says `dtmf: {mask: true}` (the model still gets them: it checks the PIN),
  and whether transcripts go to the log at info level (engine config `logging.transcripts`;
  else only at debug level).

Pure: no I/O. Everything masked reads `MASK`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MASK = "***"
BUILTIN_PATTERNS = ("card", "iban")

_GROUPED_DIGITS = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}")
_ALNUM_GROUPS = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


def luhn_ok(digits: str) -> bool:
    """The Luhn check every payment card number passes."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """An IBAN (no spaces, any case) whose length and check digits are right."""
    s = compact.upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _groups(run: str, offset: int, sep: str) -> list[tuple[int, int]]:
    """The spans of the groups of `run` (split on the separator characters `sep`)."""
    out, start = [], 0
    for i, ch in enumerate(run + sep[0]):
        if ch in sep:
            if i > start:
                out.append((offset + start, offset + i))
            start = i + 1
    return out


def _longest_valid(
    text: str, spans: list[tuple[int, int]], valid: Callable[[str], bool], first_only: bool
) -> list[tuple[int, int]]:
    """The spans to mask: from each group on (or the first only), the longest run of
    whole groups whose digits/characters together are valid."""
    found: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        for j in range(len(spans) - 1, i - 1, -1):
            compact = "".join(text[a:b] for a, b in spans[i : j + 1])
            if valid(compact):
                found.append((spans[i][0], spans[j][1]))
                i = j
                break
        if first_only:
            break
        i += 1
    return found


def _cards(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _GROUPED_DIGITS.finditer(text):
        spans = _groups(m.group(), m.start(), " -")

        def card(digits: str) -> bool:
            return 13 <= len(digits) <= 19 and luhn_ok(digits)

        out += _longest_valid(text, spans, card, first_only=False)
    return out


def _ibans(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _IBAN_START.finditer(text):
        run = _ALNUM_GROUPS.match(text, m.start())
        assert run is not None  # the start itself is alphanumeric
        spans = _groups(run.group(), run.start(), " ")
        out += _longest_valid(text, spans, iban_ok, first_only=True)
    return out


def check_pattern(name: str) -> str:
    """A redaction pattern as a dialplan names it; ValueError says what is wrong."""
    if name in BUILTIN_PATTERNS:
        return name
    if name.startswith("regex:"):
        expr = name[len("regex:") :]
        if not expr:
            raise ValueError('"regex:" needs an expression after it, e.g. "regex:PIN [0-9]+"')
        try:
            re.compile(expr)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {expr!r}: {exc.msg}") from None
        return name
    raise ValueError(f"unknown redaction pattern {name!r}: use card, iban, or regex:<expression>")


class Redactor:
    """Masks what a route's patterns match in a text (a transcript)."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = tuple(check_pattern(p) for p in patterns)
        self._finders: list[Callable[[str], list[tuple[int, int]]]] = []
        for p in self.patterns:
            if p == "card":
                self._finders.append(_cards)
            elif p == "iban":
                self._finders.append(_ibans)
            else:
                rx = re.compile(p[len("regex:") :])
                self._finders.append(
                    lambda text, rx=rx: [m.span() for m in rx.finditer(text) if m.end() > m.start()]
                )

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def text(self, text: str) -> str:
        if not self._finders or not text:
            return text
        merged: list[list[int]] = []  # overlapping matches become one
        for a, b in sorted(s for find in self._finders for s in find(text)):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out, pos = [], 0
        for a, b in merged:
            out += [text[pos:a], MASK]
            pos = b
        out.append(text[pos:])
        return "".join(out)


def _values(arguments: Any, names: frozenset[str]) -> list[str]:
    """The texts of the sensitive arguments' values, longest first."""
    if not isinstance(arguments, dict):
        return []
    out = set()
    for k, v in arguments.items():
        if k in names and v is not None:
            out.add(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
    return sorted((v for v in out if v), key=len, reverse=True)


@dataclass(frozen=True)
class Privacy:
    """One call's rules for what leaves it masked (see the module doc)."""

    redactor: Redactor = field(default_factory=Redactor)
    sensitive: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )  # tool name -> the names of its sensitive parameters
    mask_dtmf: bool = False
    log_transcripts: bool = False

    def transcript(self, text: str) -> str:
        """A transcript as it may be published, stored and logged."""
        return self.redactor.text(text)

    def arguments(self, tool: str, arguments: Any) -> Any:
        """A tool call's arguments as they may be shown (`arguments`: parsed JSON, or the
        raw text when it was not JSON: then all of it is masked if anything would be)."""
        names = self.sensitive.get(tool)
        if not names:
            return arguments
        if not isinstance(arguments, dict):
            return MASK
        return {k: (MASK if k in names else v) for k, v in arguments.items()}

    def tool_text(self, tool: str, arguments_json: str, text: str) -> str:
        """A text about a tool call (its error) with the sensitive values taken out: a
        schema error quotes the value it refused ("'12345' does not match ...")."""
        names = self.sensitive.get(tool)
        if not names or not text:
            return text
        try:
            arguments = json.loads(arguments_json or "{}")
        except json.JSONDecodeError:
            return text  # its error names no value
        for v in _values(arguments, names):
            text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(v)}(?![0-9A-Za-z])", MASK, text)
        return text

    def digits(self, digits: str) -> str:
        """DTMF digits as they may be shown (all of them one `MASK` when masked)."""
        return MASK if self.mask_dtmf and digits else digits
