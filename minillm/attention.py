"""Attention from scratch, and the fused kernel beside it (lesson 02).

What it builds, one testable step at a time:

1. `softmax`: a numerically stable softmax (subtract the row maximum first).
2. `causal_mask` / `padding_mask`: boolean masks, True where a query MAY look.
3. `scaled_dot_product_attention`: softmax(q k^T / sqrt(hs) + mask) v, with the
   attention weights returned on request (the notebook plots them).
4. `split_heads` / `merge_heads` / `multi_head_attention`: the head bookkeeping
   written out with a shape comment on every reshape.
5. `CausalSelfAttention`: the `nn.Module` the GPT uses. Its fast path calls
   `torch.nn.functional.scaled_dot_product_attention` (fused, flash / memory-efficient
   kernels where the hardware has them); tests prove it equal to steps 1-4.
   `attention_mask_for` turns a padding or packing mask into the mask it takes.
6. `KVCache`: keys and values of the tokens already seen, so that generating one
   more token costs one query instead of recomputing the whole prefix.

Shapes: B batch, T time, C channels, nh query heads, nkv key/value heads, hs head
size (C = nh * hs), Tq/Tk query/key lengths.

Follows "Attention Is All You Need" (Vaswani et al., 2017, eq. 1) for the scaled
dot product and multi-head attention, GPT-2's fused q/k/v projection
(Radford et al., 2019) and grouped-query attention (Ainslie et al., 2023, GQA).
Left out: cross-attention (a decoder-only model never needs it), ALiBi/sliding
windows, paged caches.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.utils import MiniLLMError

# ---------------------------------------------------------------------------
# Reference path: plain tensor code a student writes and reads.
# ---------------------------------------------------------------------------


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along `dim`: exp(x - max) / sum(exp(x - max)).

    Subtracting the maximum changes nothing mathematically (the factor exp(-max)
    cancels) but keeps exp() from overflowing. Rows that are all -inf (a query
    allowed to see nothing) come out as zeros instead of NaN.

    >>> softmax(torch.tensor([1.0, 2.0, 3.0]))
    tensor([0.0900, 0.2447, 0.6652])
    >>> softmax(torch.tensor([1000.0, 1000.0]))  # exp(1000) would overflow
    tensor([0.5000, 0.5000])
    """
    ### BEGIN SOLUTION name=attention.softmax points=2
    ### HINT: exp(x - c) / sum(exp(x - c)) is the same for every constant c: which c keeps every exponent <= 0? What should a row with no finite entry give?
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf row: avoid -inf - -inf = nan
    e = torch.exp(x - m)
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total == 0, torch.ones_like(total), total)
    ### END SOLUTION


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (Tq, Tk) mask, True where query i may attend to key j.

    The queries are the LAST Tq of the Tk positions (what a KV cache needs), so
    query i sits at position i + Tk - Tq and sees keys j <= i + Tk - Tq.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    >>> causal_mask(1, 3).int()  # one new token after a cache of 2: sees everything
    tensor([[1, 1, 1]], dtype=torch.int32)
    """
    t_k = t_q if t_k is None else t_k
    if t_k < t_q:
        raise ValueError(f"causal_mask: t_k={t_k} < t_q={t_q}")
    ### BEGIN SOLUTION name=attention.causal_mask points=1
    ### HINT: the queries are the last t_q of the t_k positions: at which key position does query 0 stop seeing?
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)
    ### END SOLUTION


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, Tk) 1/0 "is a real token" -> (B, 1, 1, Tk) boolean mask for attention.

    Broadcasts over heads and queries; combine with the causal mask by `&`.

    >>> padding_mask(torch.tensor([[1, 1, 0]])).shape
    torch.Size([1, 1, 1, 3])
    """
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, Tk)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Reference attention: softmax(q k^T / sqrt(hs), masked) v.

    q: (..., Tq, hs); k, v: (..., Tk, hs); mask: boolean, broadcastable to
    (..., Tq, Tk), True = may attend. `is_causal` adds `causal_mask(Tq, Tk)`.
    Returns the output (..., Tq, hs), and the weights (..., Tq, Tk) if asked.

    >>> q = k = v = torch.eye(2)[None]        # (1, 2, 2): two orthogonal tokens
    >>> out, w = scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    >>> w[0, 0].tolist()                      # the first token can only see itself
    [1.0, 0.0]
    """
    ### BEGIN SOLUTION name=attention.sdpa points=3
    ### HINT: one score per (query, key) pair, scaled so its variance does not grow with hs; a hidden key's score must vanish after the softmax; the output mixes the values by the weights.
    hs = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (..., Tq, hs) @ (..., hs, Tk) -> (..., Tq, Tk)
    if is_causal:
        causal = causal_mask(q.size(-2), k.size(-2), device=q.device)  # (Tq, Tk)
        mask = causal if mask is None else (mask & causal)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)  # (..., Tq, Tk), each row sums to 1
    out = weights @ v  # (..., Tq, Tk) @ (..., Tk, hs) -> (..., Tq, hs)
    ### END SOLUTION
    return (out, weights) if return_weights else out


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, hs): cut the channels into nh heads of hs = C // nh.

    >>> split_heads(torch.arange(8.).view(1, 2, 4), 2)[0, 1].tolist()  # head 1 = channels 2, 3
    [[2.0, 3.0], [6.0, 7.0]]
    """
    ### BEGIN SOLUTION name=attention.split_heads points=1
    ### HINT: the channels of one head are neighbours: first cut the last axis into (nh, hs), then move the head axis in front of time.
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, T, nh, hs) -> (B, nh, T, hs)
    ### END SOLUTION


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, C): the inverse of `split_heads`."""
    ### BEGIN SOLUTION name=attention.merge_heads points=1
    ### HINT: undo split_heads step by step, in reverse order (a view needs contiguous memory).
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, nh, hs) -> (B, T, C)
    ### END SOLUTION


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Grouped-query attention: (B, nkv, T, hs) -> (B, nkv * n_rep, T, hs).

    Key/value head g serves query heads g*n_rep .. g*n_rep + n_rep - 1.
    """
    if n_rep == 1:
        return x
    return x.repeat_interleave(n_rep, dim=1)  # (B, nkv*n_rep, T, hs)


