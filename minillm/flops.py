"""What a model costs: parameters, FLOPs, MFU, GPU-hours, dollars, energy and CO2 (lesson 07).

What it builds, one testable step at a time:

1. `params_count(config)`: the exact number of parameters of our GPT, from its
   config alone, for both block styles (GPT-2 and LLaMA). `count_parameters`
   gets the same number by building the model on the `meta` device (no memory).
2. `forward_flops_per_token(config, seq_len)`: the matmul FLOPs of one forward
   pass per token, attention included; `training_flops_per_token` = 3x that
   (backward = 2x forward); `model_flops_per_token` the same from the real
   model's Linear layers (the fast path a training loop uses for MFU). `measure_flops` runs PyTorch's
   `torch.utils.flop_counter.FlopCounterMode` on the real model; tests prove the
   two equal. The 6N rule (`training_flops`) is the one-line version.
3. `mfu`: model FLOPs utilization = achieved model FLOP/s / the device's peak,
   with a table of dense peak FLOP/s (`PEAK_TFLOPS`) and device auto-detection.
4. `cost_card`: from (parameters, tokens) or a config, the training FLOPs,
   GPU-hours, wall-clock days, dollars, energy and CO2 -- every assumption an
   explicit argument -- printed as a table or exported as the `co2_eq_emissions`
   block of a Hugging Face model card; flags for regulatory compute thresholds.
5. Inference and memory: FLOPs per generated token, weights + KV-cache bytes,
   and training memory (weights, gradients, AdamW states, saved activations).

Conventions follow Kaplan et al. 2020 ("Scaling Laws for Neural Language
Models", C = 6ND), Hoffmann et al. 2022 (Chinchilla, appendix F: attention
counted over the whole T x T score matrix, no causal saving) and Chowdhery et
al. 2022 (PaLM, appendix B: MFU counts model FLOPs only, never recomputation).
Left out: mixture-of-experts, pipeline bubbles, communication time, sparsity.
Peak numbers are NVIDIA/AMD datasheet values without sparsity; check yours.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import warnings
from dataclasses import dataclass, field

from minillm.utils import MiniLLMError

# ---------------------------------------------------------------------------------
# 1. Parameters
# ---------------------------------------------------------------------------------


def _mlp_hidden(config) -> int:
    """The MLP's hidden width: 4C (gpt2) or the SwiGLU width 8/3 C rounded up to 64 (llama)."""
    if hasattr(config, "mlp_hidden_size"):
        return int(config.mlp_hidden_size)
    if getattr(config, "mlp_hidden", None):
        return int(config.mlp_hidden)
    if config.style == "llama":
        return 64 * math.ceil(8 * config.n_embd / 3 / 64)
    return 4 * config.n_embd


def _kv_heads(config) -> int:
    return int(getattr(config, "n_kv_head", None) or config.n_head)


def params_count(config) -> int:
    """The exact number of trainable parameters of `GPT(config)`, from the config alone.

    Per block: attention (fused q/k/v projection C -> (nh + 2 nkv) hs, output
    projection C -> C), MLP (gpt2: C -> H -> C; llama SwiGLU: gate and up C -> H,
    down H -> C), two norms (LayerNorm: weight and bias; RMSNorm: weight only).
    Plus the token embedding V x C, learned positions block_size x C (gpt2 only),
    a final norm, and an output head V x C unless tied to the embedding.
    Biases exist where `config.bias` is True (Linear and LayerNorm).

    >>> params_count(GPTConfig(vocab_size=512, block_size=256, n_layer=4, n_head=4, n_embd=128))
    ... # 65536 + 32768 + 4 * 198272 + 256 = 891,648 parameters (gpt2 style, tied)
    """
    ### BEGIN SOLUTION name=flops.params_count points=3
    ### HINT: add up each nn.Linear (in*out + out if bias), each norm, the embeddings and the head.
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    hs = C // config.n_head
    H, nkv, bias = _mlp_hidden(config), _kv_heads(config), int(config.bias)
    qkv_out = (config.n_head + 2 * nkv) * hs
    attn = C * qkv_out + bias * qkv_out + C * C + bias * C
    if config.style == "llama":
        mlp = 3 * C * H + bias * (2 * H + C)        # gate, up (C -> H) and down (H -> C)
        norm = C                                    # RMSNorm: a gain, no bias
    else:
        mlp = 2 * C * H + bias * (H + C)            # fc (C -> H) and proj (H -> C)
        norm = C + bias * C                         # LayerNorm: gain and bias
    block = attn + mlp + 2 * norm
    embeddings = V * C + (config.block_size * C if config.style == "gpt2" else 0)
    head = 0 if config.tie_embeddings else V * C
    return L * block + embeddings + norm + head
    ### END SOLUTION


