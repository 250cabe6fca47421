"""Lesson 14, fewer trips to memory: tiled attention (online softmax) and chunked cross-entropy."""

import math

import pytest
import torch
import torch.nn.functional as F

from minillm.kernels.chunked_ce import chunked_cross_entropy, gpt_chunked_loss
from minillm.kernels.memory import PeakMemory
from minillm.kernels.tiled import naive_attention, online_softmax_update, tiled_attention
from minillm.utils import MiniLLMError


@pytest.fixture
def no_library_softmax(monkeypatch):
    """No delegation: the library's softmax and logsumexp raise while the test runs."""
    def boom(*a, **k):
        raise AssertionError("the online softmax is the exercise: do not call softmax/logsumexp")
    for mod, name in [(torch, "softmax"), (torch, "logsumexp"), (F, "softmax"), (torch.Tensor, "softmax"),
                      (torch.Tensor, "logsumexp")]:
        monkeypatch.setattr(mod, name, boom)


def _online(scores, values, tile):
    """Fold a (Tq, Tk) score matrix tile by tile; return (out, m, l)."""
    m = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    l = torch.zeros(scores.shape[:-1], dtype=scores.dtype)
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:], dtype=scores.dtype)
    for k0 in range(0, scores.size(-1), tile):
        m, l, acc = online_softmax_update(m, l, acc, scores[..., k0:k0 + tile], values[k0:k0 + tile])
    return acc / l[..., None], m, l


@pytest.mark.exercise("tiled.online_softmax")
def test_online_softmax_hand_example(no_library_softmax):
    # scores [0, ln 3] in two tiles: m goes 0 -> ln 3, l = 1 * exp(0 - ln 3) + 1 = 4/3, weights [1/4, 3/4]
    s = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    v = torch.tensor([[4.0], [8.0]], dtype=torch.float64)
    out, m, l = _online(s, v, tile=1)
    assert float(m) == pytest.approx(math.log(3.0), abs=1e-15) and float(l) == pytest.approx(4 / 3, abs=1e-15)
    assert float(out) == pytest.approx(0.25 * 4 + 0.75 * 8, abs=1e-14)


@pytest.mark.exercise("tiled.online_softmax")
def test_online_softmax_equals_softmax_any_tile_huge_logits_and_masked_rows(no_library_softmax):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 13, generator=g, dtype=torch.float64) * 30 + 1000   # exp(1000) would overflow
    s[0, :7] = -math.inf                                                   # first tile fully masked
    s[1, :] = -math.inf                                                    # a row that sees nothing
    v = torch.randn(13, 3, generator=g, dtype=torch.float64)
    expected = torch.nan_to_num(torch.exp(s - s.amax(-1, keepdim=True)))
    expected = expected / expected.sum(-1, keepdim=True).clamp_min(1e-300)
    for tile in (1, 4, 7, 13):
        out, m, l = _online(s, v, tile)
        assert torch.isfinite(out[[0, 2, 3, 4]]).all()
        torch.testing.assert_close(out[[0, 2, 3, 4]], (expected @ v)[[0, 2, 3, 4]], atol=1e-12, rtol=0)
        assert float(l[1]) == 0.0 and float(m[1]) == -math.inf


