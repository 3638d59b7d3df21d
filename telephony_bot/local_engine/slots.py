"""Slot values from one ASR utterance (Whisper output: any case, punctuation, numbers as
digits or words): numbers, digit strings, dates, times, yes/no, enum choices and free text.

Pure functions: no I/O, no clock; dates are resolved against the `today` passed in.
Every finder works on `tokenize(text)` and returns a `Found(value, text, start, end)`
whose token span lets the caller cut the value out of the utterance (what is left over
is the free `text` of the utterance, see `remainder`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

__all__ = [
    "Found",
    "Tok",
    "find_code",
    "find_date",
    "find_digits",
    "find_enum",
    "find_number",
    "find_time",
    "find_yes_no",
    "parse_date",
    "parse_number",
    "parse_time",
    "parse_yes_no",
    "parse_enum",
    "remainder",
    "tokenize",
]


@dataclass(frozen=True)
class Tok:
    norm: str  # lowercase, canonical (e.g. "a.m." -> "am")
    orig: str  # as the ASR wrote it, without surrounding punctuation
    comma: bool = False  # a comma, full stop or similar break follows this token


@dataclass(frozen=True)
class Found:
    value: Any
    text: str  # canonical text: "0412", "2026-03-30", "09:30", "yes", the enum choice...
    start: int  # token span [start, end)
    end: int


# ---------- tokens ----------

_TOKEN = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}"  # ISO date
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}"  # 12/03/2026, 12.01.1975
    r"|\d{1,2}[/.:]\d{2}(?![\d/.:]*\d)"  # 12/03, 9:30, 9.30
    r"|\d{1,2}/\d{1,2}"  # 3/5
    r"|\d+(?:st|nd|rd|th)\b"  # 3rd
    r"|\d+"
    r"|[^\W\d_]+(?:'[^\W\d_]+)?",
    re.UNICODE,
)
_BREAK = re.compile(r"^\s*[,;.!?:\u2014\u2013]")
_SPELLED_AMPM = re.compile(r"\b([ap])\.\s?m\.?", re.IGNORECASE)


def tokenize(text: str) -> list[Tok]:
    """Words and numbers of `text`, lowercased in `norm`; dates/times like 9:30 stay whole."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _SPELLED_AMPM.sub(lambda m: m.group(1) + "m", text)
    toks: list[Tok] = []
    matches = list(_TOKEN.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        gap = text[m.end() : end]
        orig = m.group(0)
        toks.append(Tok(orig.lower(), orig, bool(_BREAK.match(gap))))
    return toks


# ---------- numbers ----------

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
    "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
NUMBER_WORDS = set(UNITS) | set(TEENS) | set(TENS) | set(SCALES)


def _is_num(tok: str) -> bool:
    return tok.isdigit() or tok in NUMBER_WORDS


@dataclass
class _Group:
    text: str  # digits as heard ("0412" keeps its zero)
    value: int


def _number_run(toks: Sequence[Tok], i: int) -> tuple[list[_Group], int]:
    """Parse the number words/digits starting at toks[i]; groups said one after the other
    ("one two three four", "nineteen eighty") are separate groups. Returns (groups, end)."""
    groups: list[_Group] = []
    total = 0  # thousands and above of the current group
    cur = 0  # below a thousand
    last: str | None = None  # kind of the previous token in the current group
    started = False
    j = i

    def close() -> None:
        nonlocal total, cur, last, started
        if started:
            groups.append(_Group(str(total + cur), total + cur))
        total, cur, last, started = 0, 0, None, False

    n = len(toks)
    while j < n:
        t = toks[j].norm
        nxt = toks[j + 1].norm if j + 1 < n else ""
        if t == "and" and started and last in ("hundred", "thousand") and _is_num(nxt):
            j += 1
            continue
        if t in ("a", "an") and nxt in ("hundred", "thousand") and not started:
            cur, last, started = 1, "unit", True
            j += 1
            continue
        if t in ("oh", "o") and (started or groups or _is_num(nxt)) and (_is_num(nxt) or started):
            close()
            groups.append(_Group("0", 0))
            j += 1
            continue
        if t in ("double", "triple") and nxt in UNITS:
            close()
            k = 2 if t == "double" else 3
            groups.extend(_Group(str(UNITS[nxt]), UNITS[nxt]) for _ in range(k))
            j += 2
            continue
        if t.isdigit():
            if started and last in ("hundred", "thousand") and len(t) <= 2:
                cur += int(t)
                last = "digits"
            else:
                close()
                if nxt in SCALES and len(t) <= 3:
                    cur, last, started = int(t), "digits", True
                else:
                    groups.append(_Group(t, int(t)))
            j += 1
            continue
        if t in UNITS:
            v = UNITS[t]
            if started and (last == "tens" or last in ("hundred", "thousand")):
                cur += v
            else:
                close()
                cur, started = v, True
            last = "unit"
        elif t in TEENS:
            v = TEENS[t]
            if not (started and last in ("hundred", "thousand")):
                close()
                started = True
            cur += v
            last = "teen"
        elif t in TENS:
            v = TENS[t]
            if not (started and last in ("hundred", "thousand")):
                close()
                started = True
            cur += v
            last = "tens"
        elif t in SCALES:
            scale = SCALES[t]
            if not started:
                cur, started = 1, True
            if scale == 100:
                if last == "hundred":
                    break
                cur = (cur or 1) * 100
                last = "hundred"
            else:
                total = (total + (cur or 1)) * scale
                cur = 0
                last = "thousand"
        else:
            break
        j += 1
    close()
    return groups, j


def find_number(toks: Sequence[Tok], start: int = 0) -> Found | None:
    """The first number: "twelve", "1 2 3 4", "four thousand two hundred", "4200", "3.5".

    Numbers said group by group ("one two three four", "nineteen eighty") are joined
    digit-wise; `text` keeps leading zeros ("zero four one two" -> "0412")."""
    for i in range(start, len(toks)):
        t = toks[i].norm
        if re.fullmatch(r"\d+\.\d+", t):
            return Found(float(t), t, i, i + 1)
        if re.fullmatch(r"\d{1,3}(,\d{3})+", t):
            return Found(int(t.replace(",", "")), t.replace(",", ""), i, i + 1)
        if not (_is_num(t) or t in ("a", "an", "oh", "o", "double", "triple")):
            continue
        groups, end = _number_run(toks, i)
        if not groups:
            continue
        text = "".join(g.text for g in groups)
        return Found(int(text), text, i, end)
    return None


# What the recogniser writes for a digit said alone ("for three two one" is 4321)
_SOUNDS_LIKE_DIGIT = {"for": "4", "fore": "4", "to": "2", "too": "2", "won": "1", "ate": "8"}


def _digit_like(tok: Tok) -> bool:
    return tok.norm.isdigit() or tok.norm in UNITS or tok.norm in ("oh", "o")


def find_digits(toks: Sequence[Tok], length: int | None = None) -> Found | None:
    """The first digit string (a customer number, a PIN), said digit by digit or as a
    number, with `length` digits when given: "0 4 1 2", "zero four one two" -> "0412". The
    value is the text: leading zeros are part of it. With `length`, words the recogniser
    writes for a digit next to other digits count when that makes the length: "for 3 2
    1" -> "4321", "try for 3 to 1" -> "4321"."""
    found = _find_digits(toks, length)
    if found is not None or length is None:
        return found
    alike = [
        Tok(_SOUNDS_LIKE_DIGIT[t.norm], _SOUNDS_LIKE_DIGIT[t.norm], t.comma)
        if t.norm in _SOUNDS_LIKE_DIGIT
        and any(_digit_like(toks[j]) for j in (i - 1, i + 1) if 0 <= j < len(toks))
        else t
        for i, t in enumerate(toks)
    ]
    return _find_digits(alike, length) if alike != list(toks) else None


def _find_digits(toks: Sequence[Tok], length: int | None) -> Found | None:
    start = 0
    while (found := find_number(toks, start)) is not None:
        text = found.text
        if text.isdigit() and (length is None or len(text) == length):
            return Found(text, text, found.start, found.end)
        start = max(found.end, found.start + 1)
    return None


def parse_number(text: str) -> int | float | None:
    found = find_number(tokenize(text))
    return None if found is None else found.value


# ---------- dates ----------

WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6, "mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3,
    "fri": 4, "sat": 5, "sun": 6,
}  # fmt: skip
MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_LONG_MONTHS = {k for k, v in MONTHS.items() if len(k) > 3 or k == "may"}


