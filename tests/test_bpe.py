"""Tests of lesson 01's algorithm (minillm/bpe.py, the reference; minillm/bpe_fast.py, the
fast paths): hand examples, and the fast trainer and encoder agreeing with the reference
merge for merge and id for id.

The exercise tests need only their own exercise: where the reference trainer or encoder
would call another exercise (`pair_counts`, `merge`), the `others_solved` fixture swaps in
this file's stand-ins. They also fail a solution that only calls the fast path it is meant
to replace (`no_fast_paths`: every fast path raises while the exercise runs).
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import bpe, bpe_fast, world
from minillm.bpe import ENDOFTEXT, encode_reference, merge, pair_counts, train_bpe_reference
from minillm.tokenizer import Tokenizer

MULTILINGUAL = [
    "The quick brown fox can't jump over 1234567 lazy dogs; it'll try again at 09:45.",
    "Der schnelle Fuchs springt über den faulen Hund, während die Straße nass ist.",
    "Быстрая лиса перепрыгнула через ленивую собаку в 2024 году.",
    "敏捷的狐狸跳过了懒狗。今天的天气很好，我们去公园吧！",
    "Emoji: 🦊🐶👍🏽 and families 👨‍👩‍👧 and flags 🇫🇷🇯🇵 — done.",
    "Combining: e\u0301 a\u0308, tabs\tand\r\nCRLF lines\n\n\n   indented",
    "def add(a: int, b: int) -> int:\n    return a + b  # sum\n\nfor i in range(10):\n\tprint(f'{i:>4}')\n",
    "HELLO I'M SHOUTING; You'RE 'quoted' \"double\" don’t",
]


# --- stand-ins for the other exercises, and the fast paths made unusable ------------------

def _pair_counts_standin(ids, counts=None):
    counts = {} if counts is None else counts
    for k in range(len(ids) - 1):
        counts[ids[k], ids[k + 1]] = counts.get((ids[k], ids[k + 1]), 0) + 1
    return counts


def _merge_standin(ids, pair, idx):
    out = list(ids)
    k = 0
    while k < len(out) - 1:
        if (out[k], out[k + 1]) == pair:
            out[k:k + 2] = [idx]
        k += 1
    return out


@pytest.fixture
def others_solved(monkeypatch):
    """The reference trainer and encoder call these stand-ins instead of the student's
    `pair_counts` / `merge`, so a test grades one exercise alone."""
    monkeypatch.setattr(bpe, "pair_counts", _pair_counts_standin)
    monkeypatch.setattr(bpe, "merge", _merge_standin)


@contextlib.contextmanager
def no_fast_paths():
    """Every fast path (trainer, encoder, tiktoken) raises while an exercise runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("the exercise called a fast path of minillm instead of doing the work itself")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("train_bpe", "count_pretokens", "_merge_in_word", "encode_word"):
            mp.setattr(bpe_fast, name, refuse)
        for name in ("train", "encode", "encode_ordinary", "_encode_piece", "encode_batch", "encode_iterable"):
            mp.setattr(Tokenizer, name, refuse)
        yield


# --- the plain algorithm: hand examples ----------------------------------------------------

@pytest.mark.exercise("bpe.pair_counts")
def test_pair_counts_hand_example():
    with no_fast_paths():
        assert pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
        assert pair_counts([7, 7, 7]) == {(7, 7): 2}  # overlapping pairs are all counted
        assert pair_counts([5]) == {} and pair_counts([]) == {}
        acc = {(1, 2): 10}
        assert pair_counts([1, 2], acc) is acc and acc == {(1, 2): 11}


@pytest.mark.exercise("bpe.pair_counts")
@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=30))
def test_pair_counts_sums_to_length_minus_one(ids):
    with no_fast_paths():
        counts = pair_counts(ids)
    assert sum(counts.values()) == max(0, len(ids) - 1)
    assert counts == dict(Counter(zip(ids, ids[1:])))


@pytest.mark.exercise("bpe.merge")
def test_merge_hand_example():
    with no_fast_paths():
        assert merge([97, 97, 97, 98], (97, 97), 256) == [256, 97, 98]  # left to right, no overlap
        assert merge([97, 97, 97, 97], (97, 97), 256) == [256, 256]
        assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
        assert merge([1, 2, 3], (3, 1), 9) == [1, 2, 3]
        assert merge([], (1, 2), 9) == [] and merge([1], (1, 2), 9) == [1]


