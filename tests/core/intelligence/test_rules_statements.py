"""RulesExtractor: preferences, pets, people, plans, routines, habits, changes and negations,
and what is not a fact about the user at all (questions, small talk, wishes, the assistant)."""

from __future__ import annotations

import pytest

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract import RulesExtractor
from memgrpc.core.intelligence.extract.rules import extract_facts
from memgrpc.core.intelligence.facts import DEFAULT_CATEGORIES, Fact

CATEGORY_NAMES = {name for name, _ in DEFAULT_CATEGORIES}


def facts(*texts: str, role: str = "user") -> list[Fact]:
    return extract_facts(
        [Message(id=f"m{i}", role=role, content=t) for i, t in enumerate(texts, 1)]
    )


def one(text: str, word: str) -> Fact:
    """The fact from `text` whose content holds `word` (the user's own word, kept)."""
    out = facts(text)
    hit = [f for f in out if word.lower() in f.content.lower()]
    assert hit, (text, out)
    return hit[0]


@pytest.mark.parametrize(
    ("text", "word", "slot"),
    [
        ("I love hiking in the mountains.", "hiking", "likes"),
        ("I really like spicy food.", "spicy food", "likes"),
        ("I prefer aisle seats when I fly.", "aisle seats", "likes"),
        ("I prefer tea over coffee.", "tea", "likes"),
        ("I adore old French films.", "French films", "likes"),
        ("I enjoy long walks on the beach.", "long walks", "likes"),
        ("I'm a huge fan of Studio Ghibli.", "Studio Ghibli", "likes"),
        ("I'm obsessed with sourdough.", "sourdough", "likes"),
        ("My favourite colour is green.", "green", "likes"),
        ("My favorite author is Ursula Le Guin.", "Ursula Le Guin", "likes"),
        ("Jazz is my favourite kind of music.", "Jazz", "likes"),
        ("I hate crowded trains.", "crowded trains", "dislikes"),
        ("I can't stand cilantro, it tastes like soap.", "cilantro", "dislikes"),
        ("I really dislike horror movies.", "horror movies", "dislikes"),
        ("I don't like flying at night.", "flying at night", "dislikes"),
        ("I'm not a fan of open-plan offices.", "open-plan offices", "dislikes"),
        ("I detest small talk at parties.", "small talk", "dislikes"),
        ("Honestly, I hate getting up early on Sundays.", "getting up early", "dislikes"),
        ("I love to cook Thai curries.", "Thai curries", "likes"),
        ("I'd rather take the train than fly.", "train", ""),
    ],
)
def test_preferences(text: str, word: str, slot: str) -> None:
    fact = one(text, word)
    assert fact.type == "preference", fact
    assert fact.slot == slot and (not slot or word.lower() in fact.value.lower()), fact
    assert "User" in fact.content, fact


@pytest.mark.parametrize(
    "text",
    [
        "I love it!",
        "I like that idea.",
        "I love you, you're the best assistant.",
        "Do you like jazz?",
        "I'd like to book a table.",
        "I would love to see the northern lights someday.",
        "My sister loves horses.",
        "If I liked coffee I'd be more awake.",
        "Thanks, I like this.",
        "What's my favourite colour?",
    ],
)
def test_no_preference(text: str) -> None:
    assert not [f for f in facts(text) if f.type == "preference"], (text, facts(text))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My cat Miso sleeps all day.", "Miso (cat)"),
        ("We have a golden retriever named Bruno.", "Bruno (dog)"),
        ("I've got two rabbits.", "rabbits"),
        ("Our parrot Kiwi talks more than I do.", "Kiwi (parrot)"),
        ("My dog's name is Rex.", "Rex (dog)"),
        ("I have a hamster called Nibbles.", "Nibbles (hamster)"),
        ("I walked my dog twice today.", "dog"),
        ("Our kitten Luna broke a vase.", "Luna (cat)"),
        ("I adopted a greyhound last month.", "dog"),
        ("Biscuit is our labrador.", "Biscuit (dog)"),
    ],
)
def test_pets(text: str, value: str) -> None:
    out = [f for f in facts(text) if f.topic == "pets"]
    assert out and out[0].slot == "pets" and out[0].value == value, (text, facts(text))
    assert "pets" in out[0].categories
    name = value.split(" (")[0]
    if "(" in value:
        assert name.lower() in out[0].entities and name in out[0].content


