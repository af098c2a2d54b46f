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
    POSSESSIONS,
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
    rf"(?i){_SUBJ}{_ADV}(love|like|enjoy|adore|prefer|fancy|(?:am |'m )?(?:(?:a )?(?:big |huge |massive )?fan "
    rf"of|into|obsessed with|crazy about|fond of|passionate about)|can't get enough of)\s+(.+)"
)
_DISLIKE = re.compile(
    rf"(?i){_SUBJ}{_ADV}(hate|dislike|detest|loathe|despise|can't stand|cannot stand|can't bear|"
    rf"don't like|do not like|don't enjoy|do not enjoy|don't care for|(?:am |'m )?not "
    rf"(?:really |exactly |much of )?(?:a (?:big |huge )?fan of|into|keen on|big on))\s+(.+)"
)
_FAVOURITE = re.compile(
    r"(?i)^(?:my|our) (?:all-time |absolute |current )?favou?rite ([\w -]{2,30}?) (?:is|are|"
    r"has to be|would be|was) (.+)"
)
_IS_FAVOURITE = re.compile(r"(?i)^(.+?) (?:is|are) (?:my|our) (?:all-time )?favou?rite\b")
_HABITUAL_PREF = re.compile(
    r"(?i)^(?:i|we) (?:only|always|mostly|usually) (?:drink|eat|use|wear|buy|listen to|watch|"
    r"read|order|take|choose|pick)\b|^(?:i|we) (?:stick to|swear by)\b|^(?:i|we)(?:'d| would) "
    r"(?:much |far |way |always |definitely |honestly |really )?(?:rather|sooner)\b|"
    r"^(?:i|we) (?:switched|changed|set|turned|enabled|disabled) (?:the |my |our )?[\w -]{2,30}? "
    r"(?:to|on|off)\b"
)
_PRONOUN_OBJECT = re.compile(
    r"(?i)^(?:it|that|this|you|your|them|those|these|him|her|the idea|when (?:that|it|this))\b"
)
# "Jazz isn't really my thing", "Sushi is not for me", "Board games are my jam"
_MY_THING = re.compile(
    r"(?i)^(.+?)\s+(?:(isn't|aren't|is not|are not|'s not|'re not)|is|are|'s|'re)\s+"
    r"(?:really |exactly |quite |just |totally |so |very much |definitely )?"
    r"(?:my (?:thing|jam|cup of tea|scene|kind of thing|style)|for me)\b"
)
# what trails a preference's object without being part of it ("crowded gyms at all")
_TRAILER = re.compile(r"(?i)\s+(?:at all|really|much|either|any ?more|lol|haha|tbh|honestly)$")
_CUT = re.compile(r"(?i)\s*(?:[,;.!]|\s(?:because|since|but|so that|when|although)\s).*$")

