"""Profile slots a first-person statement fills: name, age, location, hometown, occupation,
employer, diet, relationship status, and the list slots with a closed vocabulary (languages,
allergies). Every pattern is anchored on the user as the subject ("I live in", "call me"), so
"my sister lives in Paris" fills nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from memgrpc.core.intelligence.extract.lexicon import (
    DIETS,
    LANGUAGES,
    NOT_NAMES,
    NOT_OCCUPATION,
    OCCUPATION_STATES,
    OCCUPATIONS,
    RELATIONSHIP_STATUSES,
    wordset,
)
from memgrpc.core.intelligence.extract.text import NUMBER, cap_run, number, words

_I = r"\b(?:i|we|my \w+ and i)"
_HAVE = r"(?:\s+have|'ve)"
_ADV = (
    r"(?:\s+(?:just|now|currently|still|also|actually|recently|finally|happily|really|both|all))*"
)
_I_AM = rf"\b(?:i'm|im|i am){_ADV}"
# a noun phrase before the place: "a small flat in Porto", "a house just outside Ghent"
_NP_THEN_PLACE = re.compile(r"(?i)^[a-z' -]{0,40}?\b(?:in|near|outside|outside of)\s+")


@dataclass(frozen=True)
class Hit:
    slot: str
    value: str
    change: bool = False
    negated: bool = False
    # the slot was read from an introduction fragment ("Jonas here, 31"): the statement is not
    # a sentence about this slot, so the fact's content is written from the slot instead
    fragment: bool = False


def _place(after: str, lower_ok: bool) -> str:
    """The place a location phrase names ("Porto", "a small flat in Porto" -> "Porto")."""
    after = re.sub(r"^the\s+(?=[A-Z])", "", after)
    place = cap_run(after, lower_ok=lower_ok)
    if place:
        return place
    m = _NP_THEN_PLACE.match(after)
    return cap_run(after[m.end() :], lower_ok=lower_ok) if m else ""


def _name(after: str) -> str:
    name = cap_run(after, max_words=3)
    name = re.sub(r"'s$", "", name)
    if not name or any(w.lower() in NOT_NAMES for w in re.split(r"[ -]", name)):
        return ""
    return name


_LOCATION = [
    (rf"{_I}{_ADV}\s+(?:live|reside|stay)\s+(?:(?:just|right)\s+)?(?:in|near|outside)\s+", False),
    (
        rf"{_I_AM}\s+(?:an?\s+[\w-]+(?:\s+[\w-]+)?\s+)?(?:living|based|settled|residing|staying)"
        r"\s+(?:in|near|out of)\s+",
        False,
    ),
    (rf"{_I}{_HAVE}\s+(?:been\s+)?(?:lived|living)\s+in\s+", False),
    (r"\b(?:my|our) (?:home|place|house|flat|apartment) is in\s+", False),
    (r"\bhome is\s+", False),
    (rf"{_I}{_ADV}\s+(?:moved|relocated)\s+(?:back\s+)?(?:to|here to)\s+", True),
    (rf"{_I}{_HAVE}\s+(?:just\s+)?(?:moved|relocated)\s+(?:back\s+)?to\s+", True),
    (r"(?:^|,\s*)(?:living|based|currently) in\s+", False),
]
_VISIT = re.compile(r"(?i)\b(?:visit|visiting|trip|holiday|vacation|conference|for (?:a|the|two|"
                    r"three|\d+) (?:day|week|night)s?|this week|next|tomorrow|spending)\b")  # fmt: skip
_HOMETOWN = [
    rf"{_I_AM}\s+originally\s+from\s+",
    rf"{_I}\s+(?:was\s+)?(?:born|raised|born and raised)\s+in\s+",
    rf"{_I}\s+grew up\s+in\s+",
    rf"{_I}\s+come\s+from\s+",
    r"\b(?:my )?hometown is\s+",
]
_FROM = rf"(?i:{_I_AM})(?:\s+[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?,?)?\s+(?i:from)\s+"


def location_hits(s: str, lower_ok: bool, intro: bool = False) -> list[Hit]:
    out: list[Hit] = []
    if intro:  # "Ruth here, 58, from Dundee"
        for m in re.finditer(r"(?i)(?:^|,\s*)from\s+", s):
            if place := _place(s[m.end() :], lower_ok):
                out.append(Hit("from", place, fragment=True))
    for pattern, change in _LOCATION:
        for m in re.finditer("(?i)" + pattern, s):
            place = _place(s[m.end() :], lower_ok)
            if place and not (not change and _VISIT.search(s[m.end() :])):
                out.append(Hit("location", place, change=change))
    here = re.search(r"(?i)\bhere in\s+", s)
    if here and not _VISIT.search(s) and (place := _place(s[here.end() :], lower_ok)):
        out.append(Hit("location", place))
    for pattern in _HOMETOWN:
        for m in re.finditer("(?i)" + pattern, s):
            if place := _place(s[m.end() :], lower_ok):
                out.append(Hit("hometown", place))
    if not any(h.slot == "hometown" for h in out):
        # plain "I'm from X": where the user is from; the extractor decides (see rules.py)
        # whether that is their home or their origin
        for m in re.finditer(_FROM, s, flags=0 if not lower_ok else re.I):
            if place := _place(s[m.end() :], lower_ok):
                out.append(Hit("from", place))
    return out


_NAME_PATTERNS = [
    r"(?i:\bmy name is|\bmy name's|\bthe name's|\bname's)\s+",
    r"(?i:\b(?:you can |please |just |everyone |people |friends |they )?call(?:s)? me)\s+",
    r"(?i:\bi go by)\s+",
    r"(?i:\bi'm|\bim|\bi am)\s+(?=[^\W\d_])",
    r"(?i:\bthis is|\bit's)\s+(?=[A-Z]\w+ here\b)",
]
# "Jonas here, ..." / "Kenji here." (not "Living here in Bergen")
_NAME_HERE = re.compile(
    r"^(?:(?i:hi|hey|hello|heya|hiya|yo)\b[ ,!.]*)?([A-Z][\w'-]+(?: [A-Z][\w'-]+)?) here"
    r"(?=\s*(?:[,.!;:-]|$))"
)


def name_hits(s: str, lower_ok: bool) -> list[Hit]:
    out: list[Hit] = []
    for i, pattern in enumerate(_NAME_PATTERNS):
        for m in re.finditer(pattern, s):
            after = s[m.end() :]
            # lowercase text has names only after an explicit "my name is" / "call me"
            name = (
                cap_run(after, lower_ok=True, max_words=2) if lower_ok and i < 3 else _name(after)
            )
            # "I'm Italian", "I'm Jewish", or a place ("I'm in Lisbon") are not names
            if name and not (i == 3 and _not_a_name_after_im(after, name)):
                out.append(Hit("name", name))
    intro = _NAME_HERE.match(s)
    if intro and (name := _name(intro.group(1))):
        out.append(Hit("name", name, fragment=True))
    return out


def _not_a_name_after_im(after: str, name: str) -> bool:
    rest = after[len(name) :].lstrip(" ,").lower()
    # "I'm Google's ..."; "I'm Vegan" (a capitalised diet word)
    return after.startswith(name + "'s") or name.lower() in DIETS or rest.startswith("years")


# what may follow a bare "I'm 34" for it to be an age ("I'm 34, ...", not "I'm 5 minutes away")
_AGE_END = r"(?=\s*(?:[,.!;]|$|and\b|but\b|so\b|this year|now\b|today\b))"
# "I'm only 24", "I'm almost 40", "I'm just about 30"
_AGE_ADV = (
    r"(?:\s+(?:only|just|almost|nearly|barely|about|around|roughly|already|literally|a mere))*"
)


def age_hits(s: str, intro: bool) -> list[Hit]:
    out: list[Hit] = []
    pats = [
        (rf"(?i){_I_AM}{_AGE_ADV}\s+({NUMBER})(?:\s+years?\s+old|\s+y/?o\b|{_AGE_END})", False),
        (rf"(?i)\b(?:i|we)\s+(?:just\s+)?turned\s+({NUMBER})\b", True),
        (rf"(?i)\bi(?:'m| am)\s+(?:now\s+)?({NUMBER})\s+(?:years?\s+)?(?:old|this year)", False),
    ]
    for pattern, change in pats:
        for m in re.finditer(pattern, s):
            n = number(m.group(1))
            if n is not None and 5 <= n <= 120:
                out.append(Hit("age", str(n), change=change))
    if intro and not out:
        # "Jonas here, 31, living in Hamburg": a bare number between commas of an introduction
        for m in re.finditer(r"(?:^|,)\s*(\d{1,3})\s*(?=,|$|\.)", s):
            n = int(m.group(1))
            if 10 <= n <= 110:
                out.append(Hit("age", str(n), fragment=True))
    return out


# "I got a job as a nurse", "started a new role as an editor": a new occupation, a change
_NEW_JOB = (
    r"\bi\s+(?:(?:just|recently|finally)\s+)?(?:got|landed|took|started|accepted|began)\s+"
    r"(?:a\s+|my\s+)?(?:new\s+)?(?:job|role|position|post|gig)\s+as\s+(?:an?\s+)?|"
    r"\bi\s+(?:(?:just|recently)\s+)?(?:started|began)\s+working\s+as\s+(?:an?\s+)?|"
    r"\bmy new (?:job|role|position) is\s+(?:as\s+)?(?:an?\s+)?"
)
_JOB_LEAD = (
    rf"(?i){_I_AM}\s+(?:a|an)\s+|\bi\s+work\s+as\s+(?:an?\s+)?|\bi(?:'m| am) working as\s+"
    rf"(?:an?\s+)?|\bi\s+(?:just\s+)?became\s+(?:a|an)\s+|\bi\s+trained\s+as\s+(?:a|an)\s+|"
    rf"\bmy (?:job|profession|occupation) is\s+(?:an?\s+)?|\bi\s+now\s+work\s+as\s+(?:an?\s+)?|"
    r"\bi(?:'ve| have)\s+(?:\w+\s+)?been\s+(?:working\s+as\s+)?(?:an?\s+)?(?=\S+(?:\s+\S+){0,3}"
    r"\s+(?:for|since)\b)|\bi(?:'ve| have)\s+(?:\w+\s+)?been\s+working\s+as\s+(?:an?\s+)?|"
    rf"{_NEW_JOB}"
)
_STOP_AFTER_JOB = wordset("at for in with by and but so who from on of")
_TEACH = re.compile(
    r"(?i)\bi\s+(?:also\s+|still\s+|now\s+)?teach\s+(\w+)(?:\s+(?:at|in|to)\s+(?:a|the)?\s*"
    r"(\w+))?"
)
_SUBJECTS = wordset("""maths math mathematics english history physics chemistry biology science music art
    french spanish german italian geography economics computing yoga pilates piano guitar
    dance drama literature philosophy latin law medicine nursing swimming kindergarten""")


def _is_job(word: str) -> bool:
    w = word.lower()
    if w in NOT_OCCUPATION:
        return False
    return w in OCCUPATIONS or w.endswith(
        ("ologist", "ician", "grapher", "ographer", "smith", "maker", "wright", "monger")
    )


def occupation_hits(s: str) -> list[Hit]:
    out: list[Hit] = []
    for m in re.finditer(_JOB_LEAD, s):
        ws = []
        for w in words(s[m.end() :])[:5]:
            if w.lower() in _STOP_AFTER_JOB:
                break
            ws.append(w)
        heads = [i for i, w in enumerate(ws) if _is_job(w)]
        if heads:
            value = " ".join(ws[: heads[-1] + 1])
            change = bool(re.search(r"(?i)\bbecame\b|" + _NEW_JOB, m.group()))
            out.append(Hit("occupation", value.lower(), change=change))
    state = re.search(rf"(?i){_I_AM}\s+(retired|unemployed|self-employed|a student|studying)\b", s)
    if state:
        word = state.group(1).lower()
        value = "student" if word in ("a student", "studying") else word
        out.append(Hit("occupation", value, change=word == "retired" and "just" in s.lower()))
    elif re.search(r"(?i)\bi\s+(?:just\s+)?retired\b", s):
        out.append(Hit("occupation", "retired", change=True))
    for m in _TEACH.finditer(s):
        subject, place = m.group(1).lower(), (m.group(2) or "").lower()
        if subject in _SUBJECTS:
            out.append(Hit("occupation", f"{subject} teacher"))
        elif place in ("school", "university", "college", "academy"):
            out.append(Hit("occupation", "teacher"))
    return [h for h in out if h.value.split()[-1] not in OCCUPATION_STATES or h.value in
            OCCUPATION_STATES]  # fmt: skip


_EMPLOYER = [
    (rf"(?i){_I}{_ADV}\s+work(?:ing)?\s+(?:at|for)\s+", False),
    (rf"(?i){_I_AM}\s+(?:working|employed)\s+(?:at|for|by)\s+", False),
    (rf"(?i){_I_AM}\s+(?:a|an)\s+[\w -]{{2,40}}?\s+(?:at|for|with)\s+", False),
    (r"(?i)\bi\s+work\s+as\s+(?:an?\s+)?[\w -]{2,40}?\s+(?:at|for|with)\s+", False),
    (rf"(?i){_I}{_ADV}\s+(?:joined|started at|got a job at|moved to work at)\s+", True),
    (r"(?i)\bmy (?:employer|company) is\s+", False),
]
_WORK_CONTEXT = re.compile(
    r"(?i)\b(?:became|become|joined|job|company|firm|work|career|role|freelanc\w*|self-employed|"
    r"startup|hired|promoted)\b"
)


def employer_hits(s: str) -> list[Hit]:
    out: list[Hit] = []
    for pattern, change in _EMPLOYER:
        for m in re.finditer(pattern, s):
            org = cap_run(re.sub(r"^the\s+(?=[A-Z])", "", s[m.end() :]))
            if org and org.lower() not in NOT_NAMES:
                out.append(Hit("employer", org, change=change))
    return out


def left_employer_hits(sentence: str) -> list[Hit]:
    """'I left Deloitte and became ...': the old employer ends. Read over the whole sentence
    and only with work context in it, since "I left London" is a move."""
    out: list[Hit] = []
    ended = re.finditer(
        r"(?i)\bi(?:'m| am)? no longer (?:with|at|work(?:ing)? (?:at|for))\s+", sentence
    )
    for m in ended:
        if org := cap_run(sentence[m.end() :]):
            out.append(Hit("employer", org, change=True, negated=True))
    quit_at = (
        r"(?i)\bi\s+(?:just\s+|finally\s+|recently\s+)?(?:left|quit|(resigned from|(?:got|was) "
        r"(?:laid off|fired|let go|sacked|made redundant) (?:from|by)))\s+"
        r"(?:(?:my|the|a)\s+(?:[\w-]+\s+)?(?:job|role|position|post)\s+(?:at|with)\s+)?"
    )
    for m in re.finditer(quit_at, sentence):
        org = cap_run(sentence[m.end() :])
        rest = sentence[m.end() :]
        # "I left London" is a move: a job is in sight, or the user resigned or was let go
        if org and (m.group(1) or _WORK_CONTEXT.search(rest) or occupation_hits(rest)):
            out.append(Hit("employer", org, change=True, negated=True))
    return out


# an old job ending, named or not ("quit the café job", "got laid off", "switched careers")
_JOB_ENDED = re.compile(
    r"(?i)\b(?:i|we)\s+(?:(?:just|finally|recently|already|officially)\s+)?(?:quit|left|"
    r"resigned from|walked out of|lost|handed in (?:my|our) notice at|finished up at|"
    r"(?:got|was|were) (?:fired|laid off|let go|sacked) from)\s+(?:(?:my|the|our|that)\s+)"
    r"(?:[\w'-]+\s+){0,3}?(?:job|role|position|post|gig|career)\b|"
    r"\b(?:i|we)\s+(?:(?:just|finally|recently)\s+)?(?:switched|changed)\s+(?:careers?|jobs?|"
    r"professions?|fields?)\b|\bcareer change\b|\b(?:i|we)\s+(?:(?:just|recently)\s+)?"
    r"(?:got|was|were)\s+(?:fired|laid off|let go|made redundant|sacked)\b|\bi\s+handed in my "
    r"notice\b"
)


def job_ended(text: str) -> bool:
    """The user's previous job ended in `text`: a new occupation said with it is a change."""
    return bool(_JOB_ENDED.search(text))


