"""Operator fusion, counted: bytes moved per op, fused vs unfused, and the roofline (lesson 14).

A GPU computes far faster than it reads memory: an H100 does ~989 TFLOP/s in bf16
but reads ~3.35 TB/s, so a kernel that does fewer than ~300 FLOPs per byte it moves
waits on memory. Eager PyTorch runs one kernel per op, and each reads its inputs
from memory and writes its output back. A *fused* kernel reads the chain's inputs
once, keeps the intermediates in registers, and writes only the final result.

What it builds:

* `Op` / `Chain`: a chain of ops over named tensors with their sizes in bytes;
  `unfused_bytes` (every op reads its inputs and writes its outputs) and
  `fused_bytes` (the chain's external inputs read once, its results written once);
  `flops` and `intensity` (FLOPs per byte);
* the chains of a transformer block, op for op as the eager code below runs them:
  bias + GELU + dropout, softmax, RMSNorm, LayerNorm (`CHAINS`, `EAGER`);
* `measure_bytes_moved(fn, ...)`: the bytes each ATen op really reads and writes
  when `fn` runs eagerly (a dispatch mode adds up input and output tensor sizes),
  the independent check of the unfused count;
* `HBM_TBPS`, memory bandwidths for lesson 07's device table, `attainable_flops`
  (the roofline: min(peak, intensity x bandwidth)) and `plot_roofline`.

FLOPs: one per element for each elementwise op and for each reduced element, eight
for tanh-GELU (cube, three multiplies, two adds, tanh, halving); a rough, stated
convention — these chains sit far left of the ridge either way. The dropout mask
is made from a seed inside the fused kernel (as Triton's and Inductor's do), so
the fused count writes no mask. Follows Williams, Waterman & Patterson (2009) for
the roofline. Left out: caches (L2 reuse makes real traffic lower than the count),
backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from minillm.utils import MiniLLMError


@dataclass(frozen=True)
class Op:
    """One eager kernel: reads `inputs`, writes `outputs` (tensor names), does `flops`."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    flops: int = 0


@dataclass
class Chain:
    """Ops over named tensors; `nbytes[name]` is each tensor's size; `results` reach memory."""

    name: str
    nbytes: dict[str, int]
    ops: list[Op]
    results: tuple[str, ...]
    notes: str = field(default="")


def unfused_bytes(chain: Chain) -> int:
    """Every op reads each input from memory and writes each output back."""
    return sum(sum(chain.nbytes[t] for t in op.inputs) + sum(chain.nbytes[t] for t in op.outputs)
               for op in chain.ops)


def fused_bytes(chain: Chain) -> int:
    """One kernel: each tensor the chain reads but no op of it produces is read once;
    each result is written once; every intermediate stays in registers.

    >>> fused_bytes(Chain("x+1, *2", {"x": 8, "y": 8, "z": 8},
    ...                   [Op("add", ("x",), ("y",)), Op("mul", ("y",), ("z",))], ("z",)))
    16
    """
    ### BEGIN SOLUTION name=fusion.fused_bytes points=2
    ### HINT: which tensors come from outside the chain (read, never written by one of its ops)? Count each of those once, however many ops read it, and add the results.
    produced = {t for op in chain.ops for t in op.outputs}
    external = {t for op in chain.ops for t in op.inputs if t not in produced}
    return sum(chain.nbytes[t] for t in external) + sum(chain.nbytes[t] for t in set(chain.results))
    ### END SOLUTION


def flops(chain: Chain) -> int:
    return sum(op.flops for op in chain.ops)


def intensity(chain: Chain, fused: bool) -> float:
    """Arithmetic intensity: FLOPs per byte moved."""
    return flops(chain) / (fused_bytes(chain) if fused else unfused_bytes(chain))


# ---------------------------------------------------------------------------------
# The chains of a transformer block, as eager code and as op lists (same op order)
# ---------------------------------------------------------------------------------

def bias_gelu_dropout_eager(x, b, p: float = 0.1):
    y = x + b
    g = torch.nn.functional.gelu(y, approximate="tanh")
    keep = torch.rand_like(g) >= p                              # the mask, made in memory
    return g * keep * (1.0 / (1.0 - p))


def softmax_eager(x):
    m = x.amax(-1, keepdim=True)
    e = torch.exp(x - m)
    return e / e.sum(-1, keepdim=True)