_FUTURE = re.compile(
    r"(?i)\b(?:i'm|i am|we're|we are)\s+(?:going|flying|heading|travel+ing|driving|off|spending|"
    r"visiting|leaving|moving|starting|getting|having|taking|planning|hoping|attending|"
    r"running|doing)\b.*\b(?:next|tomorrow|tonight|soon|this (?:week|weekend|month|summer|"
    r"spring|autumn|fall|winter|year)|in (?:january|february|march|april|may|june|july|august|"
    r"september|october|november|december|\w+ (?:days|weeks|months))|on (?:monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday))\b|"
    r"\b(?:i'm|i am|we're|we are)\s+(?:going|flying|heading|travel+ing|driving|off|jetting|"
    r"sailing|taking the train)(?:\s+(?:out|over|back|down|up|off|away))?\s+to\b.*\b(?:for (?:the|a|"
    r"an|two|three|a few|a couple of|\d+) (?:weekend|week|weeks|days?|nights?|conference|wedding|"
    r"holiday|vacation|trip|work trip|meeting|festival|funeral|match|concert|visit|break)|later|"
    r"tonight)\b|"
    r"\b(?:i|we)(?:'ll| will| plan to| intend to| am going to|'m going to|'re going to|"
    r"'m planning|'m about to| have (?:a|an) (?:upcoming )?(?:\w+ )?(?:trip|flight|appointment|"
    r"interview|exam|wedding|holiday|vacation))\b|"
    r"\b(?:i'm|i am|we're|we are) (?:going|flying|heading|travel+ing|moving|jetting)"
    r"(?: (?:out|over|back|down|up|off|away))? to\b|"
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
    if (m := _MY_THING.match(text)) and not _PRONOUN_OBJECT.match(m.group(1)):
        value = _obj(m.group(1))
        slot = "dislikes" if m.group(2) else "likes"
        if value and len(value.split()) <= 6:
            return Kind("preference", ["preferences"], 0.5, slot, value)
    if m := _FAVOURITE.match(text):
        value = _obj(m.group(2))
        return Kind("preference", ["preferences"], 0.5, "likes", value) if value else None
    if (m := _IS_FAVOURITE.match(text)) and not re.match(r"(?i)(?:it|that|this)\b", text):
        return Kind("preference", ["preferences"], 0.5, "likes", _obj(m.group(1)))
    for pattern, slot in ((_DISLIKE, "dislikes"), (_LIKE, "likes")):
        if (m := pattern.match(text)) and not _PRONOUN_OBJECT.match(m.group(2)):
            value = _TRAILER.sub("", _obj(m.group(2)))
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
    topic = habit_topic(low)
    if topic:
        ended = bool(_ENDED.search(low))
        negated = ended or bool(_NEGATION.search(low))
        return Kind("fact", ["health"], 0.6, topic=topic, negated=negated, change=ended)
    if (set(words(low)) & DIET_FOODS) and re.search(r"\b(?:eat|eating|ate|eats)\b", low):
        ended = bool(_ENDED.search(low))
        negated = ended or bool(_NEGATION.search(low))
        return Kind("fact", ["health"], 0.6, topic="diet", negated=negated, change=ended)
    if set(words(low)) & CONDITIONS or _HEALTH.search(low):
        return Kind("fact", ["health"], 0.85, topic="health")
    return None


# "two cans of Monster a day" / "quit Monster": a habit outside the lexicon, named by its noun
_AMOUNT = (
    r"(?:(?:about|around|like|at least|maybe|roughly|probably|easily|way too much|too much|too "
    r"many|a lot of|lots of|loads of|a few|a couple of|several|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|a|an|\d+)\s+)*(?:(?:cups?|mugs?|glasses|glass|cans?|bottles?|packs?|"
    r"packets?|pints?|shots?|bars?|pieces?|hours?|bags?|tins?)\s+of\s+)?"
)
_HABIT_DOING = re.compile(
    r"^(?:i|we)\s+(?:(?:still|usually|probably|easily|normally|basically|literally)\s+)*(?:drink|"
    rf"eat|smoke|chew|take|have|use|go through|get through)\s+{_AMOUNT}(?:my\s+)?([a-z][\w-]+)\b"
    r"(?=.*\b(?:a|per|each|every) (?:day|night|week|morning|evening)\b|.*\b(?:daily|nightly)\b)"
)
_HABIT_ENDED = re.compile(
    r"\b(?:quit|quitting|gave up|given up|giving up|stopped|cut out|kicked|ditched|no more)\s+"
    rf"(?:on\s+)?(?:the\s+|my\s+)?{_AMOUNT}([a-z][\w-]+)\b"
)
_NOT_HABITS = frozenset(
    ("job", "work", "job's", "gym", "team", "band", "company", "course", "class", "school",
     "university", "college", "by", "at", "in", "to", "for", "and", "it", "that", "this", "the",
     "a", "an", "my", "using", "because", "after", "when", "once", "last", "two", "years",
     "months", "weeks", "altogether", "completely", "cold", "entirely", "recently", "back")
)  # fmt: skip


def habit_topic(low: str) -> str:
    """The habit a lowercase statement is about: a lexicon topic by its earliest signal word
    ("I quit coffee" -> "caffeine"), else the noun a habit phrase names ("two cans of Monster a
    day" / "gave up Monster" -> "monster"); "" when it names none."""
    best = (len(low) + 1, "")
    for topic, signal in TOPIC_WORDS.items():
        for word in signal:
            m = re.search(rf"\b{re.escape(word)}\b", low)
            if not m or m.start() >= best[0]:
                continue
            if word in ("drink", "drinking") and not _DRINK_ALONE.search(low):
                continue
            best = (m.start(), topic)
    if best[1]:
        return best[1]
    m = _HABIT_DOING.match(low) or _HABIT_ENDED.search(low)
    if not m or m.group(1) in _NOT_HABITS or m.group(1) in HOBBIES or m.group(1) in PLAYABLE:
        return ""
    if _WORK.search(low):
        return ""
    return _singular(m.group(1))


def _singular(noun: str) -> str:
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith("s") and not noun.endswith(("ss", "us", "is")):
        return noun[:-1]
    return noun


_SAME_THING = {
    "bicycle": "bike", "motorcycle": "motorbike", "television": "tv", "apartment": "flat",
    "condo": "flat", "couch": "sofa", "smartphone": "phone", "iphone": "phone",
}  # fmt: skip
_OWN_VERB = (
    r"(?:own|owned|have|had|have got|'ve got|got|drive|drove|ride|use|keep|rent|need|want|"
    r"bought|sold|got rid of|gave away|scrapped|traded in|lost|totalled|totaled|wrote off)"
)
_OWNING = re.compile(
    r"^(?:i|we)(?:'ve)?\s+(?:(?:just|finally|recently|still|actually|really|also|even)\s+)*"
    r"(?:(don't|do not|never|no longer|didn't|can't afford to|cannot afford to)\s+(?:even\s+)?)?"
    rf"{_OWN_VERB}\b"
)
_ENDS_OWNING = re.compile(
    r"(?:sold|got rid of|gave away|scrapped|traded in|lost|totalled|totaled|wrote off)$"
)
_MY = re.compile(r"(?i)\b(?:my|our)\s+")


def _owned(noun: str) -> str:
    n = _singular(noun.lower().strip(",.!?;:"))
    n = _SAME_THING.get(n, n)
    return n if n in POSSESSIONS else ""


def _thing(after: str, *, whole: bool = False) -> str:
    """The owned thing among the next few words ("a new car", "an old red bike", "any cars");
    with `whole`, not the first half of a compound ("a car appointment", "a bike lane")."""
    ws = after.split()
    for i, w in enumerate(ws[:4]):
        if noun := _owned(w):
            following = ws[i + 1].lower().strip(",.!?;:") if i + 1 < len(ws) else ""
            return "" if whole and following in _COMPOUND else noun
        if w.lower().strip(",.!?;:") in _STOPS or w[-1:] in ",.!?;:":
            return ""
    return ""


_COMPOUND = frozenset(
    ("appointment", "park", "parking", "wash", "seat", "seats", "keys", "charger", "show", "shows",
     "lane", "lanes", "rental", "hire", "loan", "sharing", "club", "lesson", "lessons", "class",
     "tour", "ride", "trip", "journey", "screen", "case", "number", "repair", "repairs", "boot")
)  # fmt: skip
_STOPS = frozenset(
    ("to", "for", "in", "at", "with", "and", "but", "or", "because", "since", "so", "when", "of",
     "on", "from", "that", "which", "who", "it", "them", "is", "was", "are")
)  # fmt: skip


def possession(text: str) -> Kind | None:
    """A thing the user owns or does not, on a topic per thing: "I don't own a car" (negated),
    "I sold my bike" (an end), "I bought a car" (a change), "my car is in the shop" (owned)."""
    m = _OWNING.match(text.lower())
    if m and (noun := _thing(text[m.end() :], whole=True)):
        verb = m.group().split()[-1]
        ended = bool(_ENDS_OWNING.search(m.group()))
        no = bool(re.match(r"(?i)\s+no\b", text[m.end() :]))
        negated = ended or bool(m.group(1)) or no
        change = ended or (verb in ("bought", "got") and not m.group(1))
        if verb not in ("need", "want", "rent", "use"):
            return Kind("fact", ["possessions"], 0.45, topic=f"possession:{noun}",
                        negated=negated, change=change)  # fmt: skip
    for m2 in _MY.finditer(text):
        if noun := _thing(text[m2.end() :]):
            return Kind("fact", ["possessions"], 0.4, topic=f"possession:{noun}")
    return None


# "spend most weekends foraging", "spend my free time restoring furniture": a pastime
_SPEND = re.compile(
    r"\bspen(?:d|ds|t|ding) (?:most of |all of |a lot of |much of )?(?:my |our |most |every |all |"
    r"the |his |her )?(?:free time|spare time|weekends?|evenings?|summers?|winters?|mornings?|"
    r"afternoons?|nights?|days? off|holidays?|sundays|saturdays) ([a-z]+ing)\b"
)
_NOT_HOBBY = frozenset(("nothing", "working", "sleeping", "studying", "commuting", "resting"))


def activity(text: str) -> Kind | None:
    """Plans, hobbies and routines (a statement can be a routine hobby: both categories)."""
    low = text.lower()
    if _FUTURE.search(low):
        return Kind("fact", ["plans"], 0.5)
    ws = words(low)
    hobby = next((w for w in ws if w in HOBBIES or w in PLAYABLE), "")
    if not hobby and (m := _SPEND.search(low)) and m.group(1) not in _NOT_HOBBY:
        hobby = m.group(1)
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


_LEAD_THEM = {
    "I was": "they were", "I": "they", "I'm": "they're", "me": "them", "my": "their", "we": "they", "we're": "they're",
    "our": "their", "us": "them",
}  # fmt: skip


def content_of(statement: str, lead_in: str = "") -> str:
    out = third_person(statement)
    if lead_in and out:
        first = lead_in.split()[0]
        if first.lower() not in CALENDAR and not (first.isupper() and len(first) > 1):
            lead_in = lead_in[0].lower() + lead_in[1:]
        # "when I travel" -> "when they travel"
        lead_in = re.sub(r"\b(?:I was|I|I'm|me|my|we|we're|our|us)\b", lambda w: _LEAD_THEM[w.group()],
                         lead_in)  # fmt: skip
        out = out[:-1] + ", " + lead_in + "."
    return out