_DIET_WORDS = "|".join(DIETS)


def diet_hits(s: str) -> list[Hit]:
    low = s.lower()
    m = re.search(
        rf"\b(?:(?:i'm|im|i am|we're|we are){_ADV}(?:\s+(?:a|fully|strictly|mostly|now|not|no longer))?|"
        rf"(?:went|gone|go|going|became|become|turned|switched to|eat|eating|follow|on)"
        rf"(?:\s+(?:a|an))?|\bbeing)\s+({_DIET_WORDS})\b(?!\s+(?:food|recipes?|restaurants?|"
        rf"options?|dish|dishes|meals?|friends?|sister|brother))",
        low,
    )
    change_words = r"\b(?:went|gone|became|turned|switched|no longer|gave up|stopped|quit)\b"
    if m:
        negated = bool(re.search(r"\b(?:not|no longer|n't)\b[^,.]*$", low[: m.start(1)]))
        change = bool(re.search(change_words, low)) or (negated and "anymore" in low)
        return [Hit("diet", DIETS[m.group(1)], change=change, negated=negated)]
    # "I eat eggs now, vegetarian is easier": a diet word beside the user's own eating
    m2 = re.search(rf"\b({_DIET_WORDS})\b", low)
    if (
        m2
        and re.search(r"\b(?:i|we)\s+(?:\w+\s+)?(?:eat|ate|eating)\b", low)
        and not _FOOD.match(low[m2.end() :])
        and not re.search(r"\bnot\s+(?:a\s+)?" + m2.group(1), low)
    ):
        return [Hit("diet", DIETS[m2.group(1)], change=bool(re.search(change_words, low)))]
    return []


