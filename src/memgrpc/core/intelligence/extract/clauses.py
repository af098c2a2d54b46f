"""A sentence cut into statements, each with who it is about: the user ("I ...", "we ...", "my
husband and I ..."), something of the user's ("my dog Rex ...", "my sister ..."), an
introduction fragment ("Jonas here, 31"), or someone else (skipped)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from memgrpc.core.intelligence.extract.lexicon import FAMILY, OTHER_PEOPLE, PETS, wordset

Subject = Literal["user", "mine", "intro", "other"]

_PARTS = re.compile(r"\s*(?:[;:()\u2013\u2014]|\s-\s|,)\s*")
_CONJ = r"(?:and|but|so|because|since|though|although|while|as|plus|cause|then)"
_FIRST = re.compile(
    r"(?i)^(?:i|i'm|im|i've|i'd|i'll|we|we're|we've|we'd|we'll|(?:my|our) [\w-]+ and i|"
    r"me and my [\w-]+)\b"
)
_MINE = re.compile(r"(?i)^(?:my|our)\s+")
_OTHER = re.compile(r"(?i)^(?:he|she|they|it|it's|its|there|this|that|these|those|you|your)\b")
_CONJ_SUBJECT = re.compile(rf"(?i)\s+{_CONJ}\s+(?=(?:i|i'm|i've|i'd|i'll|we|we're|we've|my|our)\b)")
_WITH_ME = re.compile(r"(?i)\b((?:my|our) [\w-]+) and (i|me)\b")
_LEADING_CONJ = re.compile(
    rf"(?i)^(?:{_CONJ}|also|oh|well|yeah|yes|no|ok|okay|hi|hey|hello|hiya|heya|greetings|"
    r"good (?:morning|afternoon|evening))\b[ ,!]*"
)
_INTRO = re.compile(
    r"^(?:(?i:hi|hey|hello|heya|hiya)\b[ ,!.]*)?[A-Z][\w'-]+(?: [A-Z][\w'-]+)? here"
    r"(?=\s*(?:[,.!;:-]|$))"
)
# "and just started running": a verb phrase sharing the subject before it
_AND_VERB = re.compile(
    r"(?i)\s+and\s+(?=(?:(?:just|also|recently|now|still|then|really|finally)\s+)*"
    r"(?:started|start|play|love|like|enjoy|hate|have|work|live|go|do|teach|speak|moved|"
    r"became|joined|left|quit|got|bought|am|own|drive|run|cook|volunteer|study|studied|"
    r"coach|sing|write|became|switched|stopped|gave|took|adopted|\w+ed)\b)"
)


@dataclass(frozen=True)
class Statement:
    text: str
    subject: Subject
    # for "mine": the thing of the user's it is about ("dog", "best friend", "favourite")
    owner_noun: str = ""
    # a short opener before the subject ("Last year", "Every morning")
    lead_in: str = ""


def statements(sentence: str) -> list[Statement]:
    """The sentence's statements in order; parts with no subject continue the one before."""
    parts: list[str] = []
    for chunk in _PARTS.split(sentence.strip(" .!")):
        # "my husband and I" is one subject, not two clauses
        chunk = _WITH_ME.sub(lambda m: m.group(1) + " \0and " + m.group(2), chunk)
        parts.extend(p.replace("\0", "") for p in _CONJ_SUBJECT.split(chunk) if p.strip())
    clauses: list[str] = []
    for part in parts:
        bare = _LEADING_CONJ.sub("", part.strip())
        if not bare:
            continue
        starts = _FIRST.match(bare) or _MINE.match(bare) or _OTHER.match(bare)
        if clauses and not starts and not _lead_in(bare)[1]:
            clauses[-1] += ", " + part.strip()
        else:
            clauses.append(bare)
    out: list[Statement] = []
    for clause in clauses:
        st = _classify(clause)
        if st.subject == "user":
            out.extend(_split_and(st))
        else:
            out.append(st)
    return out


def _lead_in(clause: str) -> tuple[str, str]:
    """('Last year', 'I moved to Lisbon') for a short opener before the user as subject."""
    m = re.match(r"(?i)^((?:[\w']+ ){1,4}?)(?=(?:i|i'm|i've|we|we're)\b)", clause)
    if not m:
        return "", ""
    lead = m.group(1).strip()
    lw = lead.lower().split()
    if any(w in FAMILY or w in OTHER_PEOPLE or w in _NOT_LEAD for w in lw):
        return "", ""
    return lead, clause[m.end() :]


_NOT_LEAD = wordset(
    "he she they you it that which who what if when whether wish think said says told"
)


def _classify(clause: str) -> Statement:
    if _FIRST.match(clause):
        return Statement(clause, "user")
    if m := _MINE.match(clause):
        return Statement(clause, "mine", owner_noun=_owner(clause[m.end() :]))
    if _INTRO.match(clause):
        return Statement(clause, "intro")
    lead, rest = _lead_in(clause)
    if rest:
        return Statement(rest, "user", lead_in=lead)
    return Statement(clause, "other")


def _owner(rest: str) -> str:
    """The noun a "my ..." clause is about: 'best friend's name is' -> 'best friend'."""
    ws = re.findall(r"[\w-]+", rest.lower())[:3]
    for i, w in enumerate(ws):
        base = w[:-2] if w.endswith("'s") else w
        if base in FAMILY or base in OTHER_PEOPLE or base in PETS or base.replace("-", " ") in PETS:
            return " ".join([*ws[:i], base])
    return ws[0] if ws else ""


def _split_and(st: Statement) -> list[Statement]:
    pieces = _AND_VERB.split(st.text)
    if len(pieces) == 1:
        return [st]
    out = [Statement(pieces[0], "user", lead_in=st.lead_in)]
    out += [Statement("I " + p.strip(), "user") for p in pieces[1:] if p.strip()]
    return out
