"""Benchmark lesson 01's tokenizer against the tools a user would pick instead.

Prints, for one corpus, our figure beside Hugging Face `tokenizers` (Rust) and
tiktoken (Rust, fed our vocabulary through `Tokenizer.to_tiktoken`), with the
ratio, the medians of `--rounds` interleaved rounds (ours, theirs, ours, theirs,
... so that a busy neighbour slows both alike; the encoders in a new order each
round), and the machine's load average before and after:

* training to `--vocab-size` ids: seconds and peak memory added by training (the
  proportional set size of the process and its workers, sampled every 10 ms, above
  the level with the corpus loaded), each run in a fresh process;
* encoding: one string (cold and warm pre-token cache), a batch of lines (our
  processes against tiktoken's and HF's threads), and our `encode_iterable` and
  `encode_iterable_chunks` (the path token files use) against one `encode`, with
  their ratio, then those three again alone (no Rust threads between them), in
  A B C / C B A order by turns.

`--baseline PATH` adds the trainer and encoder of another minillm checkout (e.g.
`git worktree add /tmp/old HEAD~1`) as "before". Corpora: `pydoc` (Python's own
`pydoc_data` topics, 0.47 MB), `tinyworld` (1.1 MB of the train split), `mixed`
(TinyWorld, pydoc and the standard library's sources: 12.6 MB, or `--mb` megabytes
in 20 slices spread over it). Run:

    OMP_NUM_THREADS=1 python benchmarks/bench_tokenizer.py --corpus mixed --mb 12.6 --workers 2
    RAYON_NUM_THREADS=2 python benchmarks/bench_tokenizer.py --corpus tinyworld --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def corpus(name: str, mb: float) -> str:
    import pydoc_data.topics as topics

    from minillm import world

    docs = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    if name == "pydoc":
        return docs
    if name == "tinyworld":
        return world.load_split("train")[:1_100_000]
    import sysconfig

    parts, size, full = [world.load_split("train"), docs], 4.5e6, max(mb, 12.6) * 1e6
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if size > full:
            break
        parts.append(f.read_text(encoding="utf-8", errors="replace"))
        size += len(parts[-1])
    text = "\n".join(parts).encode("utf-8", "replace")[:int(full)].decode("utf-8", "ignore")
    if mb * 1e6 >= full:
        return text
    # a smaller corpus: 20 evenly spaced slices, so it mixes stories, docs and code alike
    step, n = len(text) // 20, int(mb * 1e6) // 20
    return "".join(text[k * step:k * step + n] for k in range(20))


def _pss_mb(pid: int | str = "self") -> float:
    """Proportional set size: pages shared with forked workers are split between them,
    so parent + workers is not double counted (Linux; 0 elsewhere)."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


class PeakMemory:
    """Samples this process's memory plus its children's every 10 ms; `.peak_mb` is the
    highest total above the level when sampling started (the corpus already loaded)."""

    def __enter__(self):
        import gc
        import threading

        gc.collect()
        self.base, self.peak, self.stop = _pss_mb(), 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        pid = os.getpid()
        while not self.stop.wait(0.01):
            total = _pss_mb() + sum(_pss_mb(c) for c in _children(pid))
            self.peak = max(self.peak, total)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak_mb = max(0.0, self.peak - self.base)


def job(kind: str, name: str, mb: float, vocab_size: int, workers: int) -> dict:
    """One training run in this (fresh) process: seconds and peak memory."""
    text = corpus(name, mb)
    if kind == "hf":  # imports outside the timed region, for both tools
        from tokenizers import Tokenizer as HF
        from tokenizers import models, pre_tokenizers, trainers
    else:
        from minillm.tokenizer import Tokenizer
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if kind == "hf":
            tok = HF(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                          show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)  # lines, as HF's docs feed it
            n = tok.get_vocab_size()
        else:
            kw = {"workers": workers} if kind == "ours" else {}  # a baseline may predate `workers`
            tok = Tokenizer.train(text, vocab_size, pattern="gpt2", **kw)
            n = tok.vocab_size
        seconds = time.perf_counter() - t0
    return {"s": seconds, "peak_mb": mem.peak_mb, "vocab": n}