def _ordinal(toks: Sequence[Tok], i: int) -> tuple[int, int, bool] | None:
    """A day of the month at toks[i]: "3rd", "3", "third", "twenty first", "twenty-third".
    Returns (day, end, said_as_ordinal)."""
    if i >= len(toks):
        return None
    t = toks[i].norm
    m = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?", t)
    if m:
        d = int(m.group(1))
        return (d, i + 1, bool(m.group(2))) if 1 <= d <= 31 else None
    if t in ORDINALS:
        return ORDINALS[t], i + 1, True
    nxt = toks[i + 1].norm if i + 1 < len(toks) else ""
    if t in ("twenty", "thirty") and nxt in ORDINALS and ORDINALS[nxt] < 10:
        d = TENS[t] + ORDINALS[nxt]
        return (d, i + 2, True) if d <= 31 else None
    if t == "twenty" and nxt in UNITS and UNITS[nxt] > 0:
        return 20 + UNITS[nxt], i + 2, False
    if t in UNITS and UNITS[t] > 0:
        return UNITS[t], i + 1, False
    if t in TEENS:
        return TEENS[t], i + 1, False
    if t in ("twenty", "thirty"):
        return TENS[t], i + 1, False
    return None


def _year(toks: Sequence[Tok], i: int, today: date) -> tuple[int, int] | None:
    """A year at toks[i]: "1980", "'80", "nineteen eighty", "two thousand and five"."""
    if i >= len(toks):
        return None
    t = toks[i].norm
    if re.fullmatch(r"\d{4}", t):
        return int(t), i + 1
    if not _is_num(t):
        return None
    groups, end = _number_run(toks, i)
    if not groups:
        return None
    if len(groups) == 1 and 1000 <= groups[0].value <= 2999:
        return groups[0].value, end
    if len(groups) == 2 and 10 <= groups[0].value <= 29 and groups[1].value <= 99:
        return groups[0].value * 100 + groups[1].value, end  # "nineteen eighty (five)"
    return None


