"""RulesExtractor on casual phrasing: subjects left out ("turned 41 in May"), adverbs before a
value ("I'm barely 19"), preferences said sideways ("X isn't my thing", "I'd far rather X"),
trips, job changes without "left", habits beyond smoking, owned things, and comma-list
introductions. Every sentence here is written for these tests."""

from __future__ import annotations

import pytest

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract.rules import extract_facts
from memgrpc.core.intelligence.facts import Fact


def facts(*texts: str) -> list[Fact]:
    return extract_facts([Message(id=f"m{i}", role="user", content=t) for i, t in
                          enumerate(texts, 1)])  # fmt: skip


def slot(text: str, name: str) -> Fact | None:
    return next((f for f in facts(text) if f.slot == name), None)


def holding(text: str, word: str) -> list[Fact]:
    return [f for f in facts(text) if word.lower() in f.content.lower()]


# -- 1. subjectless statements, adverbs before an age --------------------------------------------


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("turned 41 in May, still processing it", "41"),
        ("Just turned thirty last Tuesday!", "30"),
        ("I'm only 19 so my parents still worry.", "19"),
        ("I'm barely 22 and already tired of meetings.", "22"),
        ("I'm nearly 60, believe it or not.", "60"),
        ("I'm just 35 but my back says otherwise.", "35"),
    ],
)
def test_age_without_subject_or_after_an_adverb(text: str, age: str) -> None:
    fact = slot(text, "age")
    assert fact is not None and fact.value == age, facts(text)


@pytest.mark.parametrize(
    ("text", "job"),
    [
        ("been a dental hygienist for nine years, love it", "hygienist"),
        ("Been working as a sous chef since the spring.", "chef"),
        ("I've been a primary school teacher for over a decade.", "teacher"),
        ("We have been a pilot family forever, I have been a pilot since 2009.", "pilot"),
        ("working as a courier these days", "courier"),
    ],
)
def test_occupation_said_with_been_or_without_subject(text: str, job: str) -> None:
    fact = slot(text, "occupation")
    assert fact is not None and job in fact.value, facts(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm only 5 minutes away.",
        "turned the heating off, it was boiling",
        "Been there, done that.",
        "My brother turned 50 yesterday.",
        "My sister moved to Oslo, started a job at the hospital.",
        "Play some jazz please.",
        "Live in the moment, they say.",
        "Don't forget to remind me about the dentist.",
    ],
)
def test_what_a_dropped_subject_does_not_make(text: str) -> None:
    out = facts(text)
    assert not [f for f in out if f.slot in ("age", "location", "occupation")], out
    assert not [f for f in out if f.content.startswith("User") and "sister" not in text and
                "brother" not in text and f.slot], out  # fmt: skip


def test_a_dropped_subject_goes_back_after_a_clause_about_the_user() -> None:
    out = facts("I'm 33, moved to Tallinn in 2021, work as a translator")
    assert {f.slot: f.value for f in out if f.slot} == {
        "age": "33",
        "location": "Tallinn",
        "occupation": "translator",
    }


# -- 2. preferences said sideways --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "word", "slot_name"),
    [
        ("Not a fan of musicals, honestly.", "musicals", "dislikes"),
        ("not really a fan of spicy food at all", "spicy food", "dislikes"),
        ("Can't stand the smell of durian.", "durian", "dislikes"),
        ("Reality TV isn't my thing.", "Reality TV", "dislikes"),
        ("Karaoke is not really my cup of tea.", "Karaoke", "dislikes"),
        ("Board games are totally my thing.", "Board games", "likes"),
        ("Huge fan of Scandinavian crime novels.", "crime novels", "likes"),
        ("Really love slow mornings with a book.", "slow mornings", "likes"),
    ],
)
def test_sideways_preferences(text: str, word: str, slot_name: str) -> None:
    hit = holding(text, word)
    assert hit and hit[0].type == "preference", facts(text)
    assert hit[0].slot == slot_name and word.lower() in hit[0].value.lower(), hit


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("I'd much rather walk than take the bus.", "walk"),
        ("I would far rather read a paper book than an e-reader.", "paper book"),
        ("On holiday I'd way rather rent a cottage than stay in a hotel.", "cottage"),
        ("When I eat out I'd rather sit outside.", "sit outside"),
        ("I'd sooner cycle in the rain than drive.", "cycle"),
    ],
)
def test_would_rather_is_a_preference(text: str, word: str) -> None:
    hit = holding(text, word)
    assert hit and hit[0].type == "preference", facts(text)


