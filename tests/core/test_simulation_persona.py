"""The scripted persona's ground truth: the fact it changes is a place, and a name written with
accents is one word (the judge matches replies on these words)."""

from __future__ import annotations

from memgrpc.core.simulation.judge import recall
from memgrpc.core.simulation.model import Persona, Turn
from memgrpc.core.simulation.persona import build_script, parse_facts


def changes(p: Persona) -> list[str]:
    script = build_script(p, 3, 5)
    return [t.text for s in script.sessions for t in s if t.intent == "change"]


def test_the_changed_fact_is_where_the_user_lives_not_a_name_in_the_sentence() -> None:
    grace = Persona(
        name="Grace",
        background="Grace lives with her husband Declan and an old border collie called Bess.",
    )
    assert changes(grace) == []  # no place in it: nothing to move (Bess stays a dog)
    kenji = Persona(name="Kenji", background="He moved to Halifax from Osaka two years ago.")
    assert changes(kenji) == []  # "to Halifax" is not "in Halifax"; Osaka is where he came from
    alex = Persona(name="Alex", background="Alex lives in Leeds with her dog Pepper.")
    [said] = changes(alex)
    assert "Leeds" not in said and "Pepper" in said


def test_a_name_with_accents_is_one_word_in_the_marks_and_the_judge() -> None:
    tomas = Persona(name="Tomás", background="Tomás is married to Lucía. They live in Málaga.")
    marks = {f.key: f.marks for f in parse_facts(tomas)}
    assert marks["family"] == ("lucía",)
    assert marks["live"] == ("málaga",)
    probe = {"key": "family", "expected": "lucía", "stale": ""}
    asked = Turn("user", "Do you remember my family?", 1, probe=probe)
    assert recall([asked, Turn("assistant", "You are married to Lucía.", 1)]).correct == 1
    # a reply naming someone else whose name shares the first letters is not the fact
    assert recall([asked, Turn("assistant", "You mentioned Lucas.", 1)]).correct == 0
