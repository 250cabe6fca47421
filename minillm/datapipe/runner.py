"""The sharded runner: the same stages over many JSONL(.gz) files, resumable, in parallel.

Builds `run_sharded(input_dir, out_dir, config, workers)`. The input is a folder
of shards (`*.jsonl` or `*.jsonl.gz`, one JSON document per line); every stage
writes one output shard per input shard into `out_dir/NN-stage/`, so each
stage's output can be inspected (and trained on). The rules:

- **Resumable.** A shard is written to a temporary file and renamed when complete
  (`utils.atomic_write`), then its stats file; a shard counts as done only when its
  stats file exists. A rerun skips done shards and redoes an interrupted one, so a
  killed run, rerun, gives byte-identical output.
- **Parallel.** `workers > 1` runs the shards of a stage in that many processes.
- **Correct across shards.** The corpus-wide stages (exact, near and line dedup) run
  in three steps (`pipeline.GLOBAL`): per-shard keys, one decision over all keys in
  shard order, per-shard apply. A duplicate split over two shards is found, and the
  output equals `pipeline.run_stages` over the concatenated shards.
- **Inputs are read, never written**; `out_dir` may not be the input folder.

This is the shape of datatrove's local executor (tasks = shards, a completion
marker per task) and of Dolma's and CCNet's runners. Left out: Slurm/Ray
executors, streaming shards larger than memory, object stores.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

from minillm.datapipe import crawl, pipeline
from minillm.datapipe.base import stage_stats
from minillm.utils import MiniLLMError, atomic_write, jsonl_objects


@dataclasses.dataclass
class RunConfig:
    """How to run a pipeline over shards."""

    workers: int = dataclasses.field(default=1, metadata={"help": "shards processed in parallel processes"})
    stages: str = dataclasses.field(default="", metadata={"help": "comma-separated stage names (default: all, in the notes' order)"})
    config: str = dataclasses.field(default="", metadata={"help": "a JSON file with the stage list (names or {'stage': name, ...})"})


def load_config(cfg: RunConfig) -> list:
    """The stage list a RunConfig names: its JSON file, its comma list, or the default pipeline."""
    if cfg.config and cfg.stages:
        raise MiniLLMError("give either --stages or --config, not both")
    if cfg.config:
        try:
            stages = json.loads(Path(cfg.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise MiniLLMError(f"cannot read the pipeline config {cfg.config}: {e}") from None
        return stages["stages"] if isinstance(stages, dict) and "stages" in stages else stages
    if cfg.stages:
        return [s.strip() for s in cfg.stages.split(",") if s.strip()]
    return list(pipeline.DEFAULT_STAGES)


def write_crawl(out_dir: str | os.PathLike, cfg: crawl.CrawlConfig) -> tuple[list[Path], Path]:
    """Make the crawl and write its pages as shards (`out/pages/`) and its truth apart (`out/truth.jsonl.gz`)."""
    pages, truth = crawl.make_crawl(cfg.pages, cfg.seed)
    shards = write_shards(pages, Path(out_dir) / "pages", cfg.shards)
    return shards, write_jsonl(Path(out_dir) / "truth.jsonl.gz", truth)


def list_shards(input_dir: str | os.PathLike) -> list[Path]:
    """The input shards, sorted by name; a clear error when there are none."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise MiniLLMError(f"input folder {folder} does not exist")
    shards = sorted(p for p in folder.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
    if not shards:
        raise MiniLLMError(f"no *.jsonl or *.jsonl.gz shards in {folder}")
    return shards


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The documents of one shard. Bytes that are not UTF-8 are replaced (never a crash);
    a line that is not a JSON object is one clear error naming the file and line."""
    path = Path(path)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw) if raw else b""
        except (OSError, EOFError) as e:
            raise MiniLLMError(f"{path} is not a valid gzip file: {e}") from None
    docs = []
    for n, doc in jsonl_objects(raw.decode("utf-8", errors="replace"), path):
        if "id" not in doc:
            raise MiniLLMError(f"{path}:{n}: every line must be a JSON object with an 'id'")
        docs.append(doc)
    return docs


def write_jsonl(path: str | os.PathLike, docs: list[dict]) -> Path:
    """Write documents atomically; gzip (with a fixed timestamp: same bytes every run) for *.gz."""
    data = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs).encode("utf-8")

    def write(tmp: str) -> None:
        if str(path).endswith(".gz"):
            with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", filename="", mtime=0) as g:
                g.write(data)
        else:
            Path(tmp).write_bytes(data)

    return atomic_write(path, write)


def _done(out: Path) -> bool:
    return out.with_name(out.name + ".stats.json").exists()


def _finish(out: Path, docs: list[dict], stats: dict) -> None:
    write_jsonl(out, docs)  # the data first, then the marker that says it is complete
    atomic_write(out.with_name(out.name + ".stats.json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(stats, sort_keys=True)))


def _local_job(src: str, out: str, name: str, params: dict) -> None:
    docs, stats = pipeline.STAGES[name](read_jsonl(src), **params)
    _finish(Path(out), docs, stats)


def _keys_job(src: str, out: str, name: str, params: dict) -> None:
    keys = [(d["id"], pipeline.GLOBAL[name].key(d, **params)) for d in read_jsonl(src)]
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(gzip.compress(json.dumps(keys).encode(), mtime=0)))


def _apply_job(src: str, out: str, name: str, decision_path: str) -> None:
    t0 = time.perf_counter()
    docs = read_jsonl(src)
    decision = set(json.loads(Path(decision_path).read_text()))
    kept = pipeline.GLOBAL[name].apply(docs, decision)
    _finish(Path(out), kept, stage_stats(docs, kept, t0))


def _map(fn: Callable, jobs: list[tuple], pool: ProcessPoolExecutor | None) -> None:
    """Run fn(*job) for every job, in the pool's processes when there is a pool."""
    if pool is None or len(jobs) <= 1:
        for job in jobs:
            fn(*job)
        return
    for f in [pool.submit(fn, *job) for job in jobs]:
        f.result()


def _global_stage(step: Path, srcs: list[Path], name: str, params: dict, pool) -> None:
    keys_dir = step / "keys"
    _map(_keys_job, [(str(s), str(keys_dir / (s.name + ".keys.gz")), name, params) for s in srcs
                     if not (keys_dir / (s.name + ".keys.gz")).exists() and not _done(step / s.name)], pool)
    decision_path = step / "decision.json"
    if not decision_path.exists():
        keys = [tuple(k) for s in srcs for k in json.loads(gzip.decompress((keys_dir / (s.name + ".keys.gz")).read_bytes()))]
        decision = sorted(pipeline.GLOBAL[name].decide(keys, **params))
        atomic_write(decision_path, lambda tmp: Path(tmp).write_text(json.dumps(decision)))
    _map(_apply_job, [(str(s), str(step / s.name), name, str(decision_path)) for s in srcs
                      if not _done(step / s.name)], pool)


def run_sharded(input_dir: str | os.PathLike, out_dir: str | os.PathLike, config: list | None = None,
                workers: int = 1, log: Callable[[str], None] | None = None) -> list[tuple[str, dict]]:
    """Run the pipeline over every shard; returns [(stage, stats summed over shards)] like `run_stages`.

    Example: `run_sharded("crawl/pages", "runs/pipe", ["extract", "exact_dedup"], workers=2)`.
    """
    stages = pipeline.parse_config(config or pipeline.DEFAULT_STAGES)
    shards, out = list_shards(input_dir), Path(out_dir)
    if out.resolve() == Path(input_dir).resolve() or Path(input_dir).resolve() in out.resolve().parents:
        raise MiniLLMError("the output folder must not be (inside) the input folder: inputs are never written")
    if not isinstance(workers, int) or workers < 1:
        raise MiniLLMError(f"workers must be a positive integer, got {workers!r}")
    # spawn: fresh interpreters, nothing inherited from the parent (safe with threads and torch)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        records = _run_stages(stages, shards, out, pool, log)
    finally:
        if pool is not None:
            pool.shutdown()
    atomic_write(out / "stats.json", lambda tmp: Path(tmp).write_text(json.dumps(records)))
    return records


def _run_stages(stages: list[tuple[str, dict]], shards: list[Path], out: Path, pool, log) -> list:
    srcs, records = shards, []
    for k, (name, params) in enumerate(stages):
        step = out / f"{k:02d}-{name}"
        step.mkdir(parents=True, exist_ok=True)
        for stale in step.glob(".*.tmp"):  # left by a killed run: that shard is simply redone
            stale.unlink()
        t0 = time.perf_counter()
        if name in pipeline.GLOBAL:
            _global_stage(step, srcs, name, params, pool)
        else:
            _map(_local_job, [(str(s), str(step / s.name), name, params) for s in srcs if not _done(step / s.name)],
                 pool)
        srcs = [step / s.name for s in srcs]
        records.append((name, _sum_stats(srcs, time.perf_counter() - t0)))
        if log:
            log(f"{name}: {records[-1][1]['docs_in']} -> {records[-1][1]['docs_out']} documents")
    return records


def _sum_stats(outs: list[Path], wall: float) -> dict:
    """Stats of one stage over all shards: counts and bytes summed, dropped ids concatenated."""
    total = dict(docs_in=0, docs_out=0, bytes_in=0, bytes_out=0, dropped=[], seconds=wall)
    for o in outs:
        s = json.loads(o.with_name(o.name + ".stats.json").read_text())
        for key in ("docs_in", "docs_out", "bytes_in", "bytes_out"):
            total[key] += s[key]
        total["dropped"] += s["dropped"]
    return total


def write_shards(docs: list[dict], out_dir: str | os.PathLike, n_shards: int, gz: bool = True) -> list[Path]:
    """Split documents into `n_shards` contiguous shards `shard-00000.jsonl(.gz)` (the crawl's layout)."""
    if n_shards < 1:
        raise MiniLLMError(f"n_shards must be >= 1, got {n_shards}")
    size = -(-len(docs) // n_shards) if docs else 0
    ext = ".jsonl.gz" if gz else ".jsonl"
    return [write_jsonl(Path(out_dir) / f"shard-{i:05d}{ext}", docs[i * size:(i + 1) * size]) for i in range(n_shards)]


