"""What a statement about the user is, when it fills no single profile slot: a preference,
a pet, a relative, a plan, a routine, a hobby, a habit, a possession, or a plain fact; and the
list slot, topic and categories that go with it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memgrpc.core.intelligence.extract.lexicon import (
    CALENDAR,
    CONDITIONS,
    DIET_FOODS,
    FAMILY,
    HOBBIES,
    OTHER_PEOPLE,
    PET_KIND,
    PETS,
    PLAYABLE,
    TOPIC_WORDS,
)
from memgrpc.core.intelligence.extract.text import cap_run, third_person, words


@dataclass
class Kind:
    """How a statement is filed: type, categories and, for list slots, the slot and value."""

    type: str = "fact"
    categories: list[str] = field(default_factory=list)
    importance: float = 0.3
    slot: str = ""
    value: str = ""
    topic: str = ""
    negated: bool = False
    change: bool = False


_ADV = r"(?:(?:really|absolutely|just|also|kind of|kinda|totally|honestly|truly|genuinely|" \
    r"still|actually|do|deeply|secretly|always|sort of)\s+)*"  # fmt: skip
_SUBJ = r"^(?:i|we)(?:'m|'re| am| are)?\s+"
_LIKE = re.compile(
    rf"(?i){_SUBJ}{_ADV}(love|like|enjoy|adore|prefer|fancy|(?:am |'m )?(?:a (?:big |huge )?fan "
    rf"of|into|obsessed with|crazy about|fond of|passionate about)|can't get enough of)\s+(.+)"
)
_DISLIKE = re.compile(
    rf"(?i){_SUBJ}{_ADV}(hate|dislike|detest|loathe|despise|can't stand|cannot stand|can't bear|"
    rf"don't like|do not like|don't enjoy|do not enjoy|don't care for|(?:am |'m )?not (?:a "
    rf"(?:big )?fan of|into|keen on))\s+(.+)"
)
_FAVOURITE = re.compile(
    r"(?i)^(?:my|our) (?:all-time |absolute |current )?favou?rite ([\w -]{2,30}?) (?:is|are|"
    r"has to be|would be|was) (.+)"
)
_IS_FAVOURITE = re.compile(r"(?i)^(.+?) (?:is|are) (?:my|our) (?:all-time )?favou?rite\b")
_HABITUAL_PREF = re.compile(
    r"(?i)^(?:i|we) (?:only|always|mostly|usually) (?:drink|eat|use|wear|buy|listen to|watch|"
    r"read|order|take|choose|pick)\b|^(?:i|we) (?:stick to|swear by)\b|^(?:i|we)(?:'d| would) rather\b|"
    r"^(?:i|we) (?:switched|changed|set|turned|enabled|disabled) (?:the |my |our )?[\w -]{2,30}? "
    r"(?:to|on|off)\b"
)
_PRONOUN_OBJECT = re.compile(r"(?i)^(?:it|that|this|you|them|those|these|him|her|the idea)\b")
_CUT = re.compile(r"(?i)\s*(?:[,;.!]|\s(?:because|since|but|so that|when|although)\s).*$")

_FUTURE = re.compile(
    r"(?i)\b(?:i'm|i am|we're|we are)\s+(?:going|flying|heading|travel+ing|driving|off|spending|"
    r"visiting|leaving|moving|starting|getting|having|taking|planning|hoping|attending|"
    r"running|doing)\b.*\b(?:next|tomorrow|tonight|soon|this (?:week|weekend|month|summer|"
    r"spring|autumn|fall|winter|year)|in (?:january|february|march|april|may|june|july|august|"
    r"september|october|november|december|\w+ (?:days|weeks|months))|on (?:monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday))\b|"
    r"\b(?:i|we)(?:'ll| will| plan to| intend to| am going to|'m going to|'re going to|"
    r"'m planning|'m about to| have (?:a|an) (?:upcoming )?(?:\w+ )?(?:trip|flight|appointment|"
    r"interview|exam|wedding|holiday|vacation))\b|"
    r"\b(?:i'm|i am|we're|we are) (?:going|flying|heading|travel+ing|moving) to\b|"
    r"\b(?:i'm|i am|we're) (?:spending|visiting)\b"
)
_ROUTINE = re.compile(
    r"(?i)\b(?:every|each) (?:day|morning|evening|night|week|weekend|month|year|other|monday|"
    r"tuesday|wednesday|thursday|friday|saturday|sunday|summer|winter)\b|\b(?:daily|weekly|"
    r"nightly|monthly)\b|\b(?:once|twice|three times) a (?:day|week|month|year)\b|\bon "
    r"(?:mondays|tuesdays|wednesdays|thursdays|fridays|saturdays|sundays|weekends|weekdays)\b|"
    r"\bmost (?:mornings|evenings|days|nights|weekends)\b|\b(?:usually|always|normally)\b"
)
_NEGATION = re.compile(r"(?i)\b(?:not|never|no|don't|doesn't|didn't|do not|no longer|haven't|"
                       r"hasn't|can't|cannot|won't|without)\b")  # fmt: skip
# what says a plain fact replaces an earlier one (slot patterns read their own markers)
SWITCH = re.compile(
    r"(?i)\b(?:moved|relocated|quit|stopped|no longer|gave up|given up|switched|changed|"
    r"became|not any ?more|anymore)\b"
)
CHANGE = re.compile(
    r"(?i)\b(?:moved|relocated|quit|quitting|stopped|no longer|gave up|given up|left|"
    r"switched|became|joined|went|gone|not any ?more|anymore)\b"
)
_ENDED = re.compile(
    r"(?i)\b(?:quit|stopped|no longer|gave up|given up|not any ?more|anymore|used to)\b"
)
_NO_PETS = re.compile(
    r"(?i)\b(?:(?:don't|do not|never) (?:have|had|owned?) (?:any |a )?pets?|\bno pets\b|"
    r"not (?:a|an) (?:pet|animal) person)"
)
_POSSESS = re.compile(r"(?i)^(?:i|we) (?:have|'ve got|own|just bought|bought|drive|got) "
                      r"(?:a|an|two|three|my|the|new|an old|our)\b")  # fmt: skip
_WORK = re.compile(r"(?i)\b(?:job|office|boss|career|company|promoted|promotion|salary|shifts?|"
                   r"clients|colleagues|coworkers|work|working|hired|fired|interview)\b")  # fmt: skip
_STUDY = re.compile(r"(?i)\b(?:study|studying|studied|degree|university|college|course|exam|"
                    r"exams|graduated|graduate|phd|master's|thesis|learning|lessons?)\b")  # fmt: skip
_HEALTH = re.compile(r"(?i)\b(?:diagnosed|doctor|surgery|medication|therapy|injury|injured|"
                     r"pregnant|knee|back pain|blood pressure|diabetic|asthmatic)\b")  # fmt: skip
_DRINK_ALONE = re.compile(r"(?i)\bdrink(?:ing)?\s*(?:$|any ?more|at all|socially|alcohol)")


def _obj(text: str) -> str:
    obj = _CUT.sub("", text).strip()
    obj = re.sub(r"(?i)^to\s+", "", obj)
    return re.sub(r"[^\W\d_][\w']*", lambda w: _THEIR.get(w.group().lower(), w.group()), obj)


_THEIR = {"my": "their", "our": "their", "me": "them", "myself": "themself", "i": "they"}


def preference(text: str) -> Kind | None:
    """'I prefer aisle seats' -> likes 'aisle seats'; 'I can't stand jazz' -> dislikes."""
    if m := _FAVOURITE.match(text):
        value = _obj(m.group(2))
        return Kind("preference", ["preferences"], 0.5, "likes", value) if value else None
    if (m := _IS_FAVOURITE.match(text)) and not re.match(r"(?i)(?:it|that|this)\b", text):
        return Kind("preference", ["preferences"], 0.5, "likes", _obj(m.group(1)))
    for pattern, slot in ((_DISLIKE, "dislikes"), (_LIKE, "likes")):
        if (m := pattern.match(text)) and not _PRONOUN_OBJECT.match(m.group(2)):
            value = _obj(m.group(2))
            if not value:
                return None
            prefer = re.match(r"(?i)(.+?)\s+(?:over|to|rather than|instead of)\s+", value)
            if prefer and m.group(1).lower() == "prefer":
                value = prefer.group(1)
            if slot == "likes" and "into" in m.group(1).lower() and value.lower() in HOBBIES:
                return Kind("preference", ["hobbies"], 0.5, "hobbies", value)
            return Kind("preference", ["preferences"], 0.5, slot, value)
    if _HABITUAL_PREF.match(text):
        return Kind("preference", ["preferences"], 0.45)
    return None


