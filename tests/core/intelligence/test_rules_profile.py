"""RulesExtractor: the profile slots a first-person statement fills, and the ones it must not.

Sentences here are deliberately not the dev scenarios' (shared/bench/intelligence_dev.json):
the rules must generalise to other wording and other facts.
"""

from __future__ import annotations

import pytest

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract import canonical_value, extract_profile
from memgrpc.core.intelligence.extract.rules import extract_facts
from memgrpc.core.intelligence.facts import SLOTS, Fact


def facts(*texts: str, role: str = "user") -> list[Fact]:
    return extract_facts(
        [Message(id=f"m{i}", role=role, content=t) for i, t in enumerate(texts, 1)]
    )


def slots(*texts: str) -> dict[str, str]:
    return {f.slot: f.value for f in facts(*texts) if f.slot and not f.negated}


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hi, I'm Marta Kowalska.", "Marta Kowalska"),
        ("I am Daniel.", "Daniel"),
        ("My name is Priya Raman and I run a bakery.", "Priya Raman"),
        ("My name's Olu.", "Olu"),
        ("Please call me Fitz.", "Fitz"),
        ("Everyone calls me Jojo.", "Jojo"),
        ("Most people just call me Sam, actually.", "Sam"),
        ("Hey! Kenji here.", "Kenji"),
        ("Ines here, quick question about my plan.", "Ines"),
        ("I go by Max.", "Max"),
        ("Hello, I'm Aoife, nice to meet you!", "Aoife"),
        ("Good evening. I'm Rafael Souza.", "Rafael Souza"),
        ("I'm Émile, from the support forum.", "Émile"),
        ("The name's Bond.", "Bond"),
        ("hello my name is tomas", "Tomas"),
        ("you can call me lu", "Lu"),
        ("I'm Noor, 29, and I live in Amman.", "Noor"),
        ("Hiya, Siobhan here, I'm new.", "Siobhan"),
        ("I am Carlos, an engineer.", "Carlos"),
        ("My name is Anneliese but most call me Liese.", "Anneliese"),
    ],
)
def test_name(text: str, name: str) -> None:
    found = [f.value for f in facts(text) if f.slot == "name"]
    assert found and found[0] == name, (text, found)


@pytest.mark.parametrize(
    "text",
    [
        "I'm Italian, so pasta is serious business.",
        "I'm Catholic.",
        "My sister's name is Hana.",
        "My best friend is called Dmitri.",
        "Our neighbour's name is Walter.",
        "My dog's name is Biscuit.",
        "I'm in Lisbon this week.",
        "I'm Google's biggest fan.",
        "I'm tired today.",
        "I'm so happy about the news.",
        "What is my name?",
        "Do you remember my name?",
        "If my name were Zed I would be last on every list.",
        "I wish my name was Aurora.",
        "My colleague Petra here says hi.",
        "I'm on Monday shifts.",
        "I'm Vegan these days.",
        "I am English.",
        "He calls himself Rocco.",
        "I'm January-born.",
    ],
)
def test_no_name(text: str) -> None:
    assert "name" not in slots(text), (text, facts(text))


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("I'm 34.", "34"),
        ("I am 61 years old.", "61"),
        ("I'm twenty-eight and still figuring things out.", "28"),
        ("I just turned 40 last week!", "40"),
        ("I'm 45 years old, married, two kids.", "45"),
        ("Lena here, 27, in Vienna.", "27"),
        ("I am 19, a student.", "19"),
        ("I'm 70 now and walking every day.", "70"),
        ("I'm fifty five and retired.", "55"),
        ("i'm 23 years old", "23"),
        ("Hi, Omar here, 38, living in Cairo.", "38"),
        ("I'm 33 y/o.", "33"),
        ("Turned 50? Yes, I turned 50 in May.", "50"),
        ("I'm 66 this year.", "66"),
        ("I am 42 and a half, if you must know.", "42"),
        ("I'm 30 and I love cycling.", "30"),
        ("I'm thirty.", "30"),
        ("I'm 81 years old and still gardening.", "81"),
        ("Hey, I'm Sofia, 24, from Bogotá.", "24"),
        ("At 36 I'm the oldest in my team, I'm 36 years old.", "36"),
    ],
)
def test_age(text: str, age: str) -> None:
    assert slots(text).get("age") == age, (text, facts(text))


