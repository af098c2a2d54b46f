"""Unit tests of memgrpc.core.memory.recall on small synthetic conversations (no model needed)."""

from __future__ import annotations

import random
import zlib
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from memgrpc.core.memory.recall import RankParams, UserIndex, embed_text, index_text, tokenize
from memgrpc.core.memory.recall.text import is_question, is_when_query, query_day_ranges

DIM = 16
DAY1 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
DAY2 = datetime(2023, 6, 20, 9, 0, tzinfo=UTC)


def vec(text: str) -> npt.NDArray[np.float32]:
    """A deterministic pseudo-random unit vector: unrelated texts are near-orthogonal."""
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def conversation(
    index: UserIndex, session: str, when: datetime, turns: list[tuple[str, str]]
) -> None:
    for i, (speaker, text) in enumerate(turns):
        index.add(
            f"{session}:{i}",
            text,
            vec(embed_text(text, speaker)),
            speaker=speaker,
            session=session,
            position=i,
            time=when,
        )


def ids(results: list[tuple[str, float]]) -> list[str]:
    return [i for i, _ in results]


def chat() -> UserIndex:
    index = UserIndex(dim=DIM)
    conversation(
        index,
        "s1",
        DAY1,
        [
            ("Ana", "Hi Ben! I went hiking in the mountains yesterday."),
            ("Ben", "Nice! Which trail did you take?"),
            ("Ana", "The Eagle Ridge loop, it was gorgeous."),
            ("Ben", "I love hiking too, I hiked there with my sister."),
            ("Ana", "We should go together sometime."),
        ],
    )
    conversation(
        index,
        "s2",
        DAY2,
        [
            ("Ben", "Hey Ana, I adopted a puppy last week!"),
            ("Ana", "So cute! What did you name the puppy?"),
            ("Ben", "Pepper! She is tiny and brown."),
            ("Ana", "Pepper is a lovely name."),
        ],
    )
    return index


def test_text_helpers() -> None:
    assert tokenize("Caroline's paintings, and the RUNNING!") == ["carolin", "paint", "run"]
    assert index_text("hi", "Ana", DAY1) == "Ana: hi 8 May 2023"
    assert embed_text("hi", "Ana") == 'Ana said, "hi"'
    assert embed_text("hi") == "hi"
    assert is_question("Where did you go? ") and not is_question("I went.")
    assert is_when_query("When did Ana hike?") and not is_when_query("What did Ana hike?")
    day = DAY1.date().toordinal()
    assert query_day_ranges("What did Ana do on 8 May, 2023?") == [(day, day)]
    assert query_day_ranges("What did Ana do on May 8, 2023?") == [(day, day)]
    ((lo, hi),) = query_day_ranges("What happened in May 2023?")
    assert (lo, hi) == (datetime(2023, 5, 1).toordinal(), datetime(2023, 5, 31).toordinal())
    assert query_day_ranges("What may happen?") == []
    assert query_day_ranges("What did I do yesterday?", now=DAY1) == [(day - 1, day - 1)]


def test_scores_in_unit_interval_sorted_and_limited() -> None:
    index = chat()
    results = index.search("hiking trail in the mountains", vec("query"), k=5)
    assert len(results) == 5
    scores = [s for _, s in results]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert len(index.search("hiking", vec("q"), k=100)) == len(index) == 9
    assert index.search("hiking", vec("q"), k=0) == []
    assert UserIndex(dim=DIM).search("anything", vec("q")) == []


def test_lexical_match_ranks_first() -> None:
    results = chat().search("What trail is Eagle Ridge?", vec("unrelated query"), k=3)
    assert results[0][0] == "s1:2"


def test_speaker_cue_prefers_the_named_participant() -> None:
    index = UserIndex(dim=DIM)
    # The same statement (and vector) from both speakers, in separate sessions.
    text = "I really enjoy pottery classes."
    for speaker, session in (("Ana", "a"), ("Ben", "b")):
        index.add(f"{session}:0", text, vec(text), speaker=speaker, session=session, time=DAY1)
    query_vec = vec("pottery?")
    assert ids(index.search("What does Ben enjoy about pottery?", query_vec, 2))[0] == "b:0"
    assert ids(index.search("What does Ana enjoy about pottery?", query_vec, 2))[0] == "a:0"

    def gap(params: RankParams) -> float:
        scores = dict(
            index.search("What does Ben enjoy about pottery?", query_vec, 2, params=params)
        )
        return scores["b:0"] - scores["a:0"]

    # The name also matches the indexed "Ben: ..." text; the cue widens the gap.
    assert gap(RankParams()) > gap(RankParams(speaker=0.0)) + 0.05
    # Two participants named: no cue.
    both = dict(index.search("Do Ana and Ben enjoy pottery?", query_vec, 2))
    assert both["a:0"] == pytest.approx(both["b:0"])


