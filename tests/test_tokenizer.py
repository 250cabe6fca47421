"""Tests of lesson 01's `Tokenizer` (minillm/tokenizer.py, minillm/tokenizer_io.py):
tiktoken and Hugging Face `tokenizers` as oracles, special tokens (tiktoken's rules, and
added ones), round trips over arbitrary Unicode, streaming with bounded memory and the
ids of `encode`, batches, files, the command line. The plain algorithm and the fast
trainer's equality with it are in tests/test_bpe.py."""

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
    pretokenize,
)
from minillm.tokenizer_io import gpt2_unicode_to_byte

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


# --- training ---------------------------------------------------------------------------

def test_fast_trainer_aaabdaaabac():
    tok = Tokenizer.train("aaabdaaabac", 260)
    assert tok.merges == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert tok.special_tokens == {ENDOFTEXT: 259} and tok.eot_id == 259 and tok.vocab_size == 260
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


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


@pytest.mark.parametrize("which", ["tok4", "tok2"])
def test_long_text_encoded_in_chunks_like_tiktoken(which, request, monkeypatch):
    pytest.importorskip("tiktoken")
    from minillm import bpe_fast

    tok = request.getfixturevalue(which)
    text = "\n".join(MULTILINGUAL) * 5 + corpus_text()[:20_000]
    monkeypatch.setattr(bpe_fast, "CHUNK_CHARS", 64)  # many chunks: every cut is tested
    monkeypatch.setattr(bpe_fast, "ENCODE_CHUNK_CHARS", 64)
    assert tok.encode(text) == tok.to_tiktoken().encode(text)
    ascii_text = text.encode("ascii", "ignore").decode()  # chunks split by the `re` twin too
    assert tok.encode(ascii_text) == tok.to_tiktoken().encode(ascii_text)


# The `re` twins of the GPT patterns that encode uses on ASCII text: the same pieces as `regex`.
ASCII = [chr(c) for c in range(128)]
NASTY_ASCII = list(" \t\n\r\x0b\x0c\x1c\x1faZs'lLvEr1!.-_")  # \x1c-\x1f: whitespace to `re`, not to `regex`


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
def test_ascii_twin_splits_every_pair_of_ascii_characters_like_regex(pattern):
    import regex

    from minillm import bpe_fast

    twin, ref = bpe_fast.ascii_twin(pattern), regex.compile(pattern)
    for text in (a + b for a in ASCII for b in ASCII):
        assert twin.findall(text) == ref.findall(text), repr(text)
    text = corpus_text().encode("ascii", "ignore").decode()
    assert twin.findall(text) == ref.findall(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(NASTY_ASCII) | st.sampled_from(ASCII), max_size=40).map("".join),
       st.integers(0, 40), st.integers(0, 40), st.sampled_from([GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN]))
def test_ascii_twin_like_regex_on_random_ascii(text, pos, endpos, pattern):
    import regex

    from minillm import bpe_fast

    twin, ref = bpe_fast.ascii_twin(pattern), regex.compile(pattern)
    assert twin.findall(text) == ref.findall(text)
    assert twin.findall(text, pos, endpos) == ref.findall(text, pos, endpos)  # as the stream calls it


def test_findall_uses_the_twin_on_ascii_and_finds_the_split_patterns_pieces(tok4, monkeypatch):
    import regex

    from minillm import bpe_fast

    assert tok4._split_ascii is not None and bpe_fast.ascii_twin(r"\w+|\s+") is None
    text = "\n".join(MULTILINGUAL) + corpus_text()[:30_000]  # ASCII stretches and others
    monkeypatch.setattr(bpe_fast, "ENCODE_CHUNK_CHARS", 100)  # many chunks, most of them ASCII
    ref = regex.compile(tok4.pattern)
    assert tok4._findall(text) == ref.findall(text)
    assert tok4._findall(text, 1000, 9000) == ref.findall(text, 1000, 9000)
    calls = []
    monkeypatch.setattr(tok4, "_split_ascii", _Spy(tok4._split_ascii, calls))
    tok4._findall(text)
    assert len(calls) > 10  # the ASCII chunks went to `re`


class _Spy:
    """Counts the findall calls of a compiled pattern."""

    def __init__(self, pattern, calls: list):
        self.pattern, self.calls = pattern, calls

    def findall(self, *args):
        self.calls.append(args)
        return self.pattern.findall(*args)


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


