"""The parts a GPT is made of, from scratch and fast (lesson 03).

Each part appears twice:

* a **reference** function written with plain tensor arithmetic, so the formula
  is on the page (`linear`, `embedding`, `layer_norm`, `rms_norm`, `gelu_tanh`,
  `silu`, `swiglu`, `rope_reference`), tested against PyTorch's own op or an
  independent formula;
* the **module** the model really runs (`nn.Linear`, `nn.LayerNorm`, `RMSNorm`,
  `MLP`, `SwiGLUMLP`, `Rotary` + `apply_rotary`), which calls PyTorch's fused kernels
  (`F.rms_norm`, `F.gelu`, `F.silu`) and never the reference functions.

Papers: LayerNorm (Ba et al., 2016), GELU and its tanh approximation (Hendrycks &
Gimpel, 2016), RMSNorm (Zhang & Sennrich, 2019), SwiGLU (Shazeer, 2020), RoPE
(Su et al., 2021, "RoFormer"). RoPE uses the "rotate half" pairing (channel i
with channel i + hs/2) that Hugging Face's LLaMA uses, so its checkpoints load
with a plain key copy. Left out: bias-free LayerNorm variants, ALiBi, RoPE scaling.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Reference functions (the exercises live here; the model never calls them).
# ---------------------------------------------------------------------------


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = x W^T + b. x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    y = x @ weight.T  # (..., in) @ (in, out) -> (..., out)
    return y if bias is None else y + bias


def embedding(idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Row lookup: idx (...) long, weight (V, C) -> (..., C). Same as one_hot(idx) @ weight."""
    return weight[idx]


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
               eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.

    The variance is the biased one (divide by C, not C - 1), as in the paper and
    PyTorch. x (..., C) -> (..., C).

    >>> layer_norm(torch.tensor([1.0, 3.0]), None, None, eps=0.0).tolist()
    [-1.0, 1.0]
    """
    ### BEGIN SOLUTION name=layers.layer_norm points=2
    ### HINT: centre each position's C channels, divide by their spread (the biased variance, plus eps under the root), then apply the optional scale and shift.
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y
    ### END SOLUTION


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm: x / sqrt(mean(x^2) + eps) * weight. No centring, no bias.

    >>> rms_norm(torch.tensor([3.0, 4.0]), None, eps=0.0)  # rms = sqrt(12.5)
    tensor([0.8485, 1.1314])
    """
    ### BEGIN SOLUTION name=layers.rms_norm points=1
    ### HINT: like LayerNorm without the centring and the shift: what is the "root mean square" of a position's channels?
    y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    return y if weight is None else y * weight
    ### END SOLUTION


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    >>> round(float(gelu_tanh(torch.tensor(1.0))), 4)  # exact GELU(1) = 0.8413
    0.8412
    """
    ### BEGIN SOLUTION name=layers.gelu points=1
    ### HINT: GELU weighs x by the chance that a standard normal falls below it; the tanh curve above approximates that chance.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    ### END SOLUTION


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU (swish): x * sigmoid(x) = x / (1 + exp(-x))."""
    return x / (1.0 + torch.exp(-x))


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """SwiGLU MLP: W_down (silu(W_gate x) * (W_up x)). x (..., C); w_gate, w_up (H, C); w_down (C, H).

    >>> I = torch.eye(2)
    >>> swiglu(torch.tensor([1.0, -1.0]), I, I, I)  # silu(1)*1, silu(-1)*(-1)
    tensor([0.7311, 0.2689])
    """
    ### BEGIN SOLUTION name=layers.swiglu points=2
    ### HINT: two projections up to the hidden width: one, through SiLU, gates the other unit by unit; then project back down.
    return linear(silu(linear(x, w_gate)) * linear(x, w_up), w_down)
    ### END SOLUTION


def rope_frequencies(head_size: int, theta: float = 10000.0, device: torch.device | str | None = None) -> torch.Tensor:
    """The hs/2 rotation speeds theta^(-2i/hs), i = 0 .. hs/2 - 1 (RoFormer eq. 15), float64."""
    return theta ** (-torch.arange(0, head_size, 2, dtype=torch.float64, device=device) / head_size)