@pytest.mark.exercise("bpe.merge")
@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=30), st.integers(0, 3), st.integers(0, 3))
def test_merge_property(ids, a, b):
    with no_fast_paths():
        out = merge(ids, (a, b), 9)
    n = out.count(9)
    assert len(out) == len(ids) - n  # each merge removes one id
    undone = [x for y in out for x in ((a, b) if y == 9 else (y,))]
    assert undone == ids  # replacing 9 by (a, b) gives the input back
    assert (a, b) not in zip(out, out[1:])  # left to right, nothing is left to merge


@pytest.mark.exercise("bpe.train_reference")
def test_reference_trainer_aaabdaaabac(others_solved):
    # Round 1: aa occurs 4 times (overlapping) -> 256. Round 2: (256, 97) and (97, 98) both
    # occur twice; the tie goes to the greater (b"aa", b"a") > (b"a", b"b") -> 257 = "aaa".
    with no_fast_paths():
        merges = train_bpe_reference("aaabdaaabac", 3)
    assert merges == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert list(merges.values()) == [256, 257, 258]  # in the order learned
    with no_fast_paths():
        assert train_bpe_reference("abcd", 2) == {(99, 100): 256, (98, 256): 257}  # all ties
        assert train_bpe_reference("ab ab", 100) == {(97, 98): 256, (32, 256): 257}  # runs out of pairs
        assert train_bpe_reference("", 5) == {}


@pytest.mark.exercise("bpe.encode_reference")
def test_encode_reference_hand_example(others_solved):
    merges = {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    with no_fast_paths():
        assert encode_reference("aaabdaaabac", merges) == [258, 100, 258, 97, 99]
        # merges apply within pre-tokens only: " aaab" is one pre-token, no merge joins the space
        assert encode_reference("aaab aaab", merges) == [258, 32, 258]
        assert encode_reference("", merges) == []
        # rank decides, not position: (98, 99) was learned before (97, 98)
        assert encode_reference("abc", {(98, 99): 256, (97, 98): 257}) == [97, 256]


def test_pretokenize_and_specials():
    assert bpe.pretokenize("Hello world's 1234!!") == ["Hello", " world", "'s", " ", "123", "4", "!!"]
    assert bpe.pretokenize("a<|endoftext|>b", special_tokens=[ENDOFTEXT]) == ["a", "b"]
    assert bpe.split_on_special("x<|a|>!y", ["<|a|>", "<|a|>!"]) == ["x", "y"]  # longest wins
    assert bpe.utf8_safe("a\ud800b") == "a\ufffdb" and bpe.utf8_safe("\ud83d\ude00") == "😀"


# --- the fast trainer makes exactly the reference's merges ----------------------------------

def _corpora() -> dict[str, str]:
    import pydoc_data.topics as topics

    rng = random.Random(0)
    return {
        "tinyworld": world.load_split("val")[:3000],
        "pydoc": topics.topics["assert"][:3000],
        "multilingual": "\n".join(MULTILINGUAL),
        # a 3-letter alphabet: counts tie all the time, so the tie-break decides
        "ties": " ".join("".join(rng.choice("abc") for _ in range(rng.randint(1, 7))) for _ in range(400)),
        "specials": ("one story<|endoftext|>two stories<|endoftext|><|endoftext|>"
                     "three<|pad|>stories end") * 20,
        "long_runs": "a" * 300 + " " * 50 + "ab" * 100 + "\n" * 30 + "😀" * 40,
    }


@pytest.mark.exercise("bpe.train_reference")
@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
@pytest.mark.parametrize("name", list(_corpora()))
def test_fast_trainer_equals_reference(name, pattern, others_solved):
    text = _corpora()[name]
    specials = [ENDOFTEXT, "<|pad|>"]
    fast = bpe_fast.train_bpe(text, 120, bpe.resolve_pattern(pattern), specials, workers=1)
    with no_fast_paths():
        ref = train_bpe_reference(text, 120, pattern, specials)
    assert list(fast.items()) == list(ref.items())  # same merges, same order


@pytest.mark.exercise("bpe.train_reference")
@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from(list("aab  bc\n.é😀1")), max_size=80), st.integers(0, 30),
       st.sampled_from(["gpt4", "gpt2"]))
def test_fast_trainer_equals_reference_on_random_text(text, n_merges, pattern):
    fast = bpe_fast.train_bpe(text, n_merges, bpe.resolve_pattern(pattern), workers=1)
    with pytest.MonkeyPatch.context() as mp, no_fast_paths():
        mp.setattr(bpe, "pair_counts", _pair_counts_standin)
        mp.setattr(bpe, "merge", _merge_standin)
        ref = train_bpe_reference(text, n_merges, pattern)
    assert list(fast.items()) == list(ref.items())


