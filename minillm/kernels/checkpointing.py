"""Activation checkpointing per transformer block: memory for compute (lesson 14).

Backward needs the activations of the forward pass; autograd keeps them all, and for
a GPT they grow as layers x batch x T x (a few dozen C): at GPT-2 small, batch 8 and
T = 1024 they are ~10x the weights. Checkpointing keeps only each block's *input*
and throws the inside away; backward runs that block's forward once more to get
them back, block by block. Memory: from L blocks' worth of activations to L block
inputs plus one block's worth; compute: one more forward of the blocks (~ +33% on
the 3x forward that a training step costs) — Chen et al. (2016), "Training deep nets
with sublinear memory cost"; Griewank's checkpointing of adjoint codes before that.

`checkpoint_blocks(model)` switches it on for a `minillm.model.GPT` in place, without
touching the model file: each block's class is swapped for a subclass whose forward
goes through `torch.utils.checkpoint.checkpoint` (non-reentrant; it saves and restores
the RNG state, so dropout masks are the same in the recompute). Parameter names,
`state_dict` and `deepcopy` are unchanged. It is active only while training with
gradients and without a KV cache; evaluation and generation run the plain block.
`uncheckpoint_blocks` undoes it; `checkpointed(model)` does both around a training
run (the `activation_checkpointing` flag of `minillm.train.TrainConfig`), for every
GPT inside `model` (a wrapper such as a reward model too). `measure_tradeoff` reports peak memory (see
`minillm.kernels.memory`), FLOPs and time of one training step, with and without.

Left out: selective checkpointing (keep the matmul outputs, recompute the cheap
elementwise ops), offloading activations to host memory.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from minillm.utils import MiniLLMError

_CLASSES: dict[type, type] = {}


def _checkpointed_class(base: type) -> type:
    """A subclass of `base` whose forward recomputes itself in backward (one per base class)."""
    if base not in _CLASSES:
        def forward(self, x, *args, **kwargs):
            if self.training and torch.is_grad_enabled() and kwargs.get("cache") is None:
                return checkpoint(base.forward, self, x, *args, use_reentrant=False, **kwargs)
            return base.forward(self, x, *args, **kwargs)
        _CLASSES[base] = type(f"Checkpointed{base.__name__}", (base,), {"forward": forward,
                                                                        "__module__": __name__})
    return _CLASSES[base]


def _blocks(model: nn.Module) -> nn.ModuleList:
    try:
        return model.transformer.h
    except AttributeError:
        raise MiniLLMError("checkpoint_blocks needs a minillm GPT (model.transformer.h holds its blocks)") from None


def checkpoint_blocks(model: nn.Module, every: int = 1) -> nn.Module:
    """Checkpoint every `every`-th block of `model` (in place; returns the model).

    >>> from minillm.model import GPT, GPTConfig
    >>> m = checkpoint_blocks(GPT(GPTConfig(vocab_size=8, block_size=4, n_layer=2, n_head=1, n_embd=4)))
    >>> type(m.transformer.h[0]).__name__
    'CheckpointedBlock'
    """
    if every < 1:
        raise MiniLLMError(f"every must be >= 1, got {every}")
    for i, block in enumerate(_blocks(model)):
        if i % every == 0 and type(block) not in _CLASSES.values():
            block.__class__ = _checkpointed_class(type(block))
    return model


def uncheckpoint_blocks(model: nn.Module) -> nn.Module:
    """Undo `checkpoint_blocks`."""
    for block in _blocks(model):
        if type(block) in _CLASSES.values():
            block.__class__ = type(block).__mro__[1]
    return model


@contextlib.contextmanager
def checkpointed(model: nn.Module) -> Iterator[nn.Module]:
    """Checkpoint every block of every GPT inside `model` while the `with` lasts; then undo
    what it switched (blocks a later wrapper such as FSDP has re-classed are left alone)."""
    gpts = [m for m in model.modules() if isinstance(getattr(getattr(m, "transformer", None), "h", None),
                                                      nn.ModuleList)]
    if not gpts:
        raise MiniLLMError(f"activation checkpointing needs a minillm GPT (blocks in .transformer.h) "
                           f"inside the model; {type(model).__name__} has none")
    switched = [b for g in gpts for b in _blocks(g) if type(b) not in _CLASSES.values()]
    for g in gpts:
        checkpoint_blocks(g)
    try:
        yield model
    finally:
        for b in switched:
            if type(b) in _CLASSES.values():
                b.__class__ = type(b).__mro__[1]


def is_checkpointed(model: nn.Module) -> list[bool]:
    return [type(b) in _CLASSES.values() for b in _blocks(model)]


def _step(model, idx, targets):
    _, loss = model(idx, targets)
    loss.backward()
    return loss


def measure_tradeoff(model: nn.Module, batch_size: int = 4, seq_len: int | None = None, repeats: int = 3,
                     seed: int = 0) -> dict[str, dict]:
    """One forward + backward on random tokens, plain and checkpointed: peak bytes of the
    tensors allocated (`PeakMemory`), FLOPs (PyTorch's counter) and median seconds.
    The model is left as it was found."""
    from minillm.kernels.memory import PeakMemory
    from torch.utils.flop_counter import FlopCounterMode
    cfg = model.config
    T = seq_len or cfg.block_size
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    idx = torch.randint(0, cfg.vocab_size, (batch_size, T), generator=g).to(device)
    tgt = torch.randint(0, cfg.vocab_size, (batch_size, T), generator=g).to(device)
    was = is_checkpointed(model)
    model.train()
    out = {}
    for name, switch in (("plain", uncheckpoint_blocks), ("checkpointed", checkpoint_blocks)):
        switch(model)
        model.zero_grad(set_to_none=True)
        with PeakMemory() as mem:
            _step(model, idx, tgt)
        model.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as fc:
            _step(model, idx, tgt)
        times = []
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            _step(model, idx, tgt)
            times.append(time.perf_counter() - t)
        out[name] = dict(peak_bytes=mem.peak, flops=fc.get_total_flops(), seconds=sorted(times)[len(times) // 2])
    uncheckpoint_blocks(model)
    for block, on in zip(_blocks(model), was):
        if on:
            block.__class__ = _checkpointed_class(type(block))
    model.zero_grad(set_to_none=True)
    return out
