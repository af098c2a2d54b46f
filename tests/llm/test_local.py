"""The built-in responder: grounded answers, the plain fallback, word-by-word streaming."""

from __future__ import annotations

import asyncio

from memgrpc.llm import ChatMessage, Fact, LocalProvider
from memgrpc.llm.local import NOTHING_TO_GROUND, SELF, WORDS_PER_YIELD, answer

DOG = Fact("The user's dog is named Biscuit.", "", 0.9)
NOISE = (
    Fact("The user lives in Lisbon. They work as a nurse.", "", 0.5),
    Fact("The user prefers tea over coffee.", "", 0.4),
)


def prompt(question: str, *facts: Fact, history: tuple[str, ...] = ()) -> list[ChatMessage]:
    return [
        ChatMessage("system", "context", facts),
        *(ChatMessage("user", h) for h in history),
        ChatMessage("user", question),
    ]


def test_answers_from_the_matching_memory() -> None:
    reply = answer(prompt("What is my dog's name?", *NOISE, DOG))
    assert "Biscuit" in reply
    assert "Lisbon" not in reply and "tea" not in reply


def test_picks_the_matching_sentence_of_a_longer_memory() -> None:
    reply = answer(prompt("What do I do for work?", *NOISE, DOG))
    assert "nurse" in reply and "Lisbon" not in reply


def test_earlier_user_turns_ground_too_but_not_questions_or_the_assistant() -> None:
    msgs = prompt(
        "What is my favourite colour?",
        Fact("Your favourite colour is red, I think.", "assistant", 0.9),
        history=("My favourite colour is teal.", "What is my favourite colour?"),
    )
    reply = answer(msgs)
    assert "teal" in reply and "red" not in reply
    assert reply.count("favourite colour") == 1  # the earlier question is not an answer


def test_a_summarys_assistant_lines_are_not_facts() -> None:
    summary = Fact(
        "user: My sister Ines lives in Porto.\nassistant: Your sister lives in Madrid, I think.",
        "",
        0.9,
    )
    reply = answer(prompt("Where does my sister live?", summary))
    assert "Porto" in reply and "Madrid" not in reply
    only_assistant = Fact("assistant: Your sister lives in Madrid.", "", 0.9)
    assert "Madrid" not in answer(prompt("Where does my sister live?", only_assistant))


def test_answers_a_question_from_what_recall_found_by_meaning() -> None:
    """README: "What theme do I like?" shares no word with "User prefers dark mode"; recall
    found it by meaning and ranked it first, and the reply uses it (and says what it is)."""
    facts = (
        Fact("User prefers dark mode", "", 0.71),
        Fact("The user owns a red bicycle.", "", 0.2),
        Fact("Your theme is light, I think?", "assistant", 0.9),
    )
    reply = answer(prompt("What theme do I like?", *facts, history=("I like Berlin.",)))
    assert "User prefers dark mode." in reply
    assert "bicycle" not in reply and "light" not in reply and "Berlin" not in reply
    assert reply.startswith(SELF) and "not a language model" in reply
    # memories close to the best one come along, in recall order
    two = answer(prompt("Which one do I like?", Fact("A.", "", 0.5), Fact("B.", "", 0.45)))
    assert two.endswith("A. B.")


def test_word_matched_answers_say_what_it_is_too() -> None:
    assert answer(prompt("What is my dog's name?", *NOISE, DOG)).startswith(SELF)


def test_says_what_it_is_when_nothing_matches() -> None:
    assert answer(prompt("hello there", *NOISE)) == NOTHING_TO_GROUND
    assert answer(prompt("What is my dog's name?")) == NOTHING_TO_GROUND
    assert "built-in responder" in NOTHING_TO_GROUND


def test_deterministic() -> None:
    msgs = prompt("Where do I live and what do I drink?", *NOISE, DOG)
    assert len({answer(msgs) for _ in range(5)}) == 1


async def test_streams_word_by_word_and_caps_tokens() -> None:
    p = LocalProvider()
    gen = p.stream(prompt("What is my dog's name?", DOG), p.default_model, None, None)
    deltas = [d async for d in gen]
    assert len(deltas) > 3 and all(d.count(" ") <= 1 for d in deltas)
    assert "".join(deltas) == answer(prompt("What is my dog's name?", DOG))
    assert gen.first_token_s is not None and gen.usage is None  # the caller counts tokens
    capped = [d async for d in p.stream(prompt("What is my dog's name?", DOG), "", 0.0, 3)]
    assert len(capped) == 3


async def test_cancel_stops_at_the_next_yield() -> None:
    p = LocalProvider()
    got: list[str] = []

    async def consume() -> None:
        async for d in p.stream(prompt("hello"), "", None, None):
            got.append(d)
            if len(got) == 2:
                task.cancel()

    task = asyncio.ensure_future(consume())
    await asyncio.gather(task, return_exceptions=True)
    # it stops at its next yield to the loop, not at the end of the reply
    assert task.cancelled() and len(got) == WORDS_PER_YIELD
    assert len(answer(prompt("hello")).split()) > 2 * WORDS_PER_YIELD
