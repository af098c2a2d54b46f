"""The offline extractor: deterministic rules over the user's own statements.

Only the user's messages count (role "user", and "action": third-person records of what the
user did). Each sentence that is a question, small talk, a wish or a conditional is skipped;
the rest is cut into statements (clauses.py), and each statement about the user either fills
profile slots (slots.py) or is filed as a preference, pet, relative, plan, hobby, routine,
habit or plain fact (kinds.py). Statements about other people become facts about them, never
the user's slots.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract import kinds
from memgrpc.core.intelligence.extract.clauses import Statement, statements
from memgrpc.core.intelligence.extract.kinds import Kind
from memgrpc.core.intelligence.extract.lexicon import FAMILY, NOT_NAMES, OTHER_PEOPLE, PETS
from memgrpc.core.intelligence.extract.slots import (
    Hit,
    age_hits,
    allergy_hits,
    canonical_value,
    diet_hits,
    employer_hits,
    job_ended,
    language_hits,
    left_employer_hits,
    location_hits,
    name_hits,
    occupation_hits,
    relationship_hits,
)
from memgrpc.core.intelligence.extract.text import (
    before_question,
    factual_part,
    is_question,
    is_small_talk,
    sentences,
    third_person,
)
from memgrpc.core.intelligence.facts import Fact, KnownFact

USER_ROLES = ("user", "action")
# "You can call me Bea", "Everyone calls me Jo": a name, whoever the subject is
_CALL_ME = re.compile(r"(?i)\bcalls? me\s+[A-Za-z]|^(?:the )?name's\s")
_IS_MY = re.compile(r"(?i)^[\w' -]{1,40}? (?:is|are) (?:my|our) ")
_HERE_IN = re.compile(r"(?i)^(?:(?:living|staying|based) )?(?:right |over |out )?here in\s")

_CATEGORY = {
    "name": "personal_info", "age": "personal_info", "location": "personal_info",
    "hometown": "personal_info", "occupation": "work", "employer": "work", "diet": "health",
    "relationship_status": "relationships", "allergies": "health", "languages": "education",
}  # fmt: skip
_IMPORTANCE = {
    "name": 0.9, "age": 0.7, "location": 0.8, "hometown": 0.6, "occupation": 0.8,
    "employer": 0.7, "diet": 0.8, "relationship_status": 0.7, "allergies": 0.9,
    "languages": 0.6,
}  # fmt: skip
_TEMPLATE = {
    "name": "User's name is {}.", "age": "User is {} years old.", "location": "User lives in {}.",
    "hometown": "User is originally from {}.", "occupation": "User works as {}.",
    "employer": "User works at {}.", "diet": "User is {}.", "relationship_status": "User is {}.",
    "allergies": "User is allergic to {}.", "languages": "User speaks {}.",
}  # fmt: skip
_TOPIC = {"diet": "diet", "allergies": "health", "location": "location"}
_TRIVIAL = re.compile(
    r"(?i)^(?:i|we)(?:'m|'ll|'d|'ve| am| will| would| just| really| totally| do| don't| can't)?"
    r"\s*(?:(?:fairly|pretty|quite|so|very|not|really|totally|just) )?(?:think|guess|mean|know|"
    r"see|agree|suppose|hope|wonder|wondered|was wondering|understand|believe|feel|appreciate|"
    r"need|needed|want|wanted|forgot|remember|get it|got it|"
    r"bet|check|try|say|see|ask|asked|was asking|told you|said|not sure|sure|glad|happy|sorry|"
    r"fine|good|ok|okay|great|back|here|done|ready|curious|afraid|thinking|trying|going to "
    r"check|have a question|have another question|can't wait|love it|like it|like that|"
    r"love that|miss you)\b"
)
_TRANSIENT = re.compile(
    r"(?i)^(?:i'm|i am|im)\s+(?:so |very |really |a bit |quite |pretty |super |kinda |kind of |"
    r"a little |feeling )*(?:tired|bored|hungry|sleepy|excited|confused|sad|nervous|worried|"
    r"stressed|exhausted|lost|late|thirsty|cold|hot|sick|annoyed|frustrated|impressed|"
    r"surprised|grateful|thankful|relieved|stuck|off(?! to\b)|out|in|on it|at work|at home)\b"
)


class RulesExtractor:
    """Deterministic and offline: the same messages always give the same facts."""

    @property
    def name(self) -> str:
        return "rules"

    async def extract(self, messages: Sequence[Message], known: Sequence[KnownFact]) -> list[Fact]:
        return extract_facts(messages)


def extract_facts(messages: Iterable[Message]) -> list[Fact]:
    facts: list[Fact] = []
    for msg in messages:
        if msg.role not in USER_ROLES:
            continue
        text = _first_person(msg.content) if msg.role == "action" else msg.content
        ended = False
        for i, sentence in enumerate(_joined_intro(sentences(text))):
            out = sentence_facts(sentence, (msg.id,), first=i < 2)
            # "Quit the café job, I'm a paralegal now", "I got laid off. Now I'm a nurse.": the
            # occupation said with or after the end of the old job is a change
            ended = ended or _ends_job(sentence)
            if ended:
                out = [replace(f, change=True) if f.slot in ("occupation", "employer") else f
                       for f in out]  # fmt: skip
            facts.extend(out)
    return _merge(_settle_from(facts))


# an introduction alone in its sentence ("hey, Ingrid here!") opens the list that follows
_INTRO_ONLY = re.compile(
    r"^(?:(?i:hi|hey|hello|heya|hiya|yo)\b[ ,!.-]*)?[A-Z][\w'-]+(?: [A-Z][\w'-]+)? here[ .!]*$"
)


def _ends_job(sentence: str) -> bool:
    kept = factual_part(before_question(sentence) if is_question(sentence) else sentence)
    said = ". ".join(st.text for st in statements(kept) if st.subject == "user") if kept else ""
    return job_ended(said)


def _joined_intro(parts: list[str]) -> list[str]:
    out: list[str] = []
    for s in parts:
        if out and _INTRO_ONLY.match(out[-1]):
            out[-1] = out[-1].rstrip(" .!") + ", " + s
        else:
            out.append(s)
    return out


def extract_profile(text: str) -> Fact | None:
    """The profile fact one text states ("i'm from kuching" -> location "Kuching"), or None."""
    for sentence in sentences(text):
        for fact in sentence_facts(sentence, (), first=True):
            if fact.slot:
                return _settle_from([fact])[0]
    return None


def sentence_facts(sentence: str, ids: tuple[str, ...], *, first: bool = False) -> list[Fact]:
    if is_question(sentence):
        sentence = before_question(sentence)
    if not sentence or is_small_talk(sentence):
        return []
    kept = factual_part(sentence)
    if not kept:
        return []
    lower_ok = not any(c.isupper() for c in kept)
    sts = statements(kept)
    out: list[Fact] = []
    # over the user's own clauses, with the subject a casual one dropped put back
    said = ". ".join(st.text for st in sts if st.subject == "user")
    left = left_employer_hits(said) if said else []
    out.extend(_slot_facts(Statement(kept, "user"), ids, left) if left else [])
    for st in sts:
        if st.subject == "other":
            if _CALL_ME.search(st.text):
                out.extend(_slot_facts(st, ids, name_hits(st.text, lower_ok)))
            elif _HERE_IN.match(st.text):
                # "Here in Cork it rains every day": the user is in Cork
                out.extend(_slot_facts(st, ids, location_hits(st.text, lower_ok)))
            elif m := _IS_MY.search(st.text):
                # "Biscuit is our labrador", "Jazz is my favourite kind of music"
                owner = statements(st.text[m.end() - 3 :])
                noun = owner[0].owner_noun if owner else ""
                kind = kinds.pets(st.text, noun) or kinds.relative(st.text, noun)
                kind = kind or kinds.preference(st.text)
                if kind:
                    content = re.sub(r"\btheir\b", "User's", kinds.content_of(st.text), count=1)
                    out.append(_fact(content, ids, kind, st.text))
            elif (kind := kinds.preference(st.text)) and kind.slot:
                # "Cold weather isn't my thing", "Board games are my jam"
                content = re.sub(r"\btheir\b", "User's", kinds.content_of(st.text), count=1)
                out.append(_fact(content, ids, kind, st.text))
            continue
        out.extend(_statement_facts(st, ids, lower_ok, intro=first and st.subject == "intro"))
    return _within_sentence(out, [h.value for h in left])


def _within_sentence(facts: list[Fact], left: list[str]) -> list[Fact]:
    """What one statement of a sentence tells about another: "I left Acme and now I'm a
    baker" changes the occupation; "I used to smoke but I quit" quits smoking."""
    topics = [f.topic for f in facts if f.topic]
    out = []
    for f in facts:
        if not f.slot and any(org in f.content for org in left):
            continue  # "I'm no longer with Acme" is the employer fact already
        if left and f.slot == "occupation" and not f.change:
            f = replace(f, change=True)
        elif not f.topic and not f.slot and topics and f.change:
            f = replace(f, topic=topics[0], negated=True)
        out.append(f)
    return out


