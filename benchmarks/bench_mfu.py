"""FLOPs and MFU: our analytic count beside PyTorch's FlopCounterMode, and measured throughput.

Part 1, for GPT-2 small and a LLaMA-style 1B shape (T = 1024), prints from one run our
`training_flops_per_token` (6N-plus-attention, model FLOPs), the 6N rule, and what
`torch.utils.flop_counter.FlopCounterMode` counts for one forward + backward on the
model built on the `meta` device (shapes only: no memory, no time). On `meta` attention
takes PyTorch's math path (plain matmuls), so the two must agree exactly; with a fused
flash kernel the counter adds the backward's recomputation of q k^T, which model FLOPs
(and MFU) leave out.

Part 2 trains a small GPT for a few steps on this machine and prints tokens/s, the
achieved model FLOP/s and, on a GPU in the peak table, the MFU.

    python benchmarks/bench_mfu.py            # full
    python benchmarks/bench_mfu.py --quick
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from minillm import cost, flops
from minillm.device import pick_device
from minillm.model import GPT, GPTConfig


def count_on_meta(config: GPTConfig, T: int) -> int:
    with torch.device("meta"):
        model = GPT(config)
        idx = torch.zeros(1, T, dtype=torch.long)
    for check in ("_check_input", "_check_ids"):  # meta tensors have no values to check
        if hasattr(model, check):
            setattr(model, check, lambda *args, **kwargs: None)
    with flops._flop_counter() as counter:
        logits, _ = model(idx)
        logits.float().pow(2).mean().backward()
    return counter.get_total_flops() // T


def part1(T: int) -> None:
    shapes = {
        "GPT-2 small": GPTConfig(vocab_size=50257, block_size=T, n_layer=12, n_head=12, n_embd=768),
        "LLaMA-style 1B": GPTConfig.llama_style(vocab_size=32000, block_size=T, n_layer=16, n_head=32,
                                                n_kv_head=8, n_embd=2048),
    }
    print(f"training FLOPs per token at T = {T}")
    print(f"{'model':16s} {'params':>14s} {'6N':>12s} {'ours (model)':>14s} {'FlopCounterMode':>16s} {'ratio':>7s}")
    for name, cfg in shapes.items():
        n = flops.count_parameters(cfg)
        ours = flops.training_flops_per_token(cfg, T)
        theirs = count_on_meta(cfg, T)
        print(f"{name:16s} {n:14,d} {6 * n:12.4g} {ours:14.4g} {theirs:16.4g} {theirs / ours:7.4f}")


def part2(steps: int) -> None:
    device = pick_device()
    cfg = GPTConfig(vocab_size=512, block_size=256, n_layer=4, n_head=4, n_embd=256)
    model = GPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    B, T = 16, 256
    x = torch.randint(0, 512, (B, T), device=device)
    per_token = flops.training_flops_per_token(cfg, T)

    def step():
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    tok_s = steps * B * T / (time.perf_counter() - t0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peak = cost.peak_flops(None, "tf32" if device.type == "cuda" else "fp32")
    m = cost.mfu(tok_s, per_token, peak)
    print(f"\n{device} fp32, {flops.count_parameters(cfg):,} parameters, B={B} T={T}: "
          f"{tok_s:,.0f} tokens/s x {per_token:,} FLOPs/token = {tok_s * per_token / 1e12:.3f} TFLOP/s; "
          f"MFU {'n/a (no peak for this device)' if m is None else f'{m:.1%}'}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    part1(256 if a.quick else 1024)
    part2(2 if a.quick else 10)
