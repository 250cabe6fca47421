"""`minillm cost`: lesson 07: FLOPs, GPU-hours, dollars and CO2 of a training run.

From `--params` (and `--tokens`) or a model `--config` (a JSON file of GPTConfig fields,
or a checkpoint that holds one) it prints `minillm.cost.cost_card`'s table; with a
config also the inference FLOPs and memory of `minillm.flops`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import warnings
from pathlib import Path

from minillm.utils import MiniLLMError

HELP = "lesson 07: FLOPs, GPU-hours, dollars and CO2 of a training run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.config import add_dataclass_arguments
    from minillm.cost import CostAssumptions  # deferred: importing torch takes a second; `minillm --help` stays instant

    parser.add_argument("--params", type=float, default=None, help="number of parameters, e.g. 405e9")
    parser.add_argument("--tokens", type=float, default=None,
                        help="training tokens, e.g. 15.6e12 (default: 20 per parameter)")
    parser.add_argument("--config", default=None,
                        help="a model config instead of --params: a JSON file of GPTConfig fields, "
                             "or a checkpoint (.pt) that holds one")
    parser.add_argument("--location", default="unknown", help="where the GPUs run (model card field)")
    parser.add_argument("--model-card", action="store_true", help="also print the co2_eq_emissions YAML block")
    add_dataclass_arguments(parser, CostAssumptions)


def load_model_config(path: str):
    """The GPTConfig in a JSON file or a checkpoint; a damaged or foreign file is a MiniLLMError."""
    from minillm.checkpoint import load_checkpoint  # deferred: see add_arguments
    from minillm.model import GPTConfig

    p = Path(path)
    if p.is_dir():
        raise MiniLLMError(f"--config {path} is a folder; give a JSON config or a checkpoint file")
    if not p.is_file():
        raise MiniLLMError(f"no such config file: {path}")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise MiniLLMError(f"{path} is not a JSON config: {e}") from None
    else:
        try:
            ckpt = load_checkpoint(p)
        except MiniLLMError:  # torch's message for a foreign file runs over many lines: say it in one
            raise MiniLLMError(f"{path}: not a JSON config or a checkpoint torch.load can read "
                               "(a damaged file?)") from None
        data = (ckpt.get("model_config") or ckpt.get("config")) if isinstance(ckpt, dict) else None
    if not isinstance(data, dict):
        raise MiniLLMError(f"{path} holds no model config (a JSON object of GPTConfig fields)")
    names = {f.name for f in dataclasses.fields(GPTConfig)}
    try:
        return GPTConfig(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise MiniLLMError(f"{path}: not a valid model config: {e}") from None


# flags that must be finite and > 0 (the others: finite and >= 0); None means "not given"
POSITIVE = ("params", "tokens", "mfu", "effective_tflops", "n_gpus", "gpu_power_w", "pue")
NON_NEGATIVE = ("usd_per_gpu_hour", "staff", "usd_per_staff_year", "staff_years", "kg_co2_per_kwh")


def check_numbers(args: argparse.Namespace) -> None:
    """Every number flag finite and in range, before any arithmetic (nan and inf print nonsense tables)."""
    for name in POSITIVE + NON_NEGATIVE:
        v = getattr(args, name, None)
        if v is None:
            continue
        if not math.isfinite(v) or v < 0 or (v == 0 and name in POSITIVE):
            want = "a positive" if name in POSITIVE else "a non-negative"
            raise MiniLLMError(f"--{name.replace('_', '-')} must be {want} finite number, got {v}")


def run(args: argparse.Namespace) -> int:
    from minillm import cost, flops  # deferred: see add_arguments
    from minillm.config import dataclass_from_args

    check_numbers(args)
    a = dataclass_from_args(cost.CostAssumptions, args)
    if args.config:
        config = load_model_config(args.config)
        params = flops.count_parameters(config)
    elif args.params is not None:
        params, config = args.params, None
    else:
        raise MiniLLMError("give --params (e.g. 405e9) or --config (a JSON config or checkpoint)")
    tokens = args.tokens if args.tokens is not None else 20 * params
    with warnings.catch_warnings():   # an unknown GPU warns, then cost_card says so as its error
        warnings.simplefilter("ignore", UserWarning)
        card = cost.cost_card(params, tokens, a)
    print(card.table())
    if config is not None:
        mem = flops.inference_memory(config)
        print(f"{'inference':<21}  {flops.inference_flops_per_token(config, config.block_size):.3g} FLOPs/token at "
              f"context {config.block_size}; weights {mem['weights'] / 2**20:.1f} MiB + KV cache "
              f"{mem['kv_cache'] / 2**20:.1f} MiB (bf16, batch 1)")
    if args.model_card:
        print(card.model_card_yaml(location=args.location))
    return 0