def run_job(kind: str, args, pythonpath: str) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--job", kind, "--corpus", args.corpus, "--mb", str(args.mb),
                          "--vocab-size", str(args.vocab_size), "--workers", str(args.workers)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[tuple[str, ...]]) -> None:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
        if k == 0:
            print("| " + " | ".join("-" * w[i] for i in range(len(r))) + " |")


def bench_train(args) -> None:
    kinds = {"ours": str(HERE), "hf": str(HERE)}
    if args.baseline:
        kinds["before"] = str(Path(args.baseline).resolve())
    got: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(args.rounds):  # interleaved: ours, HF, before, ours, HF, before, ...
        for kind, path in kinds.items():
            try:
                got[kind].append(run_job(kind, args, path))
            except subprocess.CalledProcessError as e:
                print(f"{kind}: failed ({e.stderr.strip().splitlines()[-1:]})")
                got[kind] = []
    med = {k: (statistics.median(r["s"] for r in v), max(r["peak_mb"] for r in v), v[0]["vocab"])
           for k, v in got.items() if v}
    rows = [("train (median of %d)" % args.rounds, "seconds", "peak MB added", "vocab", "time / HF", "memory / HF")]
    names = {"ours": f"minillm ({args.workers} workers, pure Python)", "hf": "HF tokenizers (Rust)",
             "before": "minillm before (--baseline)"}
    for k, (s, m, v) in med.items():
        ratio = (f"{s / med['hf'][0]:.2f}x", f"{m / med['hf'][1]:.2f}x") if "hf" in med else ("", "")
        rows.append((names[k], f"{s:.2f}", f"{m:.0f}", str(v), *ratio))
    table(rows)


def time_rounds(timers: dict, rounds: int, tok, text: str) -> tuple[dict, dict]:
    """Wall-clock and CPU seconds of each timer, over interleaved rounds, each round in a
    new order (the same seed every run), so that no timer always runs after the same one."""
    times: dict[str, list[float]] = {k: [] for k in timers}
    cpu: dict[str, list[float]] = {k: [] for k in timers}  # CPU seconds: valid for one-thread timers only
    rng = random.Random(0)
    for _ in range(rounds):
        for k in rng.sample(list(timers), len(timers)):
            if k.startswith("minillm") and "cold" in k:
                tok._cache.clear()
            elif k.startswith("minillm") and "warm" in k:
                tok.encode(text, disallowed_special=())  # whatever ran before, the cache is full
            c0, t0 = time.process_time(), time.perf_counter()
            out = timers[k]()  # freed after the clock stops, for every timer alike
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
            del out
    return times, cpu