def multi_head_attention(
    x: torch.Tensor,
    w_qkv: torch.Tensor,
    w_out: torch.Tensor,
    n_head: int,
    b_qkv: torch.Tensor | None = None,
    b_out: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    is_causal: bool = True,
    return_weights: bool = False,
):
    """Reference multi-head self-attention from plain matrices.

    x: (B, T, C); w_qkv: (3C, C) stacked [W_q; W_k; W_v] as in `nn.Linear`;
    w_out: (C, C). Returns y (B, T, C) (and weights (B, nh, T, T) if asked).
    """
    B, T, C = x.shape
    qkv = F.linear(x, w_qkv, b_qkv)  # (B, T, 3C)
    q, k, v = qkv.split(C, dim=2)  # each (B, T, C)
    q, k, v = (split_heads(t, n_head) for t in (q, k, v))  # each (B, nh, T, hs)
    res = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, return_weights=return_weights)
    out, weights = res if return_weights else (res, None)
    y = F.linear(merge_heads(out), w_out, b_out)  # (B, T, C)
    return (y, weights) if return_weights else y


# ---------------------------------------------------------------------------
# Fast path: what training and generation run.
# ---------------------------------------------------------------------------


def _causal_by_index(t_q: int, t_k: int, device) -> torch.Tensor:
    """(Tq, Tk) True where key index <= query index, the queries being the last Tq keys."""
    q_at = torch.arange(t_k - t_q, t_k, device=device)  # (Tq,) each query's own key index
    return torch.arange(t_k, device=device)[None, :] <= q_at[:, None]  # (Tq, Tk)


def attention_mask_for(attention_mask: torch.Tensor | None, batch_size: int, t_q: int, t_k: int,
                       device: torch.device | str | None = None) -> torch.Tensor | None:
    """The boolean (B, 1, Tq, Tk) mask the model's attention uses, or None (plain causal).

    attention_mask: (B, Tk) 1/0 "is a real token" (padding), or a boolean (B, Tq, Tk)
    "query i may attend key j" (packing). Either is AND-ed with the causal mask (the
    queries are the last Tq of the Tk positions), then each query may always see
    itself, so that a padding query has no empty softmax (its output is garbage that
    no real token reads, but finite).

    >>> attention_mask_for(torch.tensor([[0, 1, 1]]), 1, 3, 3)[0, 0].int()
    tensor([[1, 0, 0],
            [0, 1, 0],
            [0, 1, 1]], dtype=torch.int32)
    """
    if attention_mask is None:
        return None
    am = attention_mask.to(device)
    if am.dim() == 2 and am.shape == (batch_size, t_k):
        allowed = am.bool()[:, None, :]  # (B, 1, Tk): the same keys for every query
    elif am.dim() == 3 and am.shape == (batch_size, t_q, t_k) and am.dtype == torch.bool:
        allowed = am  # (B, Tq, Tk)
    else:
        raise MiniLLMError(f"attention_mask must be a ({batch_size}, {t_k}) 1/0 padding mask or a boolean "
                           f"({batch_size}, {t_q}, {t_k}) mask, got {tuple(am.shape)} {am.dtype}")
    causal = _causal_by_index(t_q, t_k, am.device)  # (Tq, Tk)
    itself = torch.arange(t_k, device=am.device)[None, :] == torch.arange(t_k - t_q, t_k, device=am.device)[:, None]
    return ((allowed & causal) | itself)[:, None]  # (B, 1, Tq, Tk), broadcast over heads