def _full_year(y: int, today: date) -> int:
    if y >= 100:
        return y
    return 2000 + y if 2000 + y <= today.year + 10 else 1900 + y


def _upcoming(today: date, month: int, day: int) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            d = date(year, month, day)
        except ValueError:
            continue
        if d >= today:
            return d
    return None


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def find_date(toks: Sequence[Tok], today: date, *, day_first: bool = True) -> Found | None:
    """The first date, as a `date`: "2026-03-30", "12/03", "12.01.1975", "today",
    "tomorrow", "day after tomorrow", "monday", "this monday", "next monday",
    "monday next week", "the third of december", "december 3rd 2026", "3 may 1980",
    "the fifth", "in three days", "in two weeks".

    A weekday alone or with "next" is the first such day after today ("this monday" may be
    today; "<weekday> next week" is the one in the following Monday-to-Sunday week). A day
    and month without a year is the next such date from today on. `day_first`: 12/03 is
    the 12th of March (else December 3rd) unless one of the numbers is above 12."""
    n = len(toks)
    for i in range(n):
        t = toks[i].norm
        nxt = toks[i + 1].norm if i + 1 < n else ""
        # numeric forms
        m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", t)
        if m:
            d = _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            if d:
                return Found(d, d.isoformat(), i, i + 1)
            continue
        m = re.fullmatch(r"(\d{1,2})[/.](\d{1,2})(?:[/.](\d{2,4}))?", t)
        if m and ("/" in t or m.group(3) or t.count(".") == 1 and nxt not in ("am", "pm")):
            a, b = int(m.group(1)), int(m.group(2))
            day, month = (a, b) if day_first else (b, a)
            if month > 12 and day <= 12:
                day, month = month, day
            if m.group(3):
                d = _safe_date(_full_year(int(m.group(3)), today), month, day)
            elif "." in t and b > 12:
                continue  # 9.30 is a time
            else:
                d = _upcoming(today, month, day) if 1 <= month <= 12 else None
            if d:
                return Found(d, d.isoformat(), i, i + 1)
            continue
        # relative words
        if t == "today" or (t == "tonight"):
            return Found(today, today.isoformat(), i, i + 1)
        if t == "tomorrow":
            d = today + timedelta(days=1)
            return Found(d, d.isoformat(), i, i + 1)
        if t == "day" and nxt == "after" and i + 2 < n and toks[i + 2].norm == "tomorrow":
            d = today + timedelta(days=2)
            return Found(d, d.isoformat(), i, i + 3)
        if t == "yesterday":
            d = today - timedelta(days=1)
            return Found(d, d.isoformat(), i, i + 1)
        if t == "in" and nxt:
            num = find_number(toks, i + 1)
            if num is not None and num.start == i + 1 and isinstance(num.value, int):
                unit = toks[num.end].norm if num.end < n else ""
                if unit in ("day", "days", "week", "weeks"):
                    k = num.value * (7 if unit.startswith("week") else 1)
                    d = today + timedelta(days=k)
                    return Found(d, d.isoformat(), i, num.end + 1)
            if nxt in ("a", "one") and i + 2 < n and toks[i + 2].norm in ("week", "fortnight"):
                d = today + timedelta(days=7 if toks[i + 2].norm == "week" else 14)
                return Found(d, d.isoformat(), i, i + 3)
        # weekdays
        if t in WEEKDAYS and (len(t) > 3 or t in ("mon", "tue", "wed", "thu", "fri")):
            wd = WEEKDAYS[t]
            start = i
            prev = toks[i - 1].norm if i > 0 else ""
            ahead = (wd - today.weekday()) % 7
            end = i + 1
            if prev == "this":
                start = i - 1
            else:
                ahead = ahead or 7
                if prev == "next":
                    start = i - 1
            if nxt == "next" and i + 2 < n and toks[i + 2].norm == "week":
                end = i + 3
                ahead = 7 - today.weekday() + wd
            elif prev == "week" and i >= 2 and toks[i - 2].norm == "next":
                start = i - 2
                ahead = 7 - today.weekday() + wd
            elif nxt == "week" and prev != "next":
                end, ahead = i + 2, ahead + 7  # "monday week"
            d = today + timedelta(days=ahead)
            # "monday the 30th", "monday 30 march": a fuller date right after wins
            full = find_date(toks[end:], today, day_first=day_first) if end < n else None
            if full is not None and full.start <= 1 and toks[end + full.start].norm not in WEEKDAYS:
                return Found(full.value, full.text, start, end + full.end)
            return Found(d, d.isoformat(), start, end)
        # "3rd of december", "the third of december", "3 may 1980", "third december"
        start = i + 1 if t == "the" else i
        od = _ordinal(toks, start)
        if od is not None:
            day, k, said_ordinal = od
            j = k + 1 if k < n and toks[k].norm == "of" else k
            if j < n and toks[j].norm in MONTHS:
                month = MONTHS[toks[j].norm]
                yr = _year(toks, j + 1, today)
                d = _safe_date(yr[0], month, day) if yr else _upcoming(today, month, day)
                if d:
                    return Found(d, d.isoformat(), i, yr[1] if yr else j + 1)
            elif t == "the" and said_ordinal:
                # "the fifth": that day of this month, or of the next month once it has passed
                for step in range(3):
                    y, mo = today.year, today.month + step
                    y, mo = y + (mo - 1) // 12, (mo - 1) % 12 + 1
                    d = _safe_date(y, mo, day)
                    if d and d >= today:
                        return Found(d, d.isoformat(), i, k)
        # "december 3rd", "december the third 2026", "may 3 1980"
        if t in MONTHS and (t in _LONG_MONTHS or toks[i].orig[:1].isupper()):
            k0 = i + 2 if nxt == "the" else i + 1
            od = _ordinal(toks, k0)
            if od is None:
                continue
            day, k, _ = od
            month = MONTHS[t]
            yr = _year(toks, k, today)
            d = _safe_date(yr[0], month, day) if yr else _upcoming(today, month, day)
            if d:
                return Found(d, d.isoformat(), i, yr[1] if yr else k)
    return None


