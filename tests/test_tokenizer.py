"""Tests of lesson 01 (minillm/tokenizer.py): hand examples, the reference and fast
trainers agreeing, tiktoken and Hugging Face `tokenizers` as oracles, special
tokens, round trips over arbitrary Unicode, streaming with bounded memory."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minillm import MiniLLMError, world
from minillm.tokenizer import (
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    SpecialTokenError,
    Tokenizer,
    encode_reference,
    merge,
    pair_counts,
    pretokenize,
    train_bpe_reference,
)
from minillm.tokenizer_fast import _inverted, gpt2_unicode_to_byte

# Text the tokenizers never saw in training: several scripts, numbers, code, whitespace.
MULTILINGUAL = [
    "The quick brown fox can't jump over 1234567 lazy dogs; it'll try again at 09:45.",
    "Der schnelle Fuchs springt über den faulen Hund, während die Straße nass ist.",
    "Le garçon a mangé trois crêpes à la cantine, n'est-ce pas ?",
    "Быстрая лиса перепрыгнула через ленивую собаку в 2024 году.",
    "敏捷的狐狸跳过了懒狗。今天的天气很好，我们去公园吧！",
    "すばやい茶色の狐が怠け者の犬を飛び越えた。カタカナもひらがなも。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Emoji: 🦊🐶👍🏽 and families 👨‍👩‍👧 and flags 🇫🇷🇯🇵 — done.",
    "Combining: e\u0301 a\u0308 n\u0303, zero\u200bwidth, tabs\tand\r\nCRLF lines\n\n\n   indented",
    "def add(a: int, b: int) -> int:\n    return a + b  # sum\n\nfor i in range(10):\n\tprint(f'{i:>4}')\n",
    "if (x != NULL && y->z[42] >= 0x7fff) { return -1; }   \n\n",
    "   leading and trailing spaces   ",
    "numbers 3.14159 1e-10 1,000,000 -42 ½ ² ٣٤٥ 一二三",
    "HELLO I'M SHOUTING; You'RE 'quoted' \"double\" don’t",
]


def corpus_text() -> str:
    """Training text for the oracle tests: TinyWorld, Python's docs and the samples above."""
    import pydoc_data.topics as topics

    docs = "\n".join(list(topics.topics.values())[:12])
    return world.load_split("val")[:20_000] + docs[:40_000] + "\n".join(MULTILINGUAL[::2])


@pytest.fixture(scope="module")
def tok4() -> Tokenizer:
    return Tokenizer.train(corpus_text(), 1024, pattern="gpt4", special_tokens=[ENDOFTEXT, "<|pad|>"])


@pytest.fixture(scope="module")
def tok2() -> Tokenizer:
    return Tokenizer.train(corpus_text(), 800, pattern="gpt2")


# --- the plain algorithm: hand examples ------------------------------------------------

@pytest.mark.exercise("tokenizer.pair_counts")
def test_pair_counts_hand_example():
    assert pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert pair_counts([7, 7, 7]) == {(7, 7): 2}  # overlapping pairs are all counted
    assert pair_counts([5]) == {} and pair_counts([]) == {}
    acc = {(1, 2): 10}
    assert pair_counts([1, 2], acc) is acc and acc == {(1, 2): 11}


@pytest.mark.exercise("tokenizer.merge")
def test_merge_hand_example():
    assert merge([97, 97, 97, 98], (97, 97), 256) == [256, 97, 98]  # left to right, no overlap
    assert merge([97, 97, 97, 97], (97, 97), 256) == [256, 256]
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge([1, 2, 3], (3, 1), 9) == [1, 2, 3]
    assert merge([], (1, 2), 9) == []


@pytest.mark.exercise("tokenizer.train_reference")
@pytest.mark.exercise("tokenizer.pair_counts")
@pytest.mark.exercise("tokenizer.merge")
def test_reference_trainer_aaabdaaabac():
    # Round 1: aa occurs 4 times (overlapping) -> 256. Round 2: (256, 97) and (97, 98) both
    # occur twice; the tie goes to the greater (b"aa", b"a") > (b"a", b"b") -> 257 = "aaa".
    tok = train_bpe_reference("aaabdaaabac", 259, special_tokens=())
    assert tok.merges == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


