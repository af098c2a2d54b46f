"""Small word lists the rules read. Closed classes (relations, pets, diets, languages) are
listed; open classes (places, names, employers) are recognised by shape instead, so the lists
only need the common words, not the world."""

from __future__ import annotations


def wordset(text: str) -> frozenset[str]:
    """The words of a list written as text (underscores join a multi-word entry)."""
    return frozenset(w.replace("_", " ") for w in text.split())


# Occupations: a head noun, optionally after modifiers ("software engineer", "data analyst").
OCCUPATIONS = wordset("""
    accountant actor actress administrator analyst architect artist assistant attorney auditor
    author baker banker barber barista bartender biologist bookkeeper builder butcher
    carpenter cashier chef chemist cleaner clerk coach consultant cook counsellor counselor
    courier curator dancer dentist designer detective developer dietitian director doctor
    driver economist editor electrician engineer entrepreneur farmer firefighter fisherman
    freelancer gardener geologist graphic_designer hairdresser historian illustrator
    instructor intern investor janitor journalist judge lawyer lecturer librarian lifeguard
    linguist machinist manager mechanic midwife miner musician nanny nurse officer optician
    painter paralegal paramedic pharmacist photographer physician physicist physiotherapist
    pilot plumber poet policeman policewoman politician postman producer professor
    programmer psychiatrist psychologist publisher radiologist realtor receptionist
    reporter researcher salesman saleswoman scientist secretary singer soldier solicitor
    specialist statistician student surgeon surveyor tailor teacher technician therapist
    translator tutor hygienist vet veterinarian waiter waitress welder writer zoologist
    ceo cto cfo founder cofounder co-founder owner supervisor recruiter marketer strategist
    sailor firefighter paramedic carer caregiver housekeeper mathematician copywriter
    groomer florist plasterer roofer tiler decorator upholsterer cobbler jeweller jeweler
    optometrist sommelier chauffeur stylist dispatcher podiatrist chiropractor porter labourer
    laborer foreman mason bricklayer glazier joiner locksmith
    """)
# Statuses that fill the occupation slot without "a".
OCCUPATION_STATES = wordset("retired unemployed self-employed freelancing")
# "I'm a big fan", "I'm a night owl": the noun after "a" that is not a job.
NOT_OCCUPATION = wordset(
    "fan person owl lover type bit kind sort troublemaker peacemaker wordsmith"
)

DIETS = {
    "vegan": "vegan",
    "vegetarian": "vegetarian",
    "veggie": "vegetarian",
    "pescatarian": "pescatarian",
    "pescetarian": "pescatarian",
    "flexitarian": "flexitarian",
    "keto": "keto",
    "paleo": "paleo",
    "halal": "halal",
    "kosher": "kosher",
    "carnivore": "carnivore",
}
# Foods whose mention makes a statement about the user's diet.
DIET_FOODS = wordset("""
    meat steak beef pork chicken fish seafood eggs egg dairy milk cheese bacon ham lamb
    turkey sausage sausages burgers burger tofu
    """)

RELATIONSHIP_STATUSES = {
    "married": "married",
    "single": "single",
    "engaged": "engaged",
    "divorced": "divorced",
    "widowed": "widowed",
    "separated": "separated",
}

FAMILY = wordset("""
    mother mom mum mommy mummy father dad daddy parents sister brother sibling siblings son
    daughter kids kid children child baby wife husband partner spouse boyfriend girlfriend
    fiance fiancé fiancee fiancée grandmother grandma granny grandfather grandpa grandparents
    grandson granddaughter grandkids grandchildren aunt uncle cousin niece nephew twins
    stepmom stepdad stepson stepdaughter stepbrother stepsister mother-in-law father-in-law
    sister-in-law brother-in-law in-laws toddler
    """)
# People the user knows who are not family: their mention is a relationships fact.
OTHER_PEOPLE = wordset("""
    friend friends colleague colleagues coworker co-worker boss manager neighbour neighbor
    roommate flatmate housemate classmate teammate mentor landlord doctor therapist
    """)

PETS = wordset("""
    dog dogs puppy puppies cat cats kitten kittens parrot parrots rabbit rabbits bunny
    hamster hamsters guinea_pig guinea_pigs fish goldfish turtle turtles tortoise horse horses
    pony snake lizard gecko ferret budgie budgies bird birds chickens hens iguana rat rats
    mouse mice canary axolotl
    beagle labrador retriever poodle terrier spaniel collie dachshund bulldog husky corgi
    pug greyhound shepherd chihuahua schnauzer
    """)
# Breeds name the animal they are ("a twelve-year-old beagle" is a dog).
PET_KIND = {
    **{
        b: "dog"
        for b in wordset("""beagle labrador retriever poodle terrier spaniel collie
       dachshund bulldog husky corgi pug greyhound shepherd chihuahua schnauzer puppy""")
    },
    "kitten": "cat",
    "bunny": "rabbit",
    "budgie": "bird",
}