@pytest.mark.parametrize("content, match", [
    (b"PK\x03\x04\x00\x80\xff\xfe" * 50, "not UTF-8 text"),         # a zip (a torch checkpoint)
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
    (b"", "not JSON"),
    (b'{"format": "minillm-bpe", "pattern": 5, "merges": []}', "damaged"),
    (b'{"format": "minillm-bpe", "pattern": "gpt4", "merges": [], "special_tokens": {"x": "y"}}', "special token"),
    (b'{"format": "minillm-bpe", "pattern": "gpt4", "merges": [[1, 2, 1]]}', "bad merge"),
])
def test_load_gives_one_clear_error(tmp_path, content, match):
    (tmp_path / "f").write_bytes(content)
    with pytest.raises(MiniLLMError, match=match):
        Tokenizer.load(tmp_path / "f")
    with pytest.raises(MiniLLMError, match="cannot read"):
        Tokenizer.load(tmp_path)  # a folder


# --- streaming --------------------------------------------------------------------------

STREAM_ATOMS = list("ab 1\n\t'.!é😀<|>") + ["<|endoftext|>", "<|pad|>", "'ll", "  ", "\r\n", "\n\n",
                                             "<|endo", "ftext|>", "<|pa", "d|>", "\ud83d", "\ude00"]


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


# The reliability issue's cases: a special token, or a surrogate pair, split between pieces.
SPLIT_STREAMS = [
    ["x\n\n<|endoftext|", ">"],                     # whitespace before a special token
    ["x  <|endo", "ftext|> y"],
    ["one\n\n\n<", "|endoftext|>\n\ntwo"],
    ["tail \t ", "<|endoftext|>"],
    ["xx yy  <|endoftext|", ">"],                  # the same with the GPT-4 pattern
    ["ab \ud83d", "\ude00 cd"],                      # a surrogate pair split in two
    ["\ud83d", "\ude00", "\ud83d", "x"],              # and a lone one after it
]


@pytest.mark.parametrize("which", ["tok2", "tok4"])
@pytest.mark.parametrize("pieces", SPLIT_STREAMS)
def test_encode_iterable_split_special_or_surrogate_like_encode_and_tiktoken(which, pieces, request):
    tok = request.getfixturevalue(which)
    text = "".join(pieces)
    expected = tok.encode(text, allowed_special="all")
    for chunk_chars in (1, 2, 4, len(pieces[0]), 1 << 16):
        got = list(tok.encode_iterable(pieces, allowed_special="all", chunk_chars=chunk_chars))
        assert got == expected, (pieces, chunk_chars)
    tiktoken = pytest.importorskip("tiktoken")  # noqa: F841
    assert expected == tok.to_tiktoken().encode(text, allowed_special="all")


def test_encode_iterable_chunks_are_lists_of_the_same_ids(tok4):
    lines = [line + "\n" for line in corpus_text()[:30_000].splitlines()]
    chunks = list(tok4.encode_iterable_chunks(lines, chunk_chars=2000))
    assert len(chunks) > 5 and all(isinstance(c, list) for c in chunks)
    assert [i for c in chunks for i in c] == tok4.encode("".join(lines))


# Atoms that random cuts split in the hard places: inside a special token, a multi-byte
# character, a surrogate pair ("\ud83d\ude00" is 😀 written as UTF-16 halves), a whitespace
# run, a contraction, a digit group; with words, code and CRLF around them.
HARD_ATOMS = (["<|endoftext|>", "<|pad|>", "<|endo", "<|", "|>", "\ud83d\ude00", "\ud83d", "\ude00", "😀", "é",
               "字", "e\u0301", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n ", "'s", "'ll", "'RE", "don't",
               "12345", "3.14", " the", " cat", "ab", "x", "(", "!!", "->", " = ", "def f():\n    return 1\n"])


def _random_stream(rng: random.Random) -> list[str]:
    """A text of 0-80 atoms, cut at 0-12 random character positions (anywhere)."""
    text = "".join(rng.choice(HARD_ATOMS) for _ in range(rng.randrange(81)))
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randrange(13))))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


