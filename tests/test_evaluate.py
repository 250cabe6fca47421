"""Tests of minillm.evaluate: sliding windows, bits per byte, multiple choice, contamination (lesson 05)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
import torch.nn as nn

from minillm import MiniLLMError, evaluate, world
from minillm.data import sequential_batches
from minillm.evaluate import (bits_per_byte, choice_logprob_reference, choice_logprobs, contamination, floor_gap,
                              format_example, multiple_choice_eval, perplexity, score_text, sliding_window_nll,
                              sliding_window_nll_reference, wilson_interval, window_plan, words)
from minillm.model import GPT, GPTConfig


class ByteTokenizer:
    """Ids = UTF-8 bytes (vocab 256): the simplest tokenizer, an independent truth for byte counts."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids) -> bytes:
        return bytes(ids)


class BiasLM(nn.Module):
    """A 'model' whose next-token distribution is the same fixed softmax(bias) everywhere."""

    def __init__(self, bias: torch.Tensor, block_size: int = 64):
        super().__init__()
        self.bias = nn.Parameter(bias.clone())
        self.config = types.SimpleNamespace(block_size=block_size)

    def forward(self, idx, targets=None):
        return self.bias.expand(*idx.shape, -1), None


@pytest.fixture(scope="module")
def random_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def skip_gram_tokens(n: int, seed: int) -> np.ndarray:
    """x[t] = x[t-2] + 3 (mod 32) with 20% random tokens: predicting x[t] needs the token two back."""
    rng = np.random.default_rng(seed)
    x = list(rng.integers(0, 32, 2))
    for _ in range(n - 2):
        x.append(int(rng.integers(0, 32)) if rng.random() < 0.2 else (x[-2] + 3) % 32)
    return np.array(x, dtype=np.int64)


@pytest.fixture(scope="module")
def trained_gpt():
    """A tiny GPT trained on `skip_gram_tokens`: without two tokens of context it cannot do well."""
    from minillm.train import TrainConfig, train

    mc = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32)
    tc = TrainConfig(steps=100, batch_size=16, lr=1e-2, warmup_steps=10, eval_every=0, log_every=0,
                     device="cpu", dtype="float32")
    return train(mc, tc, skip_gram_tokens(20_000, 0), log=None).model.eval()


# --- sliding windows -----------------------------------------------------------------

def test_window_plan_hand_example():
    assert window_plan(11, 4, 2) == [(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 10, 2)]
    assert window_plan(9, 4, 4) == [(0, 4, 4), (4, 8, 4)]   # stride = context: chunks
    assert window_plan(3, 8, 4) == [(0, 2, 2)]               # text shorter than the context


@pytest.mark.parametrize("n,T,stride", [(2, 4, 1), (50, 8, 3), (64, 8, 8), (100, 16, 5), (17, 16, 16)])
def test_window_plan_scores_every_token_once_with_enough_context(n, T, stride):
    scored = []
    for start, end, k in window_plan(n, T, stride):
        assert end - start == min(T, n - 1)
        targets = list(range(end - k + 1, end + 1))  # positions of the scored targets
        scored += targets
        assert all(t - start >= min(t, T - stride + 1) for t in targets)  # context of at least T - stride
    assert scored == list(range(1, n))


@pytest.mark.exercise("evaluate.sliding_window")
@pytest.mark.parametrize("stride", [1, 5, 16])
def test_fast_sliding_window_equals_reference(random_gpt, stride, monkeypatch):
    ids = torch.randint(0, 50, (41,), generator=torch.Generator().manual_seed(1))
    fast = sliding_window_nll(random_gpt, ids, 16, stride, batch_size=3)
    monkeypatch.setattr(evaluate, "sliding_window_nll", lambda *a, **k: pytest.fail("no delegation"))
    ref = sliding_window_nll_reference(random_gpt, ids, 16, stride)
    assert ref.shape == fast.shape == (40,)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)