def _statement_facts(
    st: Statement, ids: tuple[str, ...], lower_ok: bool, intro: bool
) -> list[Fact]:
    text = st.text
    # "my sister's nut allergy" is hers: slots come from the user's own things only
    someone = (
        st.subject == "mine"
        and st.owner_noun.split()[-1:] != []
        and (st.owner_noun.split()[-1] in FAMILY | OTHER_PEOPLE | PETS)
    )
    hits = [] if someone else _hits(text, lower_ok, intro or st.subject == "intro")
    if st.subject == "mine" and not hits and st.owner_noun not in ("favourite", "favorite"):
        # something of the user's: their pet, relative, friend, or a thing ("my flight")
        kind = kinds.pets(text, st.owner_noun) or kinds.relative(text, st.owner_noun)
        if kind is None:
            kind = kinds.preference(text) or kinds.activity(text) or kinds.other(text)
        return [_fact(kinds.content_of(text), ids, _owning(kind, text), text)]
    if kinds._FUTURE.search(text):  # a plan is not a new home or job
        hits = [h for h in hits if h.slot in ("name", "age")]
    if hits:
        return _slot_facts(st, ids, hits)
    if st.subject == "intro" or _TRANSIENT.match(text) or _TRIVIAL.match(text):
        return []
    liked = kinds.preference(text)
    kind = (
        (liked if liked and liked.slot else None)  # "I love coffee" is a taste, not a habit
        or kinds.habit(text)
        or kinds.pets(text, "")
        or kinds.family_owned(text)
        or liked
        or kinds.activity(text)
        or kinds.other(text)
    )
    kind = _owning(kind, text)
    if not kind.slot and not kind.categories and len(text.split()) < 4:
        return []
    if not kind.change and kinds.SWITCH.search(text):
        kind.change = True
    return [_fact(kinds.content_of(text, st.lead_in), ids, kind, text)]