def parse_date(text: str, today: date, *, day_first: bool = True) -> date | None:
    found = find_date(tokenize(text), today, day_first=day_first)
    return None if found is None else found.value


# ---------- times ----------

_MERIDIEM_AFTER = {
    ("in", "the", "morning"): "am",
    ("in", "the", "afternoon"): "pm",
    ("in", "the", "evening"): "pm",
    ("at", "night"): "pm",
    ("tonight",): "pm",
}
_TIME_CUES = {"at", "around", "about", "by", "from", "till", "until", "before", "after"}


def _small(toks: Sequence[Tok], i: int, lo: int, hi: int) -> tuple[int, int] | None:
    """A whole number lo..hi at toks[i] (digits or words, "twenty five"); (value, end)."""
    if i >= len(toks):
        return None
    t = toks[i].norm
    if t.isdigit():
        v = int(t)
        return (v, i + 1) if lo <= v <= hi and len(t) <= 2 else None
    v2: int | None = None
    end = i + 1
    if t in UNITS:
        v2 = UNITS[t]
    elif t in TEENS:
        v2 = TEENS[t]
    elif t in TENS:
        v2 = TENS[t]
        if i + 1 < len(toks) and toks[i + 1].norm in UNITS and UNITS[toks[i + 1].norm] > 0:
            v2 += UNITS[toks[i + 1].norm]
            end = i + 2
    if v2 is None or not lo <= v2 <= hi:
        return None
    return v2, end