@pytest.mark.exercise("tiled.online_softmax")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T,tile", [(37, 8), (16, 16), (5, 64)])
def test_tiled_attention_equals_naive_outputs_and_gradients(causal, T, tile):
    torch.manual_seed(T)
    q, k, v = (torch.randn(2, 3, T, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    dout = torch.randn(2, 3, T, 8, dtype=torch.float64)
    ref = naive_attention(q, k, v, causal)
    ours = tiled_attention(q, k, v, causal=causal, tile=tile)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    g_ref = torch.autograd.grad(ref, (q, k, v), dout)
    g_ours = torch.autograd.grad(ours, (q, k, v), dout)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


@pytest.mark.exercise("tiled.online_softmax")
def test_tiled_attention_equals_torch_sdpa_in_fp32_and_with_cached_keys():
    torch.manual_seed(0)
    q = torch.randn(1, 2, 10, 16)
    k, v = torch.randn(1, 2, 25, 16), torch.randn(1, 2, 25, 16)  # 15 cached keys + 10 new: causal offset
    mask = torch.ones(10, 25, dtype=torch.bool).tril(15)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(tiled_attention(q, k, v, causal=True, tile=4), ref, atol=2e-6, rtol=0)


@pytest.mark.exercise("tiled.online_softmax")
def test_tiled_attention_memory_is_linear_in_T_naive_is_quadratic():
    def peak(fn, T):
        q, k, v = (torch.randn(1, 1, T, 16, requires_grad=True) for _ in range(3))
        with PeakMemory() as m:
            fn(q, k, v).sum().backward()
        return m.peak

    naive = {T: peak(lambda q, k, v: naive_attention(q, k, v, True), T) for T in (256, 512)}
    tiled = {T: peak(lambda q, k, v: tiled_attention(q, k, v, True, 32), T) for T in (256, 512)}
    assert naive[512] / naive[256] > 3.5          # ~4x: the (T, T) matrices
    assert tiled[512] / tiled[256] < 2.5          # ~2x: O(T) saved, O(T * tile) in flight
    assert tiled[512] < naive[512] / 4


def test_tiled_attention_bad_shapes_are_clear_errors():
    with pytest.raises(MiniLLMError, match="hs"):
        tiled_attention(torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8))
    with pytest.raises(MiniLLMError, match="tile"):
        tiled_attention(*(torch.randn(1, 1, 4, 2) for _ in range(3)), tile=0)


# --- chunked cross-entropy -----------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_ce_equals_full_ce_loss_and_gradients_with_ignored_targets(chunk):
    torch.manual_seed(chunk)
    x = torch.randn(50, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(33, 12, dtype=torch.float64, requires_grad=True)
    b = torch.randn(33, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 33, (50,))
    t[[3, 17, 40]] = -100
    ref = F.cross_entropy(x @ w.T + b, t, ignore_index=-100)
    ours = chunked_cross_entropy(x, w, t, bias=b, chunk=chunk)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    for a, r in zip(torch.autograd.grad(ours, (x, w, b)), torch.autograd.grad(ref, (x, w, b))):
        torch.testing.assert_close(a, r, atol=1e-12, rtol=0)


def test_chunked_ce_passes_gradcheck_and_handles_3d_inputs():
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 4, -100, 2, 2, 1])
    # finite differences in fp64 (gradcheck's default tolerances)
    assert torch.autograd.gradcheck(lambda x, w: chunked_cross_entropy(x, w, t, chunk=4), (x, w))
    x3 = torch.randn(2, 3, 4)
    t3 = torch.randint(0, 5, (2, 3))
    ref = F.cross_entropy((x3 @ w.float().T).view(6, 5), t3.view(6))
    torch.testing.assert_close(chunked_cross_entropy(x3, w.float().detach(), t3, chunk=2), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("style", ["gpt2", "llama"])  # llama: rotary tables built per forward
def test_gpt_chunked_loss_equals_the_models_loss_and_gradients(style):
    from minillm.model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=16, style=style))
    idx, tgt = torch.randint(0, 67, (3, 16)), torch.randint(0, 67, (3, 16))
    _, ref = model(idx, tgt)
    g_ref = torch.autograd.grad(ref, list(model.parameters()))
    ours = gpt_chunked_loss(model, idx, tgt, chunk=10)
    g_ours = torch.autograd.grad(ours, list(model.parameters()))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_chunked_ce_memory_is_chunk_times_V_not_N_times_V():
    torch.manual_seed(0)
    N, C, V = 2048, 32, 8192
    x = torch.randn(N, C, requires_grad=True)
    w = torch.randn(V, C, requires_grad=True)
    t = torch.randint(0, V, (N,))
    with PeakMemory() as full:
        F.cross_entropy(x @ w.T, t).backward()
    x.grad = w.grad = None
    with PeakMemory() as chunked:
        chunked_cross_entropy(x, w, t, chunk=64).backward()
    logits_bytes = N * V * 4
    assert full.peak >= 2 * logits_bytes          # logits and their log-softmax both saved
    assert chunked.peak < logits_bytes / 4        # a few (64, V) chunks plus the (V, C) gradient


def test_chunked_ce_bad_input():
    with pytest.raises(MiniLLMError, match="weight"):
        chunked_cross_entropy(torch.randn(4, 3), torch.randn(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(MiniLLMError, match="chunk"):
        chunked_cross_entropy(torch.randn(4, 3), torch.randn(5, 3), torch.zeros(4, dtype=torch.long), chunk=0)


def test_chunked_ce_under_bf16_autocast_matches_autocast_full_ce():
    torch.manual_seed(0)
    x = torch.randn(40, 16, requires_grad=True)
    w = torch.randn(100, 16, requires_grad=True)
    t = torch.randint(0, 100, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy((x @ w.T).float(), t)
        ours = chunked_cross_entropy(x, w, t, chunk=16)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)  # same bf16 matmul, fp32 softmax
    for a, r in zip(torch.autograd.grad(ours, (x, w)), torch.autograd.grad(ref, (x, w))):
        torch.testing.assert_close(a, r, atol=2e-3, rtol=2e-2)  # bf16 gradient matmuls: 8 mantissa bits
