"""`client.recall`: Sovant's profile recall helpers (extract_profile, save_profile_fact,
get_profile_facts) over UserService's profile calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import invalid_argument
from memgrpc.v1 import users_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["UserService"]
# slots with many values (core/intelligence/facts.py LIST_SLOTS; the client does not import core)
LIST_SLOTS = ("allergies", "pets", "family", "hobbies", "languages", "likes", "dislikes")


def _extracted(resp: pb.ExtractProfileResponse) -> dict[str, Any] | None:
    # "entity" is Sovant's key for the slot; both name it
    return {"entity": resp.slot, "slot": resp.slot, "value": resp.value} if resp.found else None


def _facts(profile: pb.Profile) -> dict[str, Any]:
    """Slot -> value; a list slot (pets, allergies, likes, ...) -> every value, oldest first."""
    out: dict[str, Any] = {}
    for slot, fact in profile.facts.items():
        out[slot] = list(fact.values) if slot in LIST_SLOTS else fact.value
    return out


class Calls:
    @staticmethod
    def extract_profile(text: str) -> Unary[pb.ExtractProfileResponse, dict[str, Any] | None]:
        return Unary(
            method_path(_SERVICE, "ExtractProfile"),
            pb.ExtractProfileRequest(text=text),
            pb.ExtractProfileResponse,
            _extracted,
        )

    @staticmethod
    def save_profile_fact(
        fact: Mapping[str, Any] | str,
        slot: str | None,
        value: str | None,
        request_id: str | None,
    ) -> Unary[pb.ProfileFact, dict[str, Any]]:
        if isinstance(fact, str):
            data: dict[str, Any] = {"user_id": fact, "slot": slot, "value": value}
        else:
            data = dict(fact)
            data.setdefault("slot", data.pop("entity", None))
            data.pop("entity", None)
            if slot is not None:
                data["slot"] = slot
            if value is not None:
                data["value"] = value
        for name in ("user_id", "slot", "value"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise invalid_argument(name, "is required (a non-empty string)")
        rid = cv.pop_request_id(data) or request_id or new_request_id()
        request = pb.SaveProfileFactRequest(
            user_id=data["user_id"], slot=data["slot"], value=data["value"], request_id=rid
        )
        return Unary(
            method_path(_SERVICE, "SaveProfileFact"), request, pb.ProfileFact, cv.to_dict, rid
        )

    @staticmethod
    def get_profile(user_id: str) -> Unary[pb.Profile, dict[str, Any]]:
        request = pb.GetProfileRequest(user_id=user_id)
        return Unary(method_path(_SERVICE, "GetProfile"), request, pb.Profile, cv.to_dict)

    @staticmethod
    def get_profile_facts(user_id: str) -> Unary[pb.Profile, dict[str, Any]]:
        request = pb.GetProfileRequest(user_id=user_id)
        return Unary(method_path(_SERVICE, "GetProfile"), request, pb.Profile, _facts)


class RecallResource:
    """`client.recall`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def extract_profile(self, text: str) -> dict[str, Any] | None:
        """`{"entity": slot, "slot": slot, "value": canonical}` for the profile fact `text`
        states (e.g. "i'm from kuching"), else None; writes nothing."""
        return self._c.unary(Calls.extract_profile(text))

    def save_profile_fact(
        self,
        fact: Mapping[str, Any] | str,
        slot: str | None = None,
        value: str | None = None,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """`save_profile_fact({"user_id", "slot" (or "entity"), "value"})` or
        `save_profile_fact(user_id, slot, value)`: canonicalised and saved; a single-valued
        slot's new value is a new version of its memory. Returns the slot's ProfileFact."""
        return self._c.unary(Calls.save_profile_fact(fact, slot, value, request_id))

    def get_profile_facts(self, user_id: str) -> dict[str, Any]:
        """`{"name": "...", "location": "...", "pets": ["Rex", "Mochi"], ...}`."""
        return self._c.unary(Calls.get_profile_facts(user_id))


class AsyncRecallResource:
    """`client.recall` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def extract_profile(self, text: str) -> dict[str, Any] | None:
        return await self._c.unary(Calls.extract_profile(text))

    async def save_profile_fact(
        self,
        fact: Mapping[str, Any] | str,
        slot: str | None = None,
        value: str | None = None,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.save_profile_fact(fact, slot, value, request_id))

    async def get_profile_facts(self, user_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get_profile_facts(user_id))