_FOOD = re.compile(r"\s+(?:food|recipes?|restaurants?|options?|dish|dishes|meals?|friends?)\b")


def relationship_hits(s: str) -> list[Hit]:
    low = s.lower()
    m = re.search(rf"(?:{_I_AM}|\bi\s+(?:just\s+)?got)\s+(married|single|engaged|divorced|"
                  r"widowed|separated)\b", low)  # fmt: skip
    if m:
        return [Hit("relationship_status", RELATIONSHIP_STATUSES[m.group(1)], change="got" in
                    m.group())]  # fmt: skip
    if re.search(rf"{_I_AM}\s+(?:in a relationship|seeing someone|dating)\b", low):
        return [Hit("relationship_status", "in a relationship")]
    return []


def language_hits(s: str) -> list[Hit]:
    low = s.lower()
    m = re.search(
        r"\b(?:i\s+(?:can\s+|also\s+)?speak|i'm fluent in|i am fluent in|i'm bilingual in|"
        r"my (?:native|first|mother) (?:language|tongue) is|i'm a native)\s+([a-z ,]+)",
        low,
    )
    if not m:
        return []
    found = [w for w in words(m.group(1)) if w in LANGUAGES]
    return [Hit("languages", w.capitalize()) for w in found]


_ALLERGY_LIST = re.compile(r"(?i)\b(?:allergic|an allergy|allergies) to\s+([\w ,'-]+)")
_ALLERGY_NOUN = re.compile(
    r"(?i)\b(?:an?\s+|severe\s+|bad\s+)?([a-z-]+(?: [a-z-]+)?)\s+allerg(?:y|ies)\b"
)
_INTOLERANT = re.compile(r"(?i)\b(?:i'm|i am)\s+(lactose|gluten)[ -]intolerant\b|"
                         r"\bintolerant to\s+(\w+)|\b(\w+) intolerance\b")  # fmt: skip