def rope_reference(x: torch.Tensor, start_pos: int = 0, theta: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding with complex numbers.

    x (B, nh, T, hs). Channel pair (i, i + hs/2) is the complex number
    z = x_i + j x_{i+hs/2}; at position p it is multiplied by exp(j p f_i) with
    f_i = theta^(-2i/hs): a rotation by the angle p f_i. Dot products of rotated
    q and k then depend only on the distance between their positions.
    """
    ### BEGIN SOLUTION name=layers.rope points=3
    ### HINT: read channels (i, i + hs/2) as one complex number; at position p, multiplying by a unit complex number of angle p * f_i rotates it. Compute in float64.
    T, hs = x.size(-2), x.size(-1)
    half = hs // 2
    pos = torch.arange(start_pos, start_pos + T, dtype=torch.float64, device=x.device)
    angles = torch.outer(pos, rope_frequencies(hs, theta).to(x.device))  # (T, hs/2)
    rot = torch.polar(torch.ones_like(angles), angles)  # (T, hs/2) complex: exp(j * angle)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * rot  # (B, nh, T, hs/2)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)  # (B, nh, T, hs)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# Modules the model runs (fast path).
# ---------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale: PyTorch's fused `F.rms_norm` (float32 for half inputs, like LLaMA)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE's real form on x (..., hs) with tables from `Rotary` (broadcast against x).

    x * cos + rotate_half(x) * sin with rotate_half([a, b]) = [-b, a]; `Rotary` stores
    sin with the sign of rotate_half folded in ([-sin, sin]), so rotate_half becomes
    swapping the halves (a roll) and the whole rotation is three kernels. The model
    calls it once per layer on q and k stacked together.
    """
    return torch.addcmul(x * cos, x.roll(x.size(-1) // 2, dims=-1), sin)


class Rotary(nn.Module):
    """RoPE tables for `max_len` positions (rotate-half form): rotary(positions) -> (cos, sin).

    positions (T,) or (B, T) ints -> cos, sin of shape positions.shape + (hs,), for
    `apply_rotary`; equal to `rope_reference` (test). The tables are computed in float64
    and cast to the module's dtype, and computed again from float64 whenever the module
    moves (`.double()`, `.to(...)`), so a float64 model gets float64-exact tables.
    """

    def __init__(self, head_size: int, max_len: int, theta: float = 10000.0):
        super().__init__()
        if head_size % 2:
            raise ValueError(f"RoPE needs an even head size, got {head_size}")
        self.head_size, self.max_len, self.theta = head_size, max_len, theta
        cos, sin = self._tables(torch.device("cpu"), torch.get_default_dtype())
        # Buffers (not parameters), not saved in checkpoints: they are a function of the config.
        self.register_buffer("cos", cos, persistent=False)  # (max_len, hs)
        self.register_buffer("sin", sin, persistent=False)  # (max_len, hs), sign folded in

    def _tables(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(self.max_len, dtype=torch.float64, device=device)
        angles = torch.outer(pos, rope_frequencies(self.head_size, self.theta, device))  # (max_len, hs/2)
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1)  # (max_len, hs)
        sin = torch.cat([-angles.sin(), angles.sin()], dim=-1)  # rotate_half's sign folded in
        return cos.to(dtype), sin.to(dtype)

    def _apply(self, fn, recurse: bool = True):
        # nn.Module routes .to() / .double() / .cuda() through here: casting float32 tables
        # up would keep float32 rounding, so rebuild them in the buffer's new dtype/device.
        super()._apply(fn, recurse)
        if self.cos.dtype.is_floating_point and self.cos.device.type != "meta":
            self.cos, self.sin = self._tables(self.cos.device, self.cos.dtype)
        return self

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[positions], self.sin[positions]  # (..., T, hs) each


class MLP(nn.Module):
    """GPT-2 feed-forward: c_proj(gelu_tanh(c_fc(x))). x (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class SwiGLUMLP(nn.Module):
    """LLaMA feed-forward: down_proj(silu(gate_proj(x)) * up_proj(x)). (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.gate_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.up_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))