@pytest.mark.exercise("tokenizer.encode_reference")
@pytest.mark.exercise("tokenizer.merge")
def test_encode_reference_hand_example():
    merges = {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert encode_reference("aaabdaaabac", merges) == [258, 100, 258, 97, 99]
    # merges apply within pre-tokens only: " aaab" is one pre-token, "d" starts no merge
    assert encode_reference("aaab aaab", merges) == [258, 32, 258]
    assert encode_reference("", merges) == []


def test_fast_trainer_aaabdaaabac():
    tok = Tokenizer.train("aaabdaaabac", 260)
    assert tok.merges == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert tok.special_tokens == {ENDOFTEXT: 259} and tok.eot_id == 259 and tok.vocab_size == 260
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_tie_break_prefers_greatest_byte_pair():
    # every pair of "abcd" occurs once: (b"c", b"d") is the greatest, then (b"b", b"cd")
    tok = Tokenizer.train("abcd", 258, special_tokens=())
    assert tok.merges == {(99, 100): 256, (98, 256): 257}


@given(st.lists(st.binary(max_size=6), min_size=2, max_size=30))
def test_inverted_key_sorts_bytes_descending(items):
    # the fast trainer's heap key must order byte strings exactly opposite to Python's order
    assert sorted(items, key=_inverted) == sorted(items, reverse=True)


# --- the fast trainer makes exactly the reference's merges ------------------------------

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


@pytest.mark.exercise("tokenizer.train_reference")
@pytest.mark.exercise("tokenizer.pair_counts")
@pytest.mark.exercise("tokenizer.merge")
@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
@pytest.mark.parametrize("name", list(_corpora()))
def test_fast_trainer_equals_reference(name, pattern):
    text = _corpora()[name]
    specials = [ENDOFTEXT, "<|pad|>"]
    ref = train_bpe_reference(text, 256 + 120 + 2, pattern, specials)
    fast = Tokenizer.train(text, 256 + 120 + 2, pattern, specials)
    assert list(fast.merges.items()) == list(ref.merges.items())  # same merges, same order
    assert fast.special_tokens == ref.special_tokens


@pytest.mark.exercise("tokenizer.train_reference")
@pytest.mark.exercise("tokenizer.pair_counts")
@pytest.mark.exercise("tokenizer.merge")
@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from(list("aab  bc\n.é😀1")), max_size=80), st.integers(0, 30),
       st.sampled_from(["gpt4", "gpt2"]))
def test_fast_trainer_equals_reference_on_random_text(text, n_merges, pattern):
    ref = train_bpe_reference(text, 256 + n_merges, pattern, special_tokens=())
    fast = Tokenizer.train(text, 256 + n_merges, pattern, special_tokens=())
    assert list(fast.merges.items()) == list(ref.merges.items())


@pytest.mark.exercise("tokenizer.encode_reference")
@pytest.mark.exercise("tokenizer.merge")
def test_fast_encode_equals_reference(tok4):
    for text in MULTILINGUAL:
        assert tok4.encode(text) == encode_reference(text, tok4.merges, tok4.pattern)


def test_training_stops_when_no_pairs_left():
    tok = Tokenizer.train("ab ab ab", 1000)
    # pre-tokens "ab" and " ab": merges (a,b), ( ,ab) -> nothing left to merge
    assert len(tok.merges) == 2 and tok.vocab_size == 256 + 2 + 1 and tok.eot_id == 258


def test_special_tokens_are_document_boundaries():
    text = "xy<|endoftext|>xy<|endoftext|>" * 50
    tok = Tokenizer.train(text, 300)
    pieces = list(tok.vocab.values())
    assert not any(b"<" in p or b"|" in p for p in pieces[256:])  # nothing learned from the marker
    assert tok.merges == {(120, 121): 256}  # only "xy": no pair crosses the boundary


def test_train_rejects_too_small_vocab():
    with pytest.raises(MiniLLMError, match="vocab_size"):
        Tokenizer.train("hello", 200)


# --- tiktoken and Hugging Face tokenizers as oracles ------------------------------------

def test_patterns_are_tiktokens():
    tiktoken_ext = pytest.importorskip("tiktoken_ext.openai_public")
    import inspect

    assert GPT2_SPLIT_PATTERN == tiktoken_ext.r50k_pat_str
    assert GPT4_SPLIT_PATTERN in inspect.getsource(tiktoken_ext.cl100k_base)
    assert pretokenize("Hello world's 1234!!") == ["Hello", " world", "'s", " ", "123", "4", "!!"]


@pytest.mark.parametrize("which", ["tok4", "tok2"])
def test_identical_ids_to_tiktoken(which, request):
    pytest.importorskip("tiktoken")
    tok = request.getfixturevalue(which)
    enc = tok.to_tiktoken()
    assert enc.n_vocab == tok.vocab_size
    samples = MULTILINGUAL + [corpus_text()[i:i + 500] for i in range(0, 60_000, 7_000)]
    for text in samples:
        assert tok.encode(text) == enc.encode(text), text
        assert enc.decode(tok.encode(text)) == text
    both = "a<|endoftext|>b" + ("<|pad|>" if "<|pad|>" in tok.special_tokens else "")
    assert tok.encode(both, allowed_special="all") == enc.encode(both, allowed_special="all")
    assert tok.encode(both, disallowed_special=()) == enc.encode(both, disallowed_special=())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=120) | st.text(st.characters(), max_size=60))