def test_no_pets_is_a_negated_pet_fact() -> None:
    for text in ("I don't have any pets.", "We have no pets.", "I've never owned a pet."):
        out = [f for f in facts(text) if f.topic == "pets"]
        assert out and out[0].negated and not out[0].slot, (text, facts(text))


@pytest.mark.parametrize(
    ("text", "value", "entity"),
    [
        ("My son Theo just turned four.", "Theo (son)", "theo"),
        ("My wife Ana is a surgeon.", "Ana (wife)", "ana"),
        ("Our twins are starting nursery.", "twins", ""),
        ("My mum lives in Cardiff.", "mum", "cardiff"),
        ("I have two daughters.", "two daughters", ""),
        ("My husband's name is Pieter.", "Pieter (husband)", "pieter"),
        ("We have a son named Leo.", "Leo (son)", "leo"),
        ("My sister is a lawyer in Rome.", "sister", "rome"),
        ("My grandfather Eduardo taught me chess.", "Eduardo (grandfather)", "eduardo"),
        ("My little brother Finn plays rugby.", "Finn (little brother)", "finn"),
    ],
)
def test_family(text: str, value: str, entity: str) -> None:
    out = [f for f in facts(text) if f.slot == "family"]
    assert out and out[0].value == value, (text, facts(text))
    assert "relationships" in out[0].categories
    assert not entity or entity in out[0].entities
    # about the relative, never the user's own slots
    assert not {f.slot for f in facts(text)} & {"location", "occupation", "name", "age"}


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("My best friend is called Dmitri.", "Dmitri"),
        ("My colleague Priya is moving to Canada.", "Priya"),
        ("My friend Tom lives in Perth.", "Perth"),
        ("My boss is a vegan and lives in Oslo.", "boss"),
        ("My roommate's name is Jules.", "Jules"),
    ],
)
def test_other_people(text: str, word: str) -> None:
    fact = one(text, word)
    assert "relationships" in fact.categories and not fact.slot
    assert not [f for f in facts(text) if f.slot in ("name", "location", "diet")]


@pytest.mark.parametrize(
    "text",
    [
        "What time is it in Tokyo?",
        "Where did I say I work?",
        "Can you recommend a book?",
        "How do I make sourdough?",
        "Is it going to rain tomorrow?",
        "ok",
        "thanks!",
        "lol yes",
        "Cool, got it.",
        "Sure, sounds great.",
        "Hmm, okay.",
        "Nice!",
        "I see.",
        "I think so.",
        "I'm not sure.",
        "I agree with you.",
        "I'll think about it.",
        "I'm so tired today.",
        "If I had a boat I would sail to Greece.",
        "I wish I could speak Italian.",
        "Imagine if I won the lottery.",
        "Please remind me to call the bank.",
        "Tell me a joke.",
        "I'd love to visit Iceland one day.",
        "Someday I want to live on a farm.",
    ],
)
def test_not_facts(text: str) -> None:
    assert facts(text) == [], (text, facts(text))


async def test_only_the_user_speaks_for_the_user() -> None:
    said = "My name is Orla and I live in Sligo. I'm a baker."
    extractor = RulesExtractor()
    assert extractor.name == "rules"
    for role in ("assistant", "system", "tool"):
        out = await extractor.extract([Message(id="a1", role=role, content=said)], [])
        assert out == [], role
    out = await extractor.extract([Message(id="u1", role="user", content=said)], [])
    assert {f.slot: f.value for f in out} == {
        "name": "Orla",
        "location": "Sligo",
        "occupation": "baker",
    }