def _owning(kind: Kind, text: str) -> Kind:
    """A statement that says the user owns a thing, or not, is on that thing's topic: "I don't
    own a car" then "my car is in the shop" contradict each other."""
    if kind.topic or kind.slot in ("pets", "family"):
        return kind
    owned = kinds.possession(text)
    if owned is None:
        return kind
    return replace(
        kind,
        topic=owned.topic,
        negated=owned.negated,
        change=kind.change or owned.change,
        categories=kind.categories or owned.categories,
        importance=max(kind.importance, owned.importance),
    )


def _hits(text: str, lower_ok: bool, intro: bool) -> list[Hit]:
    named = name_hits(text, lower_ok)
    return [
        *named,
        *age_hits(text, intro=intro or bool(named)),
        *location_hits(text, lower_ok, intro),
        *occupation_hits(text),
        *employer_hits(text),
        *diet_hits(text),
        *relationship_hits(text),
        *language_hits(text),
        *allergy_hits(text),
    ]


def _slot_facts(st: Statement, ids: tuple[str, ...], hits: list[Hit]) -> list[Fact]:
    own = kinds.content_of(st.text, st.lead_in)
    single = (
        len(hits) == 1
        and not hits[0].fragment
        and hits[0].slot not in ("name", "age")
        and st.subject != "other"
    )
    out = []
    for h in hits:
        value = canonical_value("location" if h.slot == "from" else h.slot, h.value)
        if h.negated and h.slot == "employer":
            content = f"User no longer works at {value}."
        elif single:
            content = own
        elif h.slot == "occupation":
            article = "" if value in ("retired", "unemployed", "student") else _a(value)
            content = f"User works as {article}{value}." if article else f"User is {value}."
        else:
            content = _TEMPLATE.get(h.slot, "User: {}.").format(value)
        slot = h.slot
        entities = _entities(content)
        if slot in ("name", "location", "hometown", "employer", "from"):
            entities = _uniq([value.lower(), *entities])
        out.append(
            Fact(
                content=content,
                type="fact",
                source_message_ids=ids,
                slot=slot,
                value=value,
                categories=(_CATEGORY.get(slot, "personal_info"),),
                importance=_IMPORTANCE.get(slot, 0.7),
                entities=tuple(entities),
                topic=_TOPIC.get(slot, ""),
                change=h.change,
                negated=h.negated,
            )
        )
    return out


