"""Attention: our from-scratch reference vs PyTorch's fused scaled_dot_product_attention.

For T = 256, 1024, 2048 (causal, B=1, nh=8, hs=64, float32) it prints, side by side
from one run, the time of a forward and of a forward+backward, and the peak extra
memory of a forward+backward. Memory is measured in a fresh subprocess per case as
peak resident memory (VmHWM) minus the resident memory just before the call,
so the reference's (B, nh, T, T) score matrices show up (the peak counter is reset
first: Linux carries a parent's peak into its children).

    python benchmarks/bench_attention.py            # full
    python benchmarks/bench_attention.py --quick    # T = 256 only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from minillm.attention import scaled_dot_product_attention

B, NH, HS = 1, 8, 64


def impls():
    return {
        "reference": lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True),
        "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


def inputs(T: int, grad: bool):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, NH, T, HS, generator=g).requires_grad_(grad) for _ in range(3)]


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory(name: str, T: int) -> None:
    """Run in a subprocess: print the peak extra MiB of one forward+backward."""
    q, k, v = inputs(T, grad=True)
    fn = impls()[name]
    # The peak-RSS counter survives fork+exec (a child starts with its parent's peak):
    # reset it (Linux: write 5 to clear_refs), then read the high-water mark VmHWM.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss_bytes()
    fn(q, k, v).sum().backward()
    print(json.dumps({"mib": max(0, peak_rss_bytes() - before) / 2**20}))


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory(name: str, T: int) -> float:
    if not sys.platform.startswith("linux"):
        return float("nan")
    out = subprocess.run([sys.executable, __file__, "--memory", name, str(T)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:
        measure_memory(args.memory[0], int(args.memory[1]))
        return
    lengths = [256] if args.quick else [256, 1024, 2048]
    print(f"causal attention, B={B} nh={NH} hs={HS} float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; best of several runs")
    print(f"{'T':>5} | {'fwd ms ref':>10} {'fwd ms sdpa':>11} {'x':>5} | {'f+b ms ref':>10} {'f+b ms sdpa':>11} "
          f"{'x':>5} | {'MiB ref':>8} {'MiB sdpa':>8}")
    for T in lengths:
        reps = 5 if T <= 1024 else 3
        row = {}
        for name, fn in impls().items():
            q, k, v = inputs(T, grad=False)
            with torch.no_grad():
                fwd = timeit(lambda: fn(q, k, v), reps)
            qg, kg, vg = inputs(T, grad=True)
            fb = timeit(lambda: fn(qg, kg, vg).sum().backward(), reps)
            row[name] = (fwd * 1e3, fb * 1e3, memory(name, T))
        r, s = row["reference"], row["sdpa"]
        print(f"{T:>5} | {r[0]:>10.2f} {s[0]:>11.2f} {r[0] / s[0]:>5.1f} | {r[1]:>10.2f} {s[1]:>11.2f} "
              f"{r[1] / s[1]:>5.1f} | {r[2]:>8.1f} {s[2]:>8.1f}")


if __name__ == "__main__":
    main()
