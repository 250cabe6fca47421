"""What training costs in money and energy: 6ND, hardware peaks, MFU, GPU-hours, dollars, CO2 (lesson 07).

What it builds, one testable step at a time:

1. `training_flops(N, D)`: the 6N rule, C = 6 N D (Kaplan et al. 2020), the one-line
   version of `minillm.flops.training_flops_per_token`.
2. `peak_flops` and `mfu`: model FLOPs utilization = achieved model FLOP/s over the
   device's dense peak (Chowdhery et al. 2022, PaLM, appendix B: model FLOPs only,
   never recomputation), with the datasheet table `PEAK_TFLOPS` (loaded from
   `data/tables/gpu_peaks.json`, which names each number's source) and device detection.
3. `cost_card`: from (parameters, tokens) the training FLOPs, GPU-hours, wall-clock
   days, dollars, energy and CO2 -- every assumption an explicit field of
   `CostAssumptions` -- as a table or as the `co2_eq_emissions` block of a Hugging
   Face model card; flags for regulatory compute thresholds (`THRESHOLDS`).

Left out: mixture-of-experts, pipeline bubbles, communication time, sparsity, spot
prices. Peak numbers are vendor datasheet values without sparsity; check yours.
Counting a model's parameters and FLOPs from its config is `minillm.flops`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from minillm.utils import MiniLLMError

# ---------------------------------------------------------------------------------
# 1. The 6N rule
# ---------------------------------------------------------------------------------


def training_flops(n_params: float, n_tokens: float) -> float:
    """The 6N rule: training FLOPs ~ 6 N D (2 for the forward multiply-add, 4 backward).

    >>> f"{training_flops(405e9, 15.6e12):.3g}"   # Llama 3.1 405B on 15.6T tokens
    '3.79e+25'
    """
    if n_params <= 0 or n_tokens <= 0:
        raise MiniLLMError(f"parameters and tokens must be positive, got {n_params} and {n_tokens}")
    return 6.0 * n_params * n_tokens


# ---------------------------------------------------------------------------------
# 2. MFU: how much of the hardware's peak the model's arithmetic uses
# ---------------------------------------------------------------------------------

GPU_PEAKS_FILE = Path(__file__).resolve().parent.parent / "data" / "tables" / "gpu_peaks.json"


def load_gpu_peaks(path: str | Path = GPU_PEAKS_FILE) -> dict[str, dict]:
    """The datasheet table: {device: {fp32, tf32, bf16, fp16, fp8 (TFLOP/s or None), tdp_w, source}}."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))["devices"]
    except (OSError, ValueError, KeyError) as e:
        raise MiniLLMError(f"cannot read the GPU table {path}: {e}") from None
    return table


# Dense peak TFLOP/s per device and dtype (see data/tables/gpu_peaks.json for the sources).
# "tf32" is the tensor-core TF32 rate; "fp32" plain CUDA cores. None: no such mode.
PEAK_TFLOPS: dict[str, dict] = load_gpu_peaks()

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
                      "minillm.cost.PEAK_TFLOPS, so MFU is not reported (pass the peak yourself)",
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
# 3. The cost card
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
            "source": "estimate by minillm.cost.cost_card (6ND FLOPs, GPU-hours x power x PUE x grid intensity)",
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

