"""TinyWorld (lesson 00): exact log-probabilities, one derivation per text, the entropy floor."""

import hashlib
import math
import random
from pathlib import Path

import pytest

from minillm import world
from minillm.utils import MiniLLMError


@pytest.fixture(scope="module")
def stories():
    return world.generate(600, seed=7, split="test")


def test_generation_is_deterministic():
    a = world.generate(20, seed=3)
    b = world.generate(20, seed=3)
    assert [s.text for s in a] == [s.text for s in b]
    assert [s.text for s in world.generate(20, seed=4)] != [s.text for s in a]


def test_parse_recovers_every_choice(stories):
    # parse(sample(c)) == c for every story: the text -> choices map is the inverse of
    # the choices -> text map, so no two choice sequences produce the same text.
    for s in stories:
        assert world.parse_story(s.text) == [(slot, value) for slot, value, _ in s.choices]


def _independent_logprob(text: str) -> float:
    """The log-prob of a story computed by hand from its parsed choices, without the
    generator: count the options that were open at each choice."""
    ch = dict(world.parse_story(text))
    lp = -math.log(16) * 4 - math.log(48) - math.log(16)  # trait, species, friend trait/species; hero; place
    lp -= math.log(8) + math.log(12) + math.log(12) + math.log(47)  # count, colour, object, friend (not hero)
    hero, friend = int(ch["count"]), 0
    i = 0
    while f"event{i}" in ch:
        kind, k = ch[f"event{i}"], int(ch[f"amount{i}"])
        open_kinds = 1 + (hero > 0) + (friend > 0)  # find is always possible
        lp -= math.log(open_kinds) + math.log(8)  # event kind, adverb
        if kind == "find":
            lp -= math.log(3)
            hero += k
        elif kind == "give":
            lp -= math.log(hero)
            hero, friend = hero - k, friend + k
        else:
            lp -= math.log(friend)
            hero, friend = hero + k, friend - k
        if i < 2:
            lp -= math.log(2)  # stop or go on
        i += 1
    return lp - math.log(8)  # the ending


def test_logprob_matches_hand_count(stories):
    for s in stories[:200]:
        assert s.logprob == pytest.approx(_independent_logprob(s.text), abs=1e-9)


def test_hand_example():
    text = world.generate(1, seed=0)[0].text
    assert text.startswith("Once upon a time, there was a silly goat named Milo.")
    # 16*16*48*16 * 8*12*12*47 * (2 events kinds open: find/give) * 8 adverbs * 3 amounts * 2 * 8 endings
    expected = -math.log(16 * 16 * 48 * 16 * 8 * 12 * 12 * 47 * 16 * 16 * 2 * 8 * 3 * 2 * 8)
    assert world.story_from_text(text).logprob == pytest.approx(expected, abs=1e-9)


def test_story_from_text_round_trip(stories):
    for s in stories[:100]:
        again = world.story_from_text(s.text)
        assert again.text == s.text and again.choices == s.choices and again.facts == s.facts


@pytest.mark.parametrize("bad", [
    "Once upon a time, there was a dragon.",
    "",
])
def test_non_story_is_rejected(bad):
    with pytest.raises(ValueError):
        world.story_from_text(bad)


def test_tampered_count_is_rejected(stories):
    # "Now X had N": the consequence is deterministic, a wrong count is not a story.
    s = next(s for s in stories if " had three and " in s.text)
    with pytest.raises(ValueError):
        world.story_from_text(s.text.replace(" had three and ", " had four and ", 1))


def test_probabilities_sum_to_one_over_short_stories():
    # Over all stories with exactly one "find" event and fixed slots, probabilities
    # of the open choices (amount x adverb x stop x ending) sum to the prob of the prefix.
    rng = random.Random(0)
    s = world.sample_story(rng)
    prefix = s.choices[:10]
    total = 0.0
    for adverb in world.ADVERBS:
        for k in world.FIND_COUNTS:
            for ending in world.ENDINGS:
                replay = [(a, b) for a, b, _ in prefix] + [("event0", "find"), ("adverb0", adverb),
                                                           ("amount0", str(k)), ("more0", "stop"),
                                                           ("ending", ending)]
                total += math.exp(world.sample_story(None, replay=replay).logprob)
    prefix_p = math.exp(-sum(math.log(n) for *_, n in prefix))
    # p(event0 = find) = 1/2 (find, give), p(stop) = 1/2: the sum is prefix * 1/4
    assert total == pytest.approx(prefix_p / 4, rel=1e-9)


def test_entropy_floor_exact_for_corpus(stories):
    fl = world.entropy_floor(stories)
    bits = sum(-s.logprob for s in stories) / math.log(2)
    nbytes = len(world.corpus_text(stories).encode())
    assert fl.bits_per_byte == pytest.approx(bits / nbytes, rel=1e-12)
    assert fl.nats_per_byte == pytest.approx(fl.bits_per_byte * math.log(2), rel=1e-12)
    lo, hi = fl.ci95
    assert lo < fl.bits_per_byte < hi


def test_entropy_floor_stable_across_seeds():
    # A large corpus pins the generator's rate; small corpora from 20 other seeds
    # must hold it inside their 95% intervals about 95% of the time (>= 17 of 20).
    rate = world.entropy_floor(world.generate(12000, seed=99, split="big")).bits_per_byte
    floors = [world.entropy_floor(world.generate(400, seed=s, split="floor")) for s in range(20)]
    covered = sum(f.ci95[0] <= rate <= f.ci95[1] for f in floors)
    assert covered >= 17
    assert all(abs(f.bits_per_byte - rate) < 0.01 for f in floors)  # and they are close: 0.17 +- 0.01