def test_identical_ids_to_tiktoken_on_arbitrary_text(tok4, text):
    pytest.importorskip("tiktoken")
    enc = tok4.to_tiktoken()
    assert tok4.encode(text, disallowed_special=()) == enc.encode(text, disallowed_special=())


def test_lone_surrogates_like_tiktoken(tok4):
    pytest.importorskip("tiktoken")
    enc = tok4.to_tiktoken()
    for text in ["\ud800", "a\udfffb", "x\ud83d\ude00y", "ok \ud800\ud800 ok"]:
        assert tok4.encode(text) == enc.encode(text)
    assert tok4.decode(tok4.encode("a\udfffb")) == "a\ufffdb"


def test_identical_ids_to_hf_tokenizers(tok2, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    vocab, merges = tok2.to_gpt2_files(tmp_path)
    hf = tokenizers.ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=False)
    for text in MULTILINGUAL:
        assert hf.encode(text).ids == tok2.encode(text), text


def test_gpt2_files_import_hand_example(tmp_path):
    # a GPT-2-style pair of files written by hand: ids of bytes are permuted, "Ġ" is the space
    to_byte = gpt2_unicode_to_byte()
    assert to_byte["Ġ"] == 32 and to_byte["!"] == 33 and len(set(to_byte.values())) == 256
    chars = sorted(to_byte, key=lambda c: -to_byte[c])  # byte 255 gets id 0, ..., byte 0 id 255
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({"Ġt": 256, "he": 257, "Ġthe": 258, "<|endoftext|>": 259})
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nh e\nĠt he\n", encoding="utf-8")
    tok = Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tok.encode(" the hex") == [258, 255 - 32, 257, 255 - ord("x")]
    assert tok.eot_id == 259 and tok.vocab_size == 260
    assert tok.decode([258, 259]) == " the<|endoftext|>"
    pytest.importorskip("tiktoken")  # permuted byte ids survive the conversion
    for text in [" the hex", "the theme the", "Ünïcödé the"]:
        assert tok.to_tiktoken().encode(text) == tok.encode(text)
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in [" the hex", "the theme the", "Ünïcödé the"]:
        assert hf.encode(text).ids == tok.encode(text)


def test_gpt2_files_round_trip(tok2, tmp_path):
    vocab, merges = tok2.to_gpt2_files(tmp_path)
    back = Tokenizer.from_gpt2_files(vocab, merges)
    assert back.merges == tok2.merges and back.special_tokens == tok2.special_tokens
    for text in MULTILINGUAL:
        assert back.encode(text) == tok2.encode(text)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nno_such_token x\n", encoding="utf-8")
    with pytest.raises(MiniLLMError, match="cannot import"):
        Tokenizer.from_gpt2_files(vocab, merges)


def test_to_tiktoken_refuses_duplicate_bytes():
    pytest.importorskip("tiktoken")
    # two merges that spell the same bytes "aaa": (aa, a) and (a, aa)
    tok = Tokenizer([(97, 97, 256), (256, 97, 257), (97, 256, 258)], special_tokens={})
    with pytest.raises(MiniLLMError, match="same bytes"):
        tok.to_tiktoken()


# --- special tokens ---------------------------------------------------------------------

def test_special_token_disallowed_by_default(tok4):
    with pytest.raises(SpecialTokenError, match="allowed_special") as e:
        tok4.encode("hello <|endoftext|> world")
    assert isinstance(e.value, ValueError) and isinstance(e.value, MiniLLMError)
    with pytest.raises(SpecialTokenError):
        tok4.encode("<|pad|>", allowed_special={ENDOFTEXT})  # only the named one is allowed


def test_special_token_allowed_and_as_text(tok4):
    eot, pad = tok4.special_tokens[ENDOFTEXT], tok4.special_tokens["<|pad|>"]
    a, b = tok4.encode("hello "), tok4.encode(" world")
    assert tok4.encode("hello <|endoftext|> world", allowed_special="all") == a + [eot] + b
    assert tok4.encode("hello <|endoftext|> world", allowed_special={ENDOFTEXT}) == a + [eot] + b
    as_text = tok4.encode("hello <|endoftext|> world", disallowed_special=())
    assert eot not in as_text and tok4.decode(as_text) == "hello <|endoftext|> world"
    assert as_text == tok4.encode_ordinary("hello <|endoftext|> world")
    # adjacent, and at both edges of the text
    assert tok4.encode("<|endoftext|><|pad|><|endoftext|>", allowed_special="all") == [eot, pad, eot]
    assert tok4.encode("<|pad|>x<|pad|>", allowed_special="all") == [pad] + tok4.encode("x") + [pad]
    assert tok4.decode([eot]) == ENDOFTEXT