def pets(text: str, owner_noun: str) -> Kind | None:
    if _NO_PETS.search(text):
        return Kind("fact", ["pets"], 0.6, topic="pets", negated=True)
    ws = [w.lower() for w in words(text)]
    kinds = [w for w in ws if w in PETS or w.rstrip("s") in PETS]
    if not kinds and owner_noun.replace("-", " ") not in PETS:
        return None
    animal = PET_KIND.get(kinds[0], kinds[0]) if kinds else owner_noun
    value = animal
    # "our dog Pepper", "a cat named Miso", "my dog's name is Rex"
    m = re.search(
        rf"(?i)\b{re.escape(kinds[0] if kinds else owner_noun)}(?:'s name is|,? (?:named|called)|)"
        r"\s+(?=[A-Z])",
        text,
    )
    name = cap_run(text[m.end() :], max_words=2) if m else ""
    if not name:
        m2 = re.match(r"^([A-Z][\w'-]+) is (?:my|our) ", text)
        name = m2.group(1) if m2 else ""
    if name:
        value = f"{name} ({animal})"
    ended = bool(_ENDED.search(text)) or bool(re.search(r"(?i)\b(?:died|passed away|rehomed)\b",
                                                          text))  # fmt: skip
    return Kind("fact", ["pets"], 0.6, "pets", value, topic="pets", negated=ended, change=ended)