def _meridiem(toks: Sequence[Tok], j: int) -> tuple[str | None, int]:
    if j < len(toks) and toks[j].norm in ("am", "pm"):
        return toks[j].norm, j + 1
    if j < len(toks) and toks[j].norm in ("o'clock", "oclock"):
        mer, k = _meridiem(toks, j + 1)
        return mer, k
    for words, mer in _MERIDIEM_AFTER.items():
        if tuple(t.norm for t in toks[j : j + len(words)]) == words:
            return mer, j + len(words)
    return None, j


def _clock(h: int, m: int, mer: str | None, *, zero_padded: bool = False) -> str | None:
    if mer == "pm" and h < 12:
        h += 12
    elif mer == "am" and h == 12:
        h = 0
    elif mer is None and 1 <= h <= 6 and not zero_padded:
        h += 12  # "at two" on a booking line is the afternoon
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return f"{h:02d}:{m:02d}"


def find_time(toks: Sequence[Tok]) -> Found | None:
    """The first time of day, "HH:MM": "9:30", "9.30", "nine thirty", "half past nine",
    "half nine", "quarter to ten", "ten past two", "2 pm", "9 o'clock", "noon", "midnight".

    Without am/pm, 1 to 6 o'clock is taken as the afternoon (13:00-18:00); "0x:xx" is kept
    as written. A bare number counts only after at/around/by/... or as the whole answer."""
    n = len(toks)
    weak: Found | None = None
    for i in range(n):
        t = toks[i].norm
        prev = toks[i - 1].norm if i > 0 else ""
        if t in ("noon", "midday"):
            return Found("12:00", "12:00", i, i + 1)
        if t == "midnight":
            return Found("00:00", "00:00", i, i + 1)
        m = re.fullmatch(r"(\d{1,2})[:.](\d{2})", t)
        if m:
            mer, end = _meridiem(toks, i + 1)
            if "." in t and mer is None and prev not in _TIME_CUES and int(m.group(2)) <= 12:
                continue  # 12.03 is more likely a date
            s = _clock(int(m.group(1)), int(m.group(2)), mer, zero_padded=t.startswith("0"))
            if s:
                return Found(s, s, i, end)
            continue
        # half past nine, quarter to ten, twenty past two, ten to ten
        offset: int | None = None
        k = i
        if t == "half":
            offset, k = 30, i + 1
        elif t == "quarter":
            offset, k = 15, i + 1
        elif t in ("a",) and i + 1 < n and toks[i + 1].norm == "quarter":
            offset, k = 15, i + 2
        else:
            mins = _small(toks, i, 1, 29)
            if mins is not None:
                offset, k = mins
                if k < n and toks[k].norm in ("minutes", "minute"):
                    k += 1
        if offset is not None and k < n and toks[k].norm in ("past", "after", "to", "before"):
            hour = _small(toks, k + 1, 1, 12)
            if hour is not None:
                h, end = hour
                mer, end = _meridiem(toks, end)
                mm = offset
                if toks[k].norm in ("to", "before"):
                    h, mm = (h - 1) or 12, 60 - offset
                s = _clock(h, mm, mer)
                if s:
                    return Found(s, s, i - 1 if t == "quarter" and prev == "a" else i, end)
        if t == "half" and i + 1 < n:  # British "half nine" = 9:30
            hour = _small(toks, i + 1, 1, 12)
            if hour is not None:
                mer, end = _meridiem(toks, hour[1])
                s = _clock(hour[0], 30, mer)
                if s:
                    return Found(s, s, i, end)
        # nine thirty, 9 30, 9 pm, nine o'clock, ten oh five
        hour = _small(toks, i, 0, 23)
        if hour is not None:
            h, j = hour
            mm_val = 0
            has_minutes = False
            if j < n and toks[j].norm in ("oh", "o") and j + 1 < n and toks[j + 1].norm in UNITS:
                mm_val, j, has_minutes = UNITS[toks[j + 1].norm], j + 2, True
            else:
                mins2 = _small(toks, j, 0, 59)
                if mins2 is not None and (
                    toks[j].norm in TENS
                    or toks[j].norm in TEENS
                    or (toks[j].norm.isdigit() and len(toks[j].norm) == 2)
                ):
                    mm_val, j, has_minutes = mins2[0], mins2[1], True
            mer, end = _meridiem(toks, j)
            s = _clock(h, mm_val, mer, zero_padded=toks[i].norm.startswith("0"))
            if s is None:
                continue
            strong = mer is not None or (end > j)
            if strong:
                return Found(s, s, i, end)
            cue = prev in _TIME_CUES
            if (has_minutes and (cue or h <= 12)) or (cue and h <= 12) or (i == 0 and end == n):
                if weak is None:
                    weak = Found(s, s, i - 1 if cue else i, end)
    return weak