def test_answer_after_matching_question_is_found() -> None:
    index = chat()
    # "Pepper! She is tiny and brown." shares no word with the query (and the query vector
    # is neutral): it is found as the reply to the question turn that echoes the query.
    query, neutral = "What is the puppy called? What was its name?", np.zeros(DIM)
    results = index.search(query, neutral, k=3)
    assert "s2:2" in ids(results)

    def answer_score(params: RankParams) -> float:
        return dict(index.search(query, neutral, k=9, params=params))["s2:2"]

    assert answer_score(RankParams()) > answer_score(RankParams(answer=0.0)) + 0.005
    isolated = RankParams(
        answer=0.0, neighbour=0.0, window=0.0, session_lexical=0.0, session_best=0.0
    )
    assert answer_score(isolated) == 0.0


def test_neighbour_expansion_lifts_the_adjacent_turn() -> None:
    index = UserIndex(dim=DIM)
    conversation(
        index,
        "s",
        DAY1,
        [
            ("Ana", "Look at this photo I took."),
            ("Ben", "Wow, the sunset over the lake is beautiful!"),
            ("Ana", "Thanks, I love it."),
        ],
    )
    conversation(index, "t", DAY1, [("Ana", "Look at this photo I took.")])
    query_vec = vec("unrelated query")
    with_context = index.search("photo of a lake sunset", query_vec, k=4, dedup=False)
    alone = index.search(
        "photo of a lake sunset",
        query_vec,
        k=4,
        params=RankParams(window=0.0, neighbour=0.0, session_lexical=0.0, session_best=0.0),
        dedup=False,
    )
    # Alone, the two "Look at this photo" turns tie on words; in context the one next
    # to the sunset turn wins.
    ranked = ids(with_context)
    assert ranked.index("s:0") < ranked.index("t:0")
    assert dict(alone)["s:0"] == pytest.approx(dict(alone)["t:0"])


def test_plain_memories_rank_by_hybrid_relevance() -> None:
    index = UserIndex(dim=DIM)
    facts = {
        "m1": "User is allergic to peanuts.",
        "m2": "User lives in Lisbon.",
        "m3": "User's favourite colour is green.",
    }
    for item_id, text in facts.items():
        index.add(item_id, text, vec(text))
    # Lexical: the word matches.
    assert ids(index.search("peanuts allergy?", vec("x"), 1)) == ["m1"]
    # Dense: no shared word, but the query vector is that memory's vector.
    assert ids(index.search("where is home", vec(facts["m2"]), 1)) == ["m2"]
    # Both agree: that one first.
    assert ids(index.search("favourite colour", vec(facts["m3"]), 3))[0] == "m3"


def test_remove_and_update() -> None:
    index = chat()
    assert "s1:2" in index
    assert index.remove("s1:2") is True
    assert index.remove("s1:2") is False
    assert "s1:2" not in index and len(index) == 8
    assert "s1:2" not in ids(index.search("Eagle Ridge loop", vec("q"), 10))

    index.update("s2:2", text="Her name is Biscuit.", vector=vec("Biscuit"))
    assert index.search("Biscuit", vec("q"), 1)[0][0] == "s2:2"
    assert index.search("Pepper", vec("q"), 1)[0][0] == "s2:3"
    info = index.get("s2:2")
    assert (
        info is not None and info.position == 2 and info.session == "s2" and info.speaker == "Ben"
    )
    with pytest.raises(ValueError, match="vector"):
        index.update("s2:2", text="Something else entirely")
    with pytest.raises(KeyError):
        index.update("missing", time=DAY1)
    # add() with an existing id replaces it.
    index.add(
        "s2:3", "Totally new words: zeppelin.", vec("z"), speaker="Ana", session="s2", position=3
    )
    assert len(index) == 8
    assert index.search("zeppelin", vec("q"), 1)[0][0] == "s2:3"


def _build(items: list[tuple[str, str, str, str, int]]) -> UserIndex:
    index = UserIndex(dim=DIM)
    for item_id, speaker, session, text, pos in items:
        index.add(
            item_id, text, vec(text), speaker=speaker, session=session, position=pos, time=DAY1
        )
    return index