def count_parameters(config) -> int:
    """Fast path: build `GPT(config)` on the meta device (no memory) and sum `numel()`.

    Shared tensors (a tied head) are counted once, as `model.parameters()` does.
    """
    import torch

    from minillm.model import GPT

    with torch.device("meta"):
        model = GPT(config)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------
# 2. FLOPs
# ---------------------------------------------------------------------------------


def training_flops(n_params: float, n_tokens: float) -> float:
    """The 6N rule: training FLOPs ~ 6 N D (2 for the forward multiply-add, 4 backward).

    >>> training_flops(405e9, 15.6e12)   # 3.79e25
    """
    if n_params <= 0 or n_tokens <= 0:
        raise MiniLLMError(f"parameters and tokens must be positive, got {n_params} and {n_tokens}")
    return 6.0 * n_params * n_tokens


def forward_flops_per_token(config, seq_len: int | None = None) -> int:
    """Matmul FLOPs of one forward pass, per token, for sequences of `seq_len` tokens.

    A matmul (m x k) @ (k x n) costs 2 m k n FLOPs (one multiply and one add per
    term). Per token that makes 2 x (weights of every Linear layer) -- the q/k/v
    and output projections, the MLP and the output head -- plus, in each layer,
    the two attention products q k^T and (weights) v: 2 * T * C each, counted
    over the whole T x T matrix as Hoffmann et al. 2022 (appendix F) and
    PyTorch's counter do (a causal kernel could skip half). Embedding lookups,
    norms, softmax and activations are not matmuls and are left out.

    >>> forward_flops_per_token(GPTConfig(n_layer=1, n_head=1, n_embd=4, vocab_size=10,
    ...     block_size=8, bias=False), seq_len=8)
    ... # 2 * (4*12 + 4*4 + 2*4*16 + 10*4) + 2 * (2*8*4) = 592
    """
    T = config.block_size if seq_len is None else seq_len
    ### BEGIN SOLUTION name=flops.forward_flops_per_token points=3
    ### HINT: 2 * (weights of every Linear, head included) + per layer 4 * T * C for q k^T and att v.
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    hs = C // config.n_head
    H, nkv = _mlp_hidden(config), _kv_heads(config)
    qkv = C * (config.n_head + 2 * nkv) * hs
    mlp = (3 if config.style == "llama" else 2) * C * H
    linear_weights = L * (qkv + C * C + mlp) + V * C   # the head multiplies even when tied
    attention = L * 2 * (2 * T * C)                     # q k^T and att v, full T x T
    return 2 * linear_weights + attention
    ### END SOLUTION


def training_flops_per_token(config, seq_len: int | None = None) -> int:
    """Forward + backward: the backward pass costs twice the forward (gradients with
    respect to the inputs and to the weights), so 3x forward in all."""
    return 3 * forward_flops_per_token(config, seq_len)


def model_flops_per_token(config, seq_len: int | None = None) -> int:
    """Fast path for training loops: training model FLOPs per token, 6 W + 12 L T C
    (Chowdhery et al. 2022, PaLM, appendix B), W = the weights of every `nn.Linear`
    of the real model (built on the meta device; the head counts even when tied).

    Equal to `training_flops_per_token` (test); use this one in code that must not
    depend on the lesson's exercise (the trainer's MFU).
    """
    import torch

    from minillm.model import GPT

    T = config.block_size if seq_len is None else seq_len
    with torch.device("meta"):
        model = GPT(config)
    W = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6 * W + 12 * config.n_layer * T * config.n_embd


def _flop_counter(**kwargs):
    """`FlopCounterMode` that also counts the CPU flash-attention kernel.

    PyTorch's counter knows the CUDA attention kernels but not
    `_scaled_dot_product_flash_attention_for_cpu`; we give it the same formulas it
    uses for CUDA (torch.utils.flop_counter.sdpa_flop_count and its backward).
    """
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = (
            lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v))
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda g, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(g, q, k, v))
    return fc.FlopCounterMode(display=False, custom_mapping=mapping, **kwargs)


