"""Lesson 14: the Triton kernels equal the reference path — on CPU in Triton's interpreter.

TRITON_INTERPRET=1 is set for this module before the first kernel is built; the
kernels then run as NumPy programs (slow, so the sizes are small). Skipped without Triton.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports Triton (see triton_ops.interpreter_ready)

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from minillm.kernels import triton_ops  # noqa: E402
from minillm.kernels.tiled import naive_attention  # noqa: E402
from minillm.utils import MiniLLMError  # noqa: E402


def test_triton_on_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(triton_ops, "triton_available", lambda: True)
    with pytest.raises(MiniLLMError, match="TRITON_INTERPRET=1"):
        triton_ops.softmax(torch.randn(2, 3))
    monkeypatch.setattr(triton_ops, "triton_available", lambda: False)
    with pytest.raises(MiniLLMError, match="pip install triton"):
        triton_ops.flash_attention(*(torch.randn(1, 1, 4, 4) for _ in range(3)))


@pytest.fixture
def interpret(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if not triton_ops.interpreter_ready():
        pytest.skip("Triton was imported before TRITON_INTERPRET=1 was set in this process")


@pytest.mark.parametrize("shape", [(5, 37), (2, 3, 64), (1, 1)])
def test_triton_softmax_equals_torch_values_and_gradients(interpret, shape):
    torch.manual_seed(0)
    x = (torch.randn(*shape) * 5).requires_grad_()
    dy = torch.randn(*shape)
    y = triton_ops.softmax(x)
    ref = torch.softmax(x, -1)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)
    (gx,), (gr,) = torch.autograd.grad(y, x, dy), torch.autograd.grad(ref, x, dy)
    torch.testing.assert_close(gx, gr, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(7, 48), (2, 3, 20)])
def test_triton_rms_norm_equals_torch_values_and_gradients(interpret, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(shape[-1], requires_grad=True)
    dy = torch.randn(*shape)
    y = triton_ops.rms_norm(x, w, 1e-5)
    ref = F.rms_norm(x, (shape[-1],), w, 1e-5)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(y, (x, w), dy), torch.autograd.grad(ref, (x, w), dy)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(MiniLLMError, match="weight"):
        triton_ops.rms_norm(x, torch.ones(3))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Tq,Tk,hs", [(37, 37, 16), (16, 16, 12), (5, 21, 8)])
def test_triton_flash_attention_equals_naive_outputs_lse_and_gradients(interpret, causal, Tq, Tk, hs):
    torch.manual_seed(Tq)
    q = torch.randn(2, 2, Tq, hs, requires_grad=True)
    k, v = (torch.randn(2, 2, Tk, hs, requires_grad=True) for _ in range(2))
    out, lse = triton_ops.flash_attention(q, k, v, causal=causal, return_lse=True)
    ref = naive_attention(q, k, v, causal)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    s = (q @ k.transpose(-2, -1)) / hs ** 0.5
    if causal:
        s = s.masked_fill(~torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq), float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(s, -1).detach(), atol=2e-5, rtol=1e-5)
    dout = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), dout), torch.autograd.grad(ref, (q, k, v), dout)):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("N,V,chunk", [(20, 100, 7), (9, 32, 64)])
def test_triton_linear_cross_entropy_equals_full_ce_loss_and_gradients(interpret, N, V, chunk):
    torch.manual_seed(N)
    x = torch.randn(N, 12, requires_grad=True)
    w = torch.randn(V, 12, requires_grad=True)
    t = torch.randint(0, V, (N,))
    t[3] = -100
    ours = triton_ops.linear_cross_entropy(x, w, t, chunk=chunk)
    ref = F.cross_entropy(x @ w.T, t, ignore_index=-100)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(ours * 2, (x, w)), torch.autograd.grad(ref * 2, (x, w))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