def test_overlapping_special_tokens_resolve_to_longest():
    tok = Tokenizer.from_merges([], special_tokens=["<|a|>", "<|a|>!", "|>!<"])
    a, a_bang, mid = 256, 257, 258
    assert tok.encode("<|a|>!", allowed_special="all") == [a_bang]
    assert tok.encode("<|a|>?", allowed_special="all") == [a, ord("?")]
    # leftmost first: "<|a|>!" starts before "|>!<"
    assert tok.encode("<|a|>!<", allowed_special="all") == [a_bang, ord("<")]
    assert tok.encode("<|a|>!", allowed_special={"<|a|>"}, disallowed_special=()) == [a, ord("!")]


def test_unknown_allowed_special_is_an_error(tok4):
    with pytest.raises(MiniLLMError, match="not special tokens"):
        tok4.encode("x", allowed_special={"<|nope|>"})


# --- decode and round trips -------------------------------------------------------------

def test_decode_invalid_utf8_is_replaced(tok4):
    assert tok4.decode([0xFF]) == "\ufffd"
    euro = list("€".encode())  # 3 bytes; decode only the first two
    assert tok4.decode(euro[:2]) == "\ufffd"
    assert tok4.decode_bytes(euro[:2]) == b"\xe2\x82"
    assert tok4.decode(euro) == "€"
    with pytest.raises(MiniLLMError, match="not in this tokenizer"):
        tok4.decode([tok4.vocab_size])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_round_trip_arbitrary_unicode(tok4, text):
    assert tok4.decode(tok4.encode(text, disallowed_special=())) == text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["a", " ", "\n", "😀", "é", "1", "字", "\u0301", "\x00", "!"]),
       st.integers(1, 3000))
def test_round_trip_long_runs(tok4, ch, n):
    assert tok4.decode(tok4.encode(ch * n)) == ch * n


def test_round_trip_emoji_cjk_control(tok4):
    text = "👨‍👩‍👧‍👦 漢字かな交じり文 \x00\x01\x1b[31mred\x1b[0m \u202eRTL\u202c e\u0301\u0301\u0301"
    assert tok4.decode(tok4.encode(text)) == text


def test_cache_is_bounded_and_does_not_change_ids(tok4):
    text = " ".join(f"w{i}x" for i in range(3000))
    expected = tok4.encode(text)
    small = Tokenizer(list((a, b, n) for (a, b), n in tok4.merges.items()), tok4.pattern, tok4.special_tokens)
    small.cache_size = 100
    assert small.encode(text) == expected
    assert len(small._cache) <= 100
    assert small.encode(text) == expected  # second pass: answers from the cache


# --- save and load ----------------------------------------------------------------------

def test_save_load_round_trip(tok4, tmp_path):
    path = tok4.save(tmp_path / "tok.json")
    loaded = Tokenizer.load(path)
    assert loaded.merges == tok4.merges and loaded.special_tokens == tok4.special_tokens
    assert loaded.pattern == tok4.pattern and loaded.vocab_size == tok4.vocab_size
    for text in MULTILINGUAL:
        assert loaded.encode(text) == tok4.encode(text)
    d = json.loads(path.read_text(encoding="utf-8"))  # a plain, readable JSON file
    assert d["format"] == "minillm-bpe" and d["special_tokens"] == tok4.special_tokens
    a, b, new, shown = d["merges"][0]
    assert new == 256 and shown == (tok4.vocab[a] + tok4.vocab[b]).decode("utf-8", "backslashreplace")


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(MiniLLMError, match="not a minillm tokenizer"):
        Tokenizer.load(tmp_path / "x.json")
    with pytest.raises(MiniLLMError, match="cannot read"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"format": "minillm-bpe", "merges": [[1]]}', encoding="utf-8")
    with pytest.raises(MiniLLMError, match="damaged"):
        Tokenizer.load(tmp_path / "bad.json")


# --- streaming --------------------------------------------------------------------------

STREAM_ATOMS = list("ab 1\n\t'.!é😀<|>") + ["<|endoftext|>", "<|pad|>", "'ll", "  ", "\r\n"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(STREAM_ATOMS), max_size=8).map("".join), max_size=40),
       st.integers(1, 40))