def test_actions_are_statements_about_the_user() -> None:
    out = facts("User switched the theme to dark.", role="action")
    assert out and out[0].content == "User switched the theme to dark."
    assert out[0].change and out[0].source_message_ids == ("m1",)
    moved = facts("User moved to Lyon.", role="action")
    assert [(f.slot, f.value, f.change) for f in moved] == [("location", "Lyon", True)]
    liked = facts("User likes sci-fi podcasts.", role="action")
    assert liked[0].type == "preference" and liked[0].value == "sci-fi podcasts"


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("I'm flying to Lisbon next Friday.", "Lisbon"),
        ("We're spending Christmas in Vienna.", "Vienna"),
        ("I'm visiting my parents in Kraków next month.", "Kraków"),
        ("I have a job interview on Thursday.", "interview"),
        ("I'm running a half marathon in October.", "marathon"),
        ("I'll be in Singapore for work in May.", "Singapore"),
        ("We're going to Japan this spring.", "Japan"),
        ("I'm planning a trip to Peru.", "Peru"),
    ],
)
def test_plans_are_not_a_change_of_home(text: str, word: str) -> None:
    fact = one(text, word)
    assert "plans" in fact.categories, fact
    assert not [f for f in facts(text) if f.slot in ("location", "employer", "occupation")]


@pytest.mark.parametrize(
    ("text", "word", "slot"),
    [
        ("I swim every morning before work.", "swim", ""),
        ("I go bouldering twice a week.", "bouldering", "hobbies"),
        ("I play chess online most evenings.", "chess", "hobbies"),
        ("I do yoga on Sundays.", "yoga", "hobbies"),
        ("I meditate daily.", "meditate", ""),
        ("I call my mother every Sunday.", "call", ""),
        ("On weekends I usually bake bread.", "bake", ""),
        ("I run 5k every other day.", "run", ""),
    ],
)
def test_routines(text: str, word: str, slot: str) -> None:
    fact = one(text, word)
    assert "routines" in fact.categories and fact.slot == slot, fact


@pytest.mark.parametrize(
    ("text", "topic", "negated", "change"),
    [
        ("I smoke when I'm stressed.", "smoking", False, False),
        ("I gave up smoking last year.", "smoking", True, True),
        ("I stopped vaping in January.", "smoking", True, True),
        ("I don't drink.", "drinking", True, False),
        ("I've been sober for three years.", "drinking", False, False),
        ("I no longer drink alcohol.", "drinking", True, True),
        ("I have a glass of wine most nights.", "drinking", False, False),
        ("I no longer eat meat.", "diet", True, True),
        ("I eat fish but no other meat.", "diet", True, False),
        ("I've started eating chicken again.", "diet", False, False),
    ],
)
def test_habits(text: str, topic: str, negated: bool, change: bool) -> None:
    out = [f for f in facts(text) if f.topic == topic]
    assert out, (text, facts(text))
    assert (out[0].negated, out[0].change) == (negated, change), out[0]


@pytest.mark.parametrize(
    ("text", "slot", "change"),
    [
        ("I moved to Valencia in the spring.", "location", True),
        ("We relocated to Halifax.", "location", True),
        ("I became a nurse last year.", "occupation", True),
        ("I switched to a vegetarian diet.", "diet", True),
        ("I went vegan in 2021.", "diet", True),
        ("I live in Valencia now.", "location", False),
        ("I'm a nurse now.", "occupation", False),
        ("I'm vegetarian now.", "diet", False),
        ("I joined Canva in March.", "employer", True),
        ("I'm not vegan anymore.", "diet", True),
    ],
)
def test_change_markers(text: str, slot: str, change: bool) -> None:
    out = [f for f in facts(text) if f.slot == slot]
    assert out and out[0].change is change, (text, facts(text))


def test_health() -> None:
    for text in ("I have asthma.", "I was diagnosed with diabetes last year.", "I get migraines."):
        out = facts(text)
        assert out and out[0].topic == "health" and "health" in out[0].categories, text
        assert out[0].importance >= 0.8


