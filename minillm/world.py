"""TinyWorld: short stories from a known random process, so the best possible loss is known.

Every story is made by a sequence of *random choices*, each uniform over a list
(a name, a colour, how many apples, which event happens next ...). Everything
else in the text is *deterministic*: once the choices are made, the words that
follow are fixed (the hero's name repeated, the colour referred to again, the
number of apples left after a gift). So the exact probability of a story is

    p(story) = prod over choices of 1 / (number of options at that choice)

and the cross-entropy of a corpus under the generator, in bits per byte, is the
floor no language model can beat (lesson 00). Deterministic parts cost a perfect
model nothing, but only a model that looks back (attention) can get them right:
the names, colours and counts of the start of a story return at its end, and
"now Mia had five" needs the earlier "seven" and "gave two".

Each story is one line; the newline that ends it is deterministic too (it
follows "The end."), so `entropy_floor` counts it as a byte to predict.

The same world yields questions with checkable answers (SFT, evaluation),
multiple-choice items (few-shot evaluation) and preference pairs with a
programmatic judge (DPO, RLHF).

Left out: grammar beyond a few templates, pronouns, more than two characters.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import re
from pathlib import Path
from typing import Iterator

from minillm.utils import MiniLLMError, atomic_write_text

# ---------------------------------------------------------------------------------
# The vocabulary of the world. Every list is chosen from uniformly.
# ---------------------------------------------------------------------------------

NAMES = [
    "Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivy", "Jack", "Kai", "Lena",
    "Max", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tess", "Uma", "Vic", "Wren", "Yara",
    "Zoe", "Leo", "Mia", "Noah", "Ella", "Theo", "Lily", "Otto", "Ruby", "Hugo", "Iris", "Milo",
    "Nina", "Oscar", "Pablo", "Rita", "Sara", "Toby", "Vera", "Will", "Anna", "Bruno", "Carl", "Dora",
]
SPECIES = ["cat", "dog", "fox", "owl", "bear", "rabbit", "mouse", "frog",
           "duck", "goat", "pig", "horse", "wolf", "deer", "hen", "otter"]
TRAITS = ["brave", "shy", "kind", "clever", "tiny", "happy", "sleepy", "curious",
          "grumpy", "quiet", "silly", "gentle", "proud", "busy", "old", "young"]
PLACES = ["the forest", "the village", "the meadow", "the castle", "the river", "the farm",
          "the garden", "the mountain", "the lake", "the beach", "the market", "the school",
          "the bridge", "the mill", "the cave", "the island"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black",
           "pink", "brown", "grey", "golden"]
OBJECTS = [("apple", "apples"), ("ball", "balls"), ("shell", "shells"), ("stone", "stones"),
           ("cookie", "cookies"), ("flower", "flowers"), ("hat", "hats"), ("book", "books"),
           ("kite", "kites"), ("cup", "cups"), ("key", "keys"), ("feather", "feathers")]
ADVERBS = ["quickly", "slowly", "happily", "quietly", "proudly", "shyly", "kindly", "sadly"]
ENDINGS = ["played tag", "shared a snack", "watched the stars", "sang a song",
           "told stories", "went for a walk", "took a nap", "danced in the rain"]
NUMBERS = ["none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen", "nineteen", "twenty"]

START_COUNTS = list(range(2, 10))   # the hero starts with 2..9 objects
FIND_COUNTS = [1, 2, 3]             # a "find" event adds 1..3
EVENT_KINDS = ["give", "give back", "find"]
MAX_EVENTS = 3                      # after event i < 3: stop or go on, 1/2 each


def article(word: str) -> str:
    """'a' or 'an' for the word that follows (deterministic: costs no bits)."""
    return "an" if word[0] in "aeiou" else "a"


def things(n: int, colour: str, obj: tuple[str, str]) -> str:
    """`3, 'red', ('ball', 'balls')` -> 'three red balls'; singular for one."""
    return f"{NUMBERS[n]} {colour} {obj[0] if n == 1 else obj[1]}"


@dataclasses.dataclass
class Story:
    """One generated document: its text, the choices that made it, and its exact log-prob."""

    text: str                  # one line, ending in "The end." (the newline is not included)
    choices: list[tuple[str, str, int]]  # (slot, value chosen, number of options)
    logprob: float             # natural log of p(text) under the generator; the "\n" after it has p = 1
    facts: dict                # what questions can ask about: names, counts, colour, ...

    @property
    def bits(self) -> float:
        """-log2 p(text): the information a perfect model must still pay for."""
        return -self.logprob / math.log(2)


class _Chooser:
    """Makes uniform choices and records each one (slot, value, #options).

    With `replay` (a list of (slot, value) pairs, e.g. from `parse_story`) it makes
    those choices instead of random ones, so a parsed text can be re-generated.
    """

    def __init__(self, rng: random.Random | None, replay: list[tuple[str, str]] | None = None):
        self.rng = rng
        self.replay = list(replay) if replay is not None else None
        self.choices: list[tuple[str, str, int]] = []

    def pick(self, slot: str, options: list):
        if self.replay is None:
            value = options[self.rng.randrange(len(options))]
        else:
            if not self.replay or self.replay[0][0] != slot:
                raise ValueError(f"expected a choice for {slot!r}")
            wanted = self.replay.pop(0)[1]
            matches = [o for o in options if str(o) == wanted]
            if not matches:
                raise ValueError(f"{wanted!r} is not a possible {slot!r} here")
            value = matches[0]
        self.choices.append((slot, str(value), len(options)))
        return value


def sample_story(rng: random.Random | None, replay: list[tuple[str, str]] | None = None) -> Story:
    """Draw one story. Random choices go through `c.pick`; everything else is deterministic.

    `replay`: make these (slot, value) choices instead of random ones (see `story_from_text`).
    """
    c = _Chooser(rng, replay)
    # --- random: who, where, what ---
    trait = c.pick("trait", TRAITS)
    species = c.pick("species", SPECIES)
    hero = c.pick("hero", NAMES)
    place = c.pick("place", PLACES)
    n = c.pick("count", START_COUNTS)
    colour = c.pick("colour", COLOURS)
    obj = OBJECTS[c.pick("object", list(range(len(OBJECTS))))]
    friend = c.pick("friend", [x for x in NAMES if x != hero])  # 47 options: never the hero
    trait2 = c.pick("friend_trait", TRAITS)
    species2 = c.pick("friend_species", SPECIES)
    # --- deterministic: the text these choices imply ---
    s = [f"Once upon a time, there was {article(trait)} {trait} {species} named {hero}.",
         f"{hero} lived near {place} and had {things(n, colour, obj)}.",
         f"One day, {hero} met {friend}, {article(trait2)} {trait2} {species2}."]
    have = {hero: n, friend: 0}
    events = []
    for i in range(MAX_EVENTS):
        # Which events can happen depends on the state: you cannot give what you do not have.
        kinds = [k for k in EVENT_KINDS if not (k == "give" and have[hero] == 0)
                 and not (k == "give back" and have[friend] == 0)]
        kind = c.pick(f"event{i}", kinds)
        adverb = c.pick(f"adverb{i}", ADVERBS)
        if kind == "find":
            k = c.pick(f"amount{i}", FIND_COUNTS)
            have[hero] += k
            s.append(f"Then {hero} {adverb} found {NUMBERS[k]} more {obj[0] if k == 1 else obj[1]}.")
        else:
            giver, taker = (hero, friend) if kind == "give" else (friend, hero)
            k = c.pick(f"amount{i}", list(range(1, have[giver] + 1)))
            have[giver] -= k
            have[taker] += k
            s.append(f"Then {giver} {adverb} gave {taker} {things(k, colour, obj)}.")
        # Deterministic: the consequence, which needs counting over the whole story.
        s.append(f"Now {hero} had {NUMBERS[have[hero]]} and {friend} had {NUMBERS[have[friend]]}.")
        events.append((kind, k))
        if i + 1 < MAX_EVENTS and c.pick(f"more{i}", ["stop", "go on"]) == "stop":
            break
    ending = c.pick("ending", ENDINGS)
    s.append(f"That evening, {hero} and {friend} {ending}. The end.")
    facts = dict(hero=hero, friend=friend, species=species, friend_species=species2, trait=trait,
                 friend_trait=trait2, place=place, colour=colour, object=obj[1], start=n,
                 hero_end=have[hero], friend_end=have[friend], events=events, ending=ending)
    logprob = -sum(math.log(k) for _, _, k in c.choices)
    return Story(" ".join(s), c.choices, logprob, facts)


def story_rng(seed: int, split: str, index: int) -> random.Random:
    """Each story has its own generator, so any story can be made alone, in any order."""
    return random.Random(f"tinyworld/{seed}/{split}/{index}")


def generate(n_stories: int, seed: int = 0, split: str = "train") -> list[Story]:
    """`n_stories` stories, the same ones for the same (seed, split)."""
    check_size_and_seed(n_stories, seed)
    return [sample_story(story_rng(seed, split, i)) for i in range(n_stories)]


def iter_stories(n_stories: int, seed: int = 0, split: str = "train") -> Iterator[Story]:
    check_size_and_seed(n_stories, seed)
    for i in range(n_stories):
        yield sample_story(story_rng(seed, split, i))


def check_size_and_seed(n_stories: int, seed: int) -> None:
    if not isinstance(n_stories, int) or isinstance(n_stories, bool) or n_stories < 1:
        raise MiniLLMError(f"the number of stories must be a positive integer, got {n_stories!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise MiniLLMError(f"seed must be a non-negative integer, got {seed!r}")


# ---------------------------------------------------------------------------------
# Parsing a story back: proves each text has exactly one derivation.
# ---------------------------------------------------------------------------------

_ALT = lambda words: "(" + "|".join(re.escape(w) for w in words) + ")"  # noqa: E731
_NUM = _ALT(NUMBERS[1:])
_HEAD = re.compile(
    rf"Once upon a time, there was an? {_ALT(TRAITS)} {_ALT(SPECIES)} named {_ALT(NAMES)}\. "
    rf"\3 lived near {_ALT(PLACES)} and had {_NUM} {_ALT(COLOURS)} (\w+)\. "
    rf"One day, \3 met {_ALT(NAMES)}, an? {_ALT(TRAITS)} {_ALT(SPECIES)}\.")
_FIND = re.compile(rf" Then (\w+) {_ALT(ADVERBS)} found {_NUM} more (\w+)\.")
_GIVE = re.compile(rf" Then (\w+) {_ALT(ADVERBS)} gave (\w+) {_NUM} (\w+) (\w+)\.")
_NOW = re.compile(r" Now (\w+) had (\w+) and (\w+) had (\w+)\.")
_END = re.compile(rf" That evening, (\w+) and (\w+) {_ALT(ENDINGS)}\. The end\.$")


def parse_story(text: str) -> list[tuple[str, str]]:
    """Recover the (slot, value) choices behind a story text, or raise ValueError.

    Written independently of `sample_story` (regular expressions, not the
    generator), it is the test that the text determines the choices: if
    parse(sample()) gives back the choices for every story, two different choice
    sequences can never make the same text.
    """
    m = _HEAD.match(text)
    if not m:
        raise ValueError("not a TinyWorld story: bad opening")
    trait, species, hero, place, n, colour, plural, friend, trait2, species2 = m.groups()
    singulars = {p: i for i, (_, p) in enumerate(OBJECTS)}
    if plural not in singulars:
        raise ValueError(f"unknown object {plural!r}")
    out = [("trait", trait), ("species", species), ("hero", hero), ("place", place),
           ("count", str(NUMBERS.index(n))), ("colour", colour), ("object", str(singulars[plural])),
           ("friend", friend), ("friend_trait", trait2), ("friend_species", species2)]
    pos = m.end()
    for i in range(MAX_EVENTS):
        if (g := _FIND.match(text, pos)) and g.group(1) == hero:
            out += [(f"event{i}", "find"), (f"adverb{i}", g.group(2)),
                    (f"amount{i}", str(NUMBERS.index(g.group(3))))]
        elif (g := _GIVE.match(text, pos)) and {g.group(1), g.group(3)} == {hero, friend}:
            out += [(f"event{i}", "give" if g.group(1) == hero else "give back"), (f"adverb{i}", g.group(2)),
                    (f"amount{i}", str(NUMBERS.index(g.group(4))))]
        else:
            raise ValueError(f"bad event {i}")
        now = _NOW.match(text, g.end())
        if not now:
            raise ValueError(f"bad consequence after event {i}")
        pos = now.end()
        if i + 1 < MAX_EVENTS:
            more = text.startswith(" Then ", pos)
            out.append((f"more{i}", "go on" if more else "stop"))
            if not more:
                break
    end = _END.match(text, pos)
    if not end:
        raise ValueError("bad ending")
    out.append(("ending", end.group(3)))
    return out


def story_from_text(text: str) -> Story:
    """Parse a story and re-generate it from its choices: its exact log-prob and facts.

    Raises ValueError if `text` is not a story TinyWorld can produce.
    """
    story = sample_story(None, replay=parse_story(text))
    if story.text != text:
        raise ValueError("text parses but is not what the generator writes")
    return story


# ---------------------------------------------------------------------------------
# The entropy floor
# ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Floor:
    """The cross-entropy of a corpus under its true generator: no model can do better."""

    bits_per_byte: float
    nats_per_byte: float
    ci95: tuple[float, float]  # 95% interval for the generator's entropy rate (bits per byte)
    n_stories: int
    n_bytes: int

    def __str__(self) -> str:
        lo, hi = self.ci95
        return (f"entropy floor: {self.bits_per_byte:.4f} bits/byte ({self.nats_per_byte:.4f} nats/byte), "
                f"95% CI [{lo:.4f}, {hi:.4f}] over {self.n_stories} stories, {self.n_bytes} bytes")


def entropy_floor(stories: list[Story]) -> Floor:
    """Bits per byte of `stories` under the generator, counting each story's final newline.

    The point estimate is exact for this corpus: sum of -log2 p(story) over the
    sum of bytes. The interval is for the generator's *rate* (what another corpus
    from the same process would give): a ratio estimator with a delta-method
    standard error, mean(b) / mean(n) +- 1.96 * sd(b - R n) / (mean(n) sqrt(N)).
    """
    if not stories:
        raise MiniLLMError("entropy_floor needs at least one story")
    bits = [s.bits for s in stories]
    nbytes = [len(s.text.encode("utf-8")) + 1 for s in stories]  # + 1: the "\n" that ends a story
    N, B, M = len(stories), sum(bits), sum(nbytes)
    rate = B / M
    resid = [b - rate * n for b, n in zip(bits, nbytes)]
    sd = math.sqrt(sum(r * r for r in resid) / max(N - 1, 1))
    half = 1.96 * sd / ((M / N) * math.sqrt(N))
    return Floor(rate, rate * math.log(2), (rate - half, rate + half), N, M)


def corpus_text(stories: list[Story]) -> str:
    """The corpus as the model reads it: one story per line."""
    return "".join(s.text + "\n" for s in stories)


# ---------------------------------------------------------------------------------
# Simple models for lesson 00: how far above the floor do they sit?
# ---------------------------------------------------------------------------------

def unigram_bits_per_byte(train: bytes, test: bytes) -> float:
    """Cross-entropy (bits per byte) on `test` of a byte-unigram model fitted on `train`.

    Add-one (Laplace) smoothing over all 256 byte values, so an unseen byte costs
    log2(len(train) + 256) bits instead of infinity.
    Example: train=b"aab", test=b"a" -> p(a) = (2 + 1) / (3 + 256): 6.43 bits.
    """
    ### BEGIN SOLUTION name=world.unigram points=2
    ### HINT: count each byte value in train, add 1 to every count, then average -log2 p(b) over test.
    counts = [1] * 256
    for b in train:
        counts[b] += 1
    total = sum(counts)
    return sum(-math.log2(counts[b] / total) for b in test) / len(test)
    ### END SOLUTION


def bigram_bits_per_byte(train: bytes, test: bytes) -> float:
    """Cross-entropy (bits per byte) on `test` of a byte-bigram model p(b | previous byte).

    Add-one smoothing per context: p(b | a) = (count(a, b) + 1) / (count(a) + 256).
    The first byte of `test` is predicted with the add-one unigram model.
    Example: train=b"abab", test=b"ab" -> p(a) = 3/260, p(b|a) = 3/258: 6.43 bits per byte.
    """
    ### BEGIN SOLUTION name=world.bigram points=3
    ### HINT: count pairs (train[i], train[i+1]) in a 256 x 256 table; add 1 to every cell.
    import numpy as np

    t = np.frombuffer(train, dtype=np.uint8).astype(np.int64)
    pair = np.ones((256, 256))
    np.add.at(pair, (t[:-1], t[1:]), 1)
    logp = np.log2(pair / pair.sum(axis=1, keepdims=True))
    x = np.frombuffer(test, dtype=np.uint8).astype(np.int64)
    first = -math.log2((train.count(bytes([x[0]])) + 1) / (len(train) + 256))
    return float((first - logp[x[:-1], x[1:]].sum()) / len(x))
    ### END SOLUTION


# ---------------------------------------------------------------------------------
# Questions, multiple choice and preference pairs (lessons 05, 08, 10, 11)
# ---------------------------------------------------------------------------------

QUESTION_KINDS = ["start", "hero_end", "friend_end", "place", "friend_species", "colour"]


def _count_word(n: int) -> str:
    return NUMBERS[n]


def question(story: Story, kind: str) -> tuple[str, str, list[str]]:
    """(question, correct answer, all possible answers of that kind) about `story`."""
    f = story.facts
    things_ = f"{f['colour']} {f['object']}"
    counts = [_count_word(i) for i in range(len(NUMBERS))]
    if kind == "start":
        return f"How many {things_} did {f['hero']} have at the start?", _count_word(f["start"]), counts
    if kind == "hero_end":
        return f"How many {things_} did {f['hero']} have at the end?", _count_word(f["hero_end"]), counts
    if kind == "friend_end":
        return f"How many {things_} did {f['friend']} have at the end?", _count_word(f["friend_end"]), counts
    if kind == "place":
        return f"Where did {f['hero']} live?", f"near {f['place']}", [f"near {p}" for p in PLACES]
    if kind == "friend_species":
        return f"What kind of animal was {f['friend']}?", f"a {f['friend_species']}" if article(
            f["friend_species"]) == "a" else f"an {f['friend_species']}", [f"{article(x)} {x}" for x in SPECIES]
    if kind == "colour":
        return f"What colour were the {f['object']} of {f['hero']}?", f["colour"], list(COLOURS)
    raise MiniLLMError(f"unknown question kind {kind!r}; choose from {QUESTION_KINDS}")


def qa_pairs(n: int, seed: int = 0, split: str = "qa") -> list[dict]:
    """Question/answer pairs grounded in fresh stories: {story, question, answer, kind}."""
    rng = random.Random(f"tinyworld-qa/{seed}/{split}")
    out = []
    for story in iter_stories(n, seed, split):
        kind = QUESTION_KINDS[rng.randrange(len(QUESTION_KINDS))]
        q, a, _ = question(story, kind)
        out.append(dict(story=story.text, question=q, answer=a, kind=kind))
    return out


def multiple_choice(n: int, seed: int = 0, split: str = "mc", n_choices: int = 4) -> list[dict]:
    """Multiple-choice items: {story, question, choices, answer_index, kind}.

    Distractors are other answers of the same kind (numbers near the true one for counts).
    """
    rng = random.Random(f"tinyworld-mc/{seed}/{split}")
    out = []
    for item in qa_pairs(n, seed, split):
        story = story_from_text(item["story"])
        _, answer, pool = question(story, item["kind"])
        if item["kind"] in ("start", "hero_end", "friend_end"):
            i = pool.index(answer)
            pool = pool[max(0, i - 4): i + 5]  # plausible numbers, not "twenty" for "two"
        wrong = [x for x in pool if x != answer]
        choices = rng.sample(wrong, n_choices - 1)
        k = rng.randrange(n_choices)
        choices.insert(k, answer)
        out.append(dict(story=item["story"], question=item["question"], choices=choices,
                        answer_index=k, kind=item["kind"]))
    return out


def judge(story_text: str, question_text: str, answer: str) -> bool:
    """The programmatic judge: is `answer` the right answer to `question_text` about the story?

    Works from the text alone (the story is parsed, not looked up), so it can
    grade answers a model wrote. Case, spaces and a final period are ignored.
    """
    story = story_from_text(story_text)
    norm = lambda x: x.strip().rstrip(".").strip().lower()  # noqa: E731
    for kind in QUESTION_KINDS:
        q, a, _ = question(story, kind)
        if q == question_text:
            return norm(answer) == norm(a)
    raise MiniLLMError(f"the judge does not know the question {question_text!r}")


def preference_pairs(n: int, seed: int = 0, split: str = "prefs") -> list[dict]:
    """Preference pairs for DPO/RLHF: {story, question, chosen, rejected}.

    `chosen` is the correct answer and `rejected` a wrong one of the same kind, so
    `judge` prefers `chosen` every time.
    """
    return [dict(story=m["story"], question=m["question"], chosen=m["choices"][m["answer_index"]],
                 rejected=next(c for i, c in enumerate(m["choices"]) if i != m["answer_index"]),
                 kind=m["kind"])
            for m in multiple_choice(n, seed, split)]


# ---------------------------------------------------------------------------------
# The default data set in data/ (see data/README.md) and the command line
# ---------------------------------------------------------------------------------

DEFAULT_SEED = 0
DEFAULT_SIZES = dict(train=12000, val=1000)  # stories; about 4 MB and 330 KB
DERIVED_SIZES = dict(qa_train=2000, qa_val=300, mc_val=300, prefs_train=2000, prefs_val=200)
REPO_DATA = Path(__file__).resolve().parent.parent / "data" / "tinyworld"


def write_dataset(out_dir: str | Path, seed: int = DEFAULT_SEED, sizes: dict | None = None,
                  derived: dict | None = None) -> dict[str, Path]:
    """Write train.txt / val.txt (one story per line) and the derived JSONL sets.

    Returns {name: path}. Also writes floor.json with the entropy floor of each split.
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    derived = dict(DERIVED_SIZES if derived is None else derived)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MiniLLMError(f"cannot create {out}: {e.strerror}") from None
    paths, floors = {}, {}
    for split, n in sizes.items():
        stories = generate(n, seed, split)
        paths[split] = atomic_write_text(out / f"{split}.txt", corpus_text(stories))
        fl = entropy_floor(stories)
        floors[split] = dict(bits_per_byte=fl.bits_per_byte, nats_per_byte=fl.nats_per_byte,
                             ci95=list(fl.ci95), stories=fl.n_stories, bytes=fl.n_bytes)
    makers = dict(qa=qa_pairs, mc=multiple_choice, prefs=preference_pairs)
    for name, n in derived.items():
        kind = name.split("_")[0]
        rows = makers[kind](n, seed, name)
        paths[name] = atomic_write_text(out / f"{name}.jsonl",
                                        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    paths["floor"] = atomic_write_text(out / "floor.json", json.dumps(floors, indent=2, sort_keys=True) + "\n")
    return paths


def default_data_dir() -> Path:
    """data/tinyworld of this repository; if missing (an installed package), a cache
    folder where the default data set is generated once (a few seconds, offline)."""
    if (REPO_DATA / "train.txt").exists():
        return REPO_DATA
    cache = Path.home() / ".cache" / "minillm" / "tinyworld"
    if not (cache / "floor.json").exists():
        write_dataset(cache)
    return cache


def load_split(split: str = "train") -> str:
    """The text of a default split ('train' or 'val'): one story per line."""
    path = default_data_dir() / f"{split}.txt"
    if not path.exists():
        raise MiniLLMError(f"no TinyWorld split {split!r} (have: train, val)")
    return path.read_text(encoding="utf-8")


def load_jsonl(name: str) -> list[dict]:
    """A derived default set: qa_train, qa_val, mc_val, prefs_train, prefs_val."""
    path = default_data_dir() / f"{name}.jsonl"
    if not path.exists():
        raise MiniLLMError(f"no TinyWorld set {name!r} (have: {', '.join(DERIVED_SIZES)})")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="sample", choices=["sample", "floor", "data"],
                        help="sample: print stories with their bits; floor: the entropy floor of a "
                             "corpus; data: write a data set (default: the one in data/tinyworld)")
    parser.add_argument("--stories", type=int, default=3, help="how many stories (sample, floor)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--split", default="train", help="split name: a different split, different stories")
    parser.add_argument("--out", default=None, help="data: output folder (default: data/tinyworld)")
    parser.add_argument("--size", type=int, default=None,
                        help=f"data: stories in train (default {DEFAULT_SIZES['train']}); val gets a 12th")


def run(args: argparse.Namespace) -> int:
    if args.action == "sample":
        for story in generate(args.stories, args.seed, args.split):
            print(f"[{story.bits:.1f} bits, {len(story.text) + 1} bytes] {story.text}")
    elif args.action == "floor":
        print(entropy_floor(generate(args.stories, args.seed, args.split)))
    else:
        sizes = None
        if args.size is not None:
            check_size_and_seed(args.size, args.seed)
            sizes = dict(train=args.size, val=max(1, args.size // 12))
        check_size_and_seed(1, args.seed)
        paths = write_dataset(args.out or REPO_DATA, args.seed, sizes)
        for name, path in paths.items():
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