def rms_norm_eager(x, w, eps: float = 1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layer_norm_eager(x, w, b, eps: float = 1e-5):
    mu = x.mean(-1, keepdim=True)
    xc = x - mu
    var = xc.pow(2).mean(-1, keepdim=True)
    return xc * torch.rsqrt(var + eps) * w + b


def bias_gelu_dropout_chain(N: int, C: int, itemsize: int = 4) -> Chain:
    a, r = N * C * itemsize, C * itemsize
    nb = dict(x=a, b=r, y=a, g=a, u=a, keep=N * C, gk=a, out=a)  # keep: a bool mask, 1 byte each
    ops = [Op("add", ("x", "b"), ("y",), N * C), Op("gelu", ("y",), ("g",), 8 * N * C),
           Op("rand", (), ("u",), N * C), Op("ge", ("u",), ("keep",), N * C),
           Op("mul", ("g", "keep"), ("gk",), N * C), Op("mul", ("gk",), ("out",), N * C)]
    return Chain("bias+GELU+dropout", nb, ops, ("out",), "x (N, C) + b (C)")


def softmax_chain(N: int, T: int, itemsize: int = 4) -> Chain:
    a, r = N * T * itemsize, N * itemsize
    nb = dict(x=a, m=r, xm=a, e=a, s=r, out=a)
    ops = [Op("amax", ("x",), ("m",), N * T), Op("sub", ("x", "m"), ("xm",), N * T),
           Op("exp", ("xm",), ("e",), N * T), Op("sum", ("e",), ("s",), N * T),
           Op("div", ("e", "s"), ("out",), N * T)]
    return Chain("softmax", nb, ops, ("out",), "rows of (N, T) scores")


def rms_norm_chain(N: int, C: int, itemsize: int = 4) -> Chain:
    a, r, w = N * C * itemsize, N * itemsize, C * itemsize
    nb = dict(x=a, x2=a, ms=r, mse=r, inv=r, xn=a, w=w, out=a)
    ops = [Op("pow", ("x",), ("x2",), N * C), Op("mean", ("x2",), ("ms",), N * C),
           Op("add", ("ms",), ("mse",), N), Op("rsqrt", ("mse",), ("inv",), N),
           Op("mul", ("x", "inv"), ("xn",), N * C), Op("mul", ("xn", "w"), ("out",), N * C)]
    return Chain("RMSNorm", nb, ops, ("out",), "x (N, C), weight (C)")


def layer_norm_chain(N: int, C: int, itemsize: int = 4) -> Chain:
    a, r, w = N * C * itemsize, N * itemsize, C * itemsize
    nb = dict(x=a, mu=r, xc=a, sq=a, var=r, ve=r, inv=r, xn=a, w=w, xw=a, b=w, out=a)
    ops = [Op("mean", ("x",), ("mu",), N * C), Op("sub", ("x", "mu"), ("xc",), N * C),
           Op("pow", ("xc",), ("sq",), N * C), Op("mean", ("sq",), ("var",), N * C),
           Op("add", ("var",), ("ve",), N), Op("rsqrt", ("ve",), ("inv",), N),
           Op("mul", ("xc", "inv"), ("xn",), N * C), Op("mul", ("xn", "w"), ("xw",), N * C),
           Op("add", ("xw", "b"), ("out",), N * C)]
    return Chain("LayerNorm", nb, ops, ("out",), "x (N, C), weight and bias (C)")


CHAINS = {"bias_gelu_dropout": bias_gelu_dropout_chain, "softmax": softmax_chain,
          "rms_norm": rms_norm_chain, "layer_norm": layer_norm_chain}
EAGER = {"bias_gelu_dropout": bias_gelu_dropout_eager, "softmax": softmax_eager,
         "rms_norm": rms_norm_eager, "layer_norm": layer_norm_eager}


def chain_inputs(name: str, N: int, C: int, dtype=torch.float32, seed: int = 0) -> tuple:
    """Random inputs for `EAGER[name]` of shape (N, C) (and (C,) weights)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, generator=g).to(dtype)
    w = torch.randn(C, generator=g).to(dtype)
    return {"bias_gelu_dropout": (x, w), "softmax": (x,), "rms_norm": (x, w),
            "layer_norm": (x, w, torch.randn(C, generator=g).to(dtype))}[name]


class _BytesMoved(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.per_op: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None for r in func._schema.returns):  # views move nothing
            ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            if func.overloadpacket.__name__.endswith("_like"):
                ins = []  # rand_like / empty_like read only the input's shape, not its data
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            nbytes = sum(t.numel() * t.element_size() for t in ins + outs)
            self.per_op.append((func.overloadpacket.__name__, nbytes))
        return out


def measure_bytes_moved(fn, *args, **kwargs) -> list[tuple[str, int]]:
    """(ATen op name, bytes read + written) for each op `fn` runs eagerly, in order.

    A broadcast input (a (C,) bias added to (N, C)) counts once: a kernel streams it
    from cache, not N times from memory.
    """
    with torch.no_grad(), _BytesMoved() as m:
        fn(*args, **kwargs)
    return m.per_op


# ---------------------------------------------------------------------------------
# The roofline
# ---------------------------------------------------------------------------------

# Memory bandwidth in TB/s (HBM or GDDR) for the devices of `minillm.flops.PEAK_TFLOPS`,
# from the vendors' datasheets (A100: the 80 GB SXM part).
HBM_TBPS: dict[str, float] = {
    "H100 SXM": 3.35, "H100 PCIe": 2.0, "H200": 4.8, "B200": 8.0, "A100": 2.039, "A10": 0.6,
    "L4": 0.3, "L40S": 0.864, "V100": 0.9, "T4": 0.32, "RTX 3090": 0.936, "RTX 4090": 1.008,
    "RTX 5090": 1.792, "MI300X": 5.3,
}


def attainable_flops(intensity_flops_per_byte: float, peak_flops: float, bandwidth_bytes: float) -> float:
    """The roofline: a kernel runs at most at min(peak, intensity x bandwidth) FLOP/s."""
    return min(peak_flops, intensity_flops_per_byte * bandwidth_bytes)


def device_roof(device: str = "H100 SXM", dtype: str = "bf16") -> tuple[float, float]:
    """(peak FLOP/s from lesson 07's table, bandwidth in bytes/s) of `device`."""
    from minillm import flops as _flops  # lesson 07's table; function-local to keep this module light
    if device not in HBM_TBPS:
        raise MiniLLMError(f"no bandwidth for {device!r}; known: {', '.join(HBM_TBPS)}")
    return _flops.peak_flops(device, dtype), HBM_TBPS[device] * 1e12


def matmul_intensity(m: int, k: int, n: int, itemsize: int = 2) -> float:
    """(m, k) @ (k, n): 2 m k n FLOPs over reading both and writing the (m, n) result."""
    return 2 * m * k * n / ((m * k + k * n + m * n) * itemsize)


def plot_roofline(points: dict[str, float], device: str = "H100 SXM", dtype: str = "bf16"):
    """Log-log roofline of `device` with `points` {label: FLOPs per byte} on it. Returns the figure."""
    import matplotlib.pyplot as plt  # plotting is optional for the counts; imported when drawing
    import numpy as np
    peak, bw = device_roof(device, dtype)
    xs = np.logspace(-2, 4, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(xs, [attainable_flops(x, peak, bw) / 1e12 for x in xs], "k-", label=f"{device} {dtype} roof")
    ax.axvline(peak / bw, color="grey", ls=":", label=f"ridge: {peak / bw:.0f} FLOPs/byte")
    for label, x in points.items():
        ax.loglog([x], [attainable_flops(x, peak, bw) / 1e12], "o", label=f"{label} ({x:.2g})")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    ax.set_ylabel("attainable TFLOP/s")
    ax.set_title("roofline: left of the ridge, memory decides")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def fusion_table(N: int = 8192, C: int = 768, itemsize: int = 2) -> list[dict]:
    """One row per chain: bytes moved unfused and fused, the saving, and both intensities."""
    rows = []
    for name, make in CHAINS.items():
        ch = make(N, C, itemsize)
        u, f = unfused_bytes(ch), fused_bytes(ch)
        rows.append(dict(chain=ch.name, ops=len(ch.ops), unfused_MB=u / 1e6, fused_MB=f / 1e6, saving=u / f,
                         flops_per_byte_unfused=flops(ch) / u, flops_per_byte_fused=flops(ch) / f))
    return rows
