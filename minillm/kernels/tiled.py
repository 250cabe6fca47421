"""Tiled attention with the online softmax: FlashAttention's algorithm in plain PyTorch (lesson 14).

Naive attention writes the (T, T) score matrix to memory, reads it back for the
softmax, writes the (T, T) weights, reads them again for `weights @ v`: O(T^2)
memory and four trips through it. FlashAttention (Dao et al., 2022; FlashAttention-2,
Dao, 2023) never forms that matrix. It walks over key/value tiles and keeps, per
query row, a running maximum m, a running denominator l and a running output acc;
each new tile of scores s updates them by the **online-softmax recurrence**
(Milakov & Gimelshein, 2018):

    m' = max(m, rowmax(s))
    p  = exp(s - m')                 # this tile's unnormalised weights
    l' = l * exp(m - m') + rowsum(p)  # rescale the old sum to the new maximum
    acc' = acc * exp(m - m') + p @ v
    out = acc / l,   lse = m + log(l)   at the end

Only the log-sum-exp (one number per row) is saved for backward, which recomputes
each tile's weights as exp(s - lse) and uses D = rowsum(dout * out) for the softmax
gradient (dS = P * (dP - D)). Memory: O(T * tile) for the scores in flight, O(T) saved.

Here the tiles are Python loops over slices (a teaching reference; the GPU kernel is
`triton_ops.flash_attention`), equal to `naive_attention` in outputs and gradients,
causal or not, for any T (the last tile may be short). Layout (B, nh, T, hs).
Left out: dropout on the weights, padding masks, GQA (repeat k/v first), the
split-K decode kernel.
"""

from __future__ import annotations

import math

import torch

from minillm.utils import MiniLLMError


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) v with the full (T, T) matrix: the reference. (B, nh, T, hs) -> same."""
    scale = 1.0 / math.sqrt(q.size(-1))
    s = (q @ k.transpose(-2, -1)) * scale                      # (B, nh, Tq, Tk)
    if causal:
        Tq, Tk = s.shape[-2:]
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s.to(_acc_dtype(q)), dim=-1).to(q.dtype) @ v


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype to accumulate in: fp32 for 16-bit inputs (the sums need it), else the input's."""
    return torch.promote_types(x.dtype, torch.float32)


def online_softmax_update(m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor, s: torch.Tensor,
                          v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the online softmax: fold a tile of scores s and its values v into (m, l, acc).

    m, l: (..., Tq) running max and denominator (start: -inf and 0); acc: (..., Tq, hs)
    running weighted sum (start: 0); s: (..., Tq, tile) scores, -inf where masked;
    v: (..., tile, hs). A row whose scores are all -inf so far keeps m = -inf, l = 0, acc = 0.

    >>> m, l, acc = online_softmax_update(torch.tensor([-math.inf]), torch.zeros(1), torch.zeros(1, 1),
    ...                                   torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0], [3.0]]))
    >>> m, l, acc / l[:, None]     # softmax([0, 0]) @ [1, 3] = 2
    (tensor([0.]), tensor([2.]), tensor([[2.]]))
    """
    ### BEGIN SOLUTION name=tiled.online_softmax points=3
    ### HINT: the new max is the larger of the old max and this tile's row max; rescale old l and acc by exp(old max - new max); what must you substitute for the max of a row that is still all -inf, so that exp never sees -inf - (-inf)?
    m_new = torch.maximum(m, s.amax(dim=-1))                    # (..., Tq)
    m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # all-masked rows: exp(-inf) = 0
    alpha = torch.exp(m - m_safe)                               # (..., Tq): rescales what came before
    p = torch.exp(s - m_safe[..., None])                        # (..., Tq, tile)
    l_new = l * alpha + p.sum(dim=-1)
    acc_new = acc * alpha[..., None] + p @ v                    # (..., Tq, hs)
    return m_new, l_new, acc_new
    ### END SOLUTION


def _causal_tile_mask(q0: int, q1: int, k0: int, k1: int, offset: int, device) -> torch.Tensor:
    """(q1-q0, k1-k0) bool: key j is visible to query i when j <= i + offset (offset = Tk - Tq)."""
    qi = torch.arange(q0, q1, device=device)[:, None]
    kj = torch.arange(k0, k1, device=device)[None, :]
    return kj <= qi + offset


def tiled_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                            tile: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, nh, Tq, hs), lse (B, nh, Tq) in fp32, fp64 for fp64 inputs) by query tiles x key tiles."""
    if tile < 1:
        raise MiniLLMError(f"tile must be >= 1, got {tile}")
    Tq, Tk, hs = q.size(-2), k.size(-2), q.size(-1)
    scale, offset = 1.0 / math.sqrt(hs), Tk - Tq
    out = torch.empty_like(q)
    acc_t = _acc_dtype(q)
    lse = torch.empty(q.shape[:-1], dtype=acc_t, device=q.device)
    for q0 in range(0, Tq, tile):
        q1 = min(q0 + tile, Tq)
        qt = q[..., q0:q1, :].to(acc_t) * scale                # (B, nh, tq, hs)
        m = torch.full(qt.shape[:-1], float("-inf"), dtype=acc_t, device=q.device)
        l = torch.zeros(qt.shape[:-1], dtype=acc_t, device=q.device)
        acc = torch.zeros(qt.shape, dtype=acc_t, device=q.device)
        k_end = min(Tk, q1 + offset) if causal else Tk         # causal: later key tiles see nothing
        for k0 in range(0, k_end, tile):
            k1 = min(k0 + tile, Tk)
            s = qt @ k[..., k0:k1, :].to(acc_t).transpose(-2, -1)  # (B, nh, tq, tk)
            if causal and k1 - 1 > q0 + offset:                 # the tile crosses the diagonal
                s = s.masked_fill(~_causal_tile_mask(q0, q1, k0, k1, offset, q.device), float("-inf"))
            m, l, acc = online_softmax_update(m, l, acc, s, v[..., k0:k1, :].to(acc_t))
        out[..., q0:q1, :] = (acc / l.clamp_min(1e-30)[..., None]).to(q.dtype)
        lse[..., q0:q1] = m + torch.log(l)
    return out, lse


