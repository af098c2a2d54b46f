"""Text handling for recall: tokenising for BM25, the texts to index and embed, cue detectors.

Everything here is language-level (English stemming and stopwords, English time words),
never corpus-level: nothing knows any particular conversation, speaker or question set.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final

import Stemmer  # type: ignore[import-not-found]  # PyStemmer ships no type hints

#: English function words dropped from both documents and queries. Question words
#: (what/when/who...) are in it: they carry no topic, and the question *form* is
#: handled by separate cues (see ``is_when_query``).
_STOPWORD_TEXT: Final = """
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
don't down during each few for from further had hadn't has hasn't have haven't having he he'd
he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into
is isn't it it's its itself let's me more most mustn't my myself no nor not of off on once only or
other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so
some such than that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too under until up very was wasn't we we'd we'll
we're we've were weren't what what's when when's where where's which while who who's whom why
why's with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
"""
STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())

_WORD_RE: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_QUOTES: Final = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_STEMMER: Final = Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    stemmed: str = _STEMMER.stemWord(word)
    return stemmed


def tokenize(text: str) -> list[str]:
    """Lowercased, stopword-free, Snowball-stemmed word tokens of ``text``.

    Possessives lose their ``'s`` ("Caroline's" -> "carolin") so a name matches in every
    form; other contractions are joined ("gonna", "don't" is a stopword anyway).
    """
    out: list[str] = []
    for raw in _WORD_RE.findall(text.lower().translate(_QUOTES)):
        if raw in STOPWORDS:
            continue
        word = raw[:-2] if raw.endswith("'s") else raw.replace("'", "")
        if word and word not in STOPWORDS:
            out.append(_stem(word))
    return out


def term_counts(text: str) -> Counter[str]:
    """Term frequencies of ``text`` as :func:`tokenize` sees it."""
    return Counter(tokenize(text))


def format_date(when: datetime) -> str:
    """``8 May 2023``: the form both people and questions use for a day."""
    return f"{when.day} {calendar.month_name[when.month]} {when.year}"


def index_text(text: str, speaker: str = "", when: datetime | None = None) -> str:
    """The text BM25 indexes: ``speaker: text date``.

    The speaker lets a query naming a participant match their turns; the date lets a
    query naming a day or month match what was said then (both measured to help).
    """
    parts = [f"{speaker}: {text}" if speaker else text]
    if when is not None:
        parts.append(format_date(when))
    return " ".join(parts)


def embed_text(text: str, speaker: str = "") -> str:
    """The text to embed at ingest: ``{speaker} said, "{text}"`` (plain text without a speaker).

    MiniLM places reported speech near questions about that person far better than the
    bare text or ``speaker: text`` (about +6 hit@10 dense-alone on conversational recall).
    """
    return f'{speaker} said, "{text}"' if speaker else text


def is_question(text: str) -> bool:
    """Whether a turn ends in a question: it asks for a fact rather than stating one."""
    return text.rstrip().rstrip("\"')]").endswith("?")


_TIMEX_RE: Final = re.compile(
    r"\b(?:yesterday|today|tonight|tomorrow|ago|last|next|week|weekend|weeks|month|months|year|"
    r"years|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|"
    r"april|june|july|august|september|october|november|december|(?:19|20)\d\d|since|recently|"
    r"lately|soon|earlier|later)\b",
    re.IGNORECASE,
)


def has_time_expression(text: str) -> bool:
    """Whether a text says *when* something happened (relative or absolute time words)."""
    return _TIMEX_RE.search(text) is not None


_WHEN_RE: Final = re.compile(
    r"\bwhen\b|\bhow long\b|\bwhat (?:year|month|date|day|time)\b|"
    r"\bhow many (?:days|weeks|months|years)\b|\bwhich (?:year|month|day)\b",
    re.IGNORECASE,
)


def is_when_query(query: str) -> bool:
    """Whether a query asks for a time (the answer is a turn that mentions one)."""
    return _WHEN_RE.search(query) is not None


_MONTHS: Final[dict[str, int]] = {
    **{name.lower(): i for i, name in enumerate(calendar.month_name) if name},
    **{name.lower(): i for i, name in enumerate(calendar.month_abbr) if name},
    "sept": 9,
}
_MON: Final = (
    r"(january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?"
)
_DAY: Final = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR: Final = r"((?:19|20)\d\d)"
_DATE_PATTERNS: Final = (
    (re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MON},?\s+{_YEAR}\b", re.IGNORECASE), "dmy"),
    (re.compile(rf"\b{_MON}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE), "mdy"),
    (re.compile(rf"\b{_MON},?\s+{_YEAR}\b", re.IGNORECASE), "my"),
    (re.compile(rf"\b(?:in|during|of|since|until|before|after)\s+{_YEAR}\b", re.IGNORECASE), "y"),
)
_RELATIVE: Final = (
    (re.compile(r"\byesterday\b", re.IGNORECASE), 1, 1),
    (re.compile(r"\btoday\b", re.IGNORECASE), 0, 0),
    (re.compile(r"\blast week\b", re.IGNORECASE), 14, 0),
    (re.compile(r"\bthis week\b", re.IGNORECASE), 7, 0),
    (re.compile(r"\blast month\b", re.IGNORECASE), 62, 0),
    (re.compile(r"\blast year\b", re.IGNORECASE), 730, 180),
)

#: An inclusive range of day ordinals (``date.toordinal()``) a query refers to.
DayRange = tuple[int, int]


def _month_range(year: int, month: int) -> DayRange:
    first = date(year, month, 1)
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return first.toordinal(), last.toordinal()


def query_day_ranges(query: str, now: datetime | None = None) -> list[DayRange]:
    """Day ranges named by explicit dates in ``query`` ("on 8 May, 2023", "in June 2022",
    "in 2023"), plus relative ones ("yesterday", "last week") when the query time is known.
    """
    ranges: list[DayRange] = []
    taken: list[tuple[int, int]] = []
    for pattern, kind in _DATE_PATTERNS:
        for m in pattern.finditer(query):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            g = m.groups()
            try:
                if kind == "dmy":
                    day = date(int(g[2]), _MONTHS[g[1].lower()], int(g[0])).toordinal()
                    ranges.append((day, day))
                elif kind == "mdy":
                    day = date(int(g[2]), _MONTHS[g[0].lower()], int(g[1])).toordinal()
                    ranges.append((day, day))
                elif kind == "my":
                    ranges.append(_month_range(int(g[1]), _MONTHS[g[0].lower()]))
                else:
                    year = int(g[0])
                    ranges.append((date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()))
            except (ValueError, KeyError):
                continue
            taken.append((m.start(), m.end()))
    if now is not None:
        today = (now if now.tzinfo is None else now.astimezone(UTC)).date().toordinal()
        for pattern, back, until in _RELATIVE:
            if pattern.search(query):
                ranges.append((today - back, today - until))
    return ranges


def name_pattern(name: str) -> re.Pattern[str] | None:
    """A whole-word, case-insensitive matcher for a participant's name in a query.

    Names that are empty, one letter or plain function words ("I", "you", "me") give
    ``None``: they would fire on almost any query.
    """
    name = name.strip()
    if len(name) < 2 or name.lower() in STOPWORDS:
        return None
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
