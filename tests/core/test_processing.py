"""The extractive summary: sentence choice, budget, order, determinism."""

from __future__ import annotations

import numpy as np

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.processing import Sentence, pick, render, split_sentences


def test_split_sentences() -> None:
    text = "I moved to Berlin. It is great!\nWhat about you?  Fine"
    assert split_sentences(text) == [
        "I moved to Berlin.",
        "It is great!",
        "What about you?",
        "Fine",
    ]


def _sentences(n: int, words: int = 5) -> list[Sentence]:
    return [Sentence(i // 2, i % 2, " ".join(["w"] * words)) for i in range(n)]


def test_pick_prefers_central_keeps_order_and_budget() -> None:
    centroid = np.array([1.0, 0.0, 0.0])
    vecs = np.array(
        [[0.0, 1.0, 0.0], [0.8, 0.6, 0.0], [0.1, 0.99, 0.0], [0.8, 0.0, 0.6], [0.9, 0.0, -0.436]]
    )
    picked = pick(_sentences(5), vecs, centroid, max_words=10)
    # the most central (index 4), then the earlier of two equal ones (1 before 3); 10 words
    # fit two; returned in conversation order
    assert [(s.message, s.index) for s in picked] == [(0, 1), (2, 0)]
    again = pick(_sentences(5), vecs, centroid, max_words=10)
    assert again == picked


def test_pick_skips_near_duplicates() -> None:
    centroid = np.array([1.0, 0.0])
    vecs = np.array([[1.0, 0.0], [1.0, 0.001], [0.8, 0.6]])
    picked = pick(_sentences(3), vecs, centroid, max_words=100)
    assert [(s.message, s.index) for s in picked] == [(0, 0), (1, 0)]


def test_pick_truncates_a_single_long_sentence() -> None:
    long = [Sentence(0, 0, " ".join(f"w{i}" for i in range(300)))]
    (only,) = pick(long, np.array([[1.0, 0.0]]), np.array([1.0, 0.0]), max_words=20)
    assert len(only.text.split()) == 21 and only.text.endswith("…")


def test_render_groups_turns_by_speaker() -> None:
    msgs = [
        Message(id="a", name="Ana", content="x"),
        Message(id="b", role="assistant", content="y"),
    ]
    picked = [Sentence(0, 0, "One."), Sentence(0, 1, "Two."), Sentence(1, 0, "Three.")]
    assert render(picked, msgs) == "Ana: One. Two.\nassistant: Three."