def tiled_attention_backward(q, k, v, out, lse, dout, causal: bool = False, tile: int = 64):
    """(dq, dk, dv) from the saved log-sum-exp: each tile's weights are recomputed as
    P = exp(S - lse), never stored. D = rowsum(dout * out) = rowsum(P * dP) per row."""
    Tq, Tk, hs = q.size(-2), k.size(-2), q.size(-1)
    scale, offset = 1.0 / math.sqrt(hs), Tk - Tq
    acc_t = _acc_dtype(q)
    qf, kf, vf, do = q.to(acc_t), k.to(acc_t), v.to(acc_t), dout.to(acc_t)
    D = (do * out.to(acc_t)).sum(-1)                              # (B, nh, Tq)
    dq, dk, dv = torch.zeros_like(qf), torch.zeros_like(kf), torch.zeros_like(vf)
    for q0 in range(0, Tq, tile):
        q1 = min(q0 + tile, Tq)
        k_end = min(Tk, q1 + offset) if causal else Tk
        for k0 in range(0, k_end, tile):
            k1 = min(k0 + tile, Tk)
            s = (qf[..., q0:q1, :] @ kf[..., k0:k1, :].transpose(-2, -1)) * scale  # (B, nh, tq, tk)
            if causal and k1 - 1 > q0 + offset:
                s = s.masked_fill(~_causal_tile_mask(q0, q1, k0, k1, offset, q.device), float("-inf"))
            p = torch.exp(s - lse[..., q0:q1, None])            # the softmax weights, recomputed
            dv[..., k0:k1, :] += p.transpose(-2, -1) @ do[..., q0:q1, :]
            dp = do[..., q0:q1, :] @ vf[..., k0:k1, :].transpose(-2, -1)   # (B, nh, tq, tk)
            ds = p * (dp - D[..., q0:q1, None]) * scale         # softmax's Jacobian, then the 1/sqrt(hs)
            dq[..., q0:q1, :] += ds @ kf[..., k0:k1, :]
            dk[..., k0:k1, :] += ds.transpose(-2, -1) @ qf[..., q0:q1, :]
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class TiledAttention(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, out and the (B, nh, T) log-sum-exp, not the weights."""

    @staticmethod
    def forward(ctx, q, k, v, causal: bool = False, tile: int = 64):
        out, lse = tiled_attention_forward(q, k, v, causal, tile)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.tile = causal, tile
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_attention_backward(q, k, v, out, lse, dout, ctx.causal, ctx.tile)
        return dq, dk, dv, None, None


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    tile: int = 64) -> torch.Tensor:
    """Attention by tiles, equal to `naive_attention`. (B, nh, T, hs) -> (B, nh, T, hs).

    >>> q = k = v = torch.randn(1, 2, 10, 4)
    >>> torch.allclose(tiled_attention(q, k, v, causal=True, tile=4), naive_attention(q, k, v, causal=True), atol=1e-6)
    True
    """
    if q.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.size(-1) != k.size(-1):
        raise MiniLLMError(f"tiled_attention needs q (B, nh, Tq, hs) and k, v (B, nh, Tk, hs); "
                           f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if causal and k.size(-2) < q.size(-2):
        raise MiniLLMError("causal attention needs at least as many keys as queries")
    return TiledAttention.apply(q, k, v, causal, tile)
