"""Fused kernels in Triton: softmax, RMSNorm, linear + cross-entropy, FlashAttention-2's forward (lesson 14).

Each is one GPU kernel that reads its inputs from memory once and writes its result
once (see `fusion` for the count), wrapped in a `torch.autograd.Function`:

* `softmax(x)`: one program per row; backward dx = y * (dy - rowsum(dy * y)) is a kernel too;
* `rms_norm(x, w)`: one program per row, saving the per-row 1/rms for backward (a kernel:
  dx = r (g - x r^2 mean(g x)) with g = dy * w; dw summed from per-row partials);
* `linear_cross_entropy(x, W, targets)`: fused linear + cross-entropy, chunked; a kernel
  per row computes the loss and writes softmax - onehot over the chunk's logits in place
  (two passes over V, the first an online max/sum), so backward has nothing to recompute;
* `flash_attention(q, k, v, causal)`: FlashAttention-2's forward (Dao, 2023): one program
  per (query tile, batch x head), looping over key tiles with the online softmax of
  `tiled.online_softmax_update`, writing the output and the log-sum-exp only. Backward
  recomputes the weights from that log-sum-exp with the plain-PyTorch tiles of
  `tiled.tiled_attention_backward` (a Triton backward is the stretch left for later).

Triton is an optional extra (`pip install triton`, Linux + CUDA). On a CPU the kernels
run in Triton's interpreter when TRITON_INTERPRET=1 is set before the first call (it
executes each program with NumPy: slow, exact enough to test; that is how the tests
run them). Asking for a kernel on a CPU tensor without the interpreter, or without
Triton, is a MiniLLMError that says what to do. The kernels are built on first use, so
importing this module never needs Triton.

Follows the Triton tutorials' layout (fused softmax, layer norm, fused attention),
written anew for these shapes: rows of (N, C); attention in (B, nh, T, hs) with any T
and any hs (padded to a power of two inside the kernel).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import torch

from minillm.utils import MiniLLMError


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def interpreter_ready() -> bool:
    """Whether Triton was imported in interpreter mode: Triton decorates its own library
    functions (tl.max, ...) when it is first imported, so TRITON_INTERPRET=1 must be set
    before that (and `torch.compile` imports Triton when it is installed)."""
    import triton.language as tl  # optional dependency: only when a kernel is asked for
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(tl.standard.max, InterpretedFunction)


def check_runnable(*tensors: torch.Tensor) -> None:
    """Raise a clear MiniLLMError unless the Triton kernels can run on these tensors."""
    if not triton_available():
        raise MiniLLMError("the Triton kernels need Triton: pip install triton (Linux with a CUDA GPU), "
                           "or use the PyTorch reference path")
    on_cpu = any(t.device.type == "cpu" for t in tensors)
    if on_cpu and not interpreting():
        raise MiniLLMError("a Triton kernel was asked for on CPU tensors: Triton compiles for GPUs; set "
                           "TRITON_INTERPRET=1 before the first call to run it in the (slow) interpreter, "
                           "or move the tensors to CUDA")
    if on_cpu and not interpreter_ready():
        raise MiniLLMError("TRITON_INTERPRET=1 was set after Triton had been imported in this process "
                           "(torch.compile imports it): set it in the environment before Python starts")
    if not on_cpu and any(t.device.type != "cuda" for t in tensors):
        raise MiniLLMError(f"Triton kernels run on CUDA tensors, got {[str(t.device) for t in tensors]}")


# The kernels are defined inside functions, on first use: Triton is optional, and it reads
# TRITON_INTERPRET when `triton.jit` runs. Each builder is cached per mode (compiled or interpreted).

@functools.cache
def _row_kernels(interpret: bool) -> dict:
    """Softmax and RMSNorm, forward and backward: one program per row."""
    import triton  # optional dependency
    import triton.language as tl

    @triton.jit
    def softmax_fwd(x_ptr, y_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=-float("inf")).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))                       # one read of the row, all in registers
        tl.store(y_ptr + row * n_cols + cols, e / tl.sum(e, axis=0), mask=mask)

    @triton.jit
    def softmax_bwd(y_ptr, dy_ptr, dx_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        y = tl.load(y_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + row * n_cols + cols, y * (dy - tl.sum(dy * y, axis=0)), mask=mask)

    @triton.jit
    def rms_fwd(x_ptr, w_ptr, y_ptr, r_ptr, n_cols, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        r = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        tl.store(r_ptr + row, r)
        tl.store(y_ptr + row * n_cols + cols, x * r * w, mask=mask)

    @triton.jit
    def rms_bwd(x_ptr, w_ptr, r_ptr, dy_ptr, dx_ptr, dwp_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        r = tl.load(r_ptr + row)
        g = dy * w
        dx = r * (g - x * (r * r) * (tl.sum(g * x, axis=0) / n_cols))
        tl.store(dx_ptr + row * n_cols + cols, dx, mask=mask)
        tl.store(dwp_ptr + row * n_cols + cols, dy * x * r, mask=mask)  # summed over rows outside

    return dict(softmax_fwd=softmax_fwd, softmax_bwd=softmax_bwd, rms_fwd=rms_fwd, rms_bwd=rms_bwd,
                next_pow2=triton.next_power_of_2)


@functools.cache
def _flash_kernel(interpret: bool) -> dict:
    """FlashAttention-2's forward: one program per (query tile, batch x head)."""
    import triton  # optional dependency
    import triton.language as tl

    @triton.jit
    def flash_fwd(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, Tq, Tk, hs, scale,
                  CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        start_m = tl.program_id(0)
        bh = tl.program_id(1).to(tl.int64)                      # which (batch, head)
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)      # query rows of this tile
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < hs
        q = tl.load(q_ptr + bh * Tq * hs + offs_m[:, None] * hs + offs_d[None, :],
                    mask=(offs_m[:, None] < Tq) & d_ok[None, :], other=0.0)
        m_i = tl.full([BLOCK_M], -float("inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        offset = Tk - Tq                                        # causal with cached keys: j <= i + offset
        hi = Tk
        if CAUSAL:
            hi = tl.minimum(Tk, (start_m + 1) * BLOCK_M + offset)
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kv_mask = (offs_n[:, None] < Tk) & d_ok[None, :]
            k = tl.load(k_ptr + bh * Tk * hs + offs_n[:, None] * hs + offs_d[None, :], mask=kv_mask, other=0.0)
            v = tl.load(v_ptr + bh * Tk * hs + offs_n[:, None] * hs + offs_d[None, :], mask=kv_mask, other=0.0)
            s = tl.dot(q, tl.trans(k)).to(tl.float32) * scale   # (BLOCK_M, BLOCK_N) scores, on chip only
            ok = offs_n[None, :] < Tk
            if CAUSAL:
                ok = ok & (offs_n[None, :] <= offs_m[:, None] + offset)
            s = tl.where(ok, s, -float("inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))          # the online softmax, as in tiled.py
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
            m_i = m_new
        out = acc / l_i[:, None]
        tl.store(o_ptr + bh * Tq * hs + offs_m[:, None] * hs + offs_d[None, :], out,
                 mask=(offs_m[:, None] < Tq) & d_ok[None, :])
        tl.store(lse_ptr + bh * Tq + offs_m, m_i + tl.log(l_i), mask=offs_m < Tq)

    return dict(flash_fwd=flash_fwd, next_pow2=triton.next_power_of_2, cdiv=triton.cdiv)


@functools.cache
def _ce_kernel(interpret: bool) -> dict:
    """Cross-entropy of a chunk of logits, one program per row, gradient written in place."""
    import triton  # optional dependency
    import triton.language as tl

    @triton.jit
    def ce_rows(logits_ptr, t_ptr, loss_ptr, n_cols, scale, IGNORE: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * n_cols
        t = tl.load(t_ptr + row)
        m = -float("inf")
        l = 0.0
        for c0 in range(0, n_cols, BLOCK):                     # pass 1: online max and sum over V
            cols = c0 + tl.arange(0, BLOCK)
            x = tl.load(base + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            l = l * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m = m_new
        lse = m + tl.log(l)
        ok = t != IGNORE
        x_t = tl.load(base + tl.where(ok, t, 0)).to(tl.float32)
        tl.store(loss_ptr + row, tl.where(ok, lse - x_t, 0.0))
        g = tl.where(ok, scale, 0.0)
        for c0 in range(0, n_cols, BLOCK):                     # pass 2: (softmax - onehot) * scale, in place
            cols = c0 + tl.arange(0, BLOCK)
            x = tl.load(base + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
            d = tl.exp(x - lse) - tl.where(cols == t, 1.0, 0.0)
            tl.store(base + cols, d * g, mask=cols < n_cols)

    return dict(ce_rows=ce_rows)


def _k() -> dict:
    return _row_kernels(interpreting())


class TritonSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x2 = x.contiguous().view(-1, x.size(-1))               # (rows, n)
        y = torch.empty_like(x2)
        kn = _k()
        kn["softmax_fwd"][(x2.size(0),)](x2, y, x2.size(1), BLOCK=kn["next_pow2"](x2.size(1)))
        ctx.save_for_backward(y)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        dy2 = dy.contiguous().view(y.shape)
        dx = torch.empty_like(y)
        kn = _k()
        kn["softmax_bwd"][(y.size(0),)](y, dy2, dx, y.size(1), BLOCK=kn["next_pow2"](y.size(1)))
        return dx.view(dy.shape)


class TritonRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, eps: float):
        x2 = x.contiguous().view(-1, x.size(-1))               # (rows, C)
        y = torch.empty_like(x2)
        r = torch.empty(x2.size(0), dtype=torch.float32, device=x.device)
        kn = _k()
        kn["rms_fwd"][(x2.size(0),)](x2, w.contiguous(), y, r, x2.size(1), eps, BLOCK=kn["next_pow2"](x2.size(1)))
        ctx.save_for_backward(x2, w, r)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, w, r = ctx.saved_tensors
        dx = torch.empty_like(x2)
        dw_rows = torch.empty(x2.shape, dtype=torch.float32, device=x2.device)
        kn = _k()
        kn["rms_bwd"][(x2.size(0),)](x2, w.contiguous(), r, dy.contiguous().view(x2.shape), dx, dw_rows,
                                     x2.size(1), BLOCK=kn["next_pow2"](x2.size(1)))
        return dx.view(dy.shape), dw_rows.sum(0).to(w.dtype), None


class TritonFlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal: bool):
        B, nh, Tq, hs = q.shape
        Tk = k.size(2)
        q3, k3, v3 = (t.contiguous().view(B * nh, -1, hs) for t in (q, k, v))  # (B*nh, T, hs)
        o = torch.empty_like(q3)
        lse = torch.empty(B * nh, Tq, dtype=torch.float32, device=q.device)
        kn = _flash_kernel(interpreting())
        block = 16 if interpreting() else 64
        grid = (kn["cdiv"](Tq, block), B * nh)
        kn["flash_fwd"][grid](q3, k3, v3, o, lse, Tq, Tk, hs, 1.0 / math.sqrt(hs), CAUSAL=causal,
                              BLOCK_M=block, BLOCK_N=block, BLOCK_D=max(16, kn["next_pow2"](hs)))
        out, lse = o.view(B, nh, Tq, hs), lse.view(B, nh, Tq)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal = causal
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        from minillm.kernels.tiled import tiled_attention_backward  # the reference backward, from the lse
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_attention_backward(q, k, v, out, lse, dout, ctx.causal, tile=64)
        return dq, dk, dv, None


class TritonLinearCrossEntropy(torch.autograd.Function):
    """Liger-style fused linear + CE: per chunk, torch computes the logits, the Triton kernel
    turns them into loss and d(logits) in place, and the gradients of x and W are formed at
    once; backward only scales them by the incoming gradient. Logits never exceed one chunk."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk: int):
        N = x.size(0)
        n_valid = max(int((targets != -100).sum()), 1)
        dx = torch.empty_like(x, dtype=torch.float32)
        dw = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
        losses = torch.empty(N, dtype=torch.float32, device=x.device)
        kn = _ce_kernel(interpreting())
        block = 32 if interpreting() else 4096
        for r0 in range(0, N, chunk):
            x_c = x[r0:r0 + chunk].float()
            logits = (x_c @ weight.float().t()).contiguous()   # (n, V) fp32, overwritten by d(logits)
            kn["ce_rows"][(logits.size(0),)](logits, targets[r0:r0 + chunk].contiguous(), losses[r0:r0 + chunk],
                                             logits.size(1), 1.0 / n_valid, IGNORE=-100, BLOCK=block)
            dx[r0:r0 + chunk] = logits @ weight.float()
            dw += logits.t() @ x_c
        ctx.save_for_backward(dx, dw)
        ctx.dtypes = (x.dtype, weight.dtype)
        return losses.sum() / n_valid

    @staticmethod
    def backward(ctx, dloss):
        dx, dw = ctx.saved_tensors
        return (dx * dloss).to(ctx.dtypes[0]), (dw * dloss).to(ctx.dtypes[1]), None, None


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis in one fused kernel per row."""
    check_runnable(x)
    return TritonSoftmax.apply(x)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last axis, x (..., C) * weight (C,), in one fused kernel per row."""
    check_runnable(x, weight)
    if weight.shape != (x.size(-1),):
        raise MiniLLMError(f"rms_norm weight must have shape ({x.size(-1)},), got {tuple(weight.shape)}")
    return TritonRMSNorm.apply(x, weight, eps)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    return_lse: bool = False):
    """FlashAttention-2 forward in Triton; (B, nh, T, hs) -> (B, nh, T, hs) (and the (B, nh, T) lse)."""
    check_runnable(q, k, v)
    if q.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.size(-1) != k.size(-1):
        raise MiniLLMError(f"flash_attention needs q (B, nh, Tq, hs) and k, v (B, nh, Tk, hs); "
                           f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if causal and k.size(2) < q.size(2):
        raise MiniLLMError("causal attention needs at least as many keys as queries")
    out, lse = TritonFlashAttention.apply(q, k, v, causal)
    return (out, lse) if return_lse else out


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = 1024) -> torch.Tensor:
    """Mean CE of x (N, C) @ weight (V, C)^T against targets (N,) (-100 ignored), chunked;
    the Triton twin of `chunked_ce.chunked_cross_entropy` (no bias, fp32 logits)."""
    check_runnable(x, weight)
    if x.dim() != 2 or weight.dim() != 2 or x.size(1) != weight.size(1) or targets.shape != (x.size(0),):
        raise MiniLLMError(f"linear_cross_entropy needs x (N, C), weight (V, C), targets (N,); got "
                           f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(targets.shape)}")
    if chunk < 1:
        raise MiniLLMError(f"chunk must be >= 1, got {chunk}")
    return TritonLinearCrossEntropy.apply(x, weight, targets, chunk)
