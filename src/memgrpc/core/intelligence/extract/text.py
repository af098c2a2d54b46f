"""Text plumbing for the rules: sentences, clauses, word shapes, and the rewrite of a
first-person statement into a third-person memory ("I love hiking" -> "User loves hiking.")."""

from __future__ import annotations

import re

from memgrpc.core.intelligence.extract.lexicon import (
    NOT_NAMES,
    NUMBER_WORDS,
    SMALL_TALK,
    TENS,
    wordset,
)

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_][\w'-]*")
# name and place particles that may sit between capitalised words ("Rio de Janeiro")
_PARTICLES = wordset("de da do dos das del della di du van von der den la le of upon am")

_QUESTION_START = re.compile(
    r"^(?:what|where|when|who|whom|whose|why|how|which|can you|could you|would you|will you|"
    r"do you|did you|does|are you|is it|is there|should i|shall|remind me|tell me|show me|"
    r"give me|help me|let me know|please (?:remind|tell|show|give|help|find|check|let|can|could|explain|list))\b"
)
# Wishes, conditionals and reported speech: what follows is not a fact about the user.
_HYPOTHETICAL = re.compile(
    r"\b(?:if|unless|wish|wished|wishing|imagine|suppose|supposing|dream of|dreaming of|"
    r"would love to|'d love to|would like to|'d like to|would rather live|someday|some day|"
    r"one day|in another life|pretend|fantasi[sz]e)\b"
)
# "I'd be a carpenter if I could start over": the whole sentence is counterfactual
_COUNTERFACTUAL = re.compile(r"(?:\bwould|'d|\bcould)\b.*\b(?:if|unless)\b|\b(?:if|unless)\b.*"
                             r"(?:\bwould|'d|\bcould)\b")  # fmt: skip
_HYPOTHETICAL_START = re.compile(r"^(?:if|what if|imagine|suppose|unless|in another life)\b")


def normalise(text: str) -> str:
    """One apostrophe, one space: the patterns match plain ASCII quotes."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return re.sub(r"[ \t]+", " ", text).strip()


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(normalise(text)) if s.strip()]


def words(text: str) -> list[str]:
    return _WORD.findall(text)


# "When I travel I'd rather ...": a time clause about the user, no inversion
_WH_STATEMENT = re.compile(r"^when\s+(?:i|i'm|we|we're)\b")


_ASK = re.compile(
    r"^(?:any|anything|thoughts|ideas|tips|suggestions|recommendations|advice|what|how|where|which|"
    r"who|why|when|should|could|can|would|will|is|are|do|does|got any)\b"
)


def before_question(sentence: str) -> str:
    """The statement a user makes before asking ("Heading to Rome next week, any tips?" ->
    "Heading to Rome next week"); "" when the sentence is a question throughout. A tag that
    checks a fact ("I live in Oslo, right?") is not a statement."""
    if not sentence.rstrip().endswith("?"):
        return ""
    cuts = list(re.finditer(r"\s*[,;:]\s+|\s+-\s+", sentence))
    if not cuts:
        return ""
    head, tail = sentence[: cuts[-1].start()], sentence[cuts[-1].end() :].lower()
    if "?" in head or _QUESTION_START.match(head.lower()) or len(words(head)) < 2:
        return ""
    return head if _ASK.match(tail) or _QUESTION_START.match(tail) else ""


def is_question(sentence: str) -> bool:
    low = sentence.lower().strip()
    if low.endswith("?"):
        return True
    return bool(_QUESTION_START.match(low)) and not _WH_STATEMENT.match(low)


def is_small_talk(sentence: str) -> bool:
    ws = [w.lower() for w in words(sentence)]
    return all(w in SMALL_TALK for w in ws)


def factual_part(sentence: str) -> str:
    """The sentence up to its first wish or conditional ("I live in Oslo but I wish I lived by
    the sea" -> "I live in Oslo but"); "" when it opens with one."""
    low = sentence.lower()
    if _HYPOTHETICAL_START.match(low) or _COUNTERFACTUAL.search(low):
        return ""
    m = _HYPOTHETICAL.search(low)
    if not m:
        return sentence
    # a conditional reaches back to the start of its clause ("..., but if I were ...")
    cut = max(low.rfind(",", 0, m.start()), low.rfind(";", 0, m.start()))
    head = sentence[: cut if cut >= 0 else m.start()]
    head = re.sub(r"(?i)\b(?:i|and|but|so|though|although)\s*$", "", head.strip()).strip(" ,;")
    return head


_I_WORDS = frozenset(("I", "I'm", "I've", "I'd", "I'll"))


def cap_run(text: str, *, lower_ok: bool = False, max_words: int = 4) -> str:
    """The proper name at the start of `text` ("Porto, sadly" -> "Porto"; "New York City now"
    -> "New York City"). With `lower_ok` (all-lowercase input) plain words count too."""
    out: list[str] = []
    prev = 0
    for m in _WORD.finditer(text):
        if text[prev : m.start()].strip():  # punctuation between words ends the name
            break
        prev = m.end()
        w = m.group()
        if w in _I_WORDS:  # "moved to Leeds I cycle": the user, never part of a name
            break
        if w[0].isupper():
            if not out and w.lower() in NOT_NAMES:
                break
            out.append(w)
        elif (out and w in _PARTICLES) or (
            lower_ok and w not in _STOP_LOWER and w not in NOT_NAMES and not w[0].isdigit()
        ):
            out.append(w)
        else:
            break
        if len(out) >= max_words:
            break
    while out and out[-1] in _PARTICLES:
        out.pop()
    return " ".join(out).strip(" '")


_STOP_LOWER = wordset("""and but or so for since because with these those this that now then these days at in on
    to from by near with while when where which who as though although again too also still
    just really very currently lately recently for now""")


def number(text: str) -> int | None:
    """An age as digits or words ("52", "fifty-two", "thirty one")."""
    t = text.strip().lower()
    if t.isdigit():
        return int(t)
    parts = re.split(r"[- ]+", t)
    if len(parts) == 1:
        return NUMBER_WORDS.get(parts[0], TENS.get(parts[0]))
    if len(parts) == 2 and parts[0] in TENS and parts[1] in NUMBER_WORDS:
        return TENS[parts[0]] + NUMBER_WORDS[parts[1]]
    return None


NUMBER = (
    r"\d{1,3}|(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ]"
    r"(?:one|two|three|four|five|six|seven|eight|nine))?|"
    r"eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|ten"
)


# -- first person -> third person ------------------------------------------------------------

_SUBJECT = {
    "i'm": "User is", "im": "User is", "i am": "User is", "i was": "User was",
    "i've": "User has", "i have": "User has", "i'd": "User would", "i'll": "User will",
    "i do": "User does", "i don't": "User doesn't", "i dont": "User doesn't",
    "i do not": "User does not", "i haven't": "User hasn't", "i have not": "User has not",
    "i wasn't": "User wasn't",
    "we're": "User is", "we are": "User is", "we were": "User was", "we've": "User has",
    "we have": "User has", "we'd": "User would", "we'll": "User will", "we do": "User does",
    "we don't": "User doesn't", "we do not": "User does not", "we haven't": "User hasn't",
}  # fmt: skip
_LATER = {
    "i": "they", "i'm": "they're", "im": "they're", "i've": "they've", "i'd": "they'd",
    "i'll": "they'll", "me": "them", "my": "their", "mine": "theirs", "myself": "themself",
    "we": "they", "we're": "they're", "we've": "they've", "us": "them", "our": "their",
    "ours": "theirs", "ourselves": "themselves", "am": "are",
}  # fmt: skip
_ADVERBS = wordset("""just only really also both
    usually always never often sometimes still recently actually
    mostly currently now even already finally generally rarely seriously absolutely totally
    literally basically honestly definitely absolutely kind sort of""")
_MODALS = wordset(
    "can can't cannot could couldn't will won't would wouldn't should shouldn't must might may "
    "didn't did was wasn't"
)
_PAST = wordset("""was were had did went came took got made left became bought sold gave
    found felt kept knew lost met paid ran said saw sent spent taught thought told won wrote put set cut quit
    read began broke brought built caught chose drove ate fell flew forgot grew heard held hurt
    led lent meant rode rose sang sat slept spoke stood swam threw woke wore moved""")


def third_person(statement: str) -> str:
    """'I just started running' -> 'User just started running.'; 'My dog Rex is deaf' ->
    "User's dog Rex is deaf."; the user's own words otherwise."""
    s = statement.strip(" ,;:-")
    s = re.sub(r"(?i)^(?:and|but|so|also|plus|oh|well|honestly|actually|anyway)\b[ ,]*", "", s)
    low = s.lower()
    head = ""
    rest = s
    m = re.match(r"(?i)(my|our) (\w+(?:-\w+)?) and (?:i|me)\b", s)
    if m:
        head, rest = f"User and their {m.group(2)}", s[m.end() :]
    elif low.startswith(("my ", "our ")):
        head, rest = "User's", s[s.index(" ") :]
    else:
        for k in sorted(_SUBJECT, key=len, reverse=True):
            if low.startswith(k) and (len(low) == len(k) or not low[len(k)].isalnum()):
                if low[len(k) :].lstrip().startswith(("got ", "been ")) and k in ("i've", "we've"):
                    head = "User has"
                else:
                    head = _SUBJECT[k]
                rest = s[len(k) :]
                break
        else:
            m = re.match(r"(?i)(i|we)\b\s*", s)
            if m:
                head, rest = "User", _conjugate(s[m.end() :])
                rest = " " + rest if rest else rest
            else:
                head, rest = "", s
    body = re.sub(r"[^\W\d_][\w']*", lambda w: _LATER.get(w.group().lower(), w.group()), rest)
    out = (head + body).strip()
    out = re.sub(r"\s+([,.;!])", r"\1", out).rstrip(" ,;:-!.")
    if not out:
        return ""
    return out[0].upper() + out[1:] + "."


def _conjugate(rest: str) -> str:
    """The verb after a dropped 'I' in the third person: skip adverbs, then 'go' -> 'goes'."""
    toks = rest.split(" ")
    for i, tok in enumerate(toks):
        w = tok.lower().strip(",")
        if w in _ADVERBS:
            continue
        if w in _MODALS or w in _PAST or w.endswith("ed") or not w.isalpha():
            return rest
        toks[i] = _third(tok)
        return " ".join(toks)
    return rest


def _third(verb: str) -> str:
    low = verb.lower()
    if low == "have":
        return "has"
    if low in ("do", "go"):
        return verb + "es"
    if low == "am":
        return "is"
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"