def test_removal_keeps_index_equal_to_a_fresh_build() -> None:
    rng = random.Random(7)
    words = [
        "hike",
        "trail",
        "lake",
        "dog",
        "puppy",
        "cake",
        "recipe",
        "guitar",
        "paint",
        "museum",
        "book",
        "movie",
    ]
    items = []
    for s in range(6):
        for p in range(8):
            speaker = "Ana" if p % 2 == 0 else "Ben"
            text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
            if rng.random() < 0.2:
                text += "?"
            items.append((f"{s}-{p}", speaker, f"sess{s}" if s < 5 else "", text, p))
    index = _build(items)
    removed = set(rng.sample([i[0] for i in items], 20))
    for item_id in sorted(removed):
        assert index.remove(item_id)
    fresh = _build([i for i in items if i[0] not in removed])
    for query in ["hike lake", "Did Ana bake a cake?", "When did Ben paint?", "guitar book movie"]:
        qv = vec(query)
        got = index.search(query, qv, 50, dedup=False)
        want = fresh.search(query, qv, 50, dedup=False)
        assert ids(got) == ids(want)
        assert [s for _, s in got] == pytest.approx([s for _, s in want])


def test_reserved_room_then_growth_keeps_every_item() -> None:
    """A load reserves the exact room; later writes grow it by a quarter at a time."""
    rng = random.Random(3)
    words = ["kayak", "river", "bread", "oven", "violin", "chess", "garden", "tulip"]
    items = [
        (f"m{i}", "", "", " ".join(rng.choice(words) for _ in range(4)), i) for i in range(150)
    ]
    index = UserIndex(dim=DIM)
    index.reserve(40)
    for item_id, speaker, session, text, pos in items:
        index.add(
            item_id, text, vec(text), speaker=speaker, session=session, position=pos, time=DAY1
        )
    fresh = _build(items)  # grown from nothing
    assert len(index) == 150
    for query in ["kayak river", "violin chess", "tulip"]:
        qv = vec(query)
        got = index.search(query, qv, 150, dedup=False)
        want = fresh.search(query, qv, 150, dedup=False)
        assert ids(got) == ids(want)
        assert [s for _, s in got] == pytest.approx([s for _, s in want])


def test_ties_are_deterministic_and_independent_of_insertion_order() -> None:
    texts = [(f"id{i}", "Same words here.") for i in range(12)]
    forward, backward = UserIndex(dim=DIM), UserIndex(dim=DIM)
    for item_id, text in texts:
        forward.add(item_id, text, vec(text))
    for item_id, text in reversed(texts):
        backward.add(item_id, text, vec(text))
    a = forward.search("same words", vec("q"), 12, dedup=False)
    b = backward.search("same words", vec("q"), 12, dedup=False)
    assert len({s for _, s in a}) == 1
    assert ids(a) == ids(b) == ids(forward.search("same words", vec("q"), 12, dedup=False))
    # stored memories (no speaker) with the same text are distinct results, never merged
    assert len(forward.search("same words", vec("q"), 12)) == 12
    # a turn repeated by the same speaker is merged (another speaker's is not)
    turns = UserIndex(dim=DIM)
    for i in range(3):
        turns.add(f"t{i}", "Thanks!", vec("thanks"), speaker="Ana", session="s", position=i)
    turns.add("t3", "thanks", vec("thanks"), speaker="Ben", session="s", position=3)
    assert sorted(i[0] for i in ids(turns.search("thanks", vec("thanks"), 10))) == ["t", "t"]
    assert len(turns.search("thanks", vec("thanks"), 10, dedup=False)) == 4


def test_filter_by_ids_and_predicate() -> None:
    index = chat()
    only = index.search("hiking", vec("q"), 10, filter={"s2:0", "s2:1"})
    assert set(ids(only)) == {"s2:0", "s2:1"}
    by_pred = index.search("hiking", vec("q"), 10, filter=lambda i: i.startswith("s1:"))
    assert ids(by_pred) and all(i.startswith("s1:") for i in ids(by_pred))
    assert index.search("hiking", vec("q"), 10, filter=[]) == []


def test_date_in_query_prefers_items_from_then() -> None:
    index = UserIndex(dim=DIM)
    index.add("old", "I baked bread at home.", vec("bread"), time=DAY1)
    index.add("new", "I baked bread at work.", vec("bread"), time=DAY2)
    assert ids(index.search("What did I bake on 20 June, 2023?", vec("q"), 2))[0] == "new"
    assert ids(index.search("What did I bake in May 2023?", vec("q"), 2))[0] == "old"