def test_stride_equal_to_context_is_chunked_evaluation(random_gpt):
    ids = np.random.default_rng(2).integers(0, 50, 16 * 5 + 1)
    chunked = [random_gpt(x, y)[1].item() for x, y, _ in sequential_batches(ids, 1, 16)]
    nll = sliding_window_nll(random_gpt, ids, 16, stride=16)
    assert float(nll.mean()) == pytest.approx(np.mean(chunked), abs=1e-5)


def test_smaller_stride_is_never_worse_for_a_trained_model(trained_gpt):
    ids = skip_gram_tokens(1200, 1)
    losses = [float(sliding_window_nll(trained_gpt, ids, 16, s).mean()) for s in (16, 8, 2, 1)]
    # never worse, up to 0.01 nats: a model is a little better at some positions of its window than at others
    assert all(a >= b - 0.01 for a, b in zip(losses, losses[1:])), losses
    # chunks leave 1 target in 16 with one token of context: about (1/16) x (log 32 - trained loss) worse
    assert losses[0] - losses[-1] > 0.05, losses


# --- units ---------------------------------------------------------------------------

def test_bits_per_byte_and_perplexity_hand_values():
    assert bits_per_byte(4 * math.log(2), 4) == pytest.approx(1.0)   # p = 1/2 per one-byte token
    assert perplexity(math.log(7)) == pytest.approx(7.0)
    with pytest.raises(MiniLLMError):
        bits_per_byte(1.0, 0)


def test_floor_gap_and_empty_text():
    assert floor_gap(0.2, 0.1) == "0.2000 bits/byte = floor x 2.00 (+100.0%)"
    with pytest.raises(MiniLLMError, match="empty"):
        score_text(BiasLM(torch.zeros(256)), ByteTokenizer(), "")


def test_uniform_model_costs_log2_vocab_bits_per_token():
    # A uniform model over V ids pays log2(V) bits per token, whatever the text.
    model = BiasLM(torch.zeros(256))
    text = "Once upon a time, there was a brave fox.\n" * 3
    s = score_text(model, ByteTokenizer(), text)
    assert s.bytes == len(text.encode()) and s.tokens == len(text.encode())  # the prefix makes every byte scored
    assert s.loss == pytest.approx(math.log(256))
    assert s.bits_per_byte == pytest.approx(8.0)  # 1 byte per token: 8 bits per byte
    assert s.perplexity == pytest.approx(256)