@pytest.mark.parametrize(
    "text",
    [
        "My son is 7 years old.",
        "I'm 5 minutes away.",
        "Our house is 100 years old.",
        "My grandmother turned 90 yesterday.",
        "I'm 3 chapters into the book.",
        "I waited 45 minutes for the bus.",
        "I have 2 kids, aged 4 and 9.",
        "I'm 100% sure.",
        "If I were 20 again I'd travel more.",
        "How old am I?",
    ],
)
def test_no_age(text: str) -> None:
    assert "age" not in slots(text), (text, facts(text))


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("I'm based in Lima.", "Lima"),
        ("We live in a tiny house in Ghent.", "Ghent"),
        ("I live in Buenos Aires with my partner.", "Buenos Aires"),
        ("I've lived in Toronto for six years.", "Toronto"),
        ("I'm living in Kraków at the moment.", "Kraków"),
        ("My husband and I live in Utrecht.", "Utrecht"),
        ("I live just outside Leeds.", "Leeds"),
        ("Right now I live in a shared flat in Berlin.", "Berlin"),
        ("i live in kuala lumpur", "Kuala Lumpur"),
        ("We reside in Geneva.", "Geneva"),
        ("I live near Bristol, in a village.", "Bristol"),
        ("Here in Tallinn the winters are long, and I love it.", "Tallinn"),
        ("Ana here, living in Santiago, and I'm into surfing.", "Santiago"),
        ("I'm settled in Auckland now.", "Auckland"),
        ("We live in New York City.", "New York City"),
        ("I live in Rio de Janeiro.", "Rio de Janeiro"),
        ("I currently live in Austin, Texas.", "Austin"),
        ("I'm from Kuching.", "Kuching"),
        ("We moved to Denver last year.", "Denver"),
        ("I live in a cottage near Galway.", "Galway"),
    ],
)
def test_location(text: str, place: str) -> None:
    assert slots(text).get("location") == place, (text, facts(text))


@pytest.mark.parametrize(
    "text",
    [
        "My sister lives in Paris.",
        "My parents live in Lagos.",
        "I'd love to live in Kyoto someday.",
        "If I lived in Tokyo I'd eat sushi daily.",
        "I wish I lived in Barcelona.",
        "I'm flying to Madrid next week.",
        "I'm spending the summer in Crete.",
        "We're visiting Prague in June.",
        "I'm in Oslo for a conference this week.",
        "I'm moving to Vancouver next month.",
        "I used to live in Chicago.",
        "My brother is based in Seoul.",
        "Where do I live again?",
        "Should I move to Lisbon?",
        "My friend Tom lives in Perth.",
        "I was in Rome last week for work.",
        "I dream of living in Patagonia.",
        "My daughter moved to Glasgow.",
        "Maybe one day I'll live in Copenhagen.",
        "Imagine living in Hawaii.",
    ],
)
def test_no_location(text: str) -> None:
    assert "location" not in slots(text), (text, facts(text))


def test_move_is_a_change() -> None:
    moved = [f for f in facts("I relocated to Porto in May.") if f.slot == "location"]
    assert moved and moved[0].value == "Porto" and moved[0].change
    stay = [f for f in facts("I live in Porto now.") if f.slot == "location"]
    assert stay and not stay[0].change  # "now" alone is not a change marker


def test_from_is_home_unless_a_home_is_also_given() -> None:
    assert slots("I'm from Kuching.") == {"location": "Kuching"}
    both = slots("I'm from Cork but I live in Berlin.")
    assert both.get("location") == "Berlin" and both.get("hometown") == "Cork"
    assert slots("I grew up in Nantes.") == {"hometown": "Nantes"}
    assert slots("I was born in Accra.").get("hometown") == "Accra"
    assert slots("I'm originally from Minsk.").get("hometown") == "Minsk"