def test_encode_iterable_equals_encode(tok4, pieces, chunk_chars):
    text = "".join(pieces)
    for kw in ({"allowed_special": "all"}, {"disallowed_special": ()}):
        assert list(tok4.encode_iterable(pieces, chunk_chars=chunk_chars, **kw)) == tok4.encode(text, **kw)


def test_encode_iterable_sees_split_special_token(tok4):
    pieces = ["hello world " * 10 + "<|endo", "ftext|> more"]
    with pytest.raises(SpecialTokenError):
        list(tok4.encode_iterable(pieces, chunk_chars=8))
    ids = list(tok4.encode_iterable(pieces, allowed_special="all", chunk_chars=8))
    assert tok4.eot_id in ids and ids == tok4.encode("".join(pieces), allowed_special="all")


def _write_generated_file(path, n_bytes: int) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)] + list(world.load_split("val").split()[:2000])
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < n_bytes:
            line = " ".join(rng.choice(words) for _ in range(20)) + "\n"
            f.write(line)
            written += len(line)


@pytest.mark.slow
def test_encode_iterable_20mb_bounded_memory(tok4, tmp_path):
    path = tmp_path / "big.txt"
    _write_generated_file(path, 20_000_000)
    tracemalloc.start()
    try:
        n = 0
        with open(path, encoding="utf-8") as f:
            for _ in tok4.encode_iterable(f):
                n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n > 2_000_000
    assert peak < 40_000_000, f"peak {peak / 1e6:.1f} MB while streaming a 20 MB file"  # all ids: ~>100 MB


def test_encode_iterable_bounded_memory_small(tok4, tmp_path):
    path = tmp_path / "mid.txt"
    _write_generated_file(path, 1_000_000)
    tracemalloc.start()
    try:
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in tok4.encode_iterable(f, chunk_chars=1 << 14))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n > 100_000 and peak < 8_000_000, f"peak {peak / 1e6:.1f} MB"


# --- command line -----------------------------------------------------------------------

def test_cli_train_encode_decode(tmp_path, capsys):
    from minillm.cli import main

    src = tmp_path / "in.txt"
    src.write_text(world.load_split("val")[:5000], encoding="utf-8")
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", "--input", str(src), "--vocab-size", "300", "--out", str(out)]) == 0
    assert "bytes/token" in capsys.readouterr().out
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "Once upon a time"]) == 0
    ids = capsys.readouterr().out.split()
    assert [int(i) for i in ids] == Tokenizer.load(out).encode("Once upon a time")
    assert main(["tokenizer", "decode", "--tokenizer", str(out), " ".join(ids)]) == 0
    assert capsys.readouterr().out.rstrip("\n") == "Once upon a time"
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "a <|endoftext|>"]) == 2  # clear error
    assert "--allow-special" in capsys.readouterr().err


# --- compression (what the lesson plots) --------------------------------------------------

def test_fewer_merges_is_a_prefix_of_more_merges():
    # BPE is greedy: training to 256 + k ids gives the first k merges of a longer run
    text = world.load_split("val")[:20_000]
    big = list(Tokenizer.train(text, 256 + 150, special_tokens=()).merges)
    for k in (1, 17, 90):
        assert list(Tokenizer.train(text, 256 + k, special_tokens=()).merges) == big[:k]


def test_compression_grows_with_vocab_on_training_text():
    from minillm.tokenizer import bytes_per_token, compression_curve

    text = world.load_split("val")[:20_000]
    curve = compression_curve(text, [256, 260, 300, 400])
    assert curve[256] == 1.0  # ASCII text, bytes only: one token per byte
    values = [curve[v] for v in sorted(curve)]
    # on its training text every merge removes >= 1 token, so bytes/token strictly grows
    assert all(a < b for a, b in zip(values, values[1:]))
    tok = Tokenizer.train(text, 400, special_tokens=())
    assert curve[400] == pytest.approx(bytes_per_token(tok, text), rel=1e-12)


def test_training_on_lone_surrogates_learns_valid_utf8():
    # training sees text as encode does: a lone surrogate becomes U+FFFD (EF BF BD)
    tok = Tokenizer.train("x\ud800y " * 50, 300, special_tokens=())
    learned = [tok.vocab[i] for i in tok.merges.values()]
    assert any(b"\xef\xbf\xbd" in v for v in learned)
    assert all(b"\xed" not in v for v in learned)  # no bytes of an encoded surrogate (ED A0 80)
    assert tok.encode("x\ud800y") == tok.encode("x\ufffdy")