def test_bits_per_byte_does_not_care_how_text_is_cut_into_tokens():
    # The same distribution over bytes, written with 1-byte or 2-byte tokens, must give the same bits/byte
    # but different perplexities: an 'every byte is 1 of 16 letters' source.
    letters = "abcdefghijklmnop"

    class PairTokenizer:  # every token is two letters: 256 ids
        def encode(self, text):
            return [letters.index(text[i]) * 16 + letters.index(text[i + 1]) for i in range(0, len(text), 2)]

        def decode_bytes(self, ids):
            return "".join(letters[i // 16] + letters[i % 16] for i in ids).encode()

    class LetterTokenizer:  # every token is one letter: 16 ids
        def encode(self, text):
            return [letters.index(c) for c in text]

        def decode_bytes(self, ids):
            return "".join(letters[i] for i in ids).encode()

    text = "".join(np.random.default_rng(0).choice(list(letters), 400))
    pairs = score_text(BiasLM(torch.zeros(256)), PairTokenizer(), text[2:], prefix=text[:2])
    single = score_text(BiasLM(torch.zeros(16)), LetterTokenizer(), text[1:], prefix=text[:1])
    assert pairs.bits_per_byte == pytest.approx(4.0) and single.bits_per_byte == pytest.approx(4.0)
    assert pairs.perplexity == pytest.approx(256) and single.perplexity == pytest.approx(16)


# --- multiple choice -------------------------------------------------------------------

@pytest.fixture
def no_batched_choices(monkeypatch):
    monkeypatch.setattr(evaluate, "choice_logprobs", lambda *a, **k: pytest.fail("no delegation"))


@pytest.mark.exercise("evaluate.choice_logprob")
def test_choice_logprob_is_the_chain_rule(random_gpt, no_batched_choices):
    # Identity: log p(choice | context) = log p(context + choice) - log p(context), each side from the
    # model's own cross-entropy loss (mean over the predicted tokens, times their number).
    context, choice = [3, 14, 15, 9], [2, 6, 5]

    def total_logprob(ids):  # log p(ids[1:] | ids[0])
        x = torch.tensor(ids)[None]
        return -random_gpt(x[:, :-1], x[:, 1:])[1].item() * (len(ids) - 1)

    expected = total_logprob(context + choice) - total_logprob(context)
    assert choice_logprob_reference(random_gpt, context, choice) == pytest.approx(expected, abs=1e-5)


@pytest.mark.exercise("evaluate.choice_logprob")
def test_choice_logprob_of_a_known_distribution(no_batched_choices):
    # A model that puts probability 1/2 on token 1 and 1/6 on each of 0, 2, 3, everywhere:
    # log p([1, 3] | anything) = ln(1/2) + ln(1/6).
    bias = torch.log(torch.tensor([1 / 6, 1 / 2, 1 / 6, 1 / 6]))
    assert choice_logprob_reference(BiasLM(bias), [0, 2], [1, 3]) == pytest.approx(
        math.log(1 / 2) + math.log(1 / 6), abs=1e-9)


@pytest.mark.exercise("evaluate.choice_logprob")
def test_choice_logprobs_batched_equal_one_at_a_time(random_gpt):
    # The fast path against the reference (lesson 05's exercise), choices of different lengths.
    context = [1, 2, 3, 4, 5]
    choices = [[7], [8, 9, 10], [11, 12]]  # different lengths: right padding must not matter
    fast = choice_logprobs(random_gpt, context, choices)
    ref = [choice_logprob_reference(random_gpt, context, c) for c in choices]
    np.testing.assert_allclose(fast, ref, atol=1e-5)


def test_wilson_interval_hand_value_and_definition():
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    # Definition: the bounds are the p where |k/n - p| = z sqrt(p (1 - p) / n).
    for k, n in [(8, 10), (3, 50), (120, 200)]:
        for p in wilson_interval(k, n):
            assert abs(k / n - p) == pytest.approx(1.96 * math.sqrt(p * (1 - p) / n), abs=1e-9)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == pytest.approx(1.0)


def test_multiple_choice_picks_the_likeliest_choice():
    tok = ByteTokenizer()
    bias = torch.full((256,), -5.0)
    bias[ord("y")] = 5.0  # loves the letter y
    bias[ord(" ")] = 5.0
    model = BiasLM(bias, block_size=512)
    items = [dict(story="S.", question="Q?", choices=["n", "y", "m", "k"], answer_index=1, kind="a"),
             dict(story="S.", question="Q?", choices=["y", "n", "m", "k"], answer_index=2, kind="b")]
    r = multiple_choice_eval(model, tok, items, shots=1)
    assert r.accuracy == 0.5 and r.by_kind == {"a": 1.0, "b": 0.0} and r.chance == 0.25 and r.n == 2
    assert r.ci95 == pytest.approx(wilson_interval(1, 2))


def test_letter_scoring_scores_the_answer_letter():
    # MMLU's format: the choices listed as lettered lines, the letters scored. A model that loves
    # "B" picks the second choice whatever the texts; scoring the texts it would pick "y".
    tok = ByteTokenizer()
    bias = torch.full((256,), -5.0)
    bias[ord("B")] = bias[ord(" ")] = bias[ord("y")] = 5.0
    model = BiasLM(bias, block_size=512)
    items = [dict(story="S.", question="Q?", choices=["n", "m", "y", "k"], answer_index=1, kind="a"),
             dict(story="S.", question="Q?", choices=["n", "m", "y", "k"], answer_index=2, kind="a")]
    letter = multiple_choice_eval(model, tok, items, shots=1, scoring="letter")
    text = multiple_choice_eval(model, tok, items, shots=1, scoring="text")
    assert letter.accuracy == 0.5 and letter.by_kind == {"a": 0.5} and "answer letters" in str(letter)
    assert text.accuracy == 0.5 and text.scoring == "text"
    assert format_example("S.", "Q?", "B", ["x", "y"]) == "S.\nQuestion: Q?\nA. x\nB. y\nAnswer: B\n"
    with pytest.raises(MiniLLMError, match="letter scoring needs"):
        multiple_choice_eval(model, tok, items, shots=1, shot_pool=[dict(story="S.", question="Q?", answer="y")],
                             scoring="letter")


def test_prompt_format_and_left_truncation():
    assert format_example("S.", "Q?", "A") == "S.\nQuestion: Q?\nAnswer: A\n"
    assert format_example("S.", "Q?") == "S.\nQuestion: Q?\nAnswer:"
    # A long prompt is cut from the left to fit a small context, and still scores.
    model = BiasLM(torch.zeros(256), block_size=16)
    items = [dict(story="x" * 100, question="Q?", choices=["aa", "b"], answer_index=1, kind="k")]
    r = multiple_choice_eval(model, ByteTokenizer(), items, shots=0)
    assert r.accuracy == 1.0  # uniform: the shorter choice has the larger sum of log-probs


# --- contamination ---------------------------------------------------------------------

def test_contamination_hand_example():
    train = "the cat sat on the mat\nthe dog ran\n"
    evals = ["The cat sat.", "a bird flew away", "the dog ran"]
    c = contamination(evals, train, n=3)
    # 3-grams: 'the cat sat' is in training; 'a bird flew', 'bird flew away' are not; 'the dog ran' is.
    assert c.flagged == pytest.approx(2 / 3)
    assert c.ngram_overlap == pytest.approx(2 / 4)
    assert c.exact_duplicates == 1
    assert words("Once upon, a TIME.") == ["once", "upon", "a", "time"]


def test_tinyworld_validation_is_not_leaked_but_shares_template_ngrams():
    train = world.load_split("train")[:300_000]
    items = world.load_jsonl("mc_val")[:30]
    c = contamination([it["story"] for it in items], train, n=8)
    assert c.exact_duplicates == 0
    assert c.flagged > 0.5  # templated text shares 8-grams without any leak


# --- the command line ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as `minillm train` leaves it: ckpt.pt with an untrained GPT, tokenizer.json."""
    import dataclasses

    from minillm.checkpoint import save_checkpoint
    from minillm.tokenizer import Tokenizer

    out = tmp_path_factory.mktemp("run")
    tok = Tokenizer.train(world.load_split("train")[:20_000], 300)
    tok.save(out / "tokenizer.json")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(out / "ckpt.pt", {"model": model.state_dict(), "config": dataclasses.asdict(model.config)})
    return out


def test_cli_evaluate_scores_against_the_floor(run_dir, capsys):
    from minillm.cli import main

    assert main(["evaluate", str(run_dir), "--max-chars", "3000", "--mc-items", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("loss ") and "bits/byte" in out[0]
    assert out[1].startswith("vs TinyWorld's entropy floor") and "2-shot accuracy" in out[2] and "n=4" in out[2]


@pytest.mark.parametrize("content, message", [("", "nothing to evaluate"), (None, "no file")])
def test_cli_evaluate_bad_text_is_one_error_line(run_dir, tmp_path, capsys, content, message):
    from minillm.cli import main

    path = tmp_path / "text.txt"
    if content is not None:
        path.write_text(content)
    assert main(["evaluate", str(run_dir), "--text", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err


def test_cli_evaluate_without_a_tokenizer_is_one_error_line(run_dir, tmp_path, capsys):
    import shutil

    from minillm.cli import main

    shutil.copy(run_dir / "ckpt.pt", tmp_path / "ckpt.pt")
    assert main(["evaluate", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "tokenizer.json" in err
