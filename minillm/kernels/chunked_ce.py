"""Fused linear + cross-entropy, chunked: the loss without the (B*T, V) logits (lesson 14).

At GPT-2's vocabulary (V = 50257) and a batch of 8 x 1024 tokens, the logits alone
are 8192 x 50257 x 4 bytes = 1.6 GB in fp32, and autograd keeps them (and their
softmax) for backward. They are only needed one row at a time: the loss of a row is
lse(logits) - logits[target], and the gradient of the logits is softmax - onehot.
So `ChunkedLinearCrossEntropy` walks over the rows `chunk` at a time: it computes
the chunk's logits x_c W^T in fp32, its loss, and throws the logits away; backward
recomputes them chunk by chunk and turns (softmax - onehot) straight into the
gradients of x and W. Peak extra memory: O(chunk * V) instead of O(N * V), for the
price of one more x W^T matmul (the recompute).

Equal to `F.cross_entropy(x @ W.T, targets, ignore_index=-100)` (mean over the
targets that are not -100) in loss and gradients, tested. `gpt_chunked_loss` runs a
`GPT` up to its final norm and applies this loss to the output head.

Follows the idea of Liger Kernel's fused linear cross-entropy (Hsu et al., 2024) and
Wijmans et al. (2024), "Cut your losses". Left out: label smoothing, z-loss, the
softcapped logits of Gemma 2; a Triton version (`triton_ops` has the forward only
as a stretch).
"""

from __future__ import annotations

import torch

from minillm.utils import MiniLLMError

IGNORE_INDEX = -100


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The matmul dtype: autocast's (bf16 on a GPU run) if it is on, else fp32 (fp64 stays fp64)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return torch.promote_types(x.dtype, torch.float32)


def _chunk_logits(x_c: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  dtype: torch.dtype) -> torch.Tensor:
    """(n, V) logits: the matmul in `dtype`, then fp32 (or fp64) for the softmax, which wants the precision."""
    logits = (x_c.to(dtype) @ weight.to(dtype).t()).to(torch.promote_types(dtype, torch.float32))
    return logits + bias.to(logits.dtype) if bias is not None else logits


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """loss = mean over valid rows of CE(x W^T + b, targets), `chunk` rows at a time."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, chunk: int):
        N = x.size(0)
        valid = targets != IGNORE_INDEX
        n_valid = int(valid.sum())
        dtype = _compute_dtype(x)
        total = torch.zeros((), dtype=torch.promote_types(dtype, torch.float32), device=x.device)
        for r0 in range(0, N, chunk):
            logits = _chunk_logits(x[r0:r0 + chunk], weight, bias, dtype)  # (n, V), freed after this iteration
            t = targets[r0:r0 + chunk]
            ok = valid[r0:r0 + chunk]
            lse = torch.logsumexp(logits, dim=-1)              # (n,)
            picked = logits.gather(1, t.clamp_min(0)[:, None])[:, 0]
            total = total + ((lse - picked) * ok).sum()
        ctx.save_for_backward(x, weight, bias if bias is not None else torch.empty(0), targets)
        ctx.has_bias, ctx.chunk, ctx.n_valid, ctx.dtype = bias is not None, chunk, n_valid, dtype
        return total / max(n_valid, 1)

    @staticmethod
    def backward(ctx, dloss):
        x, weight, bias, targets = ctx.saved_tensors
        bias = bias if ctx.has_bias else None
        cd = ctx.dtype                                         # the forward's matmul dtype
        acc = torch.promote_types(cd, torch.float32)           # gradients accumulate in fp32 (fp64)
        g = dloss.to(acc) / max(ctx.n_valid, 1)
        dx = torch.empty_like(x)
        dw = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        db = torch.zeros(weight.size(0), dtype=acc, device=weight.device) if ctx.has_bias else None
        for r0 in range(0, x.size(0), ctx.chunk):
            x_c, t = x[r0:r0 + ctx.chunk], targets[r0:r0 + ctx.chunk]
            dlogits = torch.softmax(_chunk_logits(x_c, weight, bias, cd), dim=-1)  # (n, V): recomputed
            ok = t != IGNORE_INDEX
            rows = torch.arange(t.numel(), device=x.device)[ok]
            dlogits[rows, t[ok]] -= 1.0                        # softmax - onehot
            dlogits *= ok[:, None] * g                         # ignored rows get no gradient
            dl = dlogits.to(cd)
            dx[r0:r0 + ctx.chunk] = (dl @ weight.to(cd)).to(x.dtype)
            dw += (dl.t() @ x_c.to(cd)).to(acc)                # (V, n) @ (n, C)
            if db is not None:
                db += dlogits.sum(0)
        return dx, dw.to(weight.dtype), (db.to(bias.dtype) if db is not None else None), None, None


def chunked_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          bias: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
    """Mean cross-entropy of the logits x @ weight.T (+ bias), never all held at once.

    x: (N, C) or (B, T, C) hidden states; weight: (V, C) output head; targets: (N,) or
    (B, T) ids, -100 to ignore. Returns a scalar (fp32; fp64 for fp64 inputs).

    >>> x, w, t = torch.randn(10, 4), torch.randn(7, 4), torch.randint(0, 7, (10,))
    >>> full = torch.nn.functional.cross_entropy(x @ w.T, t)
    >>> torch.allclose(chunked_cross_entropy(x, w, t, chunk=3), full, atol=1e-6)
    True
    """
    if chunk < 1:
        raise MiniLLMError(f"chunk must be >= 1, got {chunk}")
    x2 = x.reshape(-1, x.size(-1))                             # (N, C)
    t2 = targets.reshape(-1)
    if x2.size(0) != t2.numel() or weight.dim() != 2 or weight.size(1) != x2.size(1):
        raise MiniLLMError(f"chunked_cross_entropy needs x (N, C), weight (V, C), targets (N,); got "
                           f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(targets.shape)}")
    return ChunkedLinearCrossEntropy.apply(x2, weight, bias, t2, chunk)


def gpt_hidden_states(model, idx: torch.Tensor) -> torch.Tensor:
    """A `minillm.model.GPT`'s final-norm output (B, T, C): its forward without the head
    (GPT-2 and LLaMA styles: the model builds its own positions / rotary tables)."""
    return model.hidden_states(idx)


def gpt_chunked_loss(model, idx: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The loss of `model(idx, targets)[1]`, with the head fused into a chunked cross-entropy."""
    return chunked_cross_entropy(gpt_hidden_states(model, idx), model.lm_head.weight, targets, chunk=chunk)
