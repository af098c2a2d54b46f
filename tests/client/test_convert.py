"""Dicts <-> protobuf: short and full enum names, timestamps, durations, Struct, aliases, masks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from memgrpc.client import _convert as cv
from memgrpc.client.chat import Collector, chat_request, event_dict
from memgrpc.client.errors import FailedPreconditionError, MemgrpcError
from memgrpc.client.memory import Calls as MemoryCalls
from memgrpc.v1 import admin_pb2, chat_pb2, context_pb2, memory_pb2, sessions_pb2


def test_enums_by_short_full_or_number() -> None:
    for value in ("preference", "PREFERENCE", "MEMORY_TYPE_PREFERENCE", 5):
        assert (
            cv.build(memory_pb2.Memory, {"type": value}).type == memory_pb2.MEMORY_TYPE_PREFERENCE
        )
    req = cv.build(context_pb2.GetContextRequest, {"strategy": "low-latency"})
    assert req.strategy == context_pb2.CONTEXT_STRATEGY_LOW_LATENCY
    key = cv.build(admin_pb2.ApiKey, {"scopes": ["read", "API_KEY_SCOPE_WRITE"]})
    assert list(key.scopes) == [admin_pb2.API_KEY_SCOPE_READ, admin_pb2.API_KEY_SCOPE_WRITE]
    assert cv.to_dict(key)["scopes"] == ["read", "write"]
    with pytest.raises(ValueError, match="'preference', 'fact'"):
        cv.build(memory_pb2.Memory, {"type": "opinion"})
    with pytest.raises(ValueError, match="not a MemoryType value"):
        cv.build(memory_pb2.Memory, {"type": 99})


def test_unspecified_enum_and_unset_fields_read_as_none() -> None:
    out = cv.to_dict(memory_pb2.Memory(content="x"))
    assert out["type"] is None and out["importance"] is None and out["event_time"] is None
    assert out["metadata"] == {} and out["tags"] == [] and out["content"] == "x"


@pytest.mark.parametrize(
    "value",
    [
        "2024-03-01T12:30:00Z",
        "2024-03-01T13:30:00+01:00",
        datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        datetime(2024, 3, 1, 12, 30),  # naive = UTC
        datetime(2024, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        1709296200,
    ],
)
def test_timestamps_in(value: object) -> None:
    m = cv.build(memory_pb2.Memory, {"event_time": value})
    assert cv.to_dict(m)["event_time"] == "2024-03-01T12:30:00Z"


def test_dates_durations_and_bad_values() -> None:
    req = cv.build(memory_pb2.ListMemoriesRequest, {"start_time": date(2024, 1, 1)})
    assert cv.to_dict(req)["start_time"] == "2024-01-01T00:00:00Z"
    for value in (90, 90.0, timedelta(seconds=90), "90s"):
        s = cv.build(sessions_pb2.Session, {"auto_process_after": value})
        assert cv.to_dict(s)["auto_process_after"] == 90.0
    with pytest.raises(ValueError, match="event_time"):
        cv.build(memory_pb2.Memory, {"event_time": "yesterday"})
    with pytest.raises(TypeError, match=r"Memory\.tags"):
        cv.build(memory_pb2.Memory, {"tags": [1]})
    with pytest.raises(TypeError, match="expected a dict"):
        cv.build(memory_pb2.Memory, {"metadata": ["a"]})


def test_struct_numbers_come_back_as_json_would_give_them() -> None:
    m = cv.build(memory_pb2.Memory, {"metadata": {"n": 3, "x": 0.5, "l": [1, {"d": 2}], "b": True}})
    assert cv.to_dict(m)["metadata"] == {"n": 3, "x": 0.5, "l": [1, {"d": 2}], "b": True}
    assert isinstance(cv.to_dict(m)["metadata"]["n"], int)


def test_float32_fields_read_back_short() -> None:
    assert cv.to_dict(memory_pb2.Memory(importance=0.7))["importance"] == 0.7
    assert cv.to_dict(memory_pb2.SearchResult(score=0.123))["score"] == 0.123


def test_unknown_fields_and_aliases() -> None:
    with pytest.raises(ValueError, match="unknown field 'contnet'"):
        cv.build(memory_pb2.Memory, {"contnet": "x"})
    m = cv.build(memory_pb2.Memory, {"thread_id": "ses_1", "is_archived": True})
    assert m.session_id == "ses_1" and m.archived
    req = cv.build(
        memory_pb2.SearchMemoriesRequest,
        {"type": "preference", "from_date": "2024-01-01", "tags": "ui"},
    )
    assert list(req.types) == [memory_pb2.MEMORY_TYPE_PREFERENCE] and list(req.tags) == ["ui"]
    assert req.HasField("start_time")
    with pytest.raises(ValueError, match="name the same field"):
        cv.build(memory_pb2.Memory, {"thread_id": "a", "session_id": "b"})
    with pytest.raises(ValueError, match="given twice"):
        cv.params({"a": 1}, {"a": 2}, "x")


def test_update_mask_is_the_keys_given() -> None:
    call = MemoryCalls.update(
        "mem_1", {"tags": ["a"], "importance": None, "is_archived": False}, None, None, None
    )
    req = call.request
    assert isinstance(req, memory_pb2.UpdateMemoryRequest)
    assert list(req.update_mask.paths) == ["tags", "importance", "archived"]
    assert req.memory.id == "mem_1" and not req.memory.HasField("importance")
    assert req.request_id == call.request_id and len(call.request_id) == 32
    explicit = MemoryCalls.update(
        "mem_1",
        {"tags": ["a"]},
        ["*"],
        "why",
        "rid-1",
    ).request
    assert isinstance(explicit, memory_pb2.UpdateMemoryRequest)
    assert list(explicit.update_mask.paths) == ["*"] and explicit.request_id == "rid-1"
    with pytest.raises(ValueError, match="differs"):
        MemoryCalls.update("mem_1", {"id": "mem_2"}, None, None, None)


def test_batch_ops_in_sovant_and_proto_shapes() -> None:
    req = MemoryCalls.batch(
        {
            "operations": [
                {"op": "create", "data": {"user_id": "u", "content": "a", "type": "journal"}},
                {"op": "update", "id": "mem_1", "data": {"tags": ["t"]}},
                {"op": "delete", "id": "mem_2"},
                {"delete": {"id": "mem_3"}},
            ]
        },
        None,
    ).request
    assert isinstance(req, memory_pb2.BatchMemoriesRequest)
    kinds = [op.WhichOneof("operation") for op in req.operations]
    assert kinds == ["create", "update", "delete", "delete"]
    assert list(req.operations[1].update.update_mask.paths) == ["tags"]
    with pytest.raises(ValueError, match="op must be"):
        MemoryCalls.batch([{"op": "upsert"}], None)


def test_chat_request_and_events() -> None:
    req = chat_request("hi", {"session_id": "ses_1", "temperature": 0.0, "use_memory": False})
    assert req.HasField("temperature") and req.temperature == 0.0 and req.use_memory is False
    assert not req.HasField("max_tokens") and req.request_id
    assert not chat_request("hi", {"user_id": "u"}).HasField("temperature")

    events = [
        chat_pb2.ChatEvent(
            sequence=1, started=chat_pb2.ChatStarted(user_message_id="m1", session_id="s")
        ),
        chat_pb2.ChatEvent(sequence=2, context=chat_pb2.ChatContext()),
        chat_pb2.ChatEvent(sequence=3, delta=chat_pb2.ChatDelta(text="Hello ")),
        chat_pb2.ChatEvent(sequence=4, delta=chat_pb2.ChatDelta(text="there")),
        chat_pb2.ChatEvent(
            sequence=5,
            done=chat_pb2.ChatDone(
                assistant_message_id="m2", usage=chat_pb2.ChatUsage(prompt_tokens=3)
            ),
        ),
    ]
    dicts = [event_dict(e) for e in events]
    assert [d["type"] for d in dicts] == ["started", "context", "delta", "delta", "done"]
    assert dicts[2]["data"] == "Hello " and dicts[0]["sequence"] == 1
    collector = Collector("rid")
    for d in dicts:
        collector.feed(d)
    result = collector.result()
    assert result["response"] == "Hello there" and result["assistant_message_id"] == "m2"
    assert result["usage"] == {"prompt_tokens": 3, "completion_tokens": 0}

    failed = Collector("rid")
    failed.feed(dicts[0])
    failed.feed(
        event_dict(
            chat_pb2.ChatEvent(
                sequence=2,
                error=chat_pb2.ChatError(code=9, message="no provider", reason="PROVIDER_X"),
            )
        )
    )
    with pytest.raises(FailedPreconditionError) as info:
        failed.result()
    assert info.value.reason == "PROVIDER_X" and info.value.request_id == "rid"
    with pytest.raises(MemgrpcError, match="without a done event"):
        Collector("rid").result()
