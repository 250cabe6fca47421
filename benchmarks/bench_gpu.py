"""The speed ladder: GPT-2 small (124M) on one CUDA GPU, one rung per row.

Each rung keeps the previous ones and adds one thing:

    fp32 -> tf32 matmuls -> bf16 autocast -> flash SDPA -> torch.compile -> fused (chunked)
    cross-entropy -> larger batch

and prints tokens/s, MFU (lesson 07's model FLOPs per token, `flops.model_flops_per_token`,
over the device's dense peak for the rung's number format, `flops.peak_flops`) and the
peak memory PyTorch allocated. Before "flash SDPA" attention is pinned to the math
backend (the (T, T) matrix in memory), from it on to the flash kernel. The chunked
cross-entropy (`minillm.kernels.chunked_ce`) never holds the (B*T, 50257) logits, which
frees the memory the last rung spends on a larger batch. AdamW (fused), T = 1024.

Without CUDA it says so and exits 0. It runs end to end in a few minutes on an
H100-class GPU (`--steps` timed steps per rung after `--warmup` untimed ones).

    python benchmarks/bench_gpu.py                  # batch 16, then 32
    python benchmarks/bench_gpu.py --batch 8 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from minillm import flops
from minillm.kernels.chunked_ce import chunked_cross_entropy, gpt_hidden_states
from minillm.model import GPT, GPTConfig

RUNGS = ("fp32", "tf32", "bf16 autocast", "flash SDPA", "torch.compile", "fused CE", "larger batch")
GPT2_SMALL = dict(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0)
# 50304 = 50257 rounded up to a multiple of 128 (nanoGPT's trick: tensor-core friendly shapes)


def rung_settings(i: int) -> dict:
    """What rung i switches on (cumulative)."""
    return dict(tf32=i >= 1, bf16=i >= 2, flash=i >= 3, compile=i >= 4, fused_ce=i >= 5, big_batch=i >= 6)


def run_rung(i: int, batch: int, steps: int, warmup: int, device: torch.device) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel  # CUDA-path import, only when measuring
    s = rung_settings(i)
    torch.backends.cuda.matmul.allow_tf32 = s["tf32"]
    torch.backends.cudnn.allow_tf32 = s["tf32"]
    B = batch * (2 if s["big_batch"] else 1)
    T = GPT2_SMALL["block_size"]
    torch.manual_seed(0)
    model = GPT(GPTConfig(**GPT2_SMALL)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)

    def loss_fn(idx, tgt):
        if s["fused_ce"]:
            h = hidden(idx)
            return chunked_cross_entropy(h, model.lm_head.weight, tgt, chunk=2048)
        return fwd(idx, tgt)[1]

    fwd = torch.compile(model) if s["compile"] else model
    hidden = torch.compile(lambda idx: gpt_hidden_states(model, idx)) if s["compile"] \
        else (lambda idx: gpt_hidden_states(model, idx))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if s["bf16"] else contextlib.nullcontext()
    backend = SDPBackend.FLASH_ATTENTION if s["flash"] else SDPBackend.MATH
    idx = torch.randint(0, 50257, (B, T), device=device)
    tgt = torch.randint(0, 50257, (B, T), device=device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        for n in range(warmup + steps):
            if n == warmup:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            with sdpa_kernel(backend), amp:
                loss = loss_fn(idx, tgt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError:
        return dict(rung=RUNGS[i], batch=B, error="out of memory")
    tok_s = B * T * steps / dt
    dtype = "bf16" if s["bf16"] else ("tf32" if s["tf32"] else "fp32")
    peak = flops.peak_flops(None, dtype)
    mfu = flops.mfu(tok_s, flops.model_flops_per_token(model, T), peak) if peak else None
    return dict(rung=RUNGS[i], batch=B, tokens_per_s=tok_s, mfu=mfu, peak_dtype=dtype,
                peak_mem_gb=torch.cuda.max_memory_allocated(device) / 1e9, loss=float(loss))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="micro-batch of the first rungs (the last doubles it)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per rung")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per rung (compilation happens here)")
    ap.add_argument("--rungs", default=None, help="comma-separated rung numbers to run (default all), e.g. 2,4")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; the speed ladder needs one (skipped)")
        return 0
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, PyTorch {torch.__version__}, GPT-2 small (124M), T=1024; "
          f"peak table key: {flops.detect_device()}")
    print(f"{'#':>2} {'rung':<14} {'batch':>5} {'tokens/s':>10} {'MFU':>6} {'(peak)':>6} {'peak mem GB':>11} {'loss':>6}")
    wanted = [int(r) for r in args.rungs.split(",")] if args.rungs else range(len(RUNGS))
    for i in wanted:
        r = run_rung(i, args.batch, args.steps, args.warmup, device)
        if "error" in r:
            print(f"{i:>2} {r['rung']:<14} {r['batch']:>5} {r['error']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{i:>2} {r['rung']:<14} {r['batch']:>5} {r['tokens_per_s']:>10,.0f} {mfu:>6} {r['peak_dtype']:>6} "
              f"{r['peak_mem_gb']:>11.1f} {r['loss']:>6.3f}")
        torch._dynamo.reset()
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