def measure_flops(model, batch_size: int = 2, seq_len: int = 16, backward: bool = False) -> dict[str, int]:
    """Count FLOPs with PyTorch's own counter: run the model once on random tokens.

    Returns {"total": ..., "linear": ..., "attention": ...} where "linear" sums
    mm/addmm/bmm (the Linear layers) and "attention" the fused attention kernels.
    With `backward=True` the loss is back-propagated inside the counter too.
    """
    import torch

    cfg = model.config
    idx = torch.randint(0, cfg.vocab_size, (batch_size, seq_len))
    with _flop_counter() as counter:
        out = model(idx)
        logits = out[0] if isinstance(out, tuple) else out
        if backward:
            logits.float().pow(2).mean().backward()
    counts = counter.get_flop_counts()["Global"]
    linear = sum(v for k, v in counts.items() if str(k).split(".")[-1] in ("mm", "addmm", "bmm"))
    return {"total": counter.get_total_flops(), "linear": linear,
            "attention": counter.get_total_flops() - linear}


# ---------------------------------------------------------------------------------
# 3. MFU: how much of the hardware's peak the model's arithmetic uses
# ---------------------------------------------------------------------------------

# Dense (no 2:4 sparsity) peak TFLOP/s per device and dtype, tensor cores with FP32
# accumulation where that differs (GeForce cards), from the vendors' datasheets and
# architecture whitepapers. "tf32" is the tensor-core TF32 rate; "fp32" plain CUDA
# cores. `None`: the device has no such mode. `tdp_w`: board power, for energy.
PEAK_TFLOPS: dict[str, dict] = {
    "H100 SXM":  dict(fp32=66.9, tf32=494.7, bf16=989.4, fp16=989.4, fp8=1978.9, tdp_w=700),
    "H100 PCIe": dict(fp32=51.2, tf32=378.0, bf16=756.0, fp16=756.0, fp8=1513.0, tdp_w=350),
    "H200":      dict(fp32=66.9, tf32=494.7, bf16=989.4, fp16=989.4, fp8=1978.9, tdp_w=700),
    "B200":      dict(fp32=80.0, tf32=1100.0, bf16=2250.0, fp16=2250.0, fp8=4500.0, tdp_w=1000),
    "A100":      dict(fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0, fp8=None, tdp_w=400),
    "A10":       dict(fp32=31.2, tf32=62.5, bf16=125.0, fp16=125.0, fp8=None, tdp_w=150),
    "L4":        dict(fp32=30.3, tf32=60.0, bf16=121.0, fp16=121.0, fp8=242.0, tdp_w=72),
    "L40S":      dict(fp32=91.6, tf32=183.0, bf16=362.0, fp16=362.0, fp8=733.0, tdp_w=350),
    "V100":      dict(fp32=15.7, tf32=None, bf16=None, fp16=125.0, fp8=None, tdp_w=300),
    "T4":        dict(fp32=8.1, tf32=None, bf16=None, fp16=65.0, fp8=None, tdp_w=70),
    "RTX 3090":  dict(fp32=35.6, tf32=35.6, bf16=71.0, fp16=71.0, fp8=None, tdp_w=350),
    "RTX 4090":  dict(fp32=82.6, tf32=82.6, bf16=165.2, fp16=165.2, fp8=330.3, tdp_w=450),
    "RTX 5090":  dict(fp32=104.8, tf32=104.8, bf16=209.5, fp16=209.5, fp8=419.0, tdp_w=575),
    "MI300X":    dict(fp32=163.4, tf32=653.7, bf16=1307.4, fp16=1307.4, fp8=2614.9, tdp_w=750),
}
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
_DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
                  "float8": "fp8", "tensorfloat32": "tf32"}


def normalize_device_name(name: str) -> str | None:
    """Map a product name (`torch.cuda.get_device_name()` or a user's 'h100') to a
    `PEAK_TFLOPS` key, or None when unknown.

    >>> normalize_device_name("NVIDIA H100 80GB HBM3"), normalize_device_name("NVIDIA H100 PCIe")
    ('H100 SXM', 'H100 PCIe')
    """
    n = name.upper().replace("-", " ").replace("_", " ")
    if "H100" in n:
        return "H100 PCIe" if "PCIE" in n else "H100 SXM"
    for key in ("H200", "B200", "A100", "L40S", "V100", "MI300X", "T4"):
        if key in n.replace(" ", ""):
            return key
    if "L4" in n.split() or n.endswith("L4"):
        return "L4"
    if "A10" in n.split() or "A10G" in n.split():
        return "A10"
    for key in ("3090", "4090", "5090"):
        if key in n:
            return f"RTX {key}"
    return None


