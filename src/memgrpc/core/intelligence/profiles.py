"""Profiles (Sovant's recall helpers): the user's profile slots, read from and saved as
extracted memories.

A single-valued slot is backed by one memory per user: saving a new value makes a new version
of it (expire reason SUPERSEDED), never a second row. A list slot has one memory per value; the
profile lists them oldest first, its `value` the latest. Saving goes through reconciliation
(under the same per-user lock as extraction), as an explicit change of the slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from memgrpc.core.intelligence.facts import LIST_SLOTS, SLOTS, Fact
from memgrpc.core.intelligence.reconcile import (
    Reconciler,
    memory_negated,
    memory_value,
    same_value,
)
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.memory.model import Memory

MAX_TEXT_BYTES = 32 * 1024
MAX_VALUE_CHARS = 200

# how a saved value reads as a memory
_SENTENCES = {
    "name": "User's name is {}.",
    "age": "User is {} years old.",
    "location": "User lives in {}.",
    "hometown": "User is from {}.",
    "occupation": "User works as {}.",
    "employer": "User works at {}.",
    "diet": "User's diet is {}.",
    "relationship_status": "User is {}.",
    "allergies": "User is allergic to {}.",
    "pets": "User has a pet: {}.",
    "family": "User's family includes {}.",
    "hobbies": "User's hobbies include {}.",
    "languages": "User speaks {}.",
    "likes": "User likes {}.",
    "dislikes": "User dislikes {}.",
}
_CATEGORIES = {
    "occupation": "work", "employer": "work", "diet": "health", "allergies": "health",
    "pets": "pets", "family": "relationships", "relationship_status": "relationships",
    "hobbies": "hobbies", "likes": "preferences", "dislikes": "preferences",
}  # fmt: skip

Canonical = Callable[[str, str], str]
# the profile fact a text states, as (slot, canonical value), or None
ProfileOf = Callable[[str], "tuple[str, str] | None"]


@dataclass
class ProfileFact:
    value: str
    values: list[str] = field(default_factory=list)
    memory_id: str = ""
    version: int = 0
    update_time: datetime | None = None


def profile_facts(memories: list[Memory]) -> dict[str, ProfileFact]:
    """Slot -> fact from the user's current extracted memories (oldest first)."""
    out: dict[str, ProfileFact] = {}
    for m in sorted(memories, key=lambda m: (m.create_time or datetime.min, m.id)):
        value = memory_value(m)
        if m.profile_slot not in SLOTS or not value or memory_negated(m):
            continue  # a slot the user said no longer holds ("I left the bank")
        fact = ProfileFact(value, [value], m.id, m.version, m.update_time)
        if m.profile_slot in LIST_SLOTS and m.profile_slot in out:
            fact.values = [*out[m.profile_slot].values, value]
        out[m.profile_slot] = fact
    return out


def check_text(text: str) -> None:
    v = Violations()
    if not text.strip():
        v.add("text", "must not be empty")
    elif len(text.encode()) > MAX_TEXT_BYTES:
        v.add("text", f"at most {MAX_TEXT_BYTES} bytes")
    v.raise_if_any()


class Profiles:
    def __init__(
        self,
        reconciler: Reconciler,
        canonical: Canonical,
        profile_of: ProfileOf,
        require_user: Callable[[str, str], Awaitable[object]],
    ) -> None:
        self._rec = reconciler
        self._canonical = canonical
        self._profile_of = profile_of
        self._require_user = require_user

    def extract(self, text: str) -> tuple[str, str] | None:
        """The profile fact `text` states, without writing anything."""
        check_text(text)
        return self._profile_of(text)

    async def get(self, project_id: str, user_id: str) -> dict[str, ProfileFact]:
        """NOT_FOUND for a user the project does not have, like the other user calls."""
        v = Violations()
        validation.check_id(v, "user_id", user_id, required=True)
        v.raise_if_any()
        await self._require_user(project_id, user_id)
        return profile_facts(await self._rec.current(project_id, user_id, SLOTS))

    async def facts(
        self, project_id: str, user_id: str, scope: tuple[str, str] = ("", "")
    ) -> dict[str, ProfileFact]:
        """The profile without the user check (an unknown user has none), from the recall cache
        when it holds the user: what a context (and so every chat turn) shows. With an agent
        `scope` (agent_id, instance_id): from that agent's facts and the general ones only."""
        current = await self._rec.current(project_id, user_id, SLOTS, cached=True, scope=scope)
        return profile_facts(current)

    async def save(self, project_id: str, user_id: str, slot: str, value: str) -> ProfileFact:
        v = Violations()
        validation.check_id(v, "user_id", user_id, required=True)
        if slot not in SLOTS:
            v.add("slot", f"must be one of {', '.join(SLOTS)}")
        canonical = self._canonical(slot, value.strip()) if slot in SLOTS else value.strip()
        if not canonical:
            v.add("value", "must not be empty")
        elif len(canonical) > MAX_VALUE_CHARS:
            v.add("value", f"at most {MAX_VALUE_CHARS} characters")
        v.raise_if_any()
        fact = Fact(
            content=_SENTENCES[slot].format(canonical),
            type="fact",
            source_message_ids=(),
            slot=slot,
            value=canonical,
            categories=(_CATEGORIES.get(slot, "personal_info"),),
            change=True,  # the caller states the slot's value now
        )
        async with self._rec.lock(project_id, user_id):
            plan = await self._rec.plan(project_id, user_id, "", [fact])
            await self._rec.apply(project_id, plan)
            current = await self._rec.current(project_id, user_id)
        saved = profile_facts(current)[slot]
        if slot in LIST_SLOTS:  # the memory of the value saved, with every value of the slot
            for m in current:
                if m.profile_slot == slot and same_value(memory_value(m), canonical):
                    saved = ProfileFact(canonical, saved.values, m.id, m.version, m.update_time)
        return saved