@pytest.mark.exercise("bpe.encode_reference")
def test_fast_encode_equals_reference(others_solved):
    text = world.load_split("val")[:20_000] + "\n".join(MULTILINGUAL[::2])
    tok = Tokenizer.train(text, 700, special_tokens=())
    expected = [tok.encode(t) for t in MULTILINGUAL]
    with no_fast_paths():
        got = [encode_reference(t, tok.merges, tok.pattern) for t in MULTILINGUAL]
    assert got == expected


# --- the fast paths themselves ---------------------------------------------------------------

def test_fast_trainer_aaabdaaabac_and_tie_break():
    assert bpe_fast.train_bpe("aaabdaaabac", 3, bpe.GPT4_SPLIT_PATTERN) == {(97, 97): 256, (256, 97): 257,
                                                                           (257, 98): 258}
    # every pair of "abcd" occurs once: (b"c", b"d") is the greatest, then (b"b", b"cd")
    assert bpe_fast.train_bpe("abcd", 2, bpe.GPT4_SPLIT_PATTERN) == {(99, 100): 256, (98, 256): 257}


def test_neighbour_updates_keep_every_pair_count():
    # the counts moved at the neighbours of each merge equal a recount of the merged word
    def weighted(word, f):
        return Counter({p: f * c for p, c in Counter(zip(word, word[1:])).items()})

    for word, (a, b) in [([1, 2, 1, 2, 2, 1, 2], (1, 2)), ([7, 7, 7, 7, 7], (7, 7)), ([3, 1, 2, 1, 2, 4], (1, 2))]:
        counts, changed = weighted(word, 5), set()
        out = bpe_fast._merge_in_word(word, a, b, 9, 5, counts, changed)
        assert out == _merge_standin(word, (a, b), 9)
        assert {p: c for p, c in counts.items() if c} == weighted(out, 5)
        assert set(weighted(out, 5)) - {(a, b)} <= changed | set(weighted(word, 5))


@given(st.lists(st.binary(max_size=6), min_size=2, max_size=30))
def test_inverted_key_sorts_bytes_descending(items):
    # the fast trainer's heap key must order byte strings exactly opposite to Python's order
    assert sorted(items, key=bpe_fast._inverted) == sorted(items, reverse=True)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_chunks_pretokenize_like_the_whole_text(pattern):
    pat = bpe.resolve_pattern(pattern)
    text = "\n".join(MULTILINGUAL) * 3 + world.load_split("val")[:5000] + "x<|endoftext|>y" * 30
    bounds = bpe_fast.chunk_bounds(text, pat, [ENDOFTEXT], chunk_chars=50)
    assert len(bounds) > 20 and bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    whole = Counter(bpe.pretokenize(text, pattern, [ENDOFTEXT]))
    assert bpe_fast.count_pretokens(text, pat, [ENDOFTEXT], workers=1, chunk_chars=50) == whole
    assert bpe_fast.count_pretokens(text, pat, [ENDOFTEXT], workers=2, chunk_chars=500) == whole


def test_custom_pattern_is_not_cut():
    assert bpe_fast.chunk_bounds("ab cd " * 100, r"\w+|\s", chunk_chars=10) == [(0, 600)]


def test_parallel_training_equals_one_process(monkeypatch):
    text = world.load_split("val")[:60_000]
    monkeypatch.setattr(bpe_fast, "CHUNK_CHARS", 5000)  # 12 chunks: two processes really run
    one = bpe_fast.train_bpe(text, 200, bpe.GPT4_SPLIT_PATTERN, [ENDOFTEXT], workers=1)
    two = bpe_fast.train_bpe(text, 200, bpe.GPT4_SPLIT_PATTERN, [ENDOFTEXT], workers=2)
    assert one == two


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=20))
def test_encode_word_equals_merging_by_rank(ids):
    # merges on a 4-letter alphabet; the reference loop (lowest-rank pair, merge everywhere)
    pairs = [(0, 1), (2, 2), (4, 3), (1, 2), (5, 5), (0, 0)]
    merges = {p: 4 + k for k, p in enumerate(pairs)}
    ranks = {p: k for k, p in enumerate(pairs)}
    expected = list(ids)
    while len(expected) >= 2:
        pair = min(zip(expected, expected[1:]), key=lambda p: ranks.get(p, 99))
        if pair not in ranks:
            break
        expected = _merge_standin(expected, pair, merges[pair])
    assert bpe_fast.encode_word(list(ids), ranks, merges) == expected
