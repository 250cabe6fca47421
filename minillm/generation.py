"""Sampling text from a GPT, one row or a batch of prompts of different lengths (lesson 03).

What it builds:

* `sample_next`: one token per row from logits, with temperature, top-k and top-p
  (nucleus, Holtzman et al., 2020);
* `generate_batch`: continue several prompts at once. Shorter prompts are padded on
  the LEFT, so every row's last real token sits in the last column; an attention mask
  hides the padding and per-row positions start at each row's first real token. The
  KV cache of lesson 02 makes each new token cost one query. Row i samples with its
  own generator seeded seed + i, so a row gives the same tokens in a batch as alone
  (test, both styles, with and without the cache).

Past the context (block_size), every row sees its own last block_size tokens: the
cache is dropped and each step recomputes those windows (learned positions would be
wrong otherwise), as generating the row alone does.

Works with any model that has `config.block_size`, `config.vocab_size`,
`new_cache(B)` and `forward(idx, attention_mask=, position_ids=, cache=)` (our GPT):
it imports no model, so `minillm.model` can build `GPT.generate` on it.
Left out: beam search, repetition penalties, speculative decoding.
"""

from __future__ import annotations

import numbers
from typing import Iterable

import torch

from minillm.utils import MiniLLMError


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> (B,) long.

    temperature 0 = argmax. Otherwise the logits are divided by temperature, cut to
    the top_k largest, then to the smallest set whose softmax mass reaches top_p
    (the top token always stays), and one token is drawn.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass BEFORE it already reaches top_p (so the first always stays).
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not temperature >= 0:  # also refuses NaN
        raise MiniLLMError(f"temperature must be >= 0, got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise MiniLLMError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise MiniLLMError(f"top_k must be >= 1, got {top_k}")


def _check_prompts(prompts, vocab_size: int) -> list[list[int]]:
    """Plain lists of Python ints in [0, V); one clear error for anything else."""
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    rows = []
    for i, p in enumerate(prompts):
        p = p.tolist() if isinstance(p, torch.Tensor) else list(p)
        if not p:
            raise MiniLLMError(f"prompt {i} is empty: every row needs at least one token")
        for t in p:
            if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                raise MiniLLMError(f"prompt {i} holds {t!r}: token ids are integers "
                                   f"(NaN, inf and fractional values are not token ids)")
            if not 0 <= t < vocab_size:
                raise MiniLLMError(f"prompt {i} holds token id {t}, outside [0, {vocab_size})")
        rows.append([int(t) for t in p])
    if not rows:
        raise MiniLLMError("no prompts given")
    return rows


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of different lengths -> ids (B, T), attention mask (B, T), positions (B, T).

    >>> ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    >>> ids.tolist(), mask.tolist(), pos.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]], [[0, 1, 2], [0, 0, 0]])
    """
    T = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    pos = (mask.cumsum(dim=1) - 1).clamp(min=0)  # each row counts from its first real token
    return ids, mask, pos


def _next_logits(model, seqs: list[list[int]], state: dict, pad_id: int, device) -> torch.Tensor:
    """The next-token logits (B, V) of every row, through the cache when it has room."""
    bs = model.config.block_size
    cache = state.get("cache")
    if cache is not None and cache.pos == 0:  # prefill: every prompt, left-padded
        ids, mask, pos = left_pad(seqs, pad_id, device)
        if ids.size(1) > bs:  # a prompt longer than the context: windows from the start
            state["cache"] = cache = None
        else:
            padded = bool((mask == 0).any())
            state["mask"] = mask
            logits, _ = model(ids, attention_mask=mask if padded else None,
                              position_ids=pos if padded else None, cache=cache)
            state["padded"] = padded
            return logits[:, -1]
    if cache is not None and cache.pos < bs:  # one new token per row
        mask = torch.cat([state["mask"], state["mask"].new_ones(len(seqs), 1)], dim=1)  # (B, Tk)
        state["mask"] = mask
        ids = torch.tensor([[s[-1]] for s in seqs], dtype=torch.long, device=device)  # (B, 1)
        pos = torch.tensor([[len(s) - 1] for s in seqs], dtype=torch.long, device=device)
        if state["padded"]:
            logits, _ = model(ids, attention_mask=mask, position_ids=pos, cache=cache)
        else:
            logits, _ = model(ids, cache=cache)
        return logits[:, -1]
    state["cache"] = None  # full (or never used): recompute each row's last block_size tokens
    ids, mask, pos = left_pad([s[-bs:] for s in seqs], pad_id, device)
    padded = bool((mask == 0).any())
    logits, _ = model(ids, attention_mask=mask if padded else None, position_ids=pos if padded else None)
    return logits[:, -1]


@torch.no_grad()
def generate_rows(model, prompts, max_new_tokens: int, *, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, stop_ids: Iterable[int] = (),
                  seed: int | None = None, use_cache: bool = True,
                  pad_id: int = 0) -> list[tuple[list[int], int | None]]:
    """`generate_batch`, also telling which stop id each row hit: [(new tokens, stop id or None)]."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise MiniLLMError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_sampling(temperature, top_k, top_p)
    V = model.config.vocab_size
    seqs = _check_prompts(prompts, V)
    if isinstance(pad_id, bool) or not isinstance(pad_id, numbers.Integral) or not 0 <= pad_id < V:
        raise MiniLLMError(f"pad_id must be a token id in [0, {V}), got {pad_id!r}")
    stops = {int(s) for s in stop_ids}
    device = next(model.parameters()).device
    B = len(seqs)
    gens = None if seed is None else [torch.Generator(device=device).manual_seed(int(seed) + i) for i in range(B)]
    new: list[list[int]] = [[] for _ in range(B)]
    hit: list[int | None] = [None] * B
    state = {"cache": model.new_cache(B) if use_cache else None}
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = _next_logits(model, seqs, state, pad_id, device)  # (B, V)
            if gens is None:
                tokens = sample_next(logits, temperature, top_k, top_p).tolist()
            else:  # one generator per row: a row's draws do not depend on its neighbours
                tokens = [int(sample_next(logits[i:i + 1], temperature, top_k, top_p, gens[i]))
                          for i in range(B)]
            for i, t in enumerate(tokens):
                seqs[i].append(t)
                if hit[i] is None:
                    if t in stops:
                        hit[i] = t
                    else:
                        new[i].append(t)
            if all(h is not None for h in hit):
                break
    finally:
        model.train(was_training)
    return list(zip(new, hit))


def generate_batch(model, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, stop_ids: Iterable[int] = (),
                   seed: int | None = None, use_cache: bool = True, pad_id: int = 0) -> list[list[int]]:
    """Continue each prompt (a list of token ids; lengths may differ) -> each row's NEW tokens.

    temperature=0 is greedy; top_k keeps the k likeliest tokens; top_p the smallest
    set whose probability reaches p. A row's output is cut before its first stop id
    (the stop id itself is not returned); generation ends when every row has stopped or
    after max_new_tokens. seed: row i draws from a generator seeded seed + i (the global
    RNG is untouched), so the same row alone with seed + i gives the same tokens.
    pad_id fills the left padding (any valid id: the mask hides it).

    >>> from minillm.model import GPT, GPTConfig
    >>> m = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8))
    >>> [len(r) for r in generate_batch(m, [[1, 2, 3], [4]], 2, temperature=0)]
    [2, 2]
    """
    rows = generate_rows(model, prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         stop_ids=stop_ids, seed=seed, use_cache=use_cache, pad_id=pad_id)
    return [new for new, _ in rows]