_NOT_ALLERGEN = wordset("a an the any some severe bad mild food my and or also have")
# words that close a list as an aside, not an item ("peanuts, sadly", "shellfish, though")
_ASIDE = wordset("though too lol haha sadly unfortunately apparently honestly seriously really")


def _aside(ws: list[str]) -> bool:
    """A list item that is an aside: one adverb ("sadly", "obviously") or filler word."""
    return len(ws) == 1 and (ws[0].lower() in _ASIDE or ws[0].lower().endswith("ly"))


def allergy_hits(s: str) -> list[Hit]:
    if re.search(
        r"(?i)\b(?:not|never been|no)\s+(?:\w+\s+)?allergic\b|\bno (?:known )?allergies\b", s
    ):
        return []
    items: list[str] = []
    m = _ALLERGY_LIST.search(s)
    if m:
        text = re.split(r"(?i)\b(?:so|but|which|because|since|that)\b|[.;!]", m.group(1))[0]
        for part in re.split(r"(?i),|\band\b|\bor\b", text):
            ws = [w for w in words(part) if w.lower() not in _NOT_ALLERGEN]
            if ws and len(ws) <= 3 and not _aside(ws):
                items.append(" ".join(ws).lower())
    for m2 in _ALLERGY_NOUN.finditer(s):
        ws = [w for w in m2.group(1).split() if w.lower() not in _NOT_ALLERGEN]
        if ws:
            items.append(" ".join(ws).lower())
    for m3 in _INTOLERANT.finditer(s):
        word = next(g for g in m3.groups() if g)
        items.append(word.lower())
    if re.search(r"(?i)\b(?:i'm|i am|i have)\s+(?:coeliac|celiac)", s):
        items.append("gluten")
    seen: list[str] = []
    for it in items:
        if it not in seen:
            seen.append(it)
    return [Hit("allergies", it) for it in seen]


