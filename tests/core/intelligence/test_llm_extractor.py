"""LlmExtractor and FallbackExtractor against a real OpenAI-compatible server on loopback
(tests/llm/fakellm.py), taught here to answer with the extraction replies under test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract import (
    BAD_OUTPUT,
    FallbackExtractor,
    LlmExtractor,
    RulesExtractor,
)
from memgrpc.core.intelligence.facts import KnownFact
from memgrpc.core.kernel.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
)
from memgrpc.llm import OpenAIProvider
from tests.llm.fakellm import FakeLLM

MESSAGES = [
    Message(id="msg-1", role="user", content="I moved to Lyon last month."),
    Message(id="msg-2", role="assistant", content="Lyon is lovely! I'm Aria, by the way."),
    Message(id="msg-3", role="user", content="Also, I'm allergic to walnuts."),
]
KNOWN = [KnownFact("mem-7", "User lives in Porto.", slot="location")]

GOOD = {
    "facts": [
        {
            "content": "User moved to Lyon.",
            "type": "fact",
            "slot": "location",
            "value": "lyon",
            "categories": ["personal_info", "not_a_category"],
            "importance": 0.8,
            "source_message_ids": ["msg-1"],
            "entities": ["Lyon"],
            "topic": "",
            "change": True,
            "negated": False,
            "updates": "mem-7",
            "contradicts": "",
        },
        {
            "content": "User is allergic to walnuts.",
            "type": "allergy",  # not a memory type
            "slot": "allergy",  # not a slot
            "value": "walnuts",
            "categories": ["health"],
            "importance": 7,
            "source_message_ids": ["msg-3", "msg-99"],
            "entities": [],
            "topic": "health",
            "change": "yes",  # not a boolean
            "negated": False,
            "updates": "",
            "contradicts": "mem-404",  # not a known memory
        },
        {  # cites only the assistant's message: not the user's fact
            "content": "User's assistant is called Aria.",
            "type": "fact",
            "source_message_ids": ["msg-2"],
        },
        {  # cites nothing that exists
            "content": "User likes jazz.",
            "type": "preference",
            "source_message_ids": ["msg-1234"],
        },
    ]
}


class ExtractionLLM(FakeLLM):
    """The fake server, answering models named in `replies` with that text, streamed in
    small deltas as a real model would."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[str, str] = {}

    def _script(self, model: str) -> list[str | float]:
        if model not in self.replies:
            return super()._script(model)
        text = self.replies[model]
        chunks = [text[i : i + 7] for i in range(0, len(text), 7)]
        deltas = [json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]}) for c in chunks]
        return [*deltas, "[DONE]"]


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[ExtractionLLM]:
    server = await ExtractionLLM().start()
    server.replies = {
        "good": json.dumps(GOOD),
        "fenced": "```json\n" + json.dumps(GOOD, indent=2) + "\n```",
        "notjson": '{"facts": [{"content": "User moved to Lyon.",',
        "prose": "Sure! Here are the facts you asked for.",
        "shape": json.dumps({"memories": []}),
        "itemshape": json.dumps({"facts": ["User moved to Lyon."]}),
        "nocontent": json.dumps({"facts": [{"type": "fact", "source_message_ids": ["msg-1"]}]}),
        "empty": json.dumps({"facts": []}),
    }
    yield server
    await server.stop()


@pytest.fixture
async def provider(fake: ExtractionLLM) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(fake.base_url, "sk-secret-test-key", "good", timeout_s=0.5)
    yield p
    await p.aclose()


def extractor(provider: OpenAIProvider, model: str) -> LlmExtractor:
    return LlmExtractor(provider, model)


async def test_good_answer_is_validated(provider: OpenAIProvider, fake: ExtractionLLM) -> None:
    ex = extractor(provider, "good")
    assert ex.name == "llm"
    facts = await ex.extract(MESSAGES, KNOWN)
    assert [f.content for f in facts] == ["User moved to Lyon.", "User is allergic to walnuts."]
    moved, allergy = facts
    assert (moved.slot, moved.value, moved.change, moved.updates) == (
        "location",
        "Lyon",
        True,
        "mem-7",
    )
    assert moved.categories == ("personal_info",) and moved.entities == ("lyon",)
    assert moved.source_message_ids == ("msg-1",)
    # invented slot/type dropped, unknown ids dropped, importance clamped, non-bools false
    assert (allergy.slot, allergy.value, allergy.type) == ("", "", "fact")
    assert allergy.source_message_ids == ("msg-3",)
    assert allergy.contradicts == "" and allergy.importance == 1.0 and allergy.change is False
    assert allergy.topic == "health"


