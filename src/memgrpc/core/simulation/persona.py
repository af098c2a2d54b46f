"""The simulated user's script, built from its persona (deterministic; no model needed).

The background's sentences become facts in the first person ("Alex works as a nurse in Leeds."
-> "I work as a nurse in Leeds."), each with a topic key and the words that identify it. Early
sessions tell the facts, one a turn; one fact that names a place or organisation changes later
("I live in Lisbon now"); the other turns ask recall questions about facts told in EARLIER
sessions ("Do you remember where I said I live?"), each with the answer it expects, so the judge
measures recall against ground truth instead of guessing. The script is what is said; with an
LLM configured, persona_llm.py has the LLM phrase each turn in the persona's voice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from memgrpc.core.simulation.model import Persona

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_WORD = re.compile(r"[^\W_][\w'-]*")  # any script's letters: "Lucía" is one word, not "luc"
# a place is what follows "in" / "at" ("lives with ... Bess" names a dog, "moved from Osaka" an
# origin: neither is where the user is)
_PLACE = re.compile(r"\b(?:in|at)\s+([^\W\d_][\w'-]*)")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "from",
        "by",
        "as",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "i",
        "my",
        "me",
        "mine",
        "i'm",
        "i've",
        "it",
        "its",
        "this",
        "that",
        "there",
        "here",
        "very",
        "really",
        "just",
        "also",
        "now",
        "then",
        "so",
        "who",
        "which",
        "what",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "not",
        "no",
        "yes",
        "into",
        "about",
        "over",
        "after",
        "before",
        "than",
        "since",
        "named",
        "called",
        "work",
        "works",
        "working",
        "live",
        "lives",
        "living",
        "study",
        "studies",
        "studying",
        "love",
        "loves",
        "like",
        "likes",
        "enjoy",
        "enjoys",
        "play",
        "plays",
        "moved",
        "move",
        "based",
    ]
)
# topic key -> (pattern on the first-person sentence, the recall question)
_TOPICS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("work", re.compile(r"\b(work|job|employed)\b"), "Do you remember where I said I work?"),
    ("live", re.compile(r"\b(live|moved|based)\b"), "Do you remember where I said I live?"),
    ("study", re.compile(r"\b(study|student|studying)\b"), "Do you remember what I study?"),
    ("pet", re.compile(r"\b(dog|cat|pet|puppy|kitten|parrot)\b"), "Do you remember my pet?"),
    (
        "family",
        re.compile(r"\b(married|wife|husband|partner|sister|brother|daughter|son)\b"),
        "Do you remember what I told you about my family?",
    ),
    ("age", re.compile(r"\b\d+ years? old\b"), "Do you remember how old I am?"),
    (
        "hobby",
        re.compile(r"\b(love|like|enjoy|play|hobby|hobbies)\b"),
        "Do you remember what I said I enjoy doing?",
    ),
)
_IRREGULAR = {"is": "am", "has": "have", "was": "was", "does": "do", "goes": "go"}
_THIRD = frozenset({"she", "he", "they"})
_POSSESSIVE = {"her": "my", "his": "my", "their": "my", "herself": "myself", "himself": "myself"}
# places a changed fact moves to (the persona decides which fact changes and when)
_ELSEWHERE = ("Lisbon", "Osaka", "Tallinn", "Valparaiso", "Hobart", "Montreal", "Nairobi", "Bergen")


@dataclass(frozen=True)
class Fact:
    key: str
    text: str  # first person, as the user says it
    question: str
    # the words a reply must hold to recall it: its names and numbers, else its content words
    marks: tuple[str, ...]


@dataclass(frozen=True)
class UserTurn:
    intent: str  # tell, change, probe, chat
    text: str
    facts: tuple[dict[str, str], ...] = ()
    probe: dict[str, str] | None = None


@dataclass
class Script:
    sessions: list[list[UserTurn]] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)


def words(text: str) -> list[str]:
    return [w.lower().removesuffix("'s") for w in _WORD.findall(text)]


def _verb(word: str) -> str:
    low = word.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low.endswith("ies") and len(low) > 4:
        return low[:-3] + "y"
    if low.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return low[:-2]
    if low.endswith("s") and not low.endswith("ss"):
        return low[:-1]
    return low


def first_person(sentence: str, name: str) -> str:
    """'Alex works in Leeds' / 'She has a dog' -> 'I work in Leeds' / 'I have a dog'."""
    toks = sentence.split()
    if not toks:
        return sentence
    first_names = {n.lower() for n in name.split()[:1]}
    lead = toks[0].lower().strip(",")
    if lead in first_names | _THIRD and len(toks) > 1:
        toks = ["I", _verb(toks[1]), *toks[2:]]
    elif lead in _POSSESSIVE or lead.removesuffix("'s") in first_names:
        toks = ["My", *toks[1:]]
    out = []
    for i, t in enumerate(toks):
        bare = t.lower().strip(".,!?;")
        if i > 0 and bare in _POSSESSIVE:
            t = t.lower().replace(bare, _POSSESSIVE[bare])
        elif i > 0 and bare in _THIRD:
            t = t.lower().replace(bare, "I")
        out.append(t)
    text = " ".join(out).rstrip(" .;")
    return text + "."


def _marks(text: str) -> tuple[str, ...]:
    toks = _WORD.findall(text)
    names = [t for i, t in enumerate(toks) if i > 0 and (t[0].isupper() or t[0].isdigit())]
    names = [n for n in names if n.lower() not in _STOP and n != "I"]
    if names:
        return tuple(dict.fromkeys(w.lower().removesuffix("'s") for w in names))
    content = [w for w in words(text) if w not in _STOP and len(w) > 2]
    return tuple(dict.fromkeys(content[-3:]))


def parse_facts(p: Persona) -> list[Fact]:
    """One fact per background sentence that says something (topic key, recall question)."""
    out: list[Fact] = []
    used: set[str] = set()
    for raw in _SENTENCE.split(p.background.strip()):
        raw = raw.strip()
        if len(words(raw)) < 2:
            continue
        text = first_person(raw, p.name)
        low = text.lower()
        key, question = "", ""
        for k, pat, q in _TOPICS:
            if pat.search(low) and k not in used:
                key, question = k, q
                break
        marks = _marks(text)
        if not marks:
            continue
        if not key:
            key = f"fact{len(out) + 1}"
            question = f"Do you remember what I told you about {marks[-1]}?"
        used.add(key)
        out.append(Fact(key, text, question, marks))
    return out


def _seed(p: Persona) -> int:
    return int(hashlib.sha256(f"{p.name}\x1f{p.background}".encode()).hexdigest()[:8], 16)


def _change(p: Persona, facts: list[Fact]) -> tuple[Fact, Fact] | None:
    """A later version of a fact that names a place (where the user lives or works)."""
    taken = {w.lower() for w in _WORD.findall(p.background)}
    options = [c for c in _ELSEWHERE if c.lower() not in taken]
    for key in ("live", "work"):
        old = next((f for f in facts if f.key == key), None)
        if old is None:
            continue
        names = [t for t in _PLACE.findall(old.text) if t[0].isupper()]
        if not names or not options:
            continue
        place = options[_seed(p) % len(options)]
        text = re.sub(rf"\b{re.escape(names[-1])}\b", place, old.text)
        said = f"Some news: things changed for me. {text.rstrip('.')} now."
        return old, Fact(key, said, old.question, (place.lower(),))
    return None


def _style(p: Persona, text: str, first: bool) -> str:
    if not first:
        return text
    style = p.communication_style.lower()
    if "formal" in style:
        return f"Good day. {text}"
    if "casual" in style or "friendly" in style:
        return f"Hey! {text}"
    return text


def build_script(p: Persona, sessions: int, turns: int) -> Script:
    """Who says what in each session (see the module docstring for the order)."""
    facts = parse_facts(p)
    script = Script([[] for _ in range(sessions)], facts)
    pending = list(facts)
    told: dict[str, tuple[int, Fact]] = {}  # key -> (session told, latest version)
    intro_sessions = max(1, sessions - 1)
    change = _change(p, facts) if sessions >= 2 else None
    change_at = sessions - 2 if sessions >= 3 else sessions - 1
    probe_cycle = 0
    for s in range(sessions):
        plan = script.sessions[s]
        if s < intro_sessions:
            limit = turns if sessions > 1 else max(1, turns - 1)
            while pending and len(plan) < limit:
                f = pending.pop(0)
                told[f.key] = (s, f)
                plan.append(UserTurn("tell", f.text, ({"key": f.key, "value": f.text},)))
        if change is not None and s == change_at and change[0].key in told and len(plan) < turns:
            old, new = change
            told[new.key] = (s, new)
            stale = ",".join(m for m in old.marks if m not in set(words(new.text)))
            plan.append(
                UserTurn(
                    "change", new.text, ({"key": new.key, "value": new.text, "replaces": stale},)
                )
            )
        while len(plan) < turns:
            earlier = [f for k, (at, f) in told.items() if at < s or sessions == 1]
            if not earlier:
                trait = (
                    p.personality_traits[len(plan) % len(p.personality_traits)]
                    if (p.personality_traits)
                    else "curious"
                )
                plan.append(UserTurn("chat", f"People say I'm {trait}. What do you make of that?"))
                continue
            f = earlier[probe_cycle % len(earlier)]
            probe_cycle += 1
            stale = ""
            if change is not None and f is change[1]:
                now_said = set(words(f.text))
                stale = ",".join(m for m in change[0].marks if m not in now_said)
            probe = {"key": f.key, "expected": ",".join(f.marks), "stale": stale}
            plan.append(UserTurn("probe", f.question, probe=probe))
        script.sessions[s] = [
            UserTurn(t.intent, _style(p, t.text, i == 0), t.facts, t.probe)
            for i, t in enumerate(plan)
        ]
    return script