def parse_time(text: str) -> str | None:
    found = find_time(tokenize(text))
    return None if found is None else found.value


# ---------- yes / no ----------

_YES = {
    "yes", "yeah", "yep", "yup", "yea", "ya", "yah", "sure", "correct", "right", "ok", "okay",
    "fine", "absolutely", "definitely", "certainly", "exactly", "perfect", "great",
    "affirmative", "alright", "true", "agreed", "good",
}  # fmt: skip
_NO = {"no", "nope", "nah", "wrong", "incorrect", "negative", "false", "nay"}
_NEGATORS = {
    "not", "don't", "dont", "doesn't", "isn't", "aren't", "wasn't", "never", "didn't",
    "won't", "can't", "shouldn't", "neither", "nothing", "none",
}  # fmt: skip
_WEAK_YES = {"need", "needed", "required", "necessary", "please", "want", "go", "do"}
_YES_PHRASES = (("go", "ahead"), ("of", "course"), ("please", "do"), ("do", "it"))


def find_yes_no(toks: Sequence[Tok], *, strict: bool = False) -> Found | None:
    """True for yes/yeah/correct/that's right/sure/okay..., False for no/nope/wrong/not
    right/not needed... The first clear answer wins; "not" before a yes-word makes it a no.
    Without a clear word, "not"/"don't"... mean no and "need"/"please"... mean yes, unless
    `strict` (answers to a confirmation question)."""
    words = [t.norm for t in toks]
    n = len(words)
    for i, w in enumerate(words):
        if w in _NO:
            return Found(False, "no", i, i + 1)
        for phrase in _YES_PHRASES:
            if tuple(words[i : i + len(phrase)]) == phrase:
                return Found(True, "yes", i, i + len(phrase))
        if w in _YES or (w == "all" and i + 1 < n and words[i + 1] == "right"):
            negated = any(x in _NEGATORS for x in words[max(0, i - 2) : i])
            if negated:
                return Found(False, "no", max(0, i - 2), i + 1)
            end = i + 2 if w == "all" else i + 1
            if w == "right" and i > 0 and words[i - 1] in ("that's", "thats", "is"):
                return Found(True, "yes", i - 1, end)
            return Found(True, "yes", i, end)
    if strict:
        return None
    for i, w in enumerate(words):
        if w in _NEGATORS:
            return Found(False, "no", i, i + 1)
    for i, w in enumerate(words):
        if w in _WEAK_YES:
            return Found(True, "yes", i, i + 1)
    return None