_TITLE_SLOTS = frozenset({"name", "location", "hometown", "employer"})
_LOWER_SLOTS = frozenset({"occupation", "diet", "relationship_status", "allergies", "hobbies"})
_LOWER_PARTICLES = wordset("de da do dos das del della di du van von der den la le of")


def canonical_value(slot: str, value: str) -> str:
    """The one spelling a slot's value is stored and compared in: places and names title-cased
    ("kuching" -> "Kuching", "rio de janeiro" -> "Rio de Janeiro"), ages as digits ("fifty-two"
    -> "52"), closed vocabularies lowercased, languages capitalised; always trimmed."""
    v = re.sub(r"\s+", " ", value).strip(" \t.,;:!?\"'")
    if slot == "age":
        n = number(v)
        if n is None:
            m = re.search(r"\d{1,3}", v)
            return m.group() if m else v
        return str(n)
    if slot in _TITLE_SLOTS:
        if v.islower() or (v.isupper() and slot != "employer"):
            ws = v.lower().split(" ")
            v = " ".join(
                w if i and w in _LOWER_PARTICLES else "-".join(p[:1].upper() + p[1:] for p in
                                                               w.split("-"))
                for i, w in enumerate(ws)
            )  # fmt: skip
        return v
    if slot in _LOWER_SLOTS:
        return v.lower()
    if slot == "languages":
        return v[:1].upper() + v[1:].lower()
    return v