def detect_device() -> str | None:
    """The `PEAK_TFLOPS` key of the current CUDA device, or None (CPU, MPS, unknown GPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return normalize_device_name(torch.cuda.get_device_name())


def peak_flops(device: str | None = None, dtype: str = "bf16") -> float | None:
    """Dense peak FLOP/s of `device` (a name, or None to detect it) for `dtype`.

    Returns None with a warning when the device is unknown (a CPU, a GPU not in
    the table): MFU then cannot be computed; pass the peak yourself.

    >>> peak_flops("H100", "bf16")
    989400000000000.0
    """
    dtype = _DTYPE_ALIASES.get(dtype, dtype)
    if dtype not in DTYPES:
        raise MiniLLMError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    key = detect_device() if device is None else normalize_device_name(device)
    if key is None:
        warnings.warn(f"unknown device {device or 'on this machine'!r}: no peak FLOP/s in "
                      "minillm.flops.PEAK_TFLOPS, so MFU is not reported (pass the peak yourself)",
                      stacklevel=2)
        return None
    tflops = PEAK_TFLOPS[key][dtype]
    if tflops is None:
        raise MiniLLMError(f"{key} has no {dtype} mode; choose one of "
                           f"{', '.join(d for d in DTYPES if PEAK_TFLOPS[key][d])}")
    return tflops * 1e12


def mfu(tokens_per_second: float, flops_per_token: float, peak: float | None, n_devices: int = 1) -> float | None:
    """Model FLOPs utilization: achieved model FLOP/s over the peak of all devices.

    `flops_per_token` is the *model's* count (`training_flops_per_token` or 6N),
    so recomputation and padding never count as useful work. Real hardware cannot
    exceed its peak, so a ratio above 1 means the peak given is wrong (another
    device, dtype, or a sparse datasheet number): we warn and return None rather
    than report an impossible MFU. None also when the peak is unknown.

    >>> mfu(tokens_per_second=1e3, flops_per_token=6e9, peak=989.4e12)   # 6e12 / 989.4e12
    0.006064...
    """
    if peak is None:
        return None
    if tokens_per_second < 0 or flops_per_token <= 0 or peak <= 0 or n_devices < 1:
        raise MiniLLMError("mfu needs tokens/s >= 0, positive FLOPs per token and peak, n_devices >= 1")
    ratio = tokens_per_second * flops_per_token / (peak * n_devices)
    if ratio > 1.0:
        warnings.warn(f"achieved FLOP/s is {ratio:.2f}x the peak given: the peak must be wrong "
                      "(device, dtype or a with-sparsity figure); MFU not reported", stacklevel=2)
        return None
    return ratio


# ---------------------------------------------------------------------------------
# 4. The cost card
# ---------------------------------------------------------------------------------

# Regulatory compute thresholds on training FLOPs (as of 2025; laws change, check them).
THRESHOLDS = [
    (1e25, "EU AI Act art. 51: general-purpose model presumed to have systemic risk (> 1e25 FLOPs)"),
    (1e26, "US Executive Order 14110 (2023, revoked 2025) reporting threshold; "
           "California SB 53 (2025) 'frontier model' (> 1e26 FLOPs)"),
]


def compute_flags(flops: float) -> list[str]:
    """The regulatory thresholds that `flops` of training compute crosses."""
    return [text for limit, text in THRESHOLDS if flops > limit]


@dataclass
class CostAssumptions:
    """Every assumption of a cost card, with its default and where it comes from."""

    gpu: str = field(default="H100", metadata={"help": "device name, a key of PEAK_TFLOPS (H100 = SXM)"})
    dtype: str = field(default="bf16", metadata={"help": "training precision: fp32, tf32, bf16, fp16, fp8"})
    mfu: float = field(default=0.4, metadata={"help": "model FLOPs utilization; 0.35-0.45 is typical of large dense runs"})
    effective_tflops: float | None = field(default=None, metadata={"help": "achieved TFLOP/s per GPU; overrides peak x mfu"})
    n_gpus: int = field(default=1024, metadata={"help": "GPUs working in parallel (wall-clock = GPU-hours / n_gpus)"})
    usd_per_gpu_hour: float = field(default=2.0, metadata={"help": "rental price per GPU-hour in dollars"})
    staff: int = field(default=0, metadata={"help": "people on the project"})
    usd_per_staff_year: float = field(default=500_000.0, metadata={"help": "fully loaded cost of one person-year"})
    staff_years: float = field(default=1.0, metadata={"help": "how long the staff is paid, in years"})
    gpu_power_w: float | None = field(default=None, metadata={"help": "average power per GPU in watts (default: the board's TDP)"})
    pue: float = field(default=1.1, metadata={"help": "data-centre power usage effectiveness (total / IT power)"})
    kg_co2_per_kwh: float = field(default=0.4, metadata={"help": "grid carbon intensity, kg CO2eq per kWh (0.4 ~ world/US average)"})


def _human(x: float) -> str:
    """26_325_000 -> '26.32 M'; 1234.5 -> '1,234'; 0.5 -> '0.5'."""
    if x >= 1e9:
        return f"{x / 1e9:.2f} B"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1:
        return f"{x:,.0f}"
    return f"{x:.2g}"


@dataclass
class CostCard:
    """The numbers of a training run's cost (see `cost_card`)."""

    params: float
    tokens: float
    flops: float
    assumptions: CostAssumptions
    effective_flops_per_gpu: float
    gpu_hours: float
    days: float
    compute_usd: float
    staff_usd: float
    energy_kwh: float
    co2_tonnes: float
    flags: list[str]

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.staff_usd

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def rows(self) -> list[tuple[str, str]]:
        a = self.assumptions
        rows = [
            ("parameters", f"{self.params:.3g}"),
            ("training tokens", f"{self.tokens:.3g} ({self.tokens_per_param:.0f} per parameter; Chinchilla ~20)"),
            ("training FLOPs (6ND)", f"{self.flops:.3g}"),
            ("per-GPU throughput", f"{self.effective_flops_per_gpu / 1e12:.0f} TFLOP/s ({a.gpu}, {a.dtype})"),
            ("GPU-hours", _human(self.gpu_hours)),
            ("wall clock", f"{self.days:.1f} days on {a.n_gpus:,} GPUs"
             if self.days >= 1 else f"{self.days * 24:.1f} hours on {a.n_gpus:,} GPUs"),
            ("compute cost", f"${_human(self.compute_usd)} at ${a.usd_per_gpu_hour:g}/GPU-hour"),
            ("staff cost", f"${_human(self.staff_usd)} ({a.staff} people x {a.staff_years:g} years)"),
            ("total cost", f"${_human(self.total_usd)}"),
            ("energy", f"{_human(self.energy_kwh)} kWh (PUE {a.pue:g})"),
            ("emissions", f"{self.co2_tonnes:,.0f} t CO2eq at {a.kg_co2_per_kwh:g} kg/kWh"
             if self.co2_tonnes >= 10 else f"{self.co2_tonnes * 1000:,.1f} kg CO2eq at {a.kg_co2_per_kwh:g} kg/kWh"),
        ]
        return rows + [("threshold", f) for f in self.flags]

    def table(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.rows())

    def co2_eq_emissions(self, location: str = "unknown", training_type: str = "pre-training") -> dict:
        """The `co2_eq_emissions` block of a Hugging Face model card (emissions in grams)."""
        return {
            "emissions": round(self.co2_tonnes * 1e6, 1),
            "source": "estimate by minillm.flops.cost_card (6ND FLOPs, GPU-hours x power x PUE x grid intensity)",
            "training_type": training_type,
            "geographical_location": location,
            "hardware_used": f"{self.assumptions.n_gpus} x {self.assumptions.gpu}",
        }

    def model_card_yaml(self, **kwargs) -> str:
        block = self.co2_eq_emissions(**kwargs)
        lines = ["co2_eq_emissions:"]
        for k, v in block.items():
            lines.append(f"  {k}: {v}" if isinstance(v, (int, float)) else f'  {k}: "{v}"')
        return "\n".join(lines) + "\n"