def relative(text: str, owner_noun: str) -> Kind | None:
    """A statement about one of the user's people: family fills the list slot."""
    base = owner_noun.split()[-1] if owner_noun else ""
    if base in FAMILY:
        m = re.search(rf"(?i)\b{re.escape(base)}(?:'s name is|,? (?:named|called)|)\s+(?=[A-Z])",
                      text)  # fmt: skip
        name = cap_run(text[m.end() :], max_words=2) if m else ""
        value = f"{name} ({owner_noun})" if name else owner_noun
        return Kind("fact", ["relationships"], 0.6, "family", value)
    if base in OTHER_PEOPLE:
        return Kind("fact", ["relationships"], 0.45)
    return None


def family_owned(text: str) -> Kind | None:
    """'I have two daughters', 'we have a son named Leo'."""
    m = re.search(r"(?i)^(?:i|we) (?:have|'ve got|have got) ((?:a|an|one|two|three|four|five|"
                  r"\d) (?:little |young |grown-up |teenage |baby )?([\w-]+))", text)  # fmt: skip
    if not m:
        return None
    noun = m.group(2).lower()
    if noun not in FAMILY and noun.rstrip("s") not in FAMILY and noun[:-3] + "y" not in FAMILY:
        return None
    n = re.search(r"(?i)\b(?:named|called)\s+(?=[A-Z])", text)
    name = cap_run(text[n.end() :], max_words=2) if n else ""
    value = f"{name} ({noun})" if name else m.group(1).lower()
    return Kind("fact", ["relationships"], 0.6, "family", value)


def habit(text: str) -> Kind | None:
    low = text.lower()
    ws = set(words(low))
    for topic, signal in TOPIC_WORDS.items():
        hit = ws & signal
        if topic == "drinking" and hit <= {"drink", "drinking"} and not _DRINK_ALONE.search(low):
            continue
        if hit:
            ended = bool(_ENDED.search(low))
            negated = ended or bool(_NEGATION.search(low))
            return Kind("fact", ["health"], 0.6, topic=topic, negated=negated, change=ended)
    if (ws & DIET_FOODS) and re.search(r"\b(?:eat|eating|ate|eats)\b", low):
        ended = bool(_ENDED.search(low))
        negated = ended or bool(_NEGATION.search(low))
        return Kind("fact", ["health"], 0.6, topic="diet", negated=negated, change=ended)
    if ws & CONDITIONS or _HEALTH.search(low):
        return Kind("fact", ["health"], 0.85, topic="health")
    return None


def activity(text: str) -> Kind | None:
    """Plans, hobbies and routines (a statement can be a routine hobby: both categories)."""
    low = text.lower()
    if _FUTURE.search(low):
        return Kind("fact", ["plans"], 0.5)
    ws = words(low)
    hobby = next((w for w in ws if w in HOBBIES or w in PLAYABLE), "")
    routine = bool(_ROUTINE.search(low))
    if hobby and not _NEGATION.search(low):
        cats = ["hobbies", "routines"] if routine else ["hobbies"]
        return Kind("fact", cats, 0.5, "hobbies", hobby)
    if hobby:
        ended = bool(_ENDED.search(low))
        return Kind("fact", ["hobbies"], 0.4, negated=True, change=ended)
    if routine:
        return Kind("fact", ["routines"], 0.4)
    return None


def other(text: str) -> Kind:
    if _POSSESS.match(text):
        return Kind("fact", ["possessions"], 0.4)
    if _WORK.search(text):
        return Kind("fact", ["work"], 0.45)
    if _STUDY.search(text):
        return Kind("fact", ["education"], 0.45)
    return Kind("fact", [], 0.3)


def content_of(statement: str, lead_in: str = "") -> str:
    out = third_person(statement)
    if lead_in and out:
        first = lead_in.split()[0]
        if first.lower() not in CALENDAR and not (first.isupper() and len(first) > 1):
            lead_in = lead_in[0].lower() + lead_in[1:]
        out = out[:-1] + ", " + lead_in + "."
    return out