def test_bad_input_is_rejected() -> None:
    index = UserIndex(dim=DIM)
    with pytest.raises(ValueError, match="dimensions"):
        index.add("x", "text", np.ones(DIM + 1))
    with pytest.raises(ValueError, match="non-finite"):
        index.add("x", "text", np.full(DIM, np.nan))
    index.add("x", "text", np.ones(DIM))
    with pytest.raises(ValueError, match="dimensions"):
        index.search("text", np.ones(3))
    with pytest.raises(ValueError):
        RankParams(window=-1.0)
    with pytest.raises(ValueError):
        RankParams(lexical=1.5)


def _chat_turns_and_a_memory() -> UserIndex:
    """The README's flow in miniature: a stored memory, then a session whose last turn asks
    the search's own question (its vector is the query's: the strongest dense match)."""
    index = UserIndex(dim=DIM)
    index.add("mem", "User prefers a dark theme", vec("dark"))
    index.add("bike", "User owns a red bicycle", vec("bike"))
    turns = [
        ("user", "For team scheduling, use Berlin when I mention Europe.", vec("berlin")),
        ("assistant", "Got it: Berlin for Europe.", vec("got it")),
        ("user", "Which city do I use for Europe?", vec("city")),
        ("user", "What theme do I like?", vec("theme query")),
    ]
    for i, (speaker, text, v) in enumerate(turns):
        index.add(f"t{i}", text, v, speaker=speaker, session="s", position=i)
    return index


def test_a_relevant_stored_memory_outranks_the_question_and_turns_it_beats() -> None:
    index = _chat_turns_and_a_memory()
    q, qv = "what theme does the user like?", vec("theme query")
    ranked = index.search(q, qv, 10)
    assert ids(ranked)[:2] == ["mem", "t3"]
    scores = dict(ranked)
    assert scores["mem"] > scores["t3"] > 0.3
    # without step 7 the question came first; turns keep their scores and order either way
    before = index.search(q, qv, 10, params=RankParams(memory_floor=1.0))
    assert ids(before)[0] == "t3"
    assert [(i, s) for i, s in ranked if i.startswith("t")] == [
        (i, s) for i, s in before if i.startswith("t")
    ]
    # an unrelated memory is not lifted: its score is its own
    assert scores["bike"] == dict(before)["bike"] < scores["t3"]


def test_an_unrelated_memory_lifts_nothing() -> None:
    index = _chat_turns_and_a_memory()
    away = -(vec("dark") + vec("bike"))  # the memories' vectors point away from the query
    q, qv = "which city for Europe scheduling?", away / np.linalg.norm(away)
    ranked = index.search(q, qv, 10)
    assert ranked == index.search(q, qv, 10, params=RankParams(memory_floor=1.0))
    assert ids(ranked)[-2:] in (["mem", "bike"], ["bike", "mem"])


def test_a_memory_stored_on_its_own_is_its_own_context() -> None:
    """The same text and vector as a turn in the middle of a session scores at least as high
    stored on its own (it has no neighbours to borrow from, so it counts as its own)."""
    index = chat()
    text = "The Eagle Ridge loop, it was gorgeous."
    index.add("alone", text, vec(embed_text(text, "Ana")), speaker="Ana")
    scores = dict(
        index.search(
            "Eagle Ridge loop", vec("q"), 20, params=RankParams(memory_floor=1.0), dedup=False
        )
    )
    assert scores["alone"] >= scores["s1:2"] > 0
    with pytest.raises(ValueError, match="memory_floor"):
        RankParams(memory_floor=1.5)


def test_a_derived_fact_stands_alone_and_is_not_promoted_above_turns() -> None:
    """An extracted fact (or summary) competes beside the turns it came from: indexed with a
    session it still has no neighbours, and step 7 does not lift it over turns."""
    index = _chat_turns_and_a_memory()
    index.add("fact", "User prefers a dark theme", vec("dark"), session="s", derived=True)
    q, qv = "what theme does the user like?", vec("theme query")
    scores = dict(index.search(q, qv, 10, dedup=False))
    # the same text as "mem", which step 7 lifts; the derived copy keeps its own score
    plain = dict(index.search(q, qv, 10, params=RankParams(memory_floor=1.0), dedup=False))
    assert scores["mem"] > scores["t3"] > scores["fact"] == plain["fact"]
    # no neighbours: it did not join session "s" as its last turn
    info = index.get("fact")
    assert info is not None and info.session == ""
    assert plain["t3"] == scores["t3"]