def cost_card(params: float, tokens: float, assumptions: CostAssumptions | None = None,
              flops: float | None = None, **overrides) -> CostCard:
    """Training cost of `params` parameters on `tokens` tokens.

    FLOPs = 6ND unless `flops` is given. GPU-hours = FLOPs / (peak x MFU) / 3600,
    or FLOPs / effective FLOP/s. Days = GPU-hours / n_gpus / 24. Energy = GPU-hours
    x power x PUE; CO2 = energy x grid intensity. `overrides` set fields of
    `CostAssumptions` (e.g. `n_gpus=16000`).

    >>> card = cost_card(405e9, 15.6e12, effective_tflops=400, n_gpus=16_000)
    >>> round(card.gpu_hours / 1e6, 1), round(card.days)
    (26.3, 69)
    """
    a = dataclasses.replace(assumptions or CostAssumptions(), **overrides)
    flops = training_flops(params, tokens) if flops is None else float(flops)
    for name in ("mfu", "n_gpus", "pue"):
        if not getattr(a, name) > 0:
            raise MiniLLMError(f"{name} must be positive, got {getattr(a, name)}")
    if a.mfu > 1:
        raise MiniLLMError(f"mfu is a fraction of the peak (0 < mfu <= 1), got {a.mfu}")
    key = normalize_device_name(a.gpu)
    if a.effective_tflops is not None:
        per_gpu = a.effective_tflops * 1e12
    else:
        peak = peak_flops(a.gpu, a.dtype)
        if peak is None:
            raise MiniLLMError(f"unknown GPU {a.gpu!r}: pass effective_tflops (--effective-tflops) "
                               f"or one of {', '.join(PEAK_TFLOPS)}")
        per_gpu = peak * a.mfu
    gpu_hours = flops / per_gpu / 3600
    power_w = a.gpu_power_w if a.gpu_power_w is not None else (PEAK_TFLOPS[key]["tdp_w"] if key else None)
    if power_w is None:
        raise MiniLLMError(f"no power figure for {a.gpu!r}: pass gpu_power_w")
    energy_kwh = gpu_hours * power_w / 1000 * a.pue
    return CostCard(params=float(params), tokens=float(tokens), flops=flops, assumptions=a,
                    effective_flops_per_gpu=per_gpu, gpu_hours=gpu_hours,
                    days=gpu_hours / a.n_gpus / 24, compute_usd=gpu_hours * a.usd_per_gpu_hour,
                    staff_usd=a.staff * a.usd_per_staff_year * a.staff_years,
                    energy_kwh=energy_kwh, co2_tonnes=energy_kwh * a.kg_co2_per_kwh / 1000,
                    flags=compute_flags(flops))