@pytest.mark.parametrize(
    "text",
    [
        "That isn't my thing to decide.",
        "It's not my thing.",
        "I'd rather not say.",
        "Not a fan of it.",
        "My sister can't stand cats.",
    ],
)
def test_no_sideways_preference(text: str) -> None:
    assert not [f for f in facts(text) if f.slot in ("likes", "dislikes")], facts(text)


# -- 3. trips: a plan, never a new home ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("Heading to Krakow for a friend's wedding next month.", "Krakow"),
        ("flying to Nairobi on Thursday for work", "Nairobi"),
        ("Off to the Algarve for the weekend!", "Algarve"),
        ("I'm heading over to Dublin for a few days.", "Dublin"),
        ("We're off to Iceland for a week in March, so excited.", "Iceland"),
        ("Driving to Leipzig tomorrow, any tips for the autobahn?", "Leipzig"),
    ],
)
def test_trips_are_plans(text: str, place: str) -> None:
    out = facts(text)
    plan = [f for f in out if place in f.content]
    assert plan and "plans" in plan[0].categories, out
    assert not [f for f in out if f.slot == "location"], out


@pytest.mark.parametrize(
    "text",
    [
        "I'm off to bed.",
        "Going to bed, night!",
        "Heading to the kitchen, brb",
    ],
)
def test_going_somewhere_now_is_no_trip(text: str) -> None:
    out = facts(text)
    assert not [f for f in out if f.slot == "location" or "plans" in f.categories], out


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("I'm vegan, what should I cook tonight?", "vegan"),
        ("Moving to Lyon in May - any advice on neighbourhoods?", "Lyon"),
        ("I live in Tromsø, where can I see the northern lights?", "Tromsø"),
    ],
)
def test_a_statement_before_a_question_is_kept(text: str, word: str) -> None:
    assert holding(text, word), facts(text)


@pytest.mark.parametrize(
    "text", ["I live in Oslo, right?", "Where do I live, do you remember?", "So, any ideas?"]
)
def test_a_question_tag_or_a_question_keeps_nothing(text: str) -> None:
    assert facts(text) == []


# -- 4. a new job after the old one ends --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "job"),
    [
        ("Quit the warehouse job, I'm a bus driver now.", "driver"),
        ("I left my job at the bank and I'm a baker now.", "baker"),
        ("Got laid off in March. I'm a freelance illustrator now.", "illustrator"),
        ("Switched careers last year, I'm a nurse these days.", "nurse"),
        ("I handed in my notice at the agency; I'm an electrician now.", "electrician"),
        ("I got a job as a librarian.", "librarian"),
    ],
)
def test_a_new_occupation_after_a_job_ends_is_a_change(text: str, job: str) -> None:
    fact = slot(text, "occupation")
    assert fact is not None and job in fact.value and fact.change, facts(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm a nurse now.",
        "I'm a baker at a small bakery.",
        "I quit sugar and I'm a runner now.",
        "My husband quit his job, he's a chef now.",
    ],
)
def test_a_job_without_an_end_is_no_change(text: str) -> None:
    fact = slot(text, "occupation")
    assert fact is None or not fact.change, facts(text)


@pytest.mark.parametrize(
    ("text", "org"),
    [
        ("I quit my job at Bolt, I'm a pastry chef now.", "Bolt"),
        ("Got laid off from Vantor last week.", "Vantor"),
        ("I was let go by Quillsoft in the restructuring.", "Quillsoft"),
        ("I resigned from Harlow & Finch to go freelance.", "Harlow"),
        ("Left Copperleaf in May, freelancing now.", "Copperleaf"),
    ],
)
def test_leaving_a_named_employer_ends_it(text: str, org: str) -> None:
    ended = [f for f in facts(text) if f.slot == "employer"]
    assert ended and ended[0].value == org and ended[0].negated and ended[0].change, facts(text)


@pytest.mark.parametrize(
    "text", ["I left Lisbon in 2019.", "Quit Berlin for the countryside.", "Left the keys at home."]
)
def test_leaving_a_place_ends_no_employer(text: str) -> None:
    assert not [f for f in facts(text) if f.slot == "employer"], facts(text)


