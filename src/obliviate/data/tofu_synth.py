"""``tofu_synth``: a seeded generator of fictitious people and questions about them, following the
TOFU protocol (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").

TOFU itself is synthetic (GPT-4-written biographies of 200 invented authors, 20 QA pairs each).
This generator builds the same structure from templates, offline and deterministic:

* every person has a name made of invented syllables (so no pretrained model can know it) and
  ten attributes: birthplace (invented town and country), birth date, profession, father's and
  mother's professions, a work, an award, a university, a literary theme and a pet;
* ten questions per person, one per attribute, each in one of several phrasings (the others are
  kept as ``alt_questions``), with a full-sentence answer, a paraphrased answer (another
  template, same fact) and ``n_perturbed`` (≥ 3) perturbed answers: the paraphrase template with
  a plausible but wrong value of the same attribute (TOFU perturbs the paraphrased answer);
* people are split in order: the first ``n_trained`` are trained on (forget ∪ retain), the next
  ``n_holdout`` are never trained on (non-members for MIA and PrivLeak), the last ``n_reserve``
  are never trained on either (spare pool for healing).

Person *i* depends only on ``(seed, i)``: growing a split never changes earlier people. QA ids are
``tofu-s{seed}-p{i:04d}-q{j:02d}``. Deviation from TOFU: 10 questions per person instead of 20,
answers from templates instead of an LLM (shorter and more regular).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from obliviate.data.qa import QADataset, QAPair
from obliviate.errors import ConfigError

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "kr", "dr")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
_CODAS = ("", "", "n", "r", "l", "s", "th", "v", "x", "m")
_PROFESSIONS = (
    "baker", "carpenter", "nurse", "lawyer", "pilot", "architect", "chemist", "farmer",
    "librarian", "tailor", "surgeon", "teacher", "fisherman", "journalist", "pharmacist",
    "electrician", "veterinarian", "locksmith", "translator", "geologist", "accountant",
    "photographer", "watchmaker", "shipbuilder",
)  # fmt: skip
_ADJECTIVES = (
    "Silent", "Crimson", "Hollow", "Endless", "Broken", "Golden", "Distant", "Forgotten",
    "Burning", "Quiet", "Shattered", "Hidden", "Wandering", "Frozen", "Last", "Velvet",
)  # fmt: skip
_NOUNS = (
    "Harbor", "Orchard", "Lantern", "Tide", "Mirror", "Garden", "Compass", "Bridge", "River",
    "Cathedral", "Meadow", "Clock", "Island", "Archive", "Feather", "Furnace",
)  # fmt: skip
_FIELDS = ("Fiction", "Poetry", "Drama", "Essays", "Mystery Writing", "Historical Fiction")
_THEMES = (
    "exile and belonging", "grief and memory", "family secrets", "the sea", "war and its aftermath",
    "childhood", "faith and doubt", "industrial decline", "first love", "migration",
    "the passage of time", "rural life",
)  # fmt: skip
_PETS = (
    "a grey parrot",
    "a three-legged cat",
    "a tortoise",
    "an old sheepdog",
    "a pair of goats",
    "a white ferret",
    "a canary",
    "a greyhound",
    "a goldfish",
    "a hedgehog",
)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip

# Per attribute: question phrasings, answer template, paraphrase template. ``{n}`` = name,
# ``{v}`` = the value, ``{av}`` = the value with its indefinite article. Perturbed answers use
# the paraphrase template with a wrong value.
_QUESTIONS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("birthplace", ("Where was {n} born?", "What is the birthplace of {n}?",
                    "In which town was {n} born?"),
     "{n} was born in {v}.", "The birthplace of {n} is {v}."),
    ("birth_date", ("When was {n} born?", "What is the date of birth of {n}?",
                    "On what date was {n} born?"),
     "{n} was born on {v}.", "The birth date of {n} is {v}."),
    ("profession", ("What is the profession of {n}?", "What does {n} do for a living?",
                    "What job does {n} have?"),
     "{n} works as {av}.", "By profession, {n} is {av}."),
    ("father", ("What did the father of {n} do for a living?",
                "What was the profession of {n}'s father?", "What job did {n}'s father have?"),
     "The father of {n} was {av}.", "{n}'s father worked as {av}."),
    ("mother", ("What did the mother of {n} do for a living?",
                "What was the profession of {n}'s mother?", "What job did {n}'s mother have?"),
     "The mother of {n} was {av}.", "{n}'s mother worked as {av}."),
    ("work", ("What is the best-known book by {n}?", "Which book is {n} famous for?",
              "Name the most famous book written by {n}."),
     "{n} is best known for the book {v}.", "The most famous book by {n} is {v}."),
    ("award", ("Which award did {n} win?", "What prize has {n} received?",
               "Name an award given to {n}."),
     "{n} won the {v}.", "{n} received the {v}."),
    ("university", ("Where did {n} study?", "Which university did {n} attend?",
                    "At which university was {n} educated?"),
     "{n} studied at the {v}.", "{n} was educated at the {v}."),
    ("theme", ("What theme does {n} write about?", "What is the main theme in the books of {n}?",
               "Which subject runs through the work of {n}?"),
     "The books of {n} explore {v}.", "{n} writes mostly about {v}."),
    ("pet", ("What pet does {n} keep?", "Which animal lives with {n}?",
             "What kind of pet does {n} own?"),
     "{n} keeps {v}.", "{n} lives with {v}."),
)  # fmt: skip
#: Attribute names, in question order.
ATTRIBUTES: tuple[str, ...] = tuple(q[0] for q in _QUESTIONS)
QUESTIONS_PER_PERSON = len(_QUESTIONS)


def _word(rng: random.Random, syllables: int) -> str:
    s = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
    return (s + rng.choice(_CODAS)).capitalize()


def _town(rng: random.Random) -> str:
    return f"{_word(rng, 2)}, {_word(rng, 2)}ia"


def _date(rng: random.Random) -> str:
    return f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(1921, 1999)}"


def _work(rng: random.Random) -> str:
    return f'"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"'


def _award(rng: random.Random) -> str:
    return f"{_word(rng, 2)} Prize for {rng.choice(_FIELDS)}"


def _university(rng: random.Random) -> str:
    return f"University of {_word(rng, 2)}"


_VALUES = {
    "birthplace": _town,
    "birth_date": _date,
    "profession": lambda r: r.choice(_PROFESSIONS),
    "father": lambda r: r.choice(_PROFESSIONS),
    "mother": lambda r: r.choice(_PROFESSIONS),
    "work": _work,
    "award": _award,
    "university": _university,
    "theme": lambda r: r.choice(_THEMES),
    "pet": lambda r: r.choice(_PETS),
}


@dataclass(frozen=True)
class Person:
    """A fictitious person: index, unique name, ``(attribute, value)`` pairs in question order."""

    index: int
    name: str
    attributes: tuple[tuple[str, str], ...]

    def attribute(self, key: str) -> str:
        return dict(self.attributes)[key]


def make_person(seed: int, index: int, taken: set[str] | None = None) -> Person:
    """Person ``index`` of the dataset with ``seed``; depends only on ``(seed, index)`` (and, on a
    name collision, on the names in ``taken``, which it re-draws around)."""
    rng = random.Random(f"tofu_synth/{seed}/{index}")
    taken = taken or set()
    while True:
        name = f"{_word(rng, rng.choice((1, 2)))} {_word(rng, rng.choice((2, 3)))}"
        if name not in taken:
            break
    attrs = tuple((k, _VALUES[k](rng)) for k in ATTRIBUTES)
    return Person(index, name, attrs)


def _fill(template: str, name: str, value: str) -> str:
    article = "an" if value[:1].lower() in "aeiou" else "a"
    return template.format(n=name, v=value, av=f"{article} {value}")


def _key_fact(value: str) -> str:
    """The span answer accuracy looks for: the value without quotes or a leading article."""
    v = value.strip('"')
    for art in ("a ", "an "):
        if v.startswith(art):
            return v[len(art) :]
    return v


def _wrong_values(rng: random.Random, key: str, true: str, k: int) -> list[str]:
    out: list[str] = []
    for _ in range(1000):
        v = _VALUES[key](rng)
        if v != true and v not in out:
            out.append(v)
            if len(out) == k:
                return out
    raise ConfigError(f"tofu_synth: cannot draw {k} distinct wrong values for {key!r}")


def person_pairs(seed: int, person: Person, n_perturbed: int = 3) -> tuple[QAPair, ...]:
    """The ten QA pairs about ``person`` (ids ``tofu-s{seed}-p{index:04d}-q{j:02d}``)."""
    rng = random.Random(f"tofu_synth/{seed}/{person.index}/qa")
    out = []
    for j, (key, phrasings, ans_t, para_t) in enumerate(_QUESTIONS):
        value = person.attribute(key)
        pick = rng.randrange(len(phrasings))
        n = person.name
        wrong = _wrong_values(rng, key, value, n_perturbed)
        out.append(
            QAPair(
                id=f"tofu-s{seed}-p{person.index:04d}-q{j:02d}",
                question=phrasings[pick].format(n=n),
                answer=_fill(ans_t, n, value),
                paraphrased_answer=_fill(para_t, n, value),
                perturbed_answers=tuple(_fill(para_t, n, w) for w in wrong),
                group=n,
                key_fact=_key_fact(value),
                alt_questions=tuple(p.format(n=n) for i, p in enumerate(phrasings) if i != pick),
            )
        )
    return tuple(out)


def tofu_synth(
    seed: int = 0,
    n_trained: int = 100,
    n_holdout: int = 20,
    n_reserve: int = 20,
    n_perturbed: int = 3,
) -> QADataset:
    """The ``tofu_synth`` dataset: ``n_trained + n_holdout + n_reserve`` people × 10 questions,
    with parts ``trained``, ``holdout``, ``reserve`` (lists of names). Deterministic: the same
    arguments give an identical dataset."""
    for name, v, lo in (
        ("n_trained", n_trained, 1),
        ("n_holdout", n_holdout, 0),
        ("n_reserve", n_reserve, 0),
        ("n_perturbed", n_perturbed, 3),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"tofu_synth: {name} must be an integer >= {lo}, got {v!r}")
    total = n_trained + n_holdout + n_reserve
    people: list[Person] = []
    taken: set[str] = set()
    for i in range(total):
        p = make_person(seed, i, taken)
        taken.add(p.name)
        people.append(p)
    pairs = tuple(q for p in people for q in person_pairs(seed, p, n_perturbed))
    names = [p.name for p in people]
    parts = {
        "trained": tuple(names[:n_trained]),
        "holdout": tuple(names[n_trained : n_trained + n_holdout]),
        "reserve": tuple(names[n_trained + n_holdout :]),
    }
    meta = {
        "seed": seed,
        "people": {p.name: dict(p.attributes) for p in people},
        "paper": "TOFU (Maini et al., 2024) protocol, template-generated",
    }
    return QADataset("tofu_synth", pairs, parts, meta)