def bench_encode(args) -> None:
    from minillm.tokenizer import Tokenizer

    text = corpus(args.corpus, args.mb)
    mb = len(text.encode("utf-8", "replace")) / 1e6
    lines = text.splitlines(keepends=True)
    try:
        tok = Tokenizer.train(text, args.vocab_size, pattern="gpt2", workers=args.workers)
    except TypeError:  # a --baseline checkout from before `workers`
        tok = Tokenizer.train(text, args.vocab_size, pattern="gpt2")
    # "cold" timers start with an empty pre-token cache, emptied before the clock starts
    # (freeing a full cache is not encoding work, and only some timers would pay for it);
    # the "warm" one with a full cache, filled before the clock starts
    timers = {
        "minillm encode, cold cache": lambda: tok.encode(text, disallowed_special=()),
        "minillm encode, warm cache": lambda: tok.encode(text, disallowed_special=()),
        "minillm encode_iterable(lines), cold": lambda: list(tok.encode_iterable(lines, disallowed_special=())),
    }
    if hasattr(tok, "encode_iterable_chunks"):  # lists per buffer: what a token-file writer takes
        timers["minillm encode_iterable_chunks(lines), cold"] = \
            lambda: list(tok.encode_iterable_chunks(lines, disallowed_special=()))
    if hasattr(tok, "encode_batch"):  # a --baseline checkout may predate it
        timers[f"minillm encode_batch(lines), {args.workers} processes, cold"] = \
            lambda: tok.encode_batch(lines, disallowed_special=(), workers=args.workers)
    try:
        enc = tok.to_tiktoken()
        assert enc.encode_ordinary(text) == tok.encode(text, disallowed_special=()), "ids differ from tiktoken"
        timers["tiktoken encode_ordinary (our ranks)"] = lambda: enc.encode_ordinary(text)
        timers[f"tiktoken encode_ordinary_batch(lines), {args.workers} threads"] = \
            lambda: enc.encode_ordinary_batch(lines, num_threads=args.workers)
    except ImportError:
        pass
    try:
        import tokenizers

        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_tok_{os.getpid()}"
        vocab, merges = tok.to_gpt2_files(folder)
        hf = tokenizers.ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=False)
        timers["HF tokenizers encode (our merges)"] = lambda: hf.encode(text)
        timers["HF tokenizers encode_batch(lines)"] = lambda: hf.encode_batch(lines)
    except ImportError:
        pass
    times, cpu = time_rounds(timers, args.rounds, tok, text)
    speed = {k: mb / statistics.median(v) for k, v in times.items()}
    tt = speed.get("tiktoken encode_ordinary (our ranks)")
    ttb = speed.get(f"tiktoken encode_ordinary_batch(lines), {args.workers} threads")
    rows = [(f"encode {mb:.2f} MB (median of {args.rounds})", "MB/s", "/ tiktoken one string", "/ tiktoken batch")]
    for k, v in speed.items():
        rows.append((k, f"{v:.2f}", f"{v / tt:.2f}" if tt else "", f"{v / ttb:.2f}" if ttb else ""))
    table(rows)
    same = list(tok.encode_iterable(lines, disallowed_special=())) == tok.encode(text, disallowed_special=())
    it, one = "minillm encode_iterable(lines), cold", "minillm encode, cold cache"
    cpu_ratio = statistics.median(cpu[one]) / statistics.median(cpu[it])
    print(f"encode_iterable / encode speed, both cold: {speed[it] / speed[one]:.2f}x wall clock, "
          f"{cpu_ratio:.2f}x CPU time (one thread each: the neighbours' load counts less); same ids: {same}")
    stream_pair(tok, text, lines, mb, 2 * args.rounds + 1)


def stream_pair(tok, text: str, lines: list[str], mb: float, rounds: int) -> None:
    """`encode` against the streaming encoders alone, cold, in A B C / C B A order by turns,
    so that neither always follows the other (or a many-threaded Rust encoder)."""
    timers = {
        "encode(text)": lambda: tok.encode(text, disallowed_special=()),
        "encode_iterable(lines)": lambda: list(tok.encode_iterable(lines, disallowed_special=())),
    }
    if hasattr(tok, "encode_iterable_chunks"):
        timers["encode_iterable_chunks(lines)"] = lambda: list(tok.encode_iterable_chunks(lines, disallowed_special=()))
    wall: dict[str, list[float]] = {k: [] for k in timers}
    cpu: dict[str, list[float]] = {k: [] for k in timers}
    for r in range(rounds):
        for k in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
            tok._cache.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            out = timers[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
            del out
    base_w, base_c = statistics.median(wall["encode(text)"]), statistics.median(cpu["encode(text)"])
    rows = [(f"cold, alone, {rounds} rounds (medians)", "MB/s", "CPU MB/s", "speed / encode (wall)", "(CPU)")]
    for k in timers:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        rows.append((k, f"{mb / w:.2f}", f"{mb / c:.2f}", f"{base_w / w:.2f}", f"{base_c / c:.2f}"))
    table(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", choices=["pydoc", "tinyworld", "mixed"], default="pydoc")
    p.add_argument("--mb", type=float, default=12.6, help="size of the mixed corpus")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="our processes, tiktoken's threads")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are printed")
    p.add_argument("--baseline", help="another minillm checkout to time as 'before'")
    p.add_argument("--skip", choices=["train", "encode"], help="leave one half out")
    p.add_argument("--job", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.job:
        print(json.dumps(job(args.job, args.corpus, args.mb, args.vocab_size, args.workers)))
        return
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load0[0]:.2f} (1 min) before; "
          f"corpus {args.corpus}, vocab {args.vocab_size}, GPT-2 split pattern for all (HF's ByteLevel uses it), "
          f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')}")
    if args.skip != "train":
        bench_train(args)
    if args.skip != "encode":
        bench_encode(args)
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average {load1[0]:.2f} (1 min) after, on {os.cpu_count()} CPUs: "
          f"{'a busy machine: both figures slowed, the ratios are the point' if load1[0] > 1 else 'a quiet machine'}")


if __name__ == "__main__":
    main()