def _atoms_tokenizer(pattern: str) -> Tokenizer:
    """Trained on the atoms themselves, so most become one token: a stream that cut a
    pre-token wrongly ("x'l" + "l": "'", "ll" instead of "'ll") gets different ids."""
    rng = random.Random(0)
    text = "".join(rng.choice(HARD_ATOMS) for _ in range(20_000))
    return Tokenizer.train(text, 700, pattern=pattern, special_tokens=[ENDOFTEXT, "<|pad|>"])


@pytest.fixture(scope="module")
def atoms2() -> Tokenizer:
    return _atoms_tokenizer("gpt2")


@pytest.fixture(scope="module")
def atoms4() -> Tokenizer:
    return _atoms_tokenizer("gpt4")


@pytest.mark.parametrize("which", ["atoms2", "atoms4"])
def test_atoms_tokenizer_has_the_atoms_as_tokens(which, request):
    tok = request.getfixturevalue(which)
    assert [len(tok.encode(s)) for s in ("x'll", " the", "    ", "😀")] == [2, 1, 1, 1]
    # the cut that needs the last *two* pre-tokens kept: "x'l" is "x", "'", "l"; "x'll" is "x", "'ll"
    # (no special tokens to look out for: the stream holds back nothing more than it must)
    for pieces in (["x'l", "l the"], ["x'", "ll"], ["a    ", " b"], ["\ud83d", "\ude00"]):
        got = list(tok.encode_iterable(pieces, disallowed_special=(), chunk_chars=1))
        assert got == tok.encode("".join(pieces), disallowed_special=()), pieces


@pytest.mark.parametrize("which", ["tok2", "tok4", "atoms2", "atoms4"])
def test_encode_iterable_equals_encode_on_random_cuts(which, request):
    tok = request.getfixturevalue(which)
    rng = random.Random(13)
    for _ in range(300):
        pieces, chunk_chars = _random_stream(rng), rng.choice([1, 2, 3, 5, 8, 13, 40, 1 << 16])
        text = "".join(pieces)
        for kw in ({"allowed_special": "all"}, {"allowed_special": {ENDOFTEXT}, "disallowed_special": ()},
                   {"disallowed_special": ()}):
            expected = tok.encode(text, **kw)
            assert list(tok.encode_iterable(pieces, chunk_chars=chunk_chars, **kw)) == expected, (pieces, kw)
            chunks = list(tok.encode_iterable_chunks(pieces, chunk_chars=chunk_chars, **kw))
            assert [i for c in chunks for i in c] == expected
        try:
            expected = tok.encode(text)
        except SpecialTokenError:  # the default refuses special tokens: the stream must too
            with pytest.raises(SpecialTokenError):
                list(tok.encode_iterable(pieces, chunk_chars=chunk_chars))
        else:
            assert list(tok.encode_iterable(pieces, chunk_chars=chunk_chars)) == expected


@pytest.mark.parametrize("which", ["tok2", "tok4", "atoms2", "atoms4"])
def test_encode_iterable_on_random_cuts_like_tiktoken(which, request):
    tiktoken = pytest.importorskip("tiktoken")  # noqa: F841
    tok = request.getfixturevalue(which)
    enc = tok.to_tiktoken()
    rng = random.Random(7)
    for _ in range(100):
        pieces = _random_stream(rng)
        got = list(tok.encode_iterable(pieces, allowed_special="all", chunk_chars=rng.choice([1, 4, 16])))
        assert got == enc.encode("".join(pieces), allowed_special="all"), pieces


@pytest.mark.parametrize("which", ["tok2", "tok4"])
def test_encode_iterable_on_lines_of_a_real_text(which, request, monkeypatch):
    from minillm import bpe_fast

    tok = request.getfixturevalue(which)
    # stories, docs and code as lines (what the benchmark feeds it) or as big pieces (token
    # files), non-ASCII here and there: buffers split in many chunks, ASCII ones by `re`
    text = corpus_text() + "\n" + "\n".join(MULTILINGUAL)
    lines = text.splitlines(keepends=True)
    expected = tok.encode(text, disallowed_special=())
    monkeypatch.setattr(bpe_fast, "ENCODE_CHUNK_CHARS", 200)
    for chunk_chars in (64, 1000, 1 << 16):
        assert list(tok.encode_iterable(lines, disallowed_special=(), chunk_chars=chunk_chars)) == expected
    big = [text[i:i + 25_000] for i in range(0, len(text), 25_000)]
    assert list(tok.encode_iterable(big, disallowed_special=(), chunk_chars=1000)) == expected