def _a(value: str) -> str:
    return "an " if value[:1] in "aeiou" else "a "


def _fact(content: str, ids: tuple[str, ...], kind: Kind, source: str) -> Fact:
    value = canonical_value(kind.slot, kind.value) if kind.slot else ""
    entities = _entities(source)
    if kind.slot in ("pets", "family") and "(" in value:
        entities = _uniq([value.split(" (")[0].lower(), *entities])
    return Fact(
        content=content,
        type=kind.type,
        source_message_ids=ids,
        slot=kind.slot if value else "",
        value=value,
        categories=tuple(kind.categories),
        importance=kind.importance,
        entities=tuple(entities),
        topic=kind.topic,
        change=kind.change,
        negated=kind.negated,
    )


_CAP = re.compile(r"[A-Z][\w'-]*(?:\s+(?:de |da |van |von |del |la |of )?[A-Z][\w'-]*)*")


def _entities(text: str) -> list[str]:
    """Proper names in a statement, lowercased: capitalised words past its first."""
    out: list[str] = []
    for m in _CAP.finditer(text):
        name = re.sub(r"'s$", "", m.group())
        if m.start() == 0 and name.split()[0].lower() in NOT_NAMES:
            continue
        if name.split()[0] in _NOT_ENTITIES or name.lower() in NOT_NAMES:
            continue
        out.append(name.lower())
    return _uniq(out)


_NOT_ENTITIES = frozenset(("I", "I'm", "I've", "I'd", "I'll", "User", "User's"))


def _uniq(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _settle_from(facts: list[Fact]) -> list[Fact]:
    """Plain "I'm from X" is where the user lives unless they also said where they live: then
    it is where they come from."""
    lives = any(f.slot == "location" for f in facts)
    out = []
    for f in facts:
        if f.slot == "from":
            slot = "hometown" if lives else "location"
            content = (_TEMPLATE["hometown"] if lives else "User is from {}.").format(f.value)
            f = Fact(**{**f.__dict__, "slot": slot, "content": content,
                        "importance": _IMPORTANCE[slot]})  # fmt: skip
        out.append(f)
    return out


def _merge(facts: list[Fact]) -> list[Fact]:
    """One fact per slot value (or per content), citing every message that stated it."""
    by_key: dict[tuple[str, str], Fact] = {}
    for f in facts:
        key = (f.slot, f.value.lower()) if f.slot else ("", f.content.lower())
        if key in by_key:
            old = by_key[key]
            ids = tuple(dict.fromkeys(old.source_message_ids + f.source_message_ids))
            by_key[key] = Fact(**{**old.__dict__, "source_message_ids": ids})
        else:
            by_key[key] = f
    return list(by_key.values())


_ACTION_SUBJECT = re.compile(r"(?i)^(?:the )?user(?:'s)?\b")


def _first_person(action: str) -> str:
    """'User switched the theme to dark' -> 'I switched the theme to dark' (actions are written
    in the third person; the rules read the first)."""
    out = []
    for sentence in sentences(action):
        m = _ACTION_SUBJECT.match(sentence)
        if not m:
            out.append(sentence)
            continue
        if m.group().lower().endswith("'s"):
            out.append("My" + sentence[m.end() :])
            continue
        rest = sentence[m.end() :].lstrip()
        verb, _, tail = rest.partition(" ")
        out.append(f"I {_base(verb)} {tail}".strip())
    return " ".join(s if s.endswith((".", "!", "?")) else s + "." for s in out)


def _base(verb: str) -> str:
    low = verb.lower()
    irregular = {"is": "am", "has": "have", "does": "do", "goes": "go"}
    if low in irregular:
        return irregular[low]
    if low.endswith("ies") and len(low) > 4:
        return verb[:-3] + "y"
    if re.search(r"(?:ss|sh|ch|x|z|o)es$", low):
        return verb[:-2]
    if low.endswith("s") and not low.endswith("ss"):
        return verb[:-1]
    return verb


__all__ = ["RulesExtractor", "extract_facts", "extract_profile", "third_person"]