async def test_request_carries_messages_and_known_facts(
    provider: OpenAIProvider, fake: ExtractionLLM
) -> None:
    await extractor(provider, "good").extract(MESSAGES, KNOWN)
    body: dict[str, Any] = fake.last("good").body
    assert body["temperature"] == 0.0
    system, user = body["messages"]
    assert system["role"] == "system" and "JSON only" in system["content"]
    payload = json.loads(user["content"])
    assert [m["id"] for m in payload["messages"]] == ["msg-1", "msg-2", "msg-3"]
    assert payload["messages"][2]["content"] == "Also, I'm allergic to walnuts."
    assert payload["known_facts"] == [
        {"memory_id": "mem-7", "content": "User lives in Porto.", "slot": "location"}
    ]
    assert "personal_info" in payload["categories"]


async def test_fenced_answer(provider: OpenAIProvider) -> None:
    facts = await extractor(provider, "fenced").extract(MESSAGES, KNOWN)
    assert [f.value for f in facts] == ["Lyon", ""]


async def test_no_facts_and_no_user_messages(provider: OpenAIProvider, fake: ExtractionLLM) -> None:
    assert await extractor(provider, "empty").extract(MESSAGES, []) == []
    before = len(fake.seen)
    assistant_only = [Message(id="a", role="assistant", content="I live in the cloud.")]
    assert await extractor(provider, "good").extract(assistant_only, []) == []
    assert len(fake.seen) == before  # nothing the user said: no call


@pytest.mark.parametrize(
    ("model", "what"),
    [
        ("notjson", "is not JSON"),
        ("prose", "is not JSON"),
        ("shape", '"facts" list'),
        ("itemshape", "facts[0] that is not an object"),
        ("nocontent", "facts[0] without a content string"),
    ],
)
async def test_bad_output(provider: OpenAIProvider, model: str, what: str) -> None:
    with pytest.raises(Unavailable) as err:
        await extractor(provider, model).extract(MESSAGES, KNOWN)
    assert err.value.reason == BAD_OUTPUT
    assert what in err.value.message
    assert "sk-secret" not in err.value.message


async def test_rate_limited(provider: OpenAIProvider) -> None:
    with pytest.raises(ResourceExhausted) as err:
        await extractor(provider, "ratelimit").extract(MESSAGES, KNOWN)
    assert err.value.reason == "PROVIDER_RATE_LIMITED" and err.value.retry_after_s == 7.0
    assert err.value.metadata["http_status"] == "429"


async def test_timeout(provider: OpenAIProvider) -> None:
    with pytest.raises(DeadlineExceeded) as err:
        await extractor(provider, "stall").extract(MESSAGES, KNOWN)
    assert err.value.reason == "PROVIDER_TIMEOUT"


async def test_server_error_and_auth(provider: OpenAIProvider) -> None:
    with pytest.raises(Unavailable) as err:
        await extractor(provider, "broken").extract(MESSAGES, KNOWN)
    assert err.value.reason == "PROVIDER_UNAVAILABLE"
    with pytest.raises(FailedPrecondition) as auth:
        await extractor(provider, "auth").extract(MESSAGES, KNOWN)
    assert auth.value.reason == "PROVIDER_AUTH_FAILED" and "sk-secret" not in auth.value.message


async def test_fallback_uses_rules_when_the_llm_fails(provider: OpenAIProvider) -> None:
    both = FallbackExtractor(extractor(provider, "ratelimit"), RulesExtractor())
    assert both.name == "llm+rules"
    with capture_logs() as logs:
        facts = await both.extract(MESSAGES, KNOWN)
    assert {(f.slot, f.value) for f in facts if f.slot} == {
        ("location", "Lyon"),
        ("allergies", "walnuts"),
    }
    warning = next(e for e in logs if e["event"] == "extractor_fallback")
    assert warning["log_level"] == "warning" and warning["reason"] == "PROVIDER_RATE_LIMITED"
    bad = FallbackExtractor(extractor(provider, "notjson"), RulesExtractor())
    assert [f.value for f in await bad.extract(MESSAGES, KNOWN) if f.slot] == ["Lyon", "walnuts"]
    # when the LLM answers, its facts are the ones returned
    good = FallbackExtractor(extractor(provider, "good"), RulesExtractor())
    assert [f.updates for f in await good.extract(MESSAGES, KNOWN)] == ["mem-7", ""]