def fast_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """PyTorch's fused `scaled_dot_product_attention` with our mask convention.

    Same arguments and result as `scaled_dot_product_attention` (True = may
    attend). PyTorch's `is_causal` aligns the mask to the top-left corner, which
    is wrong when Tq < Tk (a KV cache), so then we pass an explicit mask.
    """
    t_q, t_k = q.size(-2), k.size(-2)
    if is_causal and (t_q != t_k or mask is not None):
        causal = _causal_by_index(t_q, t_k, q.device)
        mask = causal if mask is None else (mask & causal)
        is_causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class KVCache:
    """Keys and values of every layer for the positions seen so far.

    Preallocated buffers (n_layer, B, nkv, max_len, hs); `pos` is the number of
    positions filled. Each layer calls `update` with the new keys/values of the
    current forward pass and gets back all keys/values up to now; the model calls
    `advance(T)` once per forward pass, after all layers.

    >>> cache = KVCache(n_layer=1, batch_size=1, n_kv_head=1, max_len=8, head_size=2)
    >>> k, v = cache.update(0, torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2)); cache.advance(3)
    >>> cache.pos, k.shape
    (3, torch.Size([1, 1, 3, 2]))
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_size: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_kv_head, max_len, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs) at positions pos..pos+T-1; return (B, nkv, pos+T, hs) each."""
        t = k.size(2)
        end = self.pos + t
        if end > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} + {t} > {self.max_len} positions")
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.pos += t

    def reset(self) -> None:
        self.pos = 0


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with optional RoPE and grouped-query heads.

    Parameters mirror GPT-2's checkpoint: `c_attn` (C -> (nh + 2 nkv) hs, the fused
    q/k/v projection) and `c_proj` (C -> C). x (B, T, C) -> y (B, T, C).
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int | None = None, bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.n_head = n_head
        self.n_kv_head = n_kv_head or n_head
        if n_embd % n_head or n_head % self.n_kv_head:
            raise ValueError("n_embd must divide by n_head, and n_head by n_kv_head")
        self.head_size = n_embd // n_head
        self.c_attn = nn.Linear(n_embd, (n_head + 2 * self.n_kv_head) * self.head_size, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ):
        """x (B, T, C) -> y (B, T, C) [, weights (B, nh, T, Tk)].

        `rope(qk)` rotates queries and keys together, (B, T, nh + nkv, hs) -> same
        (LLaMA style; the model builds it for the right positions). `cache` holds
        earlier positions (the T new tokens sit at positions cache.pos ..). `mask`: a
        boolean (B, 1, T, Tk) from `attention_mask_for`, causality included; None =
        plain causal attention.
        """
        B, T, C = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_size
        qkv = self.c_attn(x).view(B, T, nh + 2 * nkv, hs)  # (B, T, nh + 2 nkv, hs): q heads, k heads, v heads
        qk, v = qkv.split([nh + nkv, nkv], dim=2)
        if rope is not None:
            qk = rope(qk)  # one call rotates q and k
        q, k = qk.split([nh, nkv], dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh | nkv, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nkv, cache.pos + T, hs)
            k, v = k.to(q.dtype), v.to(q.dtype)  # under autocast the cache may hold another dtype
        k, v = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)  # (B, nh, Tk, hs)
        # T == 1 with a cache and no mask: the one new query may see every key.
        causal = mask is None and T > 1
        weights = None
        if return_weights:
            # The weights come from the same fused kernel: attending over values that are
            # the identity matrix returns softmax(q k^T / sqrt(hs)) @ I = the weights themselves.
            eye = torch.eye(k.size(2), dtype=q.dtype, device=q.device).expand(B, nh, -1, -1)  # (B, nh, Tk, Tk)
            weights = fast_attention(q, k, eye, mask=mask, is_causal=causal)  # (B, nh, T, Tk)
            y = weights @ v  # (B, nh, T, hs)
        else:
            y = fast_attention(q, k, v, mask=mask, is_causal=causal,
                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        y = self.resid_dropout(self.c_proj(y))
        return (y, weights) if return_weights else y


# ---------------------------------------------------------------------------
# Pictures for the notebook.
# ---------------------------------------------------------------------------


def plot_attention(weights: torch.Tensor, tokens: list[str] | None = None, title: str = "attention"):
    """Heatmap(s) of attention weights (Tq, Tk) or (nh, Tq, Tk); returns the figure.

    Rows are queries (who looks), columns keys (who is looked at).
    """
    import matplotlib.pyplot as plt

    w = weights.detach().float().cpu()
    w = w[None] if w.dim() == 2 else w  # (nh, Tq, Tk)
    n = w.size(0)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for h, ax in enumerate(axes[0]):
        ax.imshow(w[h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"{title} head {h}" if n > 1 else title, fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        if tokens is not None and len(tokens) == w.size(-1):
            ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
            if w.size(-2) == len(tokens):
                ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    fig.tight_layout()
    return fig