LANGUAGES = wordset("""
    english spanish french german italian portuguese dutch polish russian ukrainian czech
    slovak hungarian romanian bulgarian greek turkish arabic hebrew persian farsi hindi urdu
    bengali punjabi tamil telugu marathi gujarati chinese mandarin cantonese japanese korean
    vietnamese thai indonesian malay tagalog filipino swahili amharic yoruba zulu afrikaans
    swedish norwegian danish finnish icelandic estonian latvian lithuanian serbian croatian
    bosnian slovenian albanian catalan basque galician welsh irish gaelic latin esperanto
    """)
# Capitalised words that are not names or places ("I'm Italian", "on Monday").
NATIONALITIES = wordset("""
    american british english scottish welsh irish canadian australian french german italian
    spanish portuguese dutch belgian swiss austrian polish russian ukrainian czech greek
    turkish chinese japanese korean indian pakistani mexican brazilian argentinian
    chilean colombian peruvian nigerian kenyan egyptian moroccan swedish norwegian danish
    finnish icelandic hungarian romanian catholic christian jewish muslim hindu buddhist
    atheist
    """)
CALENDAR = wordset("""
    monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december christmas easter
    """)
# Capitalised words that open sentences and never name anyone.
NOT_NAMES = (
    wordset("""
    i i'm im it this that there here everyone everybody someone somebody nobody anyone
    anybody all we you he she they nothing something just not no yes ok okay so well oh hey
    hi hello thanks sorry sure really very still also now only actually a an the my our
    your his her their its me us what who where when why how which mom dad mum god lol haha
    glad happy back home done good fine great tired busy sick ready sure from in at on
    """)
    | NATIONALITIES
    | CALENDAR
    | LANGUAGES
)

ALLERGENS_HINT = wordset("""
    peanuts peanut nuts nut tree_nuts shellfish shrimp prawns fish gluten wheat dairy milk
    lactose eggs egg soy sesame penicillin pollen dust cats dogs bees latex mold mould
    """)
CONDITIONS = wordset("""
    asthma diabetes migraines migraine epilepsy arthritis eczema psoriasis anxiety depression
    adhd autism insomnia hypertension celiac coeliac crohn's ibs tinnitus dyslexia
    """)

# Activities that make a hobby when the user does them.
HOBBIES = wordset("""
    running jogging climbing bouldering cycling biking swimming hiking walking yoga pilates
    sailing surfing kayaking rowing skiing snowboarding skating chess guitar piano cello
    violin drums bass ukulele flute saxophone trumpet singing painting drawing knitting
    crochet sewing photography gardening baking cooking reading writing fishing hunting
    camping tennis football soccer basketball volleyball golf rugby cricket badminton squash
    boxing karate judo dancing salsa tango pottery woodworking gaming birdwatching
    meditation crossfit weightlifting lifting triathlons marathons scuba diving
    """)
# Play an instrument or a sport.
PLAYABLE = wordset("""
    guitar piano cello violin viola drums bass ukulele flute saxophone trumpet clarinet harp
    keyboard chess tennis football soccer basketball volleyball golf rugby cricket badminton
    squash hockey poker bridge
    """)

# Habit topics for contradiction checks, by the words that signal them: "I drink four coffees a
# day" and "I quit caffeine" share one topic, so the end supersedes the habit.
TOPIC_WORDS = {
    "smoking": wordset("""smoke smokes smoking smoked smoker cigarette cigarettes cigar cigars
        vape vapes vaping vaped e-cigarette e-cigarettes"""),
    "drinking": wordset("""alcohol drink drinking drinker beer beers wine booze sober whisky
        whiskey vodka gin rum cocktails"""),
    "caffeine": wordset("""coffee coffees caffeine espresso espressos latte lattes cappuccino
        cappuccinos americano americanos decaf energy_drinks red_bull"""),
    "sugar": wordset("sugar sugary sweets candy chocolate desserts"),
    "soda": wordset("soda sodas coke fizzy_drinks soft_drinks"),
    "gambling": wordset("gamble gambling gambled gambler betting casino casinos"),
    "social media": wordset("""social_media instagram tiktok twitter facebook snapchat reddit
        doomscrolling scrolling"""),
    "junk food": wordset("junk_food fast_food takeaways takeaway takeout"),
    "cannabis": wordset("weed cannabis marijuana edibles"),
}
# Things people own, each a topic of its own ("I don't own a car" / "my car is in the shop").
POSSESSIONS = wordset("""
    car cars bike bikes bicycle motorbike motorcycle scooter van truck boat caravan camper
    house flat apartment condo cottage cabin garden garage tv television laptop computer pc
    phone smartphone iphone tablet ipad kindle camera printer console playstation xbox
    dishwasher microwave piano guitar drum_kit sofa couch bed desk watch
    """)

SMALL_TALK = wordset("""
    ok okay k kk thanks thank you thx ty cheers yes yeah yep yup no nope nah sure cool great
    nice good fine awesome perfect lol haha hahaha hehe lmao hmm hm oh ah right alright
    sounds good bye goodbye see ya later hi hello hey morning evening night np welcome got it
    wow indeed true agreed exactly totally definitely maybe please sorry same here me too
    """)

_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS)}
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
TENS = {w: 10 * i for i, w in enumerate(_TENS, 2)}
