"""Operator fusion on a CPU: eager PyTorch vs `torch.compile` (Inductor) for the block's chains.

For each chain of `minillm.kernels.fusion` (bias + GELU + dropout, softmax, RMSNorm,
LayerNorm) on an (N, C) fp32 input, from one run:

* the bytes-moved count, unfused (one kernel per op) and fused (one kernel), and the
  bytes the eager ops really read and write (`measure_bytes_moved`);
* eager vs compiled: median time per call and the process's peak resident memory
  above what it held before the call (Linux `/proc/self/status` VmHWM, reset through
  `/proc/self/clear_refs`; the benchmark re-runs itself with MALLOC_MMAP_THRESHOLD_
  so that freed buffers go back to the OS and each call's peak is its own), and the
  one-off compile time. Inductor on CPU writes one fused C++ loop per chain.

Part 2 (`--memory`): what tiling, chunking and checkpointing keep, measured with
`minillm.kernels.memory.PeakMemory` (peak bytes of the tensors PyTorch allocates in a
forward + backward): tiled vs naive attention over T, chunked vs full cross-entropy
over V, and a GPT's training step with and without activation checkpointing.

    python benchmarks/bench_fusion.py            # N=4096, C=1024
    python benchmarks/bench_fusion.py --quick    # N=1024, C=512, fewer repeats
    python benchmarks/bench_fusion.py --memory --no-compile   # part 2 only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from minillm.kernels import fusion as fu


def _rss() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def peak_rss_above_start(fn, *args) -> int | None:
    """Bytes of resident memory `fn(*args)` adds at its peak (Linux only, else None)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _rss()["VmRSS"]
    except OSError:
        return None
    out = fn(*args)
    peak = _rss()["VmHWM"] - base
    del out
    return peak


def median_seconds(fn, *args, reps: int = 20) -> float:
    fn(*args)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def memory_tables() -> None:
    import torch.nn.functional as F

    from minillm.kernels.checkpointing import measure_tradeoff
    from minillm.kernels.chunked_ce import chunked_cross_entropy
    from minillm.kernels.memory import PeakMemory
    from minillm.kernels.tiled import naive_attention, tiled_attention
    from minillm.model import GPT, GPTConfig

    def peak(fn, *args):
        with PeakMemory() as m:
            fn(*args).sum().backward()
        return m.peak / 1e6

    print("\nattention forward + backward, B=1, nh=4, hs=64, causal, fp32 (MB at peak)")
    print(f"{'T':>6} {'naive':>9} {'tiled(64)':>9} {'ratio':>6}")
    for T in (256, 512, 1024, 2048):
        qkv = [torch.randn(1, 4, T, 64, requires_grad=True) for _ in range(3)]
        a = peak(lambda q, k, v: naive_attention(q, k, v, True), *qkv)
        b = peak(lambda q, k, v: tiled_attention(q, k, v, True, 64), *qkv)
        print(f"{T:>6} {a:>9.1f} {b:>9.1f} {a / b:>5.1f}x")
    print("\ncross-entropy of x (N=4096, C=256) @ W (V, C)^T, forward + backward (MB at peak)")
    print(f"{'V':>7} {'full':>9} {'chunked(512)':>12} {'ratio':>6}")
    for V in (8192, 32768, 50304):
        x = torch.randn(4096, 256, requires_grad=True)
        w = torch.randn(V, 256, requires_grad=True)
        t = torch.randint(0, V, (4096,))
        a = peak(lambda x, w: F.cross_entropy(x @ w.T, t), x, w)
        b = peak(lambda x, w: chunked_cross_entropy(x, w, t, chunk=512), x, w)
        print(f"{V:>7} {a:>9.1f} {b:>12.1f} {a / b:>5.1f}x")
    cfg = GPTConfig(vocab_size=512, block_size=256, n_layer=8, n_head=4, n_embd=256)
    r = measure_tradeoff(GPT(cfg), batch_size=8, repeats=3)
    p, c = r["plain"], r["checkpointed"]
    print(f"\nactivation checkpointing, GPT {cfg.n_layer}x{cfg.n_embd}, batch 8 x {cfg.block_size} tokens, one step")
    print(f"{'':<14} {'peak MB':>8} {'GFLOPs':>8} {'seconds':>8}")
    for name, row in r.items():
        print(f"{name:<14} {row['peak_bytes'] / 1e6:>8.1f} {row['flops'] / 1e9:>8.2f} {row['seconds']:>8.3f}")
    print(f"checkpointed / plain: memory {c['peak_bytes'] / p['peak_bytes']:.2f}x, FLOPs "
          f"{c['flops'] / p['flops']:.2f}x, time {c['seconds'] / p['seconds']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="eager and the counts only")
    ap.add_argument("--memory", action="store_true", help="part 2 only: tiled / chunked / checkpointed memory")
    args = ap.parse_args()
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and sys.platform == "linux":
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # big buffers mmap'd: freed memory leaves the process
        os.execv(sys.executable, [sys.executable] + sys.argv)
    if args.memory:
        memory_tables()
        return
    N, C, reps = (1024, 512, 5) if args.quick else (4096, 1024, 20)
    torch.manual_seed(0)
    print(f"(N, C) = ({N}, {C}) fp32, {torch.get_num_threads()} thread(s); timings on a shared machine are noisy")
    print(f"{'chain':<18} {'ops':>3} {'unfused MB':>10} {'measured MB':>11} {'fused MB':>8} {'saving':>6} "
          f"{'eager ms':>8} {'comp ms':>8} {'speedup':>7} {'eager MB':>8} {'comp MB':>8} {'compile s':>9}")
    for name, make in fu.CHAINS.items():
        chain = make(N, C, 4)
        inputs = fu.chain_inputs(name, N, C)
        eager = fu.EAGER[name]
        measured = sum(b for _, b in fu.measure_bytes_moved(eager, *inputs))
        t_eager = median_seconds(eager, *inputs, reps=reps)
        m_eager = peak_rss_above_start(eager, *inputs)
        row = (f"{chain.name:<18} {len(chain.ops):>3} {fu.unfused_bytes(chain) / 1e6:>10.1f} {measured / 1e6:>11.1f} "
               f"{fu.fused_bytes(chain) / 1e6:>8.1f} {fu.unfused_bytes(chain) / fu.fused_bytes(chain):>5.1f}x "
               f"{t_eager * 1e3:>8.2f}")
        if args.no_compile:
            print(row + f" {'-':>8} {'-':>7} {(m_eager or 0) / 1e6:>8.1f}")
            continue
        compiled = torch.compile(eager, dynamic=False)
        t0 = time.perf_counter()
        compiled(*inputs)
        t_compile = time.perf_counter() - t0
        t_comp = median_seconds(compiled, *inputs, reps=reps)
        m_comp = peak_rss_above_start(compiled, *inputs)
        print(row + f" {t_comp * 1e3:>8.2f} {t_eager / t_comp:>6.1f}x {(m_eager or 0) / 1e6:>8.1f} "
              f"{(m_comp or 0) / 1e6:>8.1f} {t_compile:>9.1f}")
    print(f"one (N, C) fp32 tensor = {N * C * 4 / 1e6:.1f} MB; a fused chain reads its input and writes its output once")


if __name__ == "__main__":
    main()