def parse_yes_no(text: str, *, strict: bool = False) -> bool | None:
    found = find_yes_no(tokenize(text), strict=strict)
    return None if found is None else found.value


# ---------- enum choices ----------


def _choice_words(value: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-]+", value.lower()) if w]


def _word_score(a: str, b: str) -> float:
    if a == b:
        return 1.0
    r = difflib.SequenceMatcher(None, a, b).ratio()
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 4 and long_.startswith(short):
        r = max(r, 0.85)  # pass / passed, cardio / cardiology
    common = len(_common_prefix(a, b))
    if common >= 5:
        r = max(r, 0.82)  # register / registration
    return r


def _common_prefix(a: str, b: str) -> str:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return a[:k]


def find_enum(toks: Sequence[Tok], values: Sequence[str], cutoff: float = 0.78) -> Found | None:
    """The choice of `values` the utterance names, fuzzily ("orthopaedics" ->
    "orthopedics", "passed with remarks" -> "pass_with_remarks"); None below `cutoff`."""
    words = [t.norm for t in toks]
    best: tuple[float, int, int, int, str] | None = None  # score, len, -start, end, value
    for value in values:
        vw = _choice_words(value)
        if not vw:
            continue
        k = len(vw)
        target = " ".join(vw)
        for size in {max(1, k - 1), k, k + 1}:
            for s in range(0, max(1, len(words) - size + 1)):
                window = words[s : s + size]
                if not window:
                    continue
                if size == 1 and k == 1:
                    score = _word_score(window[0], vw[0])
                else:
                    score = difflib.SequenceMatcher(None, " ".join(window), target).ratio()
                    if len(window) == k:
                        per = sum(_word_score(a, b) for a, b in zip(window, vw, strict=True)) / k
                        score = max(score, per)
                if score < cutoff:
                    continue
                cand = (score, k, -s, s + len(window), value)
                if best is None or cand[:2] > best[:2]:
                    best = cand
    for value in values:  # "passed, but with a couple of remarks": every word, in order
        vw = _choice_words(value)
        if len(vw) < 2 or (best is not None and best[1] >= len(vw)):
            continue
        span = _in_order(words, vw, slack=5)
        if span is not None:
            cand = (max(cutoff, 0.9), len(vw), -span[0], span[1], value)
            if best is None or cand[:2] > best[:2]:
                best = cand
    if best is None:
        return None
    score, _, neg_start, end, value = best
    return Found(value, value, -neg_start, end)


def _in_order(words: Sequence[str], want: Sequence[str], *, slack: int) -> tuple[int, int] | None:
    """(start, end) of the shortest run holding `want`'s words in order (near-spellings
    count), at most `slack` other words among them; None if there is none."""
    best: tuple[int, int] | None = None
    for s in range(len(words)):
        if _word_score(words[s], want[0]) < 0.8:
            continue
        k, e = 1, s + 1
        while k < len(want) and e < len(words) and e - s - k <= slack:
            if _word_score(words[e], want[k]) >= 0.8:
                k += 1
            e += 1
        if k == len(want) and e - s - k <= slack and (best is None or e - s < best[1] - best[0]):
            best = (s, e)
    return best


