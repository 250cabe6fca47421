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

The same world yields questions with checkable answers, multiple-choice items
and preference pairs with a programmatic judge: `minillm.world_tasks`.

This module also finds the default data set (`data/tinyworld`, written by
`minillm world data`) and reads its floor (`split_floor`): the one source of
the floor every lesson compares with.

Left out: grammar beyond a few templates, pronouns, more than two characters.
"""

from __future__ import annotations

import dataclasses
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


def iter_stories(n_stories: int, seed: int = 0, split: str = "train") -> Iterator[Story]:
    """`n_stories` stories, one at a time, the same ones for the same (seed, split)."""
    check_size_and_seed(n_stories, seed)
    for i in range(n_stories):
        yield sample_story(story_rng(seed, split, i))


def generate(n_stories: int, seed: int = 0, split: str = "train") -> list[Story]:
    """`n_stories` stories as a list (see `iter_stories`)."""
    return list(iter_stories(n_stories, seed, split))


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
    ### HINT: how often does each of the 256 byte values occur in train, and what does smoothing add so none has probability 0?
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
    ### HINT: keep a count for every (previous byte, byte) pair, each starting at 1; a row of that table is one context.
    pair = [[1] * 256 for _ in range(256)]            # pair[a][b] = count(a, b) + 1
    for a, b in zip(train, train[1:]):
        pair[a][b] += 1
    row = [sum(r) for r in pair]                      # count(a) + 256 (a as a context)
    bits = -math.log2((train.count(test[:1]) + 1) / (len(train) + 256))   # the first byte: unigram
    bits += sum(-math.log2(pair[a][b] / row[a]) for a, b in zip(test, test[1:]))
    return bits / len(test)
    ### END SOLUTION


# ---------------------------------------------------------------------------------
# The default data set in data/ (see data/README.md)
# ---------------------------------------------------------------------------------

DEFAULT_SEED = 0
DEFAULT_SIZES = dict(train=12000, val=1000)  # stories; about 4 MB and 330 KB
REPO_DATA = Path(__file__).resolve().parent.parent / "data" / "tinyworld"
CACHE_DATA = Path.home() / ".cache" / "minillm" / "tinyworld"


def write_stories(out_dir: str | Path, seed: int = DEFAULT_SEED, sizes: dict | None = None) -> dict[str, Path]:
    """Write one `<split>.txt` per split (one story per line) and floor.json with the
    entropy floor of each split. Returns {name: path}. The derived question sets are
    `minillm.world_tasks.write_dataset`."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MiniLLMError(f"cannot create {out}: {e.strerror}") from None
    paths, floors = {}, {}
    for split, n in sizes.items():
        stories = generate(n, seed, split)
        paths[split] = atomic_write_text(out / f"{split}.txt", corpus_text(stories))
        f = entropy_floor(stories)
        floors[split] = dict(bits_per_byte=f.bits_per_byte, nats_per_byte=f.nats_per_byte, ci95=list(f.ci95),
                             stories=f.n_stories, bytes=f.n_bytes)
    paths["floor"] = atomic_write_text(out / "floor.json", json.dumps(floors, indent=2, sort_keys=True) + "\n")
    return paths


def default_data_dir() -> Path:
    """data/tinyworld of this repository; if missing (an installed package), a cache
    folder where the default stories are generated once (a few seconds, offline)."""
    if (REPO_DATA / "train.txt").exists():
        return REPO_DATA
    if not (CACHE_DATA / "floor.json").exists():
        write_stories(CACHE_DATA)
    return CACHE_DATA


def load_split(split: str = "train") -> str:
    """The text of a default split ('train' or 'val'): one story per line."""
    path = default_data_dir() / f"{split}.txt"
    if not path.exists():
        raise MiniLLMError(f"no TinyWorld split {split!r} (have: {', '.join(DEFAULT_SIZES)})")
    return path.read_text(encoding="utf-8")


def load_jsonl(name: str) -> list[dict]:
    """A derived default set: qa_train, qa_val, mc_val, prefs_train, prefs_val."""
    folder = default_data_dir()
    path = folder / f"{name}.jsonl"
    if not path.exists():
        raise MiniLLMError(f"no TinyWorld set {name!r} in {folder} (`minillm world data --out {folder}` "
                           "writes the derived sets)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def split_floor(split: str = "val") -> Floor:
    """The entropy floor of a whole default split, as floor.json records it.

    floor.json is written by the same `entropy_floor` (a test regenerates it), so
    reading it is the fast path of `entropy_floor` over the split's 1,000+ stories.
    For a part of a split (a model scored on fewer stories) use `text_floor`.
    """
    floors = json.loads((default_data_dir() / "floor.json").read_text(encoding="utf-8"))
    if split not in floors:
        raise MiniLLMError(f"no floor for TinyWorld split {split!r} (have: {', '.join(floors)})")
    f = floors[split]
    return Floor(f["bits_per_byte"], f["nats_per_byte"], tuple(f["ci95"]), f["stories"], f["bytes"])


def text_floor(text: str) -> Floor:
    """The entropy floor of exactly these stories (one per line; every line must be one).

    >>> text_floor(corpus_text(generate(3))).n_stories
    3
    """
    try:
        return entropy_floor([story_from_text(line) for line in text.splitlines()])
    except ValueError as e:
        raise MiniLLMError(f"the floor is known only for TinyWorld stories: {e}") from None