@pytest.mark.parametrize(
    ("text", "job"),
    [
        ("I work as a nurse.", "nurse"),
        ("I'm a software engineer at a fintech startup.", "software engineer"),
        ("I am an architect.", "architect"),
        ("I'm a retired police officer.", "retired police officer"),
        ("I teach history at a high school.", "history teacher"),
        ("I teach piano to kids.", "piano teacher"),
        ("I'm a freelance translator.", "freelance translator"),
        ("I work as a barista on weekends.", "barista"),
        ("My job is a paramedic.", "paramedic"),
        ("I'm a physiotherapist, mostly sports injuries.", "physiotherapist"),
        ("I'm a data scientist.", "data scientist"),
        ("I'm an electrician by trade.", "electrician"),
        ("I'm a student at Leeds.", "student"),
        ("I'm retired.", "retired"),
        ("I'm a graphic designer.", "graphic designer"),
        ("I'm a vet in a rural practice.", "vet"),
        ("I'm a dermatologist.", "dermatologist"),
        ("I'm a high school chemistry teacher.", "high school chemistry teacher"),
        ("i work as a plumber", "plumber"),
        ("I became a project manager last spring.", "project manager"),
    ],
)
def test_occupation(text: str, job: str) -> None:
    assert slots(text).get("occupation") == job, (text, facts(text))


@pytest.mark.parametrize(
    "text",
    [
        "My sister is a lawyer in Rome.",
        "My mum was a teacher.",
        "If I were a chef I'd open a bistro.",
        "I'd love to be a pilot.",
        "I'm a big fan of jazz.",
        "I'm a morning person.",
        "I'm a vegan.",
        "I'm a bit tired.",
        "My husband works as a nurse.",
        "I wish I were an astronaut.",
        "I teach my kids to swim.",
        "I'm a mom of two.",
        "What should I be, a doctor or a lawyer?",
        "My friend is a dentist.",
        "I used to work as a waiter.",
        "He is an engineer.",
        "I'm a night owl.",
        "I'm a huge football fan.",
        "Dad is a farmer.",
        "I'm an only child.",
    ],
)
def test_no_occupation(text: str) -> None:
    assert "occupation" not in slots(text), (text, facts(text))


@pytest.mark.parametrize(
    ("text", "org"),
    [
        ("I work at Spotify.", "Spotify"),
        ("I work for the BBC.", "BBC"),
        ("I'm a nurse at St Thomas' Hospital.", "St Thomas' Hospital"),
        ("I work as an analyst at Goldman Sachs.", "Goldman Sachs"),
        ("I'm employed by Siemens.", "Siemens"),
        ("I joined Shopify in January.", "Shopify"),
        ("We both work at Ikea.", "Ikea"),
        ("I'm working at Airbus these days.", "Airbus"),
    ],
)
def test_employer(text: str, org: str) -> None:
    assert slots(text).get("employer") == org, (text, facts(text))


def test_leaving_an_employer_is_a_negated_change() -> None:
    out = facts("I quit Oracle and joined a small agency as a designer.")
    left = [f for f in out if f.slot == "employer" and f.value == "Oracle"]
    assert left and left[0].negated and left[0].change
    assert not [f for f in facts("I left London in 2019.") if f.slot == "employer"]


@pytest.mark.parametrize(
    ("text", "slot", "value"),
    [
        ("I'm vegetarian.", "diet", "vegetarian"),
        ("I'm a vegan.", "diet", "vegan"),
        ("I went pescatarian last year.", "diet", "pescatarian"),
        ("I've been keto for months, I follow a keto diet.", "diet", "keto"),
        ("I'm strictly vegan.", "diet", "vegan"),
        ("I'm married.", "relationship_status", "married"),
        ("I'm single and happy.", "relationship_status", "single"),
        ("I just got engaged!", "relationship_status", "engaged"),
        ("I'm divorced.", "relationship_status", "divorced"),
        ("I'm in a relationship.", "relationship_status", "in a relationship"),
        ("I speak Portuguese.", "languages", "Portuguese"),
        ("I'm fluent in Japanese.", "languages", "Japanese"),
        ("My native language is Greek.", "languages", "Greek"),
        ("I'm allergic to peanuts.", "allergies", "peanuts"),
        ("I have a severe nut allergy.", "allergies", "nut"),
        ("I'm lactose intolerant.", "allergies", "lactose"),
        ("I'm allergic to penicillin, so be careful.", "allergies", "penicillin"),
        ("Heads up, I'm allergic to cats.", "allergies", "cats"),
        ("I have a bee sting allergy.", "allergies", "bee sting"),
        ("I'm coeliac.", "allergies", "gluten"),
    ],
)
def test_other_single_slots(text: str, slot: str, value: str) -> None:
    assert slots(text).get(slot) == value, (text, facts(text))


