"""Habits, goals and interests from what the user said, by fixed rules (the offline path).

A statement is a user message of the agent's sessions or an extracted fact ("User loves
jazz."); the rules read either person ("I" or "User"):
  goal      "I want to / I'd like to / I'm going to / I'm planning to / I hope to / I plan to /
            I intend to / I'm trying to / my goal is to / my dream is to" + an action
  interest  "I love / like / enjoy / adore", "I'm into / interested in / passionate about /
            a (big) fan of / obsessed with" + a thing (not a pronoun)
  habit     a frequency ("every morning|day|week|...", "each ...", "usually", "always",
            "often", "regularly", "daily", "weekly", "on Mondays", "twice a week") with the
            user as subject
checked in that order (one statement is one kind). The same insight said again (the same words
once lower-cased, with "User goes" read as "I go") is one insight whose strength grows with
its mentions: 1 - 0.6^mentions (0.4, 0.64, 0.78, ...); an extracted fact's own mention count
adds to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

KINDS = ("habit", "goal", "interest")
_SUBJ = r"(?:^|[,;]\s*|\band\s+)(?:i|user|we)"
_GOAL = re.compile(
    rf"(?i){_SUBJ}(?:\s+really|\s+still|\s+also|\s+always|'ve always|\s+have always)?\s*"
    r"(?:'d like|'d love|would like|would love|want|wants|wanted|'m going|am going|is going|"
    r"'m gonna|'m planning|am planning|is planning|plan|"
    r"plans|hope|hopes|intend|intends|'m trying|am trying|is trying|aim|aims|'m hoping|"
    r"am hoping|is hoping)\s+to\s+(?!the\b|bed\b|my place\b|work\b|school\b)(.+)"
    r"|\b(?:my|user's)\s+(?:goal|dream|plan|resolution|ambition)\s+is\s+to\s+(.+)"
)
_INTEREST = re.compile(
    rf"(?i){_SUBJ}(?:\s+(?:really|absolutely|just|also|totally))*\s+(?:love|loves|like|likes|"
    r"enjoy|enjoys|adore|adores)\s+(.+)"
    r"|\b(?:i'm|i am|user is|we're|we are)\s+(?:really\s+|totally\s+|also\s+)?(?:into|"
    r"interested in|passionate about|fascinated by|obsessed with|(?:a\s+)?(?:big\s+|huge\s+)?"
    r"fan of)\s+(.+)"
)
_FREQUENCY = re.compile(
    r"(?i)\b(?:every|each)\s+(?:morning|day|night|evening|week|weekend|month|year|monday|"
    r"tuesday|wednesday|thursday|friday|saturday|sunday|other day)\b|\b(?:usually|always|often|"
    r"regularly|daily|weekly|nightly|most (?:days|mornings|evenings|nights))\b|\bon (?:mondays|"
    r"tuesdays|wednesdays|thursdays|fridays|saturdays|sundays|weekends)\b|\b(?:once|twice|"
    r"three times) a (?:day|week|month)\b"
)
_HABIT_SUBJ = re.compile(r"(?i)^(?:i|user|we)\s+(.+)")
_LEADING_ADVERB = re.compile(r"(?i)^(?:usually|always|often|regularly|normally|generally)\s+")
_NEGATED = re.compile(r"(?i)\b(?:don't|do not|doesn't|does not|never|not|no longer|can't)\b")
_CUT = re.compile(r"(?i)\s*(?:[,;.!?]|\s(?:because|since|but|although|though|so that)\s).*$")
_TRAIL = re.compile(r"(?i)\s+(?:so much|a lot|very much|too|lol|haha)$")
_PRONOUNS = frozenset(
    ["you", "it", "that", "this", "them", "him", "her", "those", "these", "me", "us"]
)
_THIRD = {"goes": "go", "does": "do", "has": "have", "is": "am"}


@dataclass(frozen=True)
class Statement:
    """One thing the user said: its text, the memories behind it, when, extra mentions."""

    text: str
    memory_ids: tuple[str, ...]
    time: datetime | None
    mentions: int = 1


@dataclass
class Found:
    kind: str
    text: str
    memory_ids: list[str] = field(default_factory=list)
    mentions: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    status: str = ""

    @property
    def strength(self) -> float:
        return round(1.0 - 0.6 ** max(1, self.mentions), 4)


def _clean(text: str) -> str:
    text = _TRAIL.sub("", _CUT.sub("", text.strip())).strip()
    return text


def _first_person(predicate: str) -> str:
    """ "goes swimming" -> "go swimming" (so a fact and the message it came from agree)."""
    head, _, rest = predicate.partition(" ")
    low = head.lower()
    if low in _THIRD:
        head = _THIRD[low]
    elif len(low) > 3 and low.endswith("s") and not low.endswith("ss"):
        head = head[:-1]
    return f"{head} {rest}".strip()


def classify(text: str) -> tuple[str, str] | None:
    """(kind, insight text) for one sentence, or None."""
    sentence = text.strip()
    m = _GOAL.search(sentence)
    if m:
        what = _clean(m[1] or m[2] or "")
        return ("goal", what) if what else None
    m = _INTEREST.search(sentence)
    if m and not _NEGATED.search(sentence[: m.start() + len(m[0]) - len(m[1] or m[2] or "")]):
        what = _clean(m[1] or m[2] or "")
        if what and what.split()[0].lower() not in _PRONOUNS:
            return ("interest", what)
    if _FREQUENCY.search(sentence) and not _NEGATED.search(sentence):
        m = _HABIT_SUBJ.match(sentence)
        if m:
            what = _clean(_first_person(_LEADING_ADVERB.sub("", m[1])))
            return ("habit", what) if what else None
    return None


def _key(text: str) -> str:
    words = re.sub(r"[^\w\s']", " ", text.lower()).split()
    return " ".join(words)


_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def derive(statements: Iterable[Statement]) -> dict[str, list[Found]]:
    """Insights by kind, strongest first (ties: most recent first)."""
    found: dict[tuple[str, str], Found] = {}
    for st in statements:
        for sentence in _SPLIT.split(st.text):
            hit = classify(sentence)
            if hit is None:
                continue
            kind, text = hit
            f = found.setdefault((kind, _key(text)), Found(kind, text))
            f.mentions += st.mentions
            f.memory_ids.extend(i for i in st.memory_ids if i not in f.memory_ids)
            if st.time is not None:
                f.first_seen = min(f.first_seen or st.time, st.time)
                f.last_seen = max(f.last_seen or st.time, st.time)
            if kind == "goal":
                f.status = "active"
    out: dict[str, list[Found]] = {k: [] for k in KINDS}
    for f in found.values():
        out[f.kind].append(f)
    for items in out.values():
        items.sort(key=lambda f: (-f.mentions, -(f.last_seen.timestamp() if f.last_seen else 0)))
    return out
