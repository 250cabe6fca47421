"""TinyWorld (lesson 00): exact log-probabilities, one derivation per text, the entropy floor."""

import math
import random

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


@pytest.mark.exercise("world.unigram")
@pytest.mark.exercise("world.bigram")
def test_simple_models_sit_above_the_floor():
    train = world.corpus_text(world.generate(1500, seed=1, split="train")).encode()
    val_stories = world.generate(300, seed=1, split="val")
    val = world.corpus_text(val_stories).encode()
    floor = world.entropy_floor(val_stories).bits_per_byte
    uni = world.unigram_bits_per_byte(train, val)
    bi = world.bigram_bits_per_byte(train, val)
    assert floor < bi < uni < 8
    assert bi > 5 * floor  # the context that matters is far away: n-grams cannot see it


def test_qa_answers_are_checked_by_judge():
    for item in world.qa_pairs(100, seed=2):
        assert world.judge(item["story"], item["question"], item["answer"])
        assert world.judge(item["story"], item["question"], " " + item["answer"].upper() + ".")


def test_multiple_choice_has_one_right_answer():
    for m in world.multiple_choice(100, seed=2):
        verdicts = [world.judge(m["story"], m["question"], c) for c in m["choices"]]
        assert verdicts.count(True) == 1 and verdicts.index(True) == m["answer_index"]
        assert len(set(m["choices"])) == 4


def test_preference_pairs_judge_prefers_chosen():
    for p in world.preference_pairs(100, seed=2):
        assert world.judge(p["story"], p["question"], p["chosen"])
        assert not world.judge(p["story"], p["question"], p["rejected"])


def test_answers_need_the_story():
    # The counting questions are not answerable from the question alone: answers vary.
    answers = {m["answer"] for m in world.qa_pairs(300, seed=5) if m["kind"] == "hero_end"}
    assert len(answers) >= 5


@pytest.mark.parametrize("n, seed", [(0, 0), (-1, 0), (3, -1), ("5", 0), (2.5, 0)])
def test_bad_sizes_and_seeds(n, seed):
    with pytest.raises(MiniLLMError):
        world.generate(n, seed)


def test_default_data_is_reproducible(tmp_path):
    # data/ is what `minillm world data` writes: regenerate and compare byte for byte.
    paths = world.write_dataset(tmp_path)
    for name, path in paths.items():
        committed = world.REPO_DATA / path.name
        assert committed.exists(), f"{committed} missing: run `minillm world data`"
        assert world.sha256(path) == world.sha256(committed), f"{path.name} differs from data/"
