"""Measuring a language model (lesson 05): loss, perplexity, bits per byte, few-shot accuracy.

What it builds:
- `sliding_window_nll`: the loss of every token of a text longer than the
  context, scoring each window's last `stride` tokens so every token keeps at
  least `block_size - stride` tokens of context (stride = block_size is plain
  chunked evaluation). A reference loop (one window at a time) and a batched
  fast path, tested equal;
- `perplexity` and `bits_per_byte`. Perplexity is per *token*, so it depends on
  the tokenizer; bits per byte divides the same total information by the bytes
  of the text and compares models with different tokenizers, and with
  TinyWorld's entropy floor (Shannon 1948; bits/byte as in Gao et al. 2020, "The Pile");
- multiple-choice evaluation by log-likelihood, two ways: each choice's own text
  scored after the prompt (GPT-3's method, Brown et al. 2020, with k-shot prompts),
  or the choices listed as lettered lines and the answer letter scored (MMLU's
  harness, Hendrycks et al. 2021); accuracy with a Wilson 95% interval (Wilson 1927);
- a contamination check: word 13-gram overlap between evaluation items and the
  training text (the GPT-3 paper's test, App. C), plus exact duplicates.

Left out: generation-based metrics (exact match of sampled answers is lesson 08's
judge), calibration, length-normalized scoring variants beyond per-token mean.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from minillm.utils import MiniLLMError


# ---------------------------------------------------------------------------------
# Loss over long texts
# ---------------------------------------------------------------------------------

def window_plan(n_ids: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows of a sliding evaluation: (start, end, n_scored) per window.

    Window inputs are ids[start:end] (length min(block_size, n_ids - 1)); it
    predicts ids[start+1:end+1] and scores only the last n_scored of those, the
    ones no earlier window scored. Every position 1..n_ids-1 is scored once.
    Example: n_ids=11, block_size=4, stride=2 -> [(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 10, 2)].
    """
    if n_ids < 2:
        raise MiniLLMError("need at least 2 tokens to score anything")
    if not 1 <= stride <= block_size:
        raise MiniLLMError(f"stride must be between 1 and block_size={block_size}, got {stride}")
    length = min(block_size, n_ids - 1)
    plan, done = [], 0  # done: how many targets (positions 1..done) are scored so far
    while done < n_ids - 1:
        end = min(done + (stride if plan else length), n_ids - 1)
        start = end - length
        plan.append((start, end, end - done))
        done = end
    return plan


@torch.no_grad()
def sliding_window_nll_reference(model: nn.Module, ids: torch.Tensor, block_size: int, stride: int) -> torch.Tensor:
    """Negative log-likelihood (nats) of ids[1:], one window at a time. Returns (N-1,) float64.

    ids: (N,) token ids. Each token i >= 1 is predicted from at most block_size
    tokens before it, and at least block_size - stride (except near the start).
    """
    ### BEGIN SOLUTION name=evaluate.sliding_window points=3
    ### HINT: for (start, end, k) in window_plan(...): logits of ids[start:end]; -log softmax at the targets ids[start+1:end+1]; keep the last k.
    out = []
    for start, end, k in window_plan(len(ids), block_size, stride):
        x = ids[start:end][None]                 # (1, L)
        y = ids[start + 1:end + 1]               # (L,)
        logits = model(x)[0][0].double()         # (L, V)
        nll = -logits.log_softmax(-1).gather(1, y[:, None]).squeeze(1)  # (L,)
        out.append(nll[-k:])                     # only the targets no earlier window scored
    return torch.cat(out)
    ### END SOLUTION


