"""Shared fixtures: one real LocalEmbedder per session (loading it takes ~0.3 s)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import memgrpc  # noqa: F401
except ImportError:  # repo not pip-installed: run against the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from memgrpc.embed import LocalEmbedder


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder()


#: Short, realistic memory-like sentences of mixed length (reused by several tests).
MIXED_TEXTS: list[str] = [
    "Hi.",
    "The user's dog is named Biscuit.",
    "",
    "Prefers oat milk.",
    "My sister is moving to Lisbon next spring and wants advice on neighbourhoods "
    "that are quiet, close to the river, and not too expensive for a family of four.",
    "Allergic to peanuts and shellfish.",
    "Meeting moved to Thursday",
    "The quarterly planning meeting was postponed because half of the team is travelling "
    "to the conference in Berlin, so the new date is still to be decided.",
    "Likes jazz",
    "   ",
    "Wants to learn Rust this year, mostly for systems programming and command-line tools.",
    "Owns a mechanical keyboard with brown switches.",
    "ok",
    "Their landlord still has not fixed the broken dishwasher in the kitchen.",
    "Remind me to file the tax return before the end of the month!",
    "Vegetarian, but eats fish occasionally when travelling.",
] * 3
