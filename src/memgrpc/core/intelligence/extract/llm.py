"""The LLM extractor: any OpenAI-compatible chat model, asked for JSON only.

The model sees the session's messages with their ids and the user's current facts with theirs,
so it can cite sources and say which fact a new one updates or contradicts. Its answer is
checked strictly: whatever it invents (a slot, a type, a message or memory id) is dropped, and
an answer that is not the promised JSON fails the extraction (UNAVAILABLE
`EXTRACTION_BAD_OUTPUT`) rather than writing guesses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract.rules import USER_ROLES
from memgrpc.core.intelligence.extract.slots import canonical_value
from memgrpc.core.intelligence.facts import DEFAULT_CATEGORIES, SLOTS, Fact, KnownFact
from memgrpc.core.kernel.errors import Unavailable
from memgrpc.core.kernel.provider_errors import provider_failure
from memgrpc.core.memory.model import MEMORY_TYPES
from memgrpc.llm import ChatMessage, Provider, ProviderError

BAD_OUTPUT = "EXTRACTION_BAD_OUTPUT"
# types a fact about the user can have ("message" and "summary" are memgrpc's own)
FACT_TYPES = tuple(t for t in MEMORY_TYPES if t not in ("message", "summary"))
_DEFAULT_NAMES = tuple(name for name, _ in DEFAULT_CATEGORIES)
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.S)

SYSTEM = """You extract durable facts about the USER from a conversation, for a memory store.
Answer with JSON only, no prose: {"facts": [FACT, ...]} ({"facts": []} when there are none).
FACT = {"content": a self-contained sentence in the third person starting with "User" and
keeping the user's own words ("User prefers aisle seats on long flights."),
"type": one of %(types)s, "slot": one of %(slots)s or "" (a profile slot the fact fills),
"value": the slot's value ("Nairobi", "52", "Pepper (dog)") or "", "categories": names from
%(categories)s, "importance": 0..1 (profile facts and health high, small things low),
"source_message_ids": ids of the messages it comes from, "entities": lowercase names of the
people, places, pets and things it mentions, "topic": a coarse subject for contradictions
("pets", "diet", "smoking", "drinking") or "", "change": true when the user says something
changed ("moved to", "quit", "left X and became Y"; "now" alone is not a change),
"negated": true for an absence or an end ("I don't have pets", "I quit smoking"),
"updates": the memory_id of a known fact this one replaces, or "", "contradicts": the
memory_id of a known fact this one conflicts with without saying it changed, or ""}.
Rules: facts only from the user's messages (role "user" or "action"), never the assistant's.
Skip questions, small talk, wishes, hypotheticals ("if I lived in Tokyo") and trips or plans
as a change of home (a trip is a "plans" fact). Facts about other people ("my sister lives in
Paris") are about them: no slot of the user's, content names the person. Do not repeat a
known fact that is unchanged."""


class LlmExtractor:
    """Facts from a chat model through the provider layer (its failures as chat reports them)."""

    def __init__(
        self,
        provider: Provider,
        model: str = "",
        *,
        categories: Sequence[tuple[str, str]] = DEFAULT_CATEGORIES,
        max_tokens: int | None = 2048,
    ) -> None:
        self._provider = provider
        self._model = model
        self._categories = tuple(categories)
        self._max_tokens = max_tokens

    @property
    def name(self) -> str:
        return "llm"

    def prompt(self, messages: Sequence[Message], known: Sequence[KnownFact]) -> list[ChatMessage]:
        system = SYSTEM % {
            "types": json.dumps(list(FACT_TYPES)),
            "slots": json.dumps(list(SLOTS)),
            "categories": json.dumps([name for name, _ in self._categories]),
        }
        payload = {
            "categories": {name: about for name, about in self._categories},
            "known_facts": [
                {"memory_id": k.memory_id, "content": k.content, "slot": k.slot} for k in known
            ],
            "messages": [
                {"id": m.id, "role": m.role, "name": m.name, "content": m.content} for m in messages
            ],
        }
        return [
            ChatMessage("system", system),
            ChatMessage("user", json.dumps(payload, ensure_ascii=False)),
        ]

    async def extract(self, messages: Sequence[Message], known: Sequence[KnownFact]) -> list[Fact]:
        if not any(m.role in USER_ROLES for m in messages):
            return []  # nothing the user said: no call to make
        gen = self._provider.stream(
            self.prompt(messages, known), self._model, 0.0, self._max_tokens
        )
        try:
            reply = "".join([delta async for delta in gen])
        except ProviderError as exc:
            raise provider_failure(exc) from exc
        finally:
            await gen.aclose()
        return parse_reply(reply, messages, known, [n for n, _ in self._categories])


def _bad(what: str) -> Unavailable:
    return Unavailable(f"the extraction model's answer {what}", reason=BAD_OUTPUT)


def parse_reply(
    reply: str,
    messages: Sequence[Message],
    known: Sequence[KnownFact],
    categories: Sequence[str] = _DEFAULT_NAMES,
) -> list[Fact]:
    """The facts of a model's answer, validated against what it was shown."""
    text = reply.strip()
    if m := _FENCE.match(text):
        text = m.group(1).strip()
    if not text:
        raise _bad("is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("facts"), list):
        raise _bad('is not an object with a "facts" list')
    sources = {m.id for m in messages if m.role in USER_ROLES}
    known_ids = {k.memory_id for k in known}
    out: list[Fact] = []
    for i, item in enumerate(doc["facts"]):
        if not isinstance(item, dict):
            raise _bad(f"has facts[{i}] that is not an object")
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise _bad(f"has facts[{i}] without a content string")
        fact = _fact(item, content.strip(), sources, known_ids, set(categories))
        if fact is not None:
            out.append(fact)
    return out


def _fact(
    item: dict[str, Any],
    content: str,
    sources: set[str],
    known_ids: set[str],
    categories: set[str],
) -> Fact | None:
    ids = tuple(dict.fromkeys(i for i in _strings(item.get("source_message_ids")) if i in sources))
    if not ids:
        return None  # cites nothing the user said: an invention, or the assistant's words
    slot = _string(item.get("slot"))
    slot = slot if slot in SLOTS else ""
    value = canonical_value(slot, _string(item.get("value"))) if slot else ""
    kind = _string(item.get("type")).lower()
    return Fact(
        content=content,
        type=kind if kind in FACT_TYPES else "fact",
        source_message_ids=ids,
        slot=slot if value else "",
        value=value,
        categories=tuple(c for c in _strings(item.get("categories")) if c in categories),
        importance=_importance(item.get("importance")),
        entities=tuple(dict.fromkeys(e.strip().lower() for e in _strings(item.get("entities")))),
        topic=_string(item.get("topic")).lower(),
        change=item.get("change") is True,
        negated=item.get("negated") is True,
        updates=_known(item.get("updates"), known_ids),
        contradicts=_known(item.get("contradicts"), known_ids),
    )


def _string(v: Any) -> str:
    return v.strip() if isinstance(v, str) else ""


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    return [s for s in (_string(x) for x in v) if s] if isinstance(v, list) else []


def _importance(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0.5
    return min(1.0, max(0.0, float(v)))


def _known(v: Any, known_ids: set[str]) -> str:
    s = _string(v)
    return s if s in known_ids else ""
