"""Tests of minillm.attention (lesson 02): reference attention, the fused fast path, KV cache.

Tolerances: float64 comparisons use atol 1e-12 (pure rounding); float32 ones use
atol 1e-5 on outputs of size O(1) (SDPA sums in a different order).
Each exercise test needs only its own exercise (the `tril` fixture stands in for
`causal_mask`) and patches the library function it replaces to raise (no delegation).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import minillm.attention as attention
from minillm.attention import (
    CausalSelfAttention,
    KVCache,
    attention_mask_for,
    causal_mask,
    fast_attention,
    merge_heads,
    multi_head_attention,
    padding_mask,
    repeat_kv,
    scaled_dot_product_attention,
    softmax,
    split_heads,
)

TOL = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-4)}


def bottom_right(t_q, t_k=None):
    """The causal mask written independently of the exercise: query i sees keys <= i + Tk - Tq."""
    t_k = t_q if t_k is None else t_k
    return torch.tensor([[j <= i + t_k - t_q for j in range(t_k)] for i in range(t_q)])


@pytest.fixture
def tril(monkeypatch):
    """Tests of the other exercises use this instead of the causal_mask exercise."""
    monkeypatch.setattr(attention, "causal_mask", lambda t_q, t_k=None, device=None: bottom_right(t_q, t_k))


def _softmax_written_here(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)
    e = (x - m).exp()
    return e / e.sum(dim=dim, keepdim=True).clamp_min(1e-300)


@pytest.fixture
def ref_softmax(monkeypatch):
    """Tests of the sdpa exercise use this instead of the softmax exercise."""
    monkeypatch.setattr(attention, "softmax", _softmax_written_here)


@pytest.fixture
def no_torch_softmax(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the exercise must not call PyTorch's softmax or fused attention")
    for owner, name in [(torch, "softmax"), (F, "softmax"), (torch.Tensor, "softmax"),
                        (F, "scaled_dot_product_attention"), (attention, "fast_attention")]:
        monkeypatch.setattr(owner, name, refuse)


def qkv(B=2, nh=3, Tq=5, Tk=5, hs=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda T: torch.randn(B, nh, T, hs, generator=g, dtype=dtype)  # noqa: E731
    return mk(Tq), mk(Tk), mk(Tk)


# --- softmax ---------------------------------------------------------------------

@pytest.mark.exercise("attention.softmax")
def test_softmax_hand_example():
    # exp([0, ln 3]) = [1, 3] -> [1/4, 3/4]
    out = softmax(torch.tensor([0.0, math.log(3.0)], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([0.25, 0.75], dtype=torch.float64), atol=1e-15, rtol=0)


@pytest.mark.exercise("attention.softmax")
def test_softmax_matches_torch_on_random_rows_any_dim(monkeypatch):
    x = torch.randn(4, 7, 9, dtype=torch.float64) * 10
    expected = {dim: torch.softmax(x, dim=dim) for dim in (0, 1, -1)}
    for owner in (torch, F, torch.Tensor):
        monkeypatch.setattr(owner, "softmax", None)  # the exercise must not call it
    for dim in (0, 1, -1):
        torch.testing.assert_close(softmax(x, dim=dim), expected[dim], atol=1e-14, rtol=0)


@pytest.mark.exercise("attention.softmax")
def test_softmax_is_stable_for_huge_logits_and_shift_invariant():
    x = torch.tensor([[1000.0, 1001.0, 999.0]])
    out = softmax(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, softmax(x - 1000.0), atol=1e-7, rtol=0)
    torch.testing.assert_close(out.sum(-1), torch.ones(1))


@pytest.mark.exercise("attention.softmax")
def test_softmax_of_masked_row_is_zero_not_nan():
    x = torch.tensor([[float("-inf"), float("-inf")], [0.0, float("-inf")]])
    out = softmax(x)
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [1.0, 0.0]]))


# --- masks -----------------------------------------------------------------------

@pytest.mark.exercise("attention.causal_mask")
def test_causal_mask_is_lower_triangular_and_offset_for_cache():
    assert torch.equal(causal_mask(4), bottom_right(4))
    assert causal_mask(4).dtype == torch.bool
    # 2 new queries after 3 cached keys: positions 3 and 4 see keys <= 3 and <= 4.
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5), expected)
    for t_q, t_k in [(1, 1), (1, 6), (3, 7), (7, 7)]:
        assert torch.equal(causal_mask(t_q, t_k), bottom_right(t_q, t_k)), (t_q, t_k)


def test_attention_mask_for_padding_and_packing():
    # left padding: row 0 has one pad; a pad query sees itself only, real queries never see the pad
    m = attention_mask_for(torch.tensor([[0, 1, 1], [1, 1, 1]]), 2, 3, 3)
    assert m.shape == (2, 1, 3, 3)
    assert m[0, 0].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert torch.equal(m[1, 0], bottom_right(3))
    # packing: a block-diagonal mask, AND-ed with causality
    same = torch.tensor([0, 0, 1, 1])
    block = (same[:, None] == same[None, :])[None]
    m = attention_mask_for(block, 1, 4, 4)[0, 0].int().tolist()
    assert m == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    # with a cache: 1 query after 3 cached keys, key 0 is padding
    assert attention_mask_for(torch.tensor([[0, 1, 1, 1]]), 1, 1, 4)[0, 0].int().tolist() == [[0, 1, 1, 1]]
    assert attention_mask_for(None, 1, 3, 3) is None


def test_padding_mask_shape_and_values():
    m = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert m.shape == (2, 1, 1, 3) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


# --- reference attention ---------------------------------------------------------

@pytest.mark.exercise("attention.sdpa")
def test_sdpa_hand_example(ref_softmax, no_torch_softmax):
    # One query against two keys: scores [0, 2]/sqrt(2) -> weights softmax, out = weighted values.
    q = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)                # (1, 1, 2)
    k = torch.tensor([[[1.0, -1.0], [1.0, 1.0]]], dtype=torch.float64)   # (1, 2, 2)
    v = torch.tensor([[[10.0, 0.0], [0.0, 10.0]]], dtype=torch.float64)
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    s = 2 / math.sqrt(2)
    w1 = math.exp(s) / (1 + math.exp(s))
    torch.testing.assert_close(w[0, 0], torch.tensor([1 - w1, w1], dtype=torch.float64), atol=1e-14, rtol=0)
    torch.testing.assert_close(out[0, 0], torch.tensor([10 * (1 - w1), 10 * w1], dtype=torch.float64),
                               atol=1e-13, rtol=0)


@pytest.mark.exercise("attention.sdpa")
def test_sdpa_causal_first_query_sees_only_first_value(tril, ref_softmax, no_torch_softmax):
    q, k, v = qkv(Tq=6, Tk=6)
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    torch.testing.assert_close(out[..., 0, :], v[..., 0, :], atol=1e-14, rtol=0)
    assert torch.all(w.triu(diagonal=1) == 0)  # nothing from the future
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6, dtype=torch.float64))


@pytest.mark.exercise("attention.sdpa")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("Tq,Tk,masking", [
    (Tq, Tk, m)
    for Tq, Tk in [(1, 1), (7, 7), (13, 13), (1, 9), (3, 11)]  # T=1, primes, Tq < Tk (cache)
    for m in ["none", "causal", "padding", "causal+padding"]
])
def test_reference_equals_torch_sdpa_outputs_and_gradients(dtype, Tq, Tk, masking, tril, ref_softmax):
    q, k, v = qkv(B=2, nh=3, Tq=Tq, Tk=Tk, hs=16, dtype=dtype, seed=Tq * 31 + Tk)
    mask = None
    if "padding" in masking:  # second sequence: its last 2 keys are padding
        am = torch.ones(2, Tk, dtype=torch.long)
        am[1, -2:] = 0 if Tk > 2 else 1
        mask = padding_mask(am)
    causal = "causal" in masking
    tensors = [t.clone().requires_grad_() for t in (q, k, v)]
    ours = scaled_dot_product_attention(*tensors, mask=mask, is_causal=causal)
    full_mask = mask
    if causal:  # PyTorch's is_causal is top-left aligned; build the bottom-right one explicitly
        c = bottom_right(Tq, Tk)
        full_mask = c if mask is None else mask & c
    ref_t = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*ref_t, attn_mask=full_mask)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    # our fast path (which builds the bottom-right causal mask itself) agrees as well
    with torch.no_grad():
        torch.testing.assert_close(fast_attention(q, k, v, mask=mask, is_causal=causal), ours.detach(), **TOL[dtype])
    g = torch.randn_like(ours)
    ours.backward(g)
    ref.backward(g)
    for a, b in zip(tensors, ref_t):
        torch.testing.assert_close(a.grad, b.grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_attention_cache_offset_matches_full_causal_rows(dtype):
    # The last 3 queries of a causal attention over 10 positions == fast_attention(q[-3:], k, v).
    q, k, v = qkv(Tq=10, Tk=10, dtype=dtype)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    part = fast_attention(q[..., -3:, :], k, v, is_causal=True)
    torch.testing.assert_close(part, full[..., -3:, :], **TOL[dtype])


# --- heads -----------------------------------------------------------------------

@pytest.mark.exercise("attention.split_heads")
def test_split_heads_puts_channel_blocks_into_heads():
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).view(2, 3, 12)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 3)
    # head 2 at batch 1, time 0 holds channels 6..8 of x[1, 0]
    assert torch.equal(h[1, 2, 0], x[1, 0, 6:9])


@pytest.mark.exercise("attention.split_heads", "attention.merge_heads")
def test_merge_heads_inverts_split_heads():
    x = torch.randn(3, 5, 24)
    for nh in (1, 2, 3, 4, 6, 24):
        assert torch.equal(merge_heads(split_heads(x, nh)), x)


@pytest.mark.exercise("attention.merge_heads")
def test_merge_heads_concatenates_heads_along_channels():
    h = torch.randn(2, 3, 4, 5)  # (B, nh, T, hs)
    expected = torch.cat([h[:, i] for i in range(3)], dim=-1)  # (B, T, nh*hs)
    assert torch.equal(merge_heads(h), expected)


def test_repeat_kv_groups_heads():
    x = torch.randn(1, 2, 3, 4)
    r = repeat_kv(x, 3)
    assert r.shape == (1, 6, 3, 4)
    assert torch.equal(r[:, 0], x[:, 0]) and torch.equal(r[:, 2], x[:, 0]) and torch.equal(r[:, 3], x[:, 1])


# --- the module ------------------------------------------------------------------

@pytest.mark.exercise("attention.sdpa", "attention.softmax", "attention.split_heads", "attention.merge_heads")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1, 7, 16])
def test_module_fast_path_equals_reference_multi_head_attention(dtype, T, tril):
    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=24, n_head=4, bias=True).to(dtype)
    x = torch.randn(2, T, 24, dtype=dtype, requires_grad=True)
    fast = attn(x)
    ref = multi_head_attention(x, attn.c_attn.weight, attn.c_proj.weight, 4,
                               attn.c_attn.bias, attn.c_proj.bias, is_causal=True)
    torch.testing.assert_close(fast, ref, **TOL[dtype])
    gx_fast, = torch.autograd.grad(fast.sum(), x)
    gx_ref, = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(gx_fast, gx_ref, **TOL[dtype])


def test_module_returns_causal_weights_equal_to_fast_output():
    torch.manual_seed(1)
    attn = CausalSelfAttention(n_embd=16, n_head=2).double()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    y, w = attn(x, return_weights=True)
    assert w.shape == (1, 2, 6, 6)
    assert torch.all(w.triu(1) == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 6, dtype=torch.float64))
    torch.testing.assert_close(y, attn(x), atol=1e-12, rtol=0)
    # the weights are softmax(q k^T / sqrt(hs)) over the visible keys, written out here
    q, k, _ = attn.c_attn(x).split(16, dim=2)
    q, k = q.view(1, 6, 2, 8).transpose(1, 2), k.view(1, 6, 2, 8).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~bottom_right(6), float("-inf"))
    torch.testing.assert_close(w, torch.softmax(scores, -1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_kv_cache_incremental_equals_full_sequence(n_kv_head):
    torch.manual_seed(2)
    attn = CausalSelfAttention(n_embd=32, n_head=4, n_kv_head=n_kv_head).double()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    full = attn(x)
    cache = KVCache(1, 2, n_kv_head, 16, 8, dtype=torch.float64)
    pieces = []
    for a, b in [(0, 4), (4, 5), (5, 8), (8, 9), (9, 11)]:  # a prefill, single steps, a chunk
        pieces.append(attn(x[:, a:b], cache=cache, layer=0))
        cache.advance(b - a)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-12, rtol=0)


def test_kv_cache_overflow_is_an_error():
    cache = KVCache(1, 1, 1, 4, 2)
    cache.update(0, torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))
    cache.advance(4)
    with pytest.raises(ValueError, match="full"):
        cache.update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