# ---------------------------------------------------------------------------------
# 5. Inference and memory
# ---------------------------------------------------------------------------------

BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def inference_flops_per_token(config, context: int) -> int:
    """FLOPs to generate one token with a KV cache holding `context` earlier tokens:
    2 x (Linear weights, head included) + per layer 4 x context x C for q k^T and att v
    (the one new query against every cached key)."""
    C, L = config.n_embd, config.n_layer
    hs = C // config.n_head
    H, nkv = _mlp_hidden(config), _kv_heads(config)
    weights = L * (C * (config.n_head + 2 * nkv) * hs + C * C
                   + (3 if config.style == "llama" else 2) * C * H) + config.vocab_size * C
    return 2 * weights + L * 4 * context * C


def kv_cache_bytes(config, batch_size: int, context: int, dtype: str = "bf16") -> float:
    """Bytes of the KV cache: keys and values (2) x layers x kv heads x head size x
    tokens x batch x bytes per number. Grouped-query attention divides it by nh / nkv."""
    hs = config.n_embd // config.n_head
    return 2 * config.n_layer * _kv_heads(config) * hs * context * batch_size * BYTES[dtype]


def inference_memory(config, batch_size: int = 1, context: int | None = None, dtype: str = "bf16") -> dict:
    """Weights + KV cache in bytes for serving `batch_size` sequences of `context` tokens."""
    context = config.block_size if context is None else context
    weights = count_parameters(config) * BYTES[dtype]
    kv = kv_cache_bytes(config, batch_size, context, dtype)
    return {"weights": weights, "kv_cache": kv, "total": weights + kv}


