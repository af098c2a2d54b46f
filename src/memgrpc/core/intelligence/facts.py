"""What extraction yields, and the one interface every extractor implements.

A `Fact` is a candidate memory about the user, written as a self-contained sentence in the
third person and citing the messages it came from. Extractors only propose facts; whether a fact
is new, repeats a current one, changes it or contradicts it is decided afterwards, against the
user's current memories (reconciliation), so every extractor gets the same guarantees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from memgrpc.core.conversation.records import Message

# a project's categories until it sets its own (kept with the rest of categories)
from memgrpc.core.memory.categories import DEFAULT_CATEGORIES as DEFAULT_CATEGORIES

# Profile slots backed by one memory each: a new value is a new version of that memory.
SINGLE_SLOTS = (
    "name", "age", "location", "hometown", "occupation", "employer", "diet",
    "relationship_status",
)  # fmt: skip
# Profile slots with many values, one memory per value (the profile lists them all).
LIST_SLOTS = ("allergies", "pets", "family", "hobbies", "languages", "likes", "dislikes")
SLOTS = SINGLE_SLOTS + LIST_SLOTS


@dataclass(frozen=True)
class Fact:
    """A candidate memory. `content` reads on its own ("User is allergic to shellfish.")."""

    content: str
    type: str  # a memory type: "fact", "preference", "task", ...
    source_message_ids: tuple[str, ...]
    slot: str = ""  # a profile slot (SLOTS) when the fact fills one, else ""
    value: str = ""  # the slot's canonical value ("Nairobi", "52"); "" without a slot
    categories: tuple[str, ...] = ()
    importance: float = 0.5
    # canonical (lowercased) names of the people, places, pets and things it mentions: memories
    # that share one are connected
    entities: tuple[str, ...] = ()
    # a coarse subject for spotting contradictions between facts without a slot ("pets",
    # "diet", "smoking"); "" when none applies
    topic: str = ""
    # says explicitly that something changed ("moved to", "quit", "left X and became"): it
    # supersedes the current fact of its slot or topic instead of contradicting it
    change: bool = False
    # states an absence or an end ("I don't have pets", "I quit smoking")
    negated: bool = False
    # set by extractors that were shown the current facts (the LLM): the id of the memory this
    # fact updates, or contradicts
    updates: str = ""
    contradicts: str = ""


@dataclass(frozen=True)
class KnownFact:
    """A current memory of the user, as shown to an extractor."""

    memory_id: str
    content: str
    slot: str = ""
    topic: str = ""


class Extractor(Protocol):
    """Turns a session's messages into candidate facts about its user. Deterministic for the
    same input where it can be (the rules extractor always is). A failure is a DomainError
    (a provider's, as chat reports it, or UNAVAILABLE `EXTRACTION_BAD_OUTPUT`), raised before
    anything is written: extractors only read."""

    @property
    def name(self) -> str: ...

    async def extract(
        self, messages: Sequence[Message], known: Sequence[KnownFact]
    ) -> list[Fact]: ...
