"""Number formats from their bit layout: fp32, tf32, bf16, fp16, fp8 (e4m3, e5m2) (lesson 14).

What it builds: `FloatFormat`, a binary floating-point layout (1 sign bit, `exp_bits`
exponent bits with bias 2^(e-1) - 1, `man_bits` stored mantissa bits), and from the
layout alone its largest finite value, smallest normal, smallest subnormal and machine
epsilon; `decode(bits, fmt)`, the value of one bit pattern; `round_to_tf32`, what a
TF32 tensor core does to an fp32 input. The tests hold every constant against
`torch.finfo` and `decode` against PyTorch's own reading of all 2^16 (2^8) patterns.

Where each format fails, as small runnable demonstrations:

* `fp16_overflow`: fp16's largest value is 65504, so an activation of 70000 is inf;
* `swamping`: a running sum in bf16 stops growing when the next term is below half
  a unit in the last place of the sum (adding 1s stalls at 256 = 2^(7+1));
* `lost_update`: why master weights stay in fp32 — w + lr * g with w = 1 and an
  update of 1e-4 is rounded away in bf16 (eps = 2^-7) but kept in fp32.

Layouts: IEEE 754 (fp32, fp16), Google Brain's bfloat16 (fp32's exponent, 7 mantissa
bits), NVIDIA's TF32 (fp32's exponent, fp16's 10 mantissa bits, inside tensor cores
only), and the OCP FP8 formats of Micikevicius et al. (2022): E5M2 follows IEEE
(inf and NaNs), E4M3 ("fn": finite) gives up inf and keeps one NaN pattern, so its
top exponent still holds numbers and its maximum is 1.75 * 2^8 = 448.
Left out: stochastic rounding, block-scaled formats (MXFP8, NVFP4), integer quantisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minillm.utils import MiniLLMError


@dataclass(frozen=True)
class FloatFormat:
    """A binary float: 1 sign bit, `exp_bits` exponent bits, `man_bits` stored mantissa bits.

    >>> FORMATS["fp16"].max, FORMATS["fp16"].eps
    (65504.0, 0.0009765625)
    """

    name: str
    exp_bits: int
    man_bits: int
    ieee: bool = True             # top exponent = inf/NaN (IEEE); False: only all-ones = NaN (E4M3fn)
    torch_dtype: str | None = None  # the torch dtype with this layout (tf32 has none: it lives in tensor cores)

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exp_bits - 1) - 1

    @property
    def eps(self) -> float:
        """Gap between 1 and the next number: one unit in the last mantissa place, 2^-m."""
        return 2.0 ** -self.man_bits

    @property
    def smallest_normal(self) -> float:
        """2^(1 - bias): exponent field 1, mantissa 0 (field 0 is for subnormals and zero)."""
        return 2.0 ** (1 - self.bias)

    @property
    def smallest_subnormal(self) -> float:
        """2^(1 - bias - m): exponent field 0 and only the last mantissa bit set."""
        return 2.0 ** (1 - self.bias - self.man_bits)

    @property
    def max(self) -> float:
        """Largest finite value.

        IEEE: the top exponent field is reserved (inf, NaN), so the largest exponent is
        2^e - 2 - bias with a full mantissa (2 - eps). E4M3fn: the top field holds numbers
        too, except mantissa all-ones (NaN), so the largest is (2 - 2 eps) * 2^(2^e - 1 - bias).
        """
        if self.ieee:
            return (2.0 - self.eps) * 2.0 ** (2 ** self.exp_bits - 2 - self.bias)
        return (2.0 - 2 * self.eps) * 2.0 ** (2 ** self.exp_bits - 1 - self.bias)

    @property
    def decimal_digits(self) -> float:
        """About how many significant decimal digits: log10(2^(m+1))."""
        return (self.man_bits + 1) * math.log10(2)


FORMATS: dict[str, FloatFormat] = {
    "fp32": FloatFormat("fp32", 8, 23, torch_dtype="float32"),
    "tf32": FloatFormat("tf32", 8, 10),
    "bf16": FloatFormat("bf16", 8, 7, torch_dtype="bfloat16"),
    "fp16": FloatFormat("fp16", 5, 10, torch_dtype="float16"),
    "fp8_e5m2": FloatFormat("fp8_e5m2", 5, 2, torch_dtype="float8_e5m2"),
    "fp8_e4m3": FloatFormat("fp8_e4m3", 4, 3, ieee=False, torch_dtype="float8_e4m3fn"),
}


def get_format(name: str) -> FloatFormat:
    if name not in FORMATS:
        raise MiniLLMError(f"unknown number format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


def decode(bits: int, fmt: FloatFormat) -> float:
    """The value of the bit pattern `bits` (an unsigned int of `fmt.bits` bits).

    >>> decode(0b0_01111_0000000000, FORMATS["fp16"]), decode(0b0_11110_1111111111, FORMATS["fp16"])
    (1.0, 65504.0)
    """
    m_bits, e_bits = fmt.man_bits, fmt.exp_bits
    sign = -1.0 if (bits >> (m_bits + e_bits)) & 1 else 1.0
    e = (bits >> m_bits) & (2 ** e_bits - 1)
    m = bits & (2 ** m_bits - 1)
    top = 2 ** e_bits - 1
    if fmt.ieee and e == top:
        return sign * math.inf if m == 0 else math.nan
    if not fmt.ieee and e == top and m == 2 ** m_bits - 1:
        return math.nan
    if e == 0:  # subnormal: no implicit leading 1, exponent fixed at 1 - bias
        return sign * (m / 2 ** m_bits) * 2.0 ** (1 - fmt.bias)
    return sign * (1 + m / 2 ** m_bits) * 2.0 ** (e - fmt.bias)


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """Round fp32 values to TF32's 10 mantissa bits (round to nearest, ties to even),
    as a tensor core does to a matmul's inputs; the result is still stored as fp32.

    Bit trick: add half of the 13 dropped bits' weight (plus the tie-to-even bit),
    then clear those 13 bits. Infinities and NaN pass through unchanged.
    """
    if x.dtype != torch.float32:
        raise MiniLLMError(f"round_to_tf32 takes a float32 tensor, got {x.dtype}")
    i = x.contiguous().view(torch.int32)
    drop = 23 - 10
    lsb = (i >> drop) & 1
    r = (i + ((1 << (drop - 1)) - 1) + lsb) & ~((1 << drop) - 1)
    out = r.view(torch.float32)
    return torch.where(torch.isfinite(x), out, x)


# ---------------------------------------------------------------------------------
# Where each format fails
# ---------------------------------------------------------------------------------

def fp16_overflow(value: float = 70000.0) -> dict[str, float]:
    """`value` stored in fp16, bf16 and fp32: fp16 overflows past 65504 to inf.

    >>> fp16_overflow(70000.0)["fp16"]
    inf
    """
    x = torch.tensor(value, dtype=torch.float32)
    return {"fp32": float(x), "bf16": float(x.bfloat16()), "fp16": float(x.half())}


def swamping(n_terms: int = 1000, dtype: torch.dtype = torch.bfloat16, term: float = 1.0) -> float:
    """Add `term` to a running sum `n_terms` times, the sum kept in `dtype`.

    In bf16 the sum of 1000 ones is 256: once the sum reaches 2^8, adding 1 is below
    half its last place (2^8 * 2^-7 / 2 = 1) and rounds away (ties to even). That is
    why reductions (softmax sums, norms, the loss) accumulate in fp32.

    >>> swamping(1000, torch.bfloat16), swamping(1000, torch.float32)
    (256.0, 1000.0)
    """
    acc = torch.zeros((), dtype=dtype)
    t = torch.tensor(term, dtype=dtype)
    for _ in range(n_terms):
        acc = acc + t
    return float(acc)


def lost_update(weight: float = 1.0, update: float = 1e-4) -> dict[str, float]:
    """The weight after one step `weight + update`, with the weight stored in each dtype.

    >>> lost_update(1.0, 1e-4)["bf16"]
    1.0
    """
    out = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        w = torch.tensor(weight, dtype=dt)
        out[name] = float(w + torch.tensor(update, dtype=dt))
    return out


def format_table() -> list[dict]:
    """One row per format: bits, layout, max, smallest normal, eps, decimal digits."""
    return [dict(format=f.name, bits=f.bits, exponent=f.exp_bits, mantissa=f.man_bits, max=f.max,
                 smallest_normal=f.smallest_normal, eps=f.eps, digits=round(f.decimal_digits, 1))
            for f in FORMATS.values()]
