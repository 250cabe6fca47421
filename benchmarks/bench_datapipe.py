"""Lesson 13's two measured tables: per-stage precision/recall + throughput, and the downstream
bits/byte of the same tiny model trained on each stage's output (same token budget).

    OMP_NUM_THREADS=1 python benchmarks/bench_datapipe.py                 # 3000 pages, 300 steps
    OMP_NUM_THREADS=1 python benchmarks/bench_datapipe.py --pages 600 --steps 50   # a quick look

Throughput is docs/s of each stage on one thread (the crawl's pages, this machine, one run).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from minillm import world
from minillm.datapipe import crawl, downstream, metrics


def datasets_per_stage(rows: list[dict], outputs: list[list[dict]]) -> dict[str, str]:
    """Training text after each stage (cumulative), then clean TinyWorld of the final size."""
    data = {"raw (extracted)": downstream.docs_text(outputs[0])}
    for row, out in zip(rows[1:], outputs[1:]):
        if row["stage"] != "domain":  # tags only: the same text
            data["+" + row["stage"]] = downstream.docs_text(out)
    final_bytes = len(list(data.values())[-1].encode("utf-8"))
    stories, n = [], 0
    for s in world.iter_stories(10 ** 6, seed=0, split="datapipe_clean"):
        stories.append(s)
        n += len(s.text) + 1
        if n >= final_bytes:
            break
    data["clean TinyWorld (final's size)"] = world.corpus_text(stories)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", help="also write both tables to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    pages, truth = crawl.make_crawl(args.pages, args.seed)
    print(f"crawl: {args.pages} pages in {time.perf_counter() - t0:.1f} s")
    rows, outputs = metrics.measure_pipeline(pages, truth)
    print(metrics.format_table(rows))
    cfg = downstream.DownstreamConfig(steps=args.steps)
    t0 = time.perf_counter()
    down, floor = downstream.downstream_table(datasets_per_stage(rows, outputs), cfg)
    print()
    print(downstream.format_downstream(down, floor))
    print(f"({len(down)} runs of {cfg.steps} steps x {cfg.batch_size} x {cfg.block_size} tokens, "
          f"{time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(stages=rows, downstream=down, floor=floor, config=vars(args)), f, indent=1, default=str)


if __name__ == "__main__":
    main()
