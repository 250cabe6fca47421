"""`encode_iterable`'s buffer size against `encode`: the speed of each, from one run.

2 MB of TinyWorld's training split, a 4096-id tokenizer trained on its first MB; `encode`
on the whole text and `encode_iterable` over its lines with buffers of 64K, 256K (the
default, `tokenizer.STREAM_CHARS`) and 1M characters, each with a cold pre-token cache,
in alternating order over the rounds (A B C D / D C B A), medians of CPU time (one
thread: the neighbours' load counts less). Printed: each speed relative to `encode`'s.
The ids are checked equal. Lesson 01 quotes this run.

    OMP_NUM_THREADS=1 python benchmarks/bench_stream_buffers.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from minillm import world
from minillm.tokenizer import Tokenizer

BUFFERS = {"64K": 1 << 16, "256K": 1 << 18, "1M": 1 << 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mb", type=float, default=2.0)
    args = ap.parse_args()
    text = world.load_split("train")[:int(args.mb * 1e6)]
    tok = Tokenizer.train(text[:1 << 20], 4096)
    lines = text.splitlines(keepends=True)
    runs = {"encode": lambda: tok.encode(text)}
    runs.update({f"encode_iterable, {k} buffer": (lambda n: lambda: list(tok.encode_iterable(lines, chunk_chars=n)))(n)
                 for k, n in BUFFERS.items()})
    cpu = {k: [] for k in runs}
    ids = {}
    print(f"load average {os.getloadavg()[0]:.2f} before, {args.mb} MB, {args.rounds} rounds")
    for r in range(args.rounds):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            tok._cache.clear()
            t = time.process_time()
            ids[k] = runs[k]()
            cpu[k].append(time.process_time() - t)
    assert all(v == ids["encode"] for v in ids.values()), "a streaming encoder gave other ids"
    base = statistics.median(cpu["encode"])
    for k, v in cpu.items():
        print(f"{k:32} {args.mb / statistics.median(v):6.2f} MB/s (CPU)  {base / statistics.median(v):.3f}x encode")
    print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
