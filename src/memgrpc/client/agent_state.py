"""What `client.agents` keeps per user, named as in Sonzai's SDK: `instances`, `custom_states`,
`notifications`, `memory` (tree, search, timeline, bulk facts) and the context engine's reads
(`get_mood`, `get_relationships`, `get_habits`, `get_goals`, `get_interests`, `get_diary`,
`get_users`).

Each class serves both clients: `run` is the caller's `unary`, so a method returns the reply
dict on the sync client and an awaitable of it on the async one. Replies are plain dicts
(`cv.to_dict`); enum values are their short names (`"user"`, `"pending"`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.v1 import agent_state_pb2 as st
from memgrpc.v1 import agents_pb2, memory_pb2, users_pb2

R = TypeVar("R")
Run = Callable[[Unary[Any, dict[str, Any]]], R]

_AGENTS = agents_pb2.DESCRIPTOR.services_by_name["AgentService"]
_MEMORY = memory_pb2.DESCRIPTOR.services_by_name["MemoryService"]
_USERS = users_pb2.DESCRIPTOR.services_by_name["UserService"]


def _call(
    service: Any, name: str, request: Message, response: type[Message], rid: str | None = None
) -> Unary[Any, dict[str, Any]]:
    path = method_path(service, name)
    if rid is None:
        return Unary(path, request, response, cv.to_dict)
    return Unary(path, request, response, cv.to_dict, rid)


def _write(name: str, cls: type[Message], data: dict[str, Any], response: type[Message]) -> Any:
    """A write to AgentService with a request_id (the caller's, or a fresh one for retries)."""
    rid = cv.pop_request_id(data) or new_request_id()
    request = cv.build(cls, {**data, "request_id": rid}, name)
    return _call(_AGENTS, name, request, response, rid)


def _read(name: str, cls: type[Message], data: Mapping[str, Any], response: type[Message]) -> Any:
    return _call(_AGENTS, name, cv.build(cls, data, name), response)


def _state_key(agent_id: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"agent_id": agent_id, "key": key, "scope": fields.get("scope", "global"), **fields}


class Instances(Generic[R]):
    """`client.agents.instances`: separate copies of an agent's per-user state."""

    def __init__(self, run: Run[R]) -> None:
        self._run = run

    def list(self, agent_id: str, **fields: Any) -> R:
        """`{"instances": [...], "next_page_token", "total_size"}`, newest first."""
        data = {"agent_id": agent_id, **fields}
        return self._run(
            _read("ListInstances", st.ListInstancesRequest, data, st.ListInstancesResponse)
        )

    def create(self, agent_id: str, *, request_id: str | None = None, **instance: Any) -> R:
        """`create(agent_id, display_name="Test", metadata={...})` -> the instance (`ins_...`)."""
        data = {"agent_id": agent_id, "instance": instance, "request_id": request_id}
        return self._run(_write("CreateInstance", st.CreateInstanceRequest, data, st.Instance))

    def reset(
        self, agent_id: str, instance_id: str, *, user_id: str = "", request_id: str | None = None
    ) -> R:
        """Wipe the instance's state (only `user_id`'s when given); returns the instance."""
        data: dict[str, Any] = {"agent_id": agent_id, "instance_id": instance_id}
        data |= {"user_id": user_id, "request_id": request_id}
        return self._run(_write("ResetInstance", st.ResetInstanceRequest, data, st.Instance))

    def delete(self, agent_id: str, instance_id: str, *, request_id: str | None = None) -> R:
        data = {"agent_id": agent_id, "instance_id": instance_id, "request_id": request_id}
        return self._run(_write("DeleteInstance", st.DeleteInstanceRequest, data, empty_pb2.Empty))


class CustomStates(Generic[R]):
    """`client.agents.custom_states`: values by (agent, instance, scope, user, key); `value=`
    holds JSON, `text=` plain text; `scope="user"` needs `user_id`."""

    def __init__(self, run: Run[R]) -> None:
        self._run = run

    def create(self, agent_id: str, key: str, *, request_id: str | None = None, **fields: Any) -> R:
        """AlreadyExistsError when the key exists."""
        data = {"state": _state_key(agent_id, key, fields), "request_id": request_id}
        return self._run(_write("CreateState", st.CreateStateRequest, data, st.CustomState))

    def upsert(self, agent_id: str, key: str, *, request_id: str | None = None, **fields: Any) -> R:
        data = {"state": _state_key(agent_id, key, fields), "request_id": request_id}
        return self._run(_write("UpsertState", st.UpsertStateRequest, data, st.CustomState))

    def get_by_key(self, agent_id: str, key: str, **fields: Any) -> R:
        data = {"key": _state_key(agent_id, key, fields)}
        return self._run(_read("GetState", st.GetStateRequest, data, st.CustomState))

    def list(self, agent_id: str, **fields: Any) -> R:
        data = {"agent_id": agent_id, **fields}
        return self._run(_read("ListStates", st.ListStatesRequest, data, st.ListStatesResponse))

    def delete_by_key(
        self, agent_id: str, key: str, *, request_id: str | None = None, **fields: Any
    ) -> R:
        data = {"key": _state_key(agent_id, key, fields), "request_id": request_id}
        return self._run(_write("DeleteState", st.DeleteStateRequest, data, empty_pb2.Empty))


class Notifications(Generic[R]):
    """`client.agents.notifications`: what the agent would say on its own."""

    def __init__(self, run: Run[R]) -> None:
        self._run = run

    def list(self, agent_id: str, *, status: str = "pending", **fields: Any) -> R:
        data = {"agent_id": agent_id, "status": status, **fields}
        return self._run(
            _read(
                "ListNotifications", st.ListNotificationsRequest, data, st.ListNotificationsResponse
            )
        )

    def history(self, agent_id: str, **fields: Any) -> R:
        """The consumed ones."""
        return self.list(agent_id, status="consumed", **fields)

    def consume(self, agent_id: str, notification_id: str, *, request_id: str | None = None) -> R:
        data = {"agent_id": agent_id, "notification_id": notification_id, "request_id": request_id}
        return self._run(
            _write("ConsumeNotification", st.ConsumeNotificationRequest, data, st.Notification)
        )

    def run_checks(self, agent_id: str, **fields: Any) -> R:
        """Run the proactive checks now (`user_id=`, `now=` a datetime); `{"created": [...]}`."""
        data = {"agent_id": agent_id, **fields}
        return self._run(
            _read(
                "RunNotificationChecks",
                st.RunNotificationChecksRequest,
                data,
                st.RunNotificationChecksResponse,
            )
        )


class AgentMemory(Generic[R]):
    """`client.agents.memory`: the agent's memory of a user."""

    def __init__(self, run: Run[R]) -> None:
        self._run = run

    def list(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        """The memory tree: `{"categories": [{"category", "facts": [...]}], "total_facts"}`."""
        data = {"agent_id": agent_id, "user_id": user_id, **fields}
        return self._run(
            _read("GetMemoryTree", st.GetMemoryTreeRequest, data, st.GetMemoryTreeResponse)
        )

    def search(self, agent_id: str, *, query: str, user_id: str = "", **fields: Any) -> R:
        """SearchMemories scoped to the agent: `{"results": [{"memory", "score"}]}`."""
        data = {"agent_id": agent_id, "query": query, "user_id": user_id, **fields}
        request = cv.build(memory_pb2.SearchMemoriesRequest, data, "search")
        return self._run(
            _call(_MEMORY, "SearchMemories", request, memory_pb2.SearchMemoriesResponse)
        )

    def timeline(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        """`timeline(agent_id, user_id=..., start_time=datetime, end_time=datetime)`, oldest
        first."""
        data = {"agent_id": agent_id, "user_id": user_id, **fields}
        return self._run(_read("GetTimeline", st.GetTimelineRequest, data, st.GetTimelineResponse))

    def bulk_create_facts(
        self,
        agent_id: str,
        *,
        user_id: str,
        facts: Sequence[Mapping[str, Any]],
        request_id: str | None = None,
        **fields: Any,
    ) -> R:
        """Up to 1000 facts stored as given (no extraction): `{"memories": [...]}`."""
        data = {"agent_id": agent_id, "user_id": user_id, "facts": facts, **fields}
        data |= {"request_id": request_id}
        return self._run(_write("AddFacts", st.AddFactsRequest, data, st.AddFactsResponse))


class EngineReads(Generic[R]):
    """The context engine's view of an agent and a user (mixed into `client.agents`)."""

    _run: Run[R]

    def _user(self, name: str, agent_id: str, user_id: str, fields: Mapping[str, Any]) -> Any:
        data = {"agent_id": agent_id, "user_id": user_id, **fields}
        response = {"GetMood": st.Mood, "GetRelationship": st.Relationship}.get(
            name, st.ListInsightsResponse
        )
        return _read(name, st.AgentUserRequest, data, response)

    def get_mood(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        """`{"label", "valence", "arousal", "turns", "update_time", "source"}`."""
        return self._run(self._user("GetMood", agent_id, user_id, fields))

    def get_relationships(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        return self._run(self._user("GetRelationship", agent_id, user_id, fields))

    def get_habits(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        """`{"insights": [{"text", "strength", "memory_ids", ...}]}`, strongest first."""
        return self._run(self._user("ListHabits", agent_id, user_id, fields))

    def get_goals(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        return self._run(self._user("ListGoals", agent_id, user_id, fields))

    def get_interests(self, agent_id: str, *, user_id: str, **fields: Any) -> R:
        return self._run(self._user("ListInterests", agent_id, user_id, fields))

    def get_diary(self, agent_id: str, **fields: Any) -> R:
        """`{"entries": [{"date", "text", "user_ids", ...}]}`, newest day first."""
        data = {"agent_id": agent_id, **fields}
        return self._run(
            _read("ListDiaryEntries", st.ListDiaryEntriesRequest, data, st.ListDiaryEntriesResponse)
        )

    def get_users(self, agent_id: str, **fields: Any) -> R:
        """ListUsers of the users who have talked to the agent."""
        data = {"agent_id": agent_id, **fields}
        request = cv.build(users_pb2.ListUsersRequest, data, "list")
        return self._run(_call(_USERS, "ListUsers", request, users_pb2.ListUsersResponse))