@pytest.mark.parametrize("pattern", [r"\s+|\S+", r"\w+|[^\w\s]+"])  # tiles the text; skips whitespace
def test_encode_iterable_custom_patterns(pattern):
    tok = Tokenizer.train(corpus_text()[:20_000], 300, pattern=pattern)
    rng = random.Random(3)
    for _ in range(100):
        pieces = _random_stream(rng)
        assert list(tok.encode_iterable(pieces, allowed_special="all", chunk_chars=rng.choice([1, 5, 50]))) == \
            tok.encode("".join(pieces), allowed_special="all"), pieces


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


def test_encode_batch_equals_encode(tok4, monkeypatch):
    import minillm.tokenizer as tokenizer_module

    texts = MULTILINGUAL * 4 + ["", "a<|endoftext|>b"]
    expected = [tok4.encode(t, allowed_special="all") for t in texts]
    assert tok4.encode_batch(texts, allowed_special="all") == expected  # small: one process
    monkeypatch.setattr(tokenizer_module, "BATCH_CHARS_PER_PROCESS", 100)  # force two processes
    assert tok4.encode_batch(texts, allowed_special="all", workers=2) == expected
    with pytest.raises(SpecialTokenError):
        tok4.encode_batch(texts, workers=2)


# --- adding special tokens ---------------------------------------------------------------

def test_add_special_tokens_appends_ids_and_is_idempotent(tok4, tmp_path):
    tok = Tokenizer.load(tok4.save(tmp_path / "t.json"))  # a private copy
    n = tok.vocab_size
    ids = tok.add_special_tokens(["<|im_start|>", "<|im_end|>", ENDOFTEXT])
    assert ids == [n, n + 1, tok4.eot_id] and tok.vocab_size == n + 2
    assert tok.add_special_tokens(["<|im_end|>"]) == [n + 1] and tok.vocab_size == n + 2  # idempotent
    text = "<|im_start|>user hi<|im_end|>"
    with pytest.raises(SpecialTokenError):  # refused by default, like every special token
        tok.encode(text)
    assert tok.encode(text, disallowed_special=()) == tok4.encode(text, disallowed_special=())  # plain text
    assert tok.encode(text, allowed_special={"<|im_start|>", "<|im_end|>"}) == [n] + tok4.encode("user hi") + [n + 1]
    assert tok.decode([n, n + 1]) == "<|im_start|><|im_end|>"
    back = Tokenizer.load(tok.save(tmp_path / "t2.json"))  # save/load keep them
    assert back.special_tokens == tok.special_tokens and back.vocab_size == n + 2
    pytest.importorskip("tiktoken")
    assert tok.to_tiktoken().encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    with pytest.raises(MiniLLMError, match="non-empty string"):
        tok.add_special_tokens([""])


def test_eot_id_follows_added_endoftext():
    tok = Tokenizer.from_merges([(97, 98)], special_tokens=())
    assert tok.eot_id is None
    assert tok.add_special_tokens([ENDOFTEXT]) == [257] and tok.eot_id == 257


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


def test_cli_train_help_shows_defaults(capsys):
    from minillm.cli import main

    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 512)" in out and "(default: gpt4)" in out and "(default: tokenizer.json)" in out


def test_cli_load_error_is_one_line(tmp_path, capsys):
    from minillm.cli import main

    (tmp_path / "ckpt.pt").write_bytes(b"PK\x03\x04\x00\x80\xff" * 10)
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "ckpt.pt"), "hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "UTF-8" in err and len(err.strip().splitlines()) == 1


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


def test_encode_iterable_default_buffer_over_a_megabyte_with_a_special_token_and_a_pair_at_the_cut(tok4):
    from minillm.tokenizer import STREAM_CHARS

    line = "the cat sat on the mat, didn't it? 42 times\n"
    lines = [line] * (STREAM_CHARS // len(line)) + ["é <|endo", "ftext|> \ud83d", "\ude00 end\n"] + [line] * 500
    chunks = list(tok4.encode_iterable_chunks(lines, allowed_special="all"))
    assert len(chunks) >= 2  # the first buffer was cut
    expected = tok4.encode("".join(lines), allowed_special="all")
    assert [i for c in chunks for i in c] == expected
    assert list(tok4.encode_iterable(lines, allowed_special="all")) == expected