@torch.no_grad()
def sliding_window_nll(model: nn.Module, ids, block_size: int | None = None, stride: int | None = None,
                       batch_size: int = 16) -> torch.Tensor:
    """Batched `sliding_window_nll_reference` (the fast path): (N-1,) float64 nats, ids[1:] in order.

    stride defaults to block_size // 2; block_size to the model's context.
    """
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64) if not isinstance(ids, torch.Tensor) else ids)
    device = next(model.parameters()).device
    block_size = block_size or model.config.block_size
    stride = stride or max(1, block_size // 2)
    plan = window_plan(len(ids), block_size, stride)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(plan), batch_size):
        part = plan[i:i + batch_size]
        rows = torch.stack([ids[s:e + 1] for s, e, _ in part]).to(device)  # (B, L+1): all windows have length L
        logp = model(rows[:, :-1])[0].float().log_softmax(-1)                 # (B, L, V)
        nll = -logp.gather(2, rows[:, 1:, None]).squeeze(2).double().cpu()    # (B, L)
        out.extend(nll[j, -k:] for j, (_, _, k) in enumerate(part))
    model.train(was_training)
    return torch.cat(out)


def perplexity(mean_nll: float) -> float:
    """exp(mean loss in nats per token): the model is as unsure as a uniform choice among this many tokens."""
    return math.exp(mean_nll)


def bits_per_byte(total_nll_nats: float, n_bytes: int) -> float:
    """Total information (nats) of a text under the model, per byte of the text, in bits.

    Example: a model that gives each of 4 one-byte tokens probability 1/2 -> 4 ln 2 nats / 4 bytes = 1 bit/byte.
    """
    if n_bytes <= 0:
        raise MiniLLMError("bits per byte needs a text of at least one byte")
    return total_nll_nats / (math.log(2) * n_bytes)


@dataclass
class TextScore:
    """The loss of a model on a text, in every unit the lesson compares."""

    loss: float            # nats per token (mean over scored tokens)
    perplexity: float      # exp(loss), per token: depends on the tokenizer
    bits_per_byte: float   # does not depend on the tokenizer
    tokens: int            # scored tokens
    bytes: int             # bytes of the scored text

    def __str__(self) -> str:
        return (f"loss {self.loss:.4f} nats/token, perplexity {self.perplexity:.3f}, "
                f"{self.bits_per_byte:.4f} bits/byte over {self.tokens:,} tokens ({self.bytes:,} bytes)")


def score_text(model: nn.Module, tokenizer, text: str, stride: int | None = None, prefix: str = "\n",
               batch_size: int = 16) -> TextScore:
    """Loss, perplexity and bits per byte of `text` under `model`.

    The first token has nothing to be predicted from, so `prefix` (a newline:
    TinyWorld's story separator) is put in front and every byte of `text` is scored.
    """
    if not text:
        raise MiniLLMError("the text to evaluate is empty")
    ids = tokenizer.encode(prefix + text) if prefix else tokenizer.encode(text)
    first = len(tokenizer.decode_bytes(ids[:1]))
    n_bytes = len((prefix + text).encode("utf-8")) - first  # the bytes of the scored tokens ids[1:]
    nll = sliding_window_nll(model, ids, stride=stride, batch_size=batch_size)
    mean = float(nll.mean())
    return TextScore(mean, perplexity(mean), bits_per_byte(float(nll.sum()), n_bytes), len(nll), n_bytes)


def floor_gap(bpb: float, floor_bpb: float) -> str:
    """'0.2010 bits/byte = floor x 1.19 (+19%)'."""
    return f"{bpb:.4f} bits/byte = floor x {bpb / floor_bpb:.2f} ({100 * (bpb / floor_bpb - 1):+.1f}%)"


# ---------------------------------------------------------------------------------
# Multiple choice by log-likelihood
# ---------------------------------------------------------------------------------

@torch.no_grad()
def choice_logprob_reference(model: nn.Module, context: list[int], choice: list[int]) -> float:
    """log p(choice | context) = sum over the choice's tokens of log p(token | everything before it)."""
    ### BEGIN SOLUTION name=evaluate.choice_logprob points=2
    ### HINT: run the model on context + choice[:-1]; the last len(choice) positions predict the choice's tokens.
    ids = torch.tensor(context + choice[:-1])[None]        # (1, L)
    logp = model(ids)[0][0].double().log_softmax(-1)       # (L, V)
    rows = logp[len(context) - 1:]                          # (len(choice), V): the positions that predict the choice
    return float(rows.gather(1, torch.tensor(choice)[:, None]).sum())
    ### END SOLUTION