@pytest.mark.exercise("world.unigram")
def test_unigram_hand_example():
    assert world.unigram_bits_per_byte(b"aab", b"a") == pytest.approx(-math.log2(3 / 259))
    assert world.unigram_bits_per_byte(b"aab", b"ab") == pytest.approx(
        (-math.log2(3 / 259) - math.log2(2 / 259)) / 2)


@pytest.mark.exercise("world.bigram")
def test_bigram_hand_example():
    expected = (-math.log2(3 / 260) - math.log2(3 / 258)) / 2
    assert world.bigram_bits_per_byte(b"abab", b"ab") == pytest.approx(expected)


@pytest.fixture(scope="module")
def small_corpus():
    train = world.corpus_text(world.generate(1500, seed=1, split="train")).encode()
    val_stories = world.generate(300, seed=1, split="val")
    return train, world.corpus_text(val_stories).encode(), world.entropy_floor(val_stories).bits_per_byte


def _unigram_with_a_counter(train: bytes, test: bytes) -> float:
    """Independent truth for the unigram: collections.Counter and the same add-one rule."""
    from collections import Counter

    counts = Counter(train)
    return sum(-math.log2((counts[b] + 1) / (len(train) + 256)) for b in test) / len(test)


@pytest.mark.exercise("world.unigram")
def test_unigram_sits_above_the_floor(small_corpus):
    train, val, floor = small_corpus
    uni = world.unigram_bits_per_byte(train, val)
    assert uni == pytest.approx(_unigram_with_a_counter(train, val), rel=1e-12)
    assert 5 * floor < uni < 8  # fewer than 8 bits (plain bytes), far above the floor


@pytest.mark.exercise("world.bigram")
def test_bigram_sits_above_the_floor_and_below_the_unigram(small_corpus):
    train, val, floor = small_corpus
    bi = world.bigram_bits_per_byte(train, val)
    # one byte of context helps (the unigram, computed independently, is worse) ...
    assert floor < bi < _unigram_with_a_counter(train, val)
    assert bi > 5 * floor  # ... but the context that matters is far away: n-grams cannot see it


@pytest.mark.exercise("world.bigram")
def test_bigram_of_a_deterministic_text():
    # In "abab..." every a is followed by b: p(b | a) = (n + 1) / (n + 256) with n = count(a) as context.
    train = b"ab" * 50
    n_a = 50
    expected = (-math.log2(51 / 356) - math.log2((n_a + 1) / (n_a + 256))) / 2
    assert world.bigram_bits_per_byte(train, b"ab") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n, seed", [(0, 0), (-1, 0), (3, -1), ("5", 0), (2.5, 0)])
def test_bad_sizes_and_seeds(n, seed):
    with pytest.raises(MiniLLMError):
        world.generate(n, seed)


# --- the default data set and its floor ----------------------------------------------------

def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_default_data_is_reproducible(tmp_path):
    # data/ is what `minillm world data` writes: regenerate and compare byte for byte.
    from minillm import world_tasks

    paths = world_tasks.write_dataset(tmp_path)
    assert set(paths) == {"train", "val", "floor", *world_tasks.DERIVED_SIZES}
    for name, path in paths.items():
        committed = world.REPO_DATA / path.name
        assert committed.exists(), f"{committed} missing: run `minillm world data`"
        assert sha256(path) == sha256(committed), f"{path.name} differs from data/"


def test_split_floor_is_the_floor_of_the_split():
    # floor.json (read by split_floor) against entropy_floor recomputed from the split's text.
    recomputed = world.entropy_floor([world.story_from_text(t) for t in world.load_split("val").splitlines()])
    read = world.split_floor("val")
    assert read.bits_per_byte == pytest.approx(recomputed.bits_per_byte, rel=1e-12)
    assert (read.n_stories, read.n_bytes) == (1000, len(world.load_split("val").encode()))
    assert read.ci95 == pytest.approx(recomputed.ci95, rel=1e-12)
    with pytest.raises(MiniLLMError, match="no floor"):
        world.split_floor("test")


def test_text_floor_of_part_of_a_split():
    part = "".join(world.load_split("val").splitlines(keepends=True)[:50])
    fl = world.text_floor(part)
    assert fl.n_stories == 50 and fl.n_bytes == len(part.encode())
    with pytest.raises(MiniLLMError, match="TinyWorld stories"):
        world.text_floor(part + "Not a story.\n")


def test_load_split_and_jsonl_errors():
    assert world.load_split("val").count("\n") == 1000
    with pytest.raises(MiniLLMError, match="no TinyWorld split"):
        world.load_split("nope")
    with pytest.raises(MiniLLMError, match="no TinyWorld set"):
        world.load_jsonl("nope")


def test_cli_world_sample_and_data(tmp_path, capsys):
    from minillm.cli import main

    assert main(["world", "sample", "--stories", "2", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [s.text for s in world.generate(2, seed=3)]
    assert main(["world", "data", "--size", "24", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "train.txt").read_text().count("\n") == 24 and (tmp_path / "mc_val.jsonl").exists()
    assert main(["world", "floor", "--stories", "0"]) == 2 and capsys.readouterr().err.startswith("error:")