def test_statements_keep_the_users_words_in_the_third_person() -> None:
    assert one("I just bought a cargo bike.", "cargo bike").content == (
        "User just bought a cargo bike."
    )
    assert one("I volunteer at the food bank.", "food bank").content == (
        "User volunteers at the food bank."
    )
    assert one("I've been learning the banjo.", "banjo").content == (
        "User has been learning the banjo."
    )
    assert one("My knee hurts after long runs.", "knee").content == (
        "User's knee hurts after long runs."
    )


def test_several_facts_of_one_message_cite_it_and_repeats_merge() -> None:
    out = facts(
        "I'm Kofi, I'm 29 and I work as a chef. I love jollof rice.",
        "I work as a chef.",
    )
    by_slot = {f.slot: f for f in out if f.slot}
    assert by_slot["name"].value == "Kofi" and by_slot["age"].value == "29"
    assert by_slot["occupation"].source_message_ids == ("m1", "m2")
    assert any("jollof rice" in f.content and f.type == "preference" for f in out)
    assert all(f.source_message_ids for f in out)


def test_categories_importance_entities() -> None:
    out = facts(
        "I'm allergic to kiwi.",
        "My favourite band is Daft Punk.",
        "I go to the gym on Mondays.",
        "I own a vintage Vespa.",
    )
    assert all(set(f.categories) <= CATEGORY_NAMES for f in out)
    allergy = next(f for f in out if f.slot == "allergies")
    band = next(f for f in out if "Daft Punk" in f.content)
    gym = next(f for f in out if "gym" in f.content)
    assert allergy.importance > band.importance > gym.importance
    assert "daft punk" in band.entities
    assert "possessions" in next(f for f in out if "Vespa" in f.content).categories


def test_deterministic() -> None:
    texts = ("Hi, Ada here, 36, living in Turin, and I'm into rowing.", "I quit smoking.")
    assert facts(*texts) == facts(*texts)


def test_one_statement_informs_another_in_the_same_sentence() -> None:
    out = facts("I left Accenture and now I'm a freelance photographer.")
    left = next(f for f in out if f.slot == "employer")
    assert (left.value, left.negated, left.change) == ("Accenture", True, True)
    assert left.content == "User no longer works at Accenture."
    job = next(f for f in out if f.slot == "occupation")
    assert job.value == "freelance photographer" and job.change
    quit_ = facts("I used to smoke but I quit last year.")
    assert quit_ and all(f.topic == "smoking" and f.negated for f in quit_)


def test_names_and_places_keep_their_letters() -> None:
    fact = one("My all-time favourite film is Amélie.", "Amélie")
    assert fact.content == "User's all-time favourite film is Amélie." and fact.value == "Amélie"
    assert one("I have an allergy to penicillin.", "penicillin").slot == "allergies"
    here = facts("Living here in Bergen, I see the fjord every morning.")
    assert [(f.slot, f.value) for f in here if f.slot] == [("location", "Bergen")]
    intro = {f.slot: f.value for f in facts("Hey, Ruth here, 58, from Dundee.") if f.slot}
    assert intro == {"name": "Ruth", "age": "58", "location": "Dundee"}


def test_counterfactuals_and_ended_employers() -> None:
    for text in (
        "I'd probably be a carpenter if I could start over.",
        "I would move to Spain if I could.",
        "If it were up to me, I'd work from Lisbon.",
    ):
        assert facts(text) == [], text
    assert {f.slot: f.value for f in facts("I live in Oslo, and if it snows I ski.")} == {
        "location": "Oslo"
    }
    out = facts("I'm no longer with Unilever, I joined Nestlé.")
    assert [(f.value, f.negated) for f in out] == [("Unilever", True), ("Nestlé", False)]
    assert all(f.slot == "employer" and f.change for f in out)
    assert facts("I'm a Brazilian living in Oslo.")[0].value == "Oslo"