@torch.no_grad()
def choice_logprobs(model: nn.Module, context: list[int], choices: list[list[int]]) -> list[float]:
    """`choice_logprob_reference` for all choices in one batch (the fast path).

    Rows are context + choice, padded on the right: a causal model never looks
    right, so the padding does not change the scored positions.
    """
    device = next(model.parameters()).device
    lengths = [len(c) for c in choices]
    width = len(context) + max(lengths) - 1
    rows = torch.zeros(len(choices), width, dtype=torch.long)           # (n_choices, L)
    for i, c in enumerate(choices):
        seq = context + c[:-1]
        rows[i, :len(seq)] = torch.tensor(seq)
    logp = model(rows.to(device))[0].float().log_softmax(-1).double().cpu()  # (n_choices, L, V)
    out = []
    for i, c in enumerate(choices):
        pos = torch.arange(len(context) - 1, len(context) - 1 + len(c))
        out.append(float(logp[i, pos, torch.tensor(c)].sum()))
    return out


LETTERS = "ABCDEFGHIJ"


def format_example(story: str, question: str, answer: str | None = None, choices: list[str] | None = None) -> str:
    """One question in the prompt format; without `answer` it ends where the answer goes.

    With `choices` they are listed under the question as lettered lines (MMLU's format),
    and the answer is then a letter.

    >>> format_example("S.", "Q?", "A")
    'S.\\nQuestion: Q?\\nAnswer: A\\n'
    >>> format_example("S.", "Q?", choices=["red", "blue"])
    'S.\\nQuestion: Q?\\nA. red\\nB. blue\\nAnswer:'
    """
    head = f"{story}\nQuestion: {question}\n"
    if choices is not None:
        head += "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(choices))
    head += "Answer:"
    return head if answer is None else f"{head} {answer}\n"


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (better than p +- z*se at small n or p near 0 or 1).

    Example: 8 of 10 -> (0.490, 0.943).
    """
    if n <= 0:
        raise MiniLLMError("an interval needs at least one trial")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class MCResult:
    accuracy: float
    ci95: tuple[float, float]
    n: int
    chance: float
    shots: int
    by_kind: dict[str, float]
    scoring: str = "text"   # "text": each choice's own tokens (GPT-3); "letter": the answer letter (MMLU)

    def __str__(self) -> str:
        lo, hi = self.ci95
        how = "" if self.scoring == "text" else " (answer letters)"
        return (f"{self.shots}-shot accuracy{how} {self.accuracy:.3f} (95% CI [{lo:.3f}, {hi:.3f}], n={self.n}, "
                f"chance {self.chance:.2f})")


def _prompt_and_candidates(item: dict, examples: list[dict], scoring: str) -> tuple[str, list[str]]:
    """The prompt (shots, then the question) and the texts to score after it."""
    if scoring == "letter":
        if any("choices" not in s for s in examples):
            raise MiniLLMError("letter scoring needs shots with choices (a multiple-choice shot pool)")
        prompt = "".join(format_example(s["story"], s["question"], LETTERS[s["answer_index"]], s["choices"]) + "\n"
                         for s in examples)
        n = len(item["choices"])
        return prompt + format_example(item["story"], item["question"], choices=item["choices"]), \
            [" " + letter for letter in LETTERS[:n]]
    prompt = "".join(format_example(s["story"], s["question"], s.get("answer") or s["choices"][s["answer_index"]])
                     + "\n" for s in examples)
    return prompt + format_example(item["story"], item["question"]), [" " + c for c in item["choices"]]


def multiple_choice_eval(model: nn.Module, tokenizer, items: list[dict], shots: int = 0,
                         shot_pool: list[dict] | None = None, seed: int = 0, normalize: bool = False,
                         scoring: str = "text") -> MCResult:
    """Accuracy of picking the choice with the highest log-likelihood.

    items: {story, question, choices, answer_index, kind} (TinyWorld's `mc_val`).
    shots: solved examples put before each question, drawn from `shot_pool`
        (default: the other items); the prompt is cut from the left to fit the context.
    normalize: rank by mean log-prob per token instead of the sum (fairer to long choices).
    scoring: "text" scores each choice's own text after "Answer:" (GPT-3, Brown et al.
        2020); "letter" lists the choices as "A. ..." lines and scores the letters
        " A", " B", ... (MMLU's harness, Hendrycks et al. 2021).
    """
    if not items:
        raise MiniLLMError("no multiple-choice items to evaluate")
    if scoring not in ("text", "letter"):
        raise MiniLLMError(f"scoring must be 'text' or 'letter', got {scoring!r}")
    pool = shot_pool if shot_pool is not None else items
    rng = random.Random(seed)
    T = model.config.block_size
    was_training = model.training
    model.eval()
    correct, per_kind = [], {}
    for item in items:
        examples = [s for s in rng.sample(pool, min(len(pool), shots + 1)) if s is not item][:shots]
        prompt, candidates = _prompt_and_candidates(item, examples, scoring)
        context = tokenizer.encode(prompt)
        choices = [tokenizer.encode(c) for c in candidates]
        keep = T - max(len(c) for c in choices) + 1
        context = context[-keep:]  # cut from the left: the newest text matters most
        scores = choice_logprobs(model, context, choices)
        if normalize:
            scores = [s / len(c) for s, c in zip(scores, choices)]
        ok = int(np.argmax(scores)) == item["answer_index"]
        correct.append(ok)
        per_kind.setdefault(item.get("kind", "all"), []).append(ok)
    model.train(was_training)
    k, n = sum(correct), len(correct)
    return MCResult(k / n, wilson_interval(k, n), n, float(np.mean([1 / len(i["choices"]) for i in items])), shots,
                    {kind: float(np.mean(v)) for kind, v in sorted(per_kind.items())}, scoring)


# ---------------------------------------------------------------------------------
# Contamination
# ---------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped: 'Once upon, a TIME.' -> ['once', 'upon', 'a', 'time']."""
    return re.findall(r"[a-z0-9]+", text.lower())


def ngram_set(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


@dataclass
class Contamination:
    n: int                  # the n of the n-grams
    items: int              # evaluation items checked
    flagged: float          # fraction of items sharing at least one n-gram with the training text
    ngram_overlap: float    # fraction of all the items' n-grams found in the training text
    exact_duplicates: int   # items whose text is a whole line of the training text

    def __str__(self) -> str:
        return (f"{self.n}-gram overlap: {100 * self.flagged:.1f}% of {self.items} items flagged, "
                f"{100 * self.ngram_overlap:.1f}% of their n-grams seen in training; "
                f"{self.exact_duplicates} exact duplicates")


def contamination(eval_texts: list[str], train_text: str, n: int = 13) -> Contamination:
    """How much of the evaluation set appears in the training data (GPT-3's 13-gram test).

    A templated corpus such as TinyWorld shares many n-grams with any new story,
    so `flagged` is high even without leaks; `exact_duplicates` finds real leaks.
    """
    if not eval_texts:
        raise MiniLLMError("no evaluation texts to check")
    train_grams = ngram_set(train_text, n)
    lines = {line.strip() for line in train_text.splitlines()}
    flagged, seen, total, dup = 0, 0, 0, 0
    for t in eval_texts:
        grams = ngram_set(t, n)
        hits = len(grams & train_grams)
        flagged += hits > 0
        seen += hits
        total += len(grams)
        dup += t.strip() in lines
    return Contamination(n, len(eval_texts), flagged / len(eval_texts), seen / max(total, 1), dup)