def parse_enum(text: str, values: Sequence[str]) -> str | None:
    found = find_enum(tokenize(text), values)
    return None if found is None else found.value


# ---------- codes (site ids, references) ----------

_LETTER_NAMES = {"dash": "-", "hyphen": "-", "minus": "-"}


def find_code(toks: Sequence[Tok]) -> Found | None:
    """An id like "SUB-0412" said as "SUB-0412", "S U B 0 4 1 2", "sub dash zero four one
    two": letters (spelled one by one, or one 2-4 letter word) then digits; -> "SUB-0412"."""
    n = len(toks)
    for i in range(n):
        t = toks[i]
        m = re.fullmatch(r"([a-z]{1,4})-?(\d+)", t.norm)
        if m and not t.norm.isdigit():
            code = f"{m.group(1).upper()}-{m.group(2)}"
            return Found(code, code, i, i + 1)
        letters: list[str] = []
        j = i
        while j < n and len(toks[j].norm) == 1 and toks[j].norm.isalpha():
            letters.append(toks[j].norm)
            j += 1
        if not letters and re.fullmatch(r"[a-z]{2,4}", t.norm) and t.norm not in NUMBER_WORDS:
            after = toks[i + 1].norm if i + 1 < n else ""
            if t.orig.isupper() or after.isdigit() or after in _LETTER_NAMES:
                letters, j = [t.norm], i + 1
        if not letters or (len(letters) == 1 and len(letters[0]) == 1 and letters[0] in "ao"):
            continue
        if j < n and toks[j].norm in _LETTER_NAMES:
            j += 1
        num = find_number(toks, j)
        if num is None or num.start != j:
            continue
        code = f"{''.join(letters).upper()}-{num.text}"
        return Found(code, code, i, num.end)
    return None


# ---------- free text ----------

FILLERS = {
    "yes", "yeah", "yep", "no", "please", "ok", "okay", "so", "um", "uh", "er", "erm", "hmm",
    "well", "it's", "its", "it", "is", "was", "my", "name", "name's", "names", "the", "for",
    "born", "on", "and", "i'm", "im", "i", "this", "that's", "thats", "that", "fine", "sure",
    "called", "a", "an", "at", "of", "be", "book", "like", "want", "need", "i'd", "id", "to",
    "thanks", "thank", "you", "patient", "patient's", "just", "then", "would",
    "with", "in", "sorry", "hello", "hi", "oh", "right", "good", "great", "there", "here",
    "say", "said",
}  # fmt: skip


def remainder(
    toks: Sequence[Tok], taken: Sequence[tuple[int, int]], *, parts: int = 1
) -> list[str]:
    """What is left of the utterance once the `taken` spans are cut out: split at cuts and
    pauses (commas), filler words stripped at the edges of each piece; at most `parts`
    pieces (the rest is joined into the last). Original spelling is kept."""
    cut = [False] * len(toks)
    for s, e in taken:
        for k in range(max(0, s), min(len(toks), e)):
            cut[k] = True
    pieces: list[list[str]] = []
    current: list[Tok] = []

    def flush() -> None:
        words = list(current)
        while words and words[0].norm in FILLERS:
            words.pop(0)
        while words and words[-1].norm in FILLERS:
            words.pop()
        if words:
            pieces.append([w.orig for w in words])
        current.clear()

    for k, tok in enumerate(toks):
        if cut[k]:
            flush()
            continue
        current.append(tok)
        if tok.comma:
            flush()
    flush()
    if parts >= 1 and len(pieces) > parts:
        head = pieces[: parts - 1]
        tail = [w for p in pieces[parts - 1 :] for w in p]
        pieces = [*head, tail]
    return [" ".join(p) for p in pieces]


def span_of(
    toks: Sequence[Tok], piece: str, taken: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The token span a `remainder` piece came from ([] if none): to take it out of what is
    left for other slots."""
    words = piece.split()
    k = len(words)
    for s in range(0, len(toks) - k + 1):
        if [t.orig for t in toks[s : s + k]] == words and all(
            e <= s or b >= s + k for b, e in taken
        ):
            return [(s, s + k)]
    return []