def test_several_values_of_a_list_slot() -> None:
    out = facts("I speak English, Polish and a bit of German.")
    assert {f.value for f in out if f.slot == "languages"} == {"English", "Polish", "German"}
    allergies = facts("I'm allergic to shrimp and sesame.")
    got = {f.value for f in allergies if f.slot == "allergies"}
    assert got == {"shrimp", "sesame"}
    assert all(f.topic == "health" and "health" in f.categories for f in allergies)


@pytest.mark.parametrize(
    "text", ["I'm allergic to peanuts, sadly.", "I'm allergic to peanuts, unfortunately."]
)
def test_an_aside_after_a_list_is_not_an_item(text: str) -> None:
    got = {f.value for f in facts(text) if f.slot == "allergies"}
    assert got == {"peanuts"}


@pytest.mark.parametrize(
    "text",
    [
        "My sister is vegan.",
        "I cook vegan food for my flatmate.",
        "Are you vegetarian?",
        "My parents are divorced.",
        "My brother speaks Russian.",
        "My son is allergic to eggs.",
        "I'm not allergic to anything.",
        "If I were vegan I'd miss cheese.",
    ],
)
def test_no_other_slot_for_someone_else(text: str) -> None:
    got = slots(text)
    assert not {"diet", "relationship_status", "languages", "allergies"} & set(got), (text, got)


def test_intro_with_several_facts() -> None:
    out = facts("Hello! Malik here, 44, based in Leeds, and I'm into bouldering.")
    got = {f.slot: f.value for f in out if f.slot}
    assert got["name"] == "Malik" and got["age"] == "44" and got["location"] == "Leeds"
    assert any("bouldering" in f.content for f in out)
    assert all(f.source_message_ids == ("m1",) for f in out)
    # each slot reads on its own, not as the whole introduction
    assert next(f for f in out if f.slot == "age").content == "User is 44 years old."


def test_every_slot_is_known_and_values_are_canonical() -> None:
    out = facts(
        "i'm from kuching",
        "I'm Twenty-Two.",
        "I work at Spotify and I'm a nurse.",
        "I'm allergic to Peanuts.",
    )
    assert all(f.slot in SLOTS for f in out if f.slot)
    got = {f.slot: f.value for f in out if f.slot}
    assert got["location"] == "Kuching" and got["age"] == "22"
    assert got["allergies"] == "peanuts"


@pytest.mark.parametrize(
    ("slot", "raw", "value"),
    [
        ("location", "kuching", "Kuching"),
        ("location", "  rio de janeiro. ", "Rio de Janeiro"),
        ("location", "NEW YORK", "New York"),
        ("name", "tomasz nowak", "Tomasz Nowak"),
        ("name", "Anne-marie", "Anne-marie"),
        ("name", "anne-marie", "Anne-Marie"),
        ("age", "fifty-two", "52"),
        ("age", "52 years", "52"),
        ("age", " 31 ", "31"),
        ("occupation", "Data Analyst", "data analyst"),
        ("diet", "Vegan", "vegan"),
        ("languages", "SPANISH", "Spanish"),
        ("employer", "IBM", "IBM"),
        ("likes", "  Radiohead!", "Radiohead"),
    ],
)
def test_canonical_value(slot: str, raw: str, value: str) -> None:
    assert canonical_value(slot, raw) == value


def test_extract_profile() -> None:
    fact = extract_profile("i'm from kuching")
    assert fact is not None and (fact.slot, fact.value) == ("location", "Kuching")
    named = extract_profile("My name is Zainab.")
    assert named is not None and (named.slot, named.value) == ("name", "Zainab")
    job = extract_profile("I work as a welder")
    assert job is not None and (job.slot, job.value) == ("occupation", "welder")
    assert extract_profile("It rained all day.") is None
    liked = extract_profile("I love the rain.")
    assert liked is not None and (liked.slot, liked.value) == ("likes", "the rain")
    sister = extract_profile("my sister lives in paris")
    assert sister is not None and (sister.slot, sister.value) == ("family", "sister")
    assert extract_profile("what's the weather like?") is None