def training_memory(config, batch_size: int, seq_len: int | None = None, param_bytes: int = 4,
                    act_bytes: int = 4) -> dict:
    """Estimated bytes of a training step with AdamW in full precision.

    weights + gradients (param_bytes each) + AdamW's two moments (4 bytes each),
    i.e. 16 bytes per parameter in fp32; plus the activations autograd saves for
    backward, counted per layer and token from what our blocks keep:

    * gpt2: LayerNorm inputs and outputs (4C), the fused q/k/v output (3C), the
      attention output and its copy before `c_proj` (2C), the MLP's hidden
      before and after GELU (2H), plus per-row statistics and log-sum-exp;
    * llama: RMSNorm keeps input, normalised and scaled tensors (3C per norm),
      q/k/v (3C) and the rotated q and k (2C), attention output and copy (2C),
      SwiGLU's gate, SiLU, up and product (4H);
    * after the blocks: the final norm, the logits and their log-softmax (2V).

    An estimate: kernels' workspaces, allocator slack and temporaries come on top;
    the test holds it against the bytes autograd really saves within a stated band.
    """
    T = config.block_size if seq_len is None else seq_len
    C, L, V, nh = config.n_embd, config.n_layer, config.vocab_size, config.n_head
    H, nkv, hs = _mlp_hidden(config), _kv_heads(config), C // nh
    n = count_parameters(config)
    qkv = (nh + 2 * nkv) * hs + (2 * C if nkv < nh else 0)  # GQA: k and v are repeated to nh heads
    if config.style == "llama":
        per_token_layer = 6 * C + qkv + 2 * C + 2 * C + 4 * H + nh + 2
        final = 3 * C
    else:
        per_token_layer = 4 * C + qkv + 2 * C + 2 * H + nh + 4
        final = 2 * C
    acts = batch_size * T * (L * per_token_layer + final + 2 * V + 2) * act_bytes
    out = {"weights": n * param_bytes, "gradients": n * param_bytes, "optimizer": n * 8,
           "activations": acts}
    out["total"] = sum(out.values())
    return out


# ---------------------------------------------------------------------------------
# CLI: minillm cost
# ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.config import add_dataclass_arguments

    parser.add_argument("--params", type=float, default=None, help="number of parameters, e.g. 405e9")
    parser.add_argument("--tokens", type=float, default=None,
                        help="training tokens, e.g. 15.6e12 (default with --config: 20 per parameter)")
    parser.add_argument("--config", default=None,
                        help="a model config instead of --params: a JSON file of GPTConfig fields, "
                             "or a checkpoint (.pt) that holds one")
    parser.add_argument("--location", default="unknown", help="where the GPUs run (model card field)")
    parser.add_argument("--model-card", action="store_true", help="also print the co2_eq_emissions YAML block")
    add_dataclass_arguments(parser, CostAssumptions)


def _load_config(path: str):
    import json
    from pathlib import Path

    from minillm.model import GPTConfig

    p = Path(path)
    if not p.exists():
        raise MiniLLMError(f"no such config file: {path}")
    if p.suffix == ".json":
        data = json.loads(p.read_text())
    else:
        import torch

        ckpt = torch.load(p, map_location="cpu", weights_only=True)
        data = ckpt.get("model_config") or ckpt.get("config")
        if not isinstance(data, dict):
            raise MiniLLMError(f"{path} holds no model config")
    names = {f.name for f in dataclasses.fields(GPTConfig)}
    return GPTConfig(**{k: v for k, v in data.items() if k in names})


def run(args: argparse.Namespace) -> int:
    from minillm.config import dataclass_from_args

    a = dataclass_from_args(CostAssumptions, args)
    if args.config:
        config = _load_config(args.config)
        params = count_parameters(config)
    elif args.params is not None:
        params, config = args.params, None
    else:
        raise MiniLLMError("give --params (e.g. 405e9) or --config (a JSON config or checkpoint)")
    tokens = args.tokens if args.tokens is not None else 20 * params
    card = cost_card(params, tokens, a)
    print(card.table())
    if config is not None:
        mem = inference_memory(config)
        print(f"{'inference':<21}  {inference_flops_per_token(config, config.block_size):.3g} FLOPs/token at "
              f"context {config.block_size}; weights {mem['weights'] / 2**20:.1f} MiB + KV cache "
              f"{mem['kv_cache'] / 2**20:.1f} MiB (bf16, batch 1)")
    if args.model_card:
        print(card.model_card_yaml(location=args.location))
    return 0
