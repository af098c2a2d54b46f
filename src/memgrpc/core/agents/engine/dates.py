"""Dated events and deadlines in what a user says, for the proactive follow-ups.

Offline and deterministic: a date phrase is read relative to the MESSAGE's time (UTC), never
the server's clock, so a conversation posted with past times yields past events. Phrases:
today, tonight, tomorrow, the day after tomorrow, this weekend, next week, next month,
(on|this|next) <weekday>, in N days/weeks (digits or one..twelve), ISO dates (2025-06-01) and
month-day dates ("June 1", "1st of June", "on 3 May"; the next such day on or after the message).

A sentence with a date phrase is an *event* ("my driving test is tomorrow": follow up the day
after) unless the date comes after "by", "before" or "until" with something the user must or
wants to do ("I need to finish my thesis by Friday"): that is a *task* with a deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
_NUMBERS = {
    w: i + 1
    for i, w in enumerate(
        [
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
} | {"a": 1, "an": 1, "a couple of": 2, "a few": 3}
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|" \
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"  # fmt: skip
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_PHRASES = [
    ("iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")),
    ("md", re.compile(rf"(?i)\b(?:on\s+)?{_MONTH.replace('(?:', '(', 1)}\.?\s+{_DAY}\b")),
    (
        "dm",
        re.compile(
            rf"(?i)\b(?:on\s+)?(?:the\s+)?{_DAY}(?:\s+of)?\s+{_MONTH.replace('(?:', '(', 1)}\b"
        ),
    ),
    ("after", re.compile(r"(?i)\bthe day after tomorrow\b")),
    ("rel", re.compile(r"(?i)\b(today|tonight|tomorrow|this weekend|next week|next month)\b")),
    (
        "in",
        re.compile(
            r"(?i)\bin\s+(\d{1,3}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
            r"twelve|a couple of|a few|an?)\s+(days?|weeks?)\b"
        ),
    ),
    ("wd", re.compile(rf"(?i)\b(on|this|next|coming)?\s*({'|'.join(WEEKDAYS)})\b")),
]
_DEADLINE = re.compile(
    r"(?i)\b(?:by|before|until|no later than|due)\s*(?:the\s+|this\s+|next\s+)?$"
)
_TASKY = re.compile(
    r"(?i)\b(?:need to|have to|has to|must|got to|gotta|want to|wants to|plan to|going to|"
    r"goal is to|deadline|due|should|promised to|supposed to)\b"
)
_EVENT_NP = [
    # "my driving test is tomorrow", "our wedding is on June 1"
    re.compile(
        r"(?i)\b(?:my|our)\s+((?:[\w'-]+\s+){0,4}?[\w'-]+)\s+(?:is|are|'s|will be|starts)\b"
    ),
    # "I have a job interview on Friday", "I've got my exam next week"
    re.compile(
        r"(?i)\b(?:i|we)\s*(?:have|'ve got|have got|got|'ve)\s+(?:a|an|my|our|the)\s+"
        r"((?:[\w'-]+\s+){0,4}?[\w'-]+?)\s+(?=on\b|this\b|next\b|tomorrow|today|tonight|in\b|\d)"
    ),
]
_TRAIL = re.compile(r"(?i)\s+(?:is|are|'s|will be|starts|on|at|this|next)\s*$")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_END = re.compile(r"(?i)\s*(?:[,;.!?]|\s(?:and|but|because|so)\s).*$")


@dataclass(frozen=True)
class Dated:
    """One dated thing the user said: an `event` (follow up after it) or a `task` (due then)."""

    kind: str  # event | task
    what: str  # "driving test", or the task's clause
    day: date
    sentence: str


def _start(said: datetime) -> date:
    return said.astimezone(UTC).date()


def _next_month_day(base: date, month: int, day: int) -> date | None:
    for year in (base.year, base.year + 1):
        try:
            d = date(year, month, day)
        except ValueError:
            return None
        if d >= base:
            return d
    return None


def _month(name: str) -> int:
    return next(i + 1 for i, m in enumerate(MONTHS) if m.startswith(name.lower()[:3]))


def resolve(kind: str, m: re.Match[str], base: date) -> date | None:
    """The day a matched phrase names, relative to `base` (the message's day)."""
    if kind == "iso":
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return None
    if kind == "md":
        return _next_month_day(base, _month(m[1]), int(m[2]))
    if kind == "dm":
        return _next_month_day(base, _month(m[2]), int(m[1]))
    if kind == "after":
        return base + timedelta(days=2)
    if kind == "rel":
        word = m[1].lower()
        offsets = {"today": 0, "tonight": 0, "tomorrow": 1, "next week": 7, "next month": 30}
        if word == "this weekend":
            return base + timedelta(days=(5 - base.weekday()) % 7)
        return base + timedelta(days=offsets[word])
    if kind == "in":
        n = int(m[1]) if m[1].isdigit() else _NUMBERS[m[1].lower()]
        return base + timedelta(days=n * (7 if m[2].lower().startswith("week") else 1))
    if kind == "wd":
        target = WEEKDAYS.index(m[2].lower())
        # the next such day after the message's ("next Friday" included: it is ambiguous)
        return base + timedelta(days=(target - base.weekday()) % 7 or 7)
    return None


def _first_date(sentence: str, base: date) -> tuple[date, re.Match[str]] | None:
    best: tuple[date, re.Match[str]] | None = None
    for kind, pattern in _PHRASES:
        for m in pattern.finditer(sentence):
            d = resolve(kind, m, base)
            if d is not None and (best is None or m.start() < best[1].start()):
                best = (d, m)
    return best


def _what(sentence: str, before: str) -> str:
    for pattern in _EVENT_NP:
        m = pattern.search(sentence)
        if m:
            return m[1].strip().lower()
    clause = re.sub(r"(?i)^(?:and|but|so|also|well|oh|btw)\s+", "", before).strip(" ,")
    return _TRAIL.sub("", clause).strip()


def dated(text: str, said: datetime) -> list[Dated]:
    """The dated events and tasks in one user message sent at `said` (past days dropped)."""
    base = _start(said)
    out: list[Dated] = []
    for sentence in _SENTENCES.split(text.strip()):
        if sentence.rstrip().endswith("?"):
            continue  # a question about a date is not the user's plan
        found = _first_date(sentence, base)
        if found is None:
            continue
        day, m = found
        if day < base:
            continue
        before = sentence[: m.start()]
        if _DEADLINE.search(before) and _TASKY.search(before):
            task = _CLAUSE_END.sub(
                "",
                re.sub(
                    r"(?i)^.*?\b(?:need|have|has|must|got|want|wants|"
                    r"plan|going|goal is|promised|supposed)\s+(?:to\s+)?",
                    "",
                    before,
                    count=1,
                ),
            )
            task = _DEADLINE.sub("", task).strip(" ,")
            out.append(Dated("task", task or before.strip(), day, sentence.strip()))
            continue
        what = _what(sentence, before)
        if what:
            out.append(Dated("event", what, day, sentence.strip()))
    return out