# -- 5. habits beyond smoking -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "topic"),
    [
        ("I drink about five espressos a day.", "I quit coffee in April.", "caffeine"),
        ("I have two energy drinks every morning.", "Gave up caffeine completely.", "caffeine"),
        ("I eat way too much chocolate every evening.", "I gave up sugar for Lent.", "sugar"),
        ("I'm on Instagram for hours every day.", "I quit social media in June.", "social media"),
        ("I gamble on the horses every Saturday.", "I stopped gambling last year.", "gambling"),
        ("I drink a few beers most nights.", "I gave up alcohol in January.", "drinking"),
        ("I chew a pack of nicotine gum a day.", "I finally quit the nicotine gum.", "nicotine"),
        ("I drink three cans of kombucha a day.", "I've given up kombucha.", "kombucha"),
    ],
)
def test_quitting_a_habit_shares_its_topic(before: str, after: str, topic: str) -> None:
    first = [f for f in facts(before) if f.topic]
    assert first and first[0].topic == topic and not first[0].negated, facts(before)
    last = [f for f in facts(after) if f.topic]
    assert last and last[0].topic == topic, facts(after)
    assert last[0].negated and last[0].change, last


@pytest.mark.parametrize(
    ("text", "slot_name"),
    [
        ("I love coffee.", "likes"),
        ("I prefer green tea over coffee.", "likes"),
        ("I can't stand the taste of beer.", "dislikes"),
    ],
)
def test_a_taste_is_a_preference_not_a_habit(text: str, slot_name: str) -> None:
    out = facts(text)
    assert out and out[0].type == "preference" and out[0].slot == slot_name, out


@pytest.mark.parametrize(
    "text",
    ["I quit my job in May.", "I stopped by the gym after work.", "I gave up on the course."],
)
def test_quitting_what_is_not_a_habit_has_no_habit_topic(text: str) -> None:
    assert not [f for f in facts(text) if f.topic and "health" in f.categories], facts(text)


# -- 6. owned things ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "topic", "negated", "change"),
    [
        ("I don't own a car.", "possession:car", True, False),
        ("We don't even have a TV.", "possession:tv", True, False),
        ("I never owned a bicycle as a kid or since.", "possession:bike", True, False),
        ("I sold my motorbike last summer.", "possession:motorbike", True, True),
        ("I just bought a second-hand camper van.", "possession:camper", False, True),
        ("My laptop died this morning.", "possession:laptop", False, False),
        ("My old bike has a flat tyre again.", "possession:bike", False, False),
        ("I drive my car to the station every day.", "possession:car", False, False),
    ],
)
def test_owned_things_have_a_topic_each(text: str, topic: str, negated: bool, change: bool) -> None:
    on = [f for f in facts(text) if f.topic.startswith("possession:")]
    assert on and on[0].topic == topic, facts(text)
    assert (on[0].negated, on[0].change) == (negated, change), on[0]


@pytest.mark.parametrize(
    "text",
    [
        "I need a new car.",
        "I want a bike for my birthday.",
        "My sister's car is red.",
        "I don't have time for this.",
        "I have a car appointment.",
    ],
)
def test_wanting_or_someone_elses_thing_is_not_owning(text: str) -> None:
    assert not [f for f in facts(text) if f.topic.startswith("possession:")], facts(text)


# -- 7. comma-list introductions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want", "hobby"),
    [
        (
            "hi! Marta here. 41, live in Valencia, work as an architect and spend most weekends "
            "sailing",
            {"name": "Marta", "age": "41", "location": "Valencia", "occupation": "architect"},
            "sailing",
        ),
        (
            "Kofi here, 29, living in Accra, working as a pharmacist, spend my free time "
            "woodworking",
            {"name": "Kofi", "age": "29", "location": "Accra", "occupation": "pharmacist"},
            "woodworking",
        ),
        (
            "Hey - Priya here! 35, based in Pune, I work as a data analyst and play badminton "
            "on Sundays.",
            {"name": "Priya", "age": "35", "location": "Pune", "occupation": "data analyst"},
            "badminton",
        ),
        (
            "yo, Sam here. 23, work as a barista, live near Bristol",
            {"name": "Sam", "age": "23", "location": "Bristol", "occupation": "barista"},
            "",
        ),
        (
            "Lena here! live in Graz and spend weekends foraging",
            {"name": "Lena", "location": "Graz"},
            "foraging",
        ),
    ],
)
def test_comma_list_introductions(text: str, want: dict[str, str], hobby: str) -> None:
    out = facts(text)
    got = {f.slot: f.value for f in out if f.slot in want}
    assert got == want, out
    if hobby:
        assert [f for f in out if hobby in f.content and f.slot == "hobbies"], out
