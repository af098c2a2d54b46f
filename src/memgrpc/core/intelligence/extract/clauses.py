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
    r"good (?:morning|afternoon|evening)|yo|btw|fyi|lol|haha|anyway|anyways|update|quick update|"
    r"ps|news|fun fact)\b[ ,!]*"
)
_INTRO = re.compile(
    r"^(?:(?i:hi|hey|hello|heya|hiya|yo)\b[ ,!.-]*)?[A-Z][\w'-]+(?: [A-Z][\w'-]+)? here"
    r"(?=\s*(?:[,.!;:-]|$))"
)
# "and just started running": a verb phrase sharing the subject before it
_AND_VERB = re.compile(
    r"(?i)\s+and\s+(?=(?:(?:just|also|recently|now|still|then|really|finally)\s+)*"
    r"(?:started|start|play|love|like|enjoy|hate|have|work|live|go|do|teach|speak|moved|spend|"
    r"became|joined|left|quit|got|bought|am|own|drive|run|cook|volunteer|study|studied|"
    r"coach|sing|write|became|switched|stopped|gave|took|adopted|\w+ed)\b)"
)


_ADVS = r"(?:(?:just|also|recently|finally|actually|really|still|only|now|totally|absolutely|" \
    r"honestly|kinda|kind of|seriously|literally|officially|basically)\s+)*"  # fmt: skip
# A clause with the user left out, casual style ("turned 38 last week", "been a nurse for ten
# years", "heading to Rome on Friday", "not a fan of jazz"), by what it opens with, and the
# subject it drops. Read only at the start of a sentence or after a clause about the user, so
# "my sister moved to Oslo, started a new job" stays hers.
_DROP_I = (
    r"(?:(?:turned|moved|relocated|started|quit|left (?=(?-i:[A-Z])|my |the \w+ job)|"
    r"got (?:a|an|my|married|engaged|divorced|back|"
    r"into|rid|laid off|fired|let go|sacked|promoted|made redundant)|bought|sold|adopted|joined|"
    r"became|switched|finished|graduated|retired|gave up|"
    r"stopped|took up|picked up|signed up|went (?:vegan|vegetarian|back|freelance|part-time)|"
    r"lost my|landed|resigned|began|grew up|was born|married)\b|"
    r"(?:live (?!in (?:the (?:moment|present|past)|denial|fear|hope))(?:in|near|outside|with|by|"
    r"on|alone|abroad)|work (?:as|at|for|in|from|nights|"
    r"remotely|part-time|full-time)|spend (?:most|my|every|a lot|all|half|too much|weekends|"
    r"evenings)|(?:love|adore|hate|enjoy|prefer|detest|loathe) (?!it\b|that\b|this\b|you\b|"
    r"your\b|ya\b|u\b)|can't (?:stand|bear|live without)|cannot stand|don't (?:own|have|drink|"
    r"smoke|eat|like|really|care for|enjoy)|own (?:a|an|two|three|my)|speak (?:fluent|\w+ish|"
    r"\w+ and)|teach (?:at|in|\w+ at)))"
)
_DROP_IVE = r"been (?:a|an|\w+ing|vegan|vegetarian|married|sober|clean|single|divorced|retired)\b"
# a trip names a place or a time ("heading to Rome", "off to the coast next week")
_TRIP = (
    r"(?:heading|flying|off|going|travell?ing|driving|moving|jetting)(?: (?:out|over|back|down|"
    r"up|off|away))? to\b(?=.*(?:\b(?-i:[A-Z])|\b(?:next|tomorrow|tonight|weekend|on (?:mon|"
    r"tues|wednes|thurs|fri|satur|sun)day|in (?:a|two|three) (?:days|weeks))))"
)
_DROP_IM = (
    rf"(?:{_TRIP}|working (?:as|at|for|in|on|from)|living (?:in|near|with)|studying|based in|"
    r"originally from|(?:not (?:a |really a )?|a )(?:really |huge |big )?fan of|(?:not|really) "
    r"(?:into|big on|keen on)|(?:big|huge) fan of)\b"
)
_DROPPED = [
    (re.compile(rf"(?i)^{_ADVS}{_DROP_I}"), "I "),
    (re.compile(rf"(?i)^{_ADVS}{_DROP_IVE}"), "I've "),
    (re.compile(rf"(?i)^{_ADVS}{_DROP_IM}"), "I'm "),
]


def _with_subject(part: str) -> str:
    """The part with the subject it dropped put back ("I turned 38 last week"), or ""."""
    for pattern, subject in _DROPPED:
        if pattern.match(part):
            return subject + part[:1].lower() + part[1:]
    return ""


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
        prev = _classify(clauses[-1]).subject if clauses else ""
        if not starts and prev in ("", "user", "intro") and (full := _with_subject(bare)):
            clauses.append(full)
        elif clauses and not starts and not _lead_in(bare)[1]:
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


# "When I travel I'd rather take the train": a time or reason clause of the user's own, then
# the user's main clause without a comma between them
_SUBORDINATE = re.compile(
    r"(?i)^(?:when|whenever|once|every time|any time|anytime|after|before|now that|ever since)"
    r"\s+(?:i|i'm|we|we're|my \w+ and i)\b"
)
_MAIN_SUBJECT = re.compile(r"(?i)\s(?=(?:i|i'm|i'd|i've|i'll|we|we're|we'd|we've)\b)")


def _subordinate(clause: str) -> Statement | None:
    m = _SUBORDINATE.match(clause)
    if not m:
        return None
    for s in _MAIN_SUBJECT.finditer(clause, m.end()):
        # the time clause has a verb of its own before the main subject ("When I travel I ...")
        if clause[m.end() : s.start()].strip():
            return Statement(clause[s.end() :], "user", lead_in=clause[: s.start()])
    return None


def _classify(clause: str) -> Statement:
    if _FIRST.match(clause):
        return Statement(clause, "user")
    if sub := _subordinate(clause):
        return sub
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
