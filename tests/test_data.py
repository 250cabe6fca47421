"""Tests of minillm.data: token files, batch sampling, corpora (lesson 04)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minillm import MiniLLMError
from minillm.data import (batch_offsets, check_enough_tokens, get_batch, iter_text_chunks, load_corpus,
                          load_tokens, random_batch, sequential_batches, token_dtype, tokenize_file,
                          tokenize_text, write_tokens)


class ByteTokenizer:
    """Ids = UTF-8 bytes: an independent truth for what a token file must hold."""

    vocab_size = 256

    def __init__(self):
        self.calls: list[int] = []

    def encode(self, text: str) -> list[int]:
        self.calls.append(len(text))
        return list(text.encode("utf-8"))


def test_token_dtype_boundaries():
    # 65,536 ids (0..65535) fit uint16; one more needs uint32.
    assert token_dtype(256) == np.uint16
    assert token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == np.uint32


@pytest.mark.parametrize("vocab", [300, 100_000])
def test_write_and_load_tokens_roundtrip(tmp_path, vocab):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, vocab, size=n) for n in (5, 0, 17, 1)]
    n = write_tokens(tmp_path / "t.bin", chunks, vocab)
    back = load_tokens(tmp_path / "t.bin")
    assert n == 23 and back.dtype == token_dtype(vocab)
    assert back.tolist() == np.concatenate(chunks).tolist()
    # compact: 16-byte header + itemsize per id
    assert (tmp_path / "t.bin").stat().st_size == 16 + 23 * np.dtype(token_dtype(vocab)).itemsize


def test_write_tokens_rejects_ids_outside_vocab(tmp_path):
    with pytest.raises(MiniLLMError, match="outside the vocabulary"):
        write_tokens(tmp_path / "t.bin", [[1, 2, 300]], 256)
    assert not (tmp_path / "t.bin").exists()  # nothing half-written is left


def test_load_tokens_rejects_other_files(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"not a token file at all")
    with pytest.raises(MiniLLMError, match="not a minillm token file"):
        load_tokens(tmp_path / "x.bin")
    with pytest.raises(MiniLLMError, match="no token file"):
        load_tokens(tmp_path / "missing.bin")


def test_tokenize_file_streams_in_line_aligned_chunks(tmp_path):
    lines = [f"line {i} with some words, ünïcode {i * i}\n" for i in range(500)]
    (tmp_path / "c.txt").write_text("".join(lines), encoding="utf-8")
    tok = ByteTokenizer()
    n = tokenize_file(tmp_path / "c.txt", tok, tmp_path / "c.bin", chunk_bytes=1000, progress=False)
    ids = load_tokens(tmp_path / "c.bin")
    assert bytes(ids.astype(np.uint8).tolist()) == "".join(lines).encode("utf-8")
    assert n == len(ids)
    longest = max(len(s) for s in lines)
    assert len(tok.calls) > 10 and max(tok.calls) < 1000 + longest  # bounded memory per chunk
    # every chunk ends at a line end, so it never cuts a word in two
    assert all(c.endswith("\n") for c in iter_text_chunks(tmp_path / "c.txt", 1000))


def test_tokenize_file_and_text_errors(tmp_path):
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(MiniLLMError, match="empty"):
        tokenize_file(tmp_path / "e.txt", ByteTokenizer(), tmp_path / "e.bin", progress=False)
    with pytest.raises(MiniLLMError, match="empty"):
        tokenize_text("", ByteTokenizer())
    with pytest.raises(MiniLLMError, match="no text file"):
        tokenize_file(tmp_path / "nope.txt", ByteTokenizer(), tmp_path / "e.bin", progress=False)


def test_tokenize_text_matches_whole_encoding():
    text = "".join(f"story {i}.\n" for i in range(300))
    ids = tokenize_text(text, ByteTokenizer(), chunk_bytes=64)
    assert ids.tolist() == list(text.encode())


def test_batch_offsets_are_a_function_of_seed_and_step():
    a = batch_offsets(1000, 16, 8, seed=1, step=5)
    assert a.tolist() == batch_offsets(1000, 16, 8, seed=1, step=5).tolist()
    assert a.tolist() != batch_offsets(1000, 16, 8, seed=1, step=6).tolist()
    assert a.tolist() != batch_offsets(1000, 16, 8, seed=2, step=5).tolist()
    many = np.concatenate([batch_offsets(100, 16, 64, 0, s) for s in range(50)])
    # every window (start .. start + T, plus one target) fits; every start is reachable
    assert many.min() == 0 and many.max() == 100 - 16 - 1


def test_get_batch_targets_are_inputs_shifted_by_one():
    tokens = np.arange(50, dtype=np.uint16) * 3
    x, y = get_batch(tokens, np.array([0, 7, 33]), 16)
    assert x.shape == y.shape == (3, 16) and x.dtype == torch.long
    assert x[1].tolist() == (np.arange(7, 23) * 3).tolist()
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert y[2, -1].item() == 49 * 3  # the id just after the window


def test_random_batch_draws_windows_of_the_data():
    tokens = np.arange(1000, dtype=np.uint32)
    x, y = random_batch(tokens, 4, 10, seed=0, step=0)
    assert torch.equal(x + 1, y)  # consecutive ids: every row is a contiguous window


def test_sequential_batches_cover_the_data_in_order():
    tokens = np.arange(45, dtype=np.uint16)
    got = list(sequential_batches(tokens, batch_size=2, block_size=10))
    xs = torch.cat([x for x, _, _ in got])
    # windows start at 0, 10, 20, 30 (the last needs ids 30..40); 40.. is a tail too short
    assert xs[:, 0].tolist() == [0, 10, 20, 30]
    assert [len(x) for x, _, _ in got] == [2, 2]
    assert got[-1][2] == 40  # where to resume
    resumed = list(sequential_batches(tokens, 2, 10, start=got[0][2]))
    assert torch.equal(resumed[0][0], got[1][0])


def test_context_longer_than_data_is_a_clear_error():
    with pytest.raises(MiniLLMError, match="needs at least 65"):
        check_enough_tokens(np.arange(64), 64)
    with pytest.raises(MiniLLMError, match="smaller --block-size"):
        random_batch(np.arange(10), 2, 64)


def test_load_corpus_tinyworld_and_files(tmp_path):
    from minillm import world

    assert load_corpus("tinyworld", "val") == world.load_split("val")
    (tmp_path / "a.txt").write_text("hello\nworld\n", encoding="utf-8")
    assert load_corpus(str(tmp_path / "a.txt")) == "hello\nworld\n"
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(MiniLLMError, match="empty"):
        load_corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(MiniLLMError, match="known: tinyworld"):
        load_corpus("no-such-corpus")


def test_load_corpus_offline_download_fails_clearly(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(MiniLLMError, match="offline"):
        load_corpus("tinyshakespeare", cache_dir=tmp_path)
    assert not (tmp_path / "tinyshakespeare.txt").exists()


def test_bpe_token_file_equals_whole_text_encoding(tmp_path):
    # Chunked streaming must not change ids at chunk edges ("\n\n" across a cut, say).
    from minillm.tokenizer import Tokenizer

    text = "".join(f"line {i}: {'x' * (i % 7)}\n" + ("\n" if i % 3 == 0 else "") for i in range(400))
    tok = Tokenizer.train(text, vocab_size=300)
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    n = tokenize_file(tmp_path / "t.txt", tok, tmp_path / "t.bin", chunk_bytes=97, progress=False)
    whole = tok.encode(text)
    assert n == len(whole)
    assert load_tokens(tmp_path / "t.bin").tolist() == whole
    assert tokenize_text(text, tok, chunk_bytes=53).tolist() == whole


def test_special_tokens_in_a_corpus_need_permission(tmp_path):
    from minillm.tokenizer import Tokenizer

    text = "one story\n<|endoftext|>another story\n"
    tok = Tokenizer.train("one story another story\n", vocab_size=270)
    with pytest.raises(ValueError):
        tokenize_text(text, tok)
    ids = tokenize_text(text, tok, allowed_special={"<|endoftext|>"}).tolist()
    assert ids.count(tok.eot_id) == 1


def test_write_token_files_from_text_and_from_a_file(tmp_path):
    from minillm.data import load_tokens, tokenize_text, write_token_files
    from minillm.tokenizer import Tokenizer

    text = "the cat sat.\nthe dog ran.\n" * 20
    tok = Tokenizer.train(text, 270)
    (tmp_path / "val.txt").write_text(text, encoding="utf-8")
    files = write_token_files(tmp_path, tok, {"train": text, "val": tmp_path / "val.txt"})
    ids = tokenize_text(text, tok)
    for name in ("train", "val"):
        f = files[name]
        assert f.path == tmp_path / f"{name}.bin" and f.n_tokens == len(ids) and f.n_bytes == len(text.encode())
        assert load_tokens(f.path).tolist() == ids.tolist() == tok.encode(text)
    assert files["val"].bytes_per_token == pytest.approx(len(text) / len(ids))
