"""Pretraining's pieces for the loop: random windows per step, next-token loss, validation loss.

`minillm.train.train` is `fit` with these: `lm_batches` gives each process its
micro-batches of the step's random windows (a pure function of seed and step,
see `minillm.data.batch_offsets`), `lm_loss` the model's next-token cross-entropy,
`estimate_loss` the validation loss over fixed windows, `model_flops_per_token`
the model FLOPs that tokens/s turn into MFU.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from minillm.data import batch_offsets, check_enough_tokens, get_batch, load_tokens
from minillm.runtime import Runtime
from minillm.utils import MiniLLMError


@torch.no_grad()
def estimate_loss(model: nn.Module, tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int,
                  device: torch.device, ctx=None) -> float:
    """Mean loss (nats/token) over `n_batches * batch_size` windows spread evenly over `tokens`.

    The windows are fixed (not random), so estimates at different steps are comparable
    and taking them does not touch any random generator (resume stays exact).
    """
    check_enough_tokens(tokens, block_size, "validation data")
    n_windows = max(1, n_batches * batch_size)
    offsets = np.unique(np.linspace(0, len(tokens) - block_size - 1, n_windows).astype(np.int64))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(offsets), batch_size):
        x, y = get_batch(tokens, offsets[i:i + batch_size], block_size, device)
        with ctx or contextlib.nullcontext():
            _, loss = model(x, y)
        total += loss.float().item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


def as_tokens(data) -> np.ndarray | None:
    """A token array from an array, a tensor, a list or a token-file path."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return load_tokens(data)
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    return np.asarray(data)


def check_lm_data(model_config, train_tokens, val_tokens, tokenizer) -> None:
    """Enough tokens for one window, and ids the model's vocabulary holds."""
    T = model_config.block_size
    if train_tokens is None or len(train_tokens) == 0:
        raise MiniLLMError("the training data is empty")
    for name, toks in (("training", train_tokens), ("validation", val_tokens)):
        if toks is None:
            continue
        check_enough_tokens(toks, T, f"{name} data")
        if int(toks.max()) >= model_config.vocab_size:
            raise MiniLLMError(f"the {name} data has token id {int(toks.max())} but the model's vocab_size is "
                               f"{model_config.vocab_size}: use the tokenizer's vocab size for the model")
    if tokenizer is not None and tokenizer.vocab_size > model_config.vocab_size:
        raise MiniLLMError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                           f"{model_config.vocab_size}: set vocab_size to at least {tokenizer.vocab_size}")


def lm_batches(tokens: np.ndarray, cfg, block_size: int, rt: Runtime) -> Callable[[int], list]:
    """batches(step): this process's micro-batches (x, y) of the step's global random windows."""
    micro = cfg.batch_size // (cfg.grad_accum * rt.world)

    def batches(step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # The global batch of this step, the same in every process; each takes its rows.
        offsets = batch_offsets(len(tokens), block_size, cfg.batch_size, cfg.seed, step)
        firsts = [(k * rt.world + rt.rank) * micro for k in range(cfg.grad_accum)]
        return [get_batch(tokens, offsets[f:f + micro], block_size, rt.device) for f in firsts]  # (micro, T) each

    return batches


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy (mean over the micro-batch's tokens)."""
    x, y = batch
    return model(x, y)[1]


def model_flops_per_token(model: nn.Module, seq_len: int) -> int:
    """Training model FLOPs per token of the model in hand: 6 W + 12 L T C (PaLM, app. B).

    W = the weights of its `nn.Linear` layers (the head counts even when tied);
    L and C from `model.config` (0 for the attention term when it has none).
    """
    W = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    config = getattr(model, "config", None)
    attention = 12 * config.n_layer * seq_len * config.n_embd if hasattr(config, "n_layer") else 0
    return 6 * W + attention
