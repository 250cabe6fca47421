"""The corpus-wide stages on datatrove's executors, and a whole pipeline config as executor runs.

A dedup cannot decide inside one task: the copy of a page may sit in another task's
shard. datatrove therefore runs dedup as several executor runs that talk through
folders (its MinHash: signatures with tasks=N, buckets, clusters with tasks=1, filter
with tasks=N). Ours follow `pipeline.GLOBAL`, the same three steps our runner takes,
with our functions for every fact (hashes, signatures, banding, clusters):

    1. DedupKeys    tasks=N  per shard, GLOBAL[stage].key of each document -> NN-stage/keys/<shard>.keys.gz
    2. DedupDecide  tasks=1  all keys in shard-name order -> GLOBAL[stage].decide -> NN-stage/decision.json
    3. DedupApply   tasks=N  per shard, GLOBAL[stage].apply(docs, decision)

`datatrove_plan(input_dir, out_dir, config)` cuts a config (as `minillm datapipe run`
takes it) into runs: each per-shard run reads a folder, applies the previous dedup,
runs the document-local stages that follow, writes the next dedup's keys and its
output shards (`NN-stage/`, named as the input shards); each dedup adds one single-task
decide run. For ["extract", "pii", "exact_dedup", "minhash", "gopher_quality"]:

    run 1 (N)  read pages -> extract -> pii -> keys(exact_dedup) -> write 01-pii/
    run 2 (1)  decide exact_dedup
    run 3 (N)  read 01-pii/ -> apply exact_dedup -> keys(minhash) -> write 02-exact_dedup/
    run 4 (1)  decide minhash
    run 5 (N)  read 02-exact_dedup/ -> apply minhash -> gopher_quality -> write 04-gopher_quality/

The keys are decided in shard-name order whatever the number of tasks, so the output
is byte-identical to `runner.run_sharded`'s (the same files in the folders both write).
`run_datatrove` runs the plan with `LocalPipelineExecutor`s chained by `depends=`;
datatrove's Slurm and Ray executors take the same runs. A rerun skips the tasks
datatrove marked complete (give it the same number of tasks). Left out: datatrove's
hash-range buckets that let step 2 run on many tasks, and an index of earlier corpora.
Like datatrove_steps, this module imports datatrove at the top (interop only).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from minillm.datapipe import pipeline, runner
from minillm.datapipe.datatrove_steps import MiniLLMStage, ShardReader, ShardStep, ShardWriter
from minillm.utils import MiniLLMError, atomic_write


def keys_path(keys_dir: str | Path, shard: str) -> Path:
    """Where step 1 writes a shard's keys (the runner's layout)."""
    return Path(keys_dir) / (shard + ".keys.gz")


class DedupKeys(ShardStep):
    """Step 1: the (id, key) of every document of a shard, in order; the documents pass on unchanged."""

    def __init__(self, stage: str, params: dict, source: str | Path, keys_dir: str | Path):
        super().__init__(source)
        self.stage, self.params, self.keys_dir = stage, params, str(keys_dir)
        self.name = f"minillm {stage} 1/3 keys"

    def process(self, shard: str | None, docs: list[dict]) -> list[dict]:
        keys = [(d["id"], pipeline.GLOBAL[self.stage].key(d, **self.params)) for d in docs]
        data = gzip.compress(json.dumps(keys).encode(), mtime=0)
        atomic_write(keys_path(self.keys_dir, shard), lambda tmp: Path(tmp).write_bytes(data))
        return docs


class DedupDecide(PipelineStep):
    """Step 2 (one task): every shard's keys in shard-name order -> the sorted decision, as JSON."""

    type = "minillm"

    def __init__(self, stage: str, params: dict, source: str | Path, keys_dir: str | Path,
                 decision_path: str | Path):
        super().__init__()
        self.stage, self.params, self.source = stage, params, str(source)
        self.keys_dir, self.decision_path = str(keys_dir), str(decision_path)
        self.name = f"minillm {stage} 2/3 decide"

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        if world_size != 1:
            raise MiniLLMError(f"the {self.stage} decision sees all keys at once: run it with tasks=1")
        keys = []
        for shard in runner.list_shards(self.source):
            path = keys_path(self.keys_dir, shard.name)
            if not path.is_file():
                raise MiniLLMError(f"{path} is missing: step 1 of {self.stage} has not finished every shard")
            keys += [tuple(k) for k in json.loads(gzip.decompress(path.read_bytes()))]
        decision = sorted(pipeline.GLOBAL[self.stage].decide(keys, **self.params))
        atomic_write(self.decision_path, lambda tmp: Path(tmp).write_text(json.dumps(decision)))
        self.stat_update("keys", value=len(keys))
        self.stat_update("decided", value=len(decision))


class DedupApply(ShardStep):
    """Step 3: a shard's documents with the decision applied (ids dropped, or frequent lines removed)."""

    def __init__(self, stage: str, decision_path: str | Path):
        super().__init__()
        self.stage, self.decision_path, self._decision = stage, str(decision_path), None
        self.name = f"minillm {stage} 3/3 apply"

    def process(self, shard: str | None, docs: list[dict]) -> list[dict]:
        if self._decision is None:  # read once per task, when its first shard arrives
            self._decision = set(json.loads(Path(self.decision_path).read_text()))
        return pipeline.GLOBAL[self.stage].apply(docs, self._decision)


@dataclasses.dataclass
class Run:
    """One executor run: a label (its logging folder), its steps, one task per shard or a single task."""

    label: str
    steps: list
    per_shard: bool


def datatrove_plan(input_dir: str | Path, out_dir: str | Path, config: list | None = None) -> list[Run]:
    """The executor runs of a whole config, in order (see the module docstring); the last one writes the output."""
    stages = pipeline.parse_config(config or pipeline.DEFAULT_STAGES)
    out, src = Path(out_dir), Path(input_dir)
    field = "html" if stages[0][0] == "extract" else "text"   # pages hold HTML until extract
    runs, apply, body, last = [], [], [], None
    for k, (name, params) in enumerate(stages):
        step = out / f"{k:02d}-{name}"
        if name not in pipeline.GLOBAL:
            body.append(MiniLLMStage(name, **params))
            last = step
            continue
        steps = [ShardReader(src, field), *apply, *body, DedupKeys(name, params, src, step / "keys")]
        if apply or body:   # this run changed the documents: write them for the next run
            steps.append(ShardWriter(src, last))
        runs.append(Run(f"{k:02d}-{name}-1-keys", steps, True))
        runs.append(Run(f"{k:02d}-{name}-2-decide",
                        [DedupDecide(name, params, src, step / "keys", step / "decision.json")], False))
        if apply or body:
            src, field = last, "text"
        apply, body, last = [DedupApply(name, step / "decision.json")], [], step
    runs.append(Run(f"{len(stages) - 1:02d}-{stages[-1][0]}-output",
                    [ShardReader(src, field), *apply, *body, ShardWriter(src, last)], True))
    return runs


def run_datatrove(input_dir: str | Path, out_dir: str | Path, config: list | None = None,
                  tasks: int | None = None, workers: int = 1) -> Path:
    """Run a whole config on datatrove's LocalPipelineExecutor; returns the folder of the final shards.

    `tasks` defaults to one per input shard; `workers` tasks run at once, in processes.
    Example: `run_datatrove("crawl/pages", "runs/dt", ["extract", "exact_dedup", "minhash"], workers=2)`.
    """
    shards, out = runner.list_shards(input_dir), Path(out_dir)
    if out.resolve() == Path(input_dir).resolve() or Path(input_dir).resolve() in out.resolve().parents:
        raise MiniLLMError("the output folder must not be (inside) the input folder: inputs are never written")
    tasks = len(shards) if tasks is None else tasks
    if not isinstance(tasks, int) or tasks < 1 or not isinstance(workers, int) or workers < 1:
        raise MiniLLMError(f"tasks and workers must be positive integers, got {tasks!r} and {workers!r}")
    runs, executor = datatrove_plan(input_dir, out, config), None
    for run in runs:
        n = tasks if run.per_shard else 1
        executor = LocalPipelineExecutor(run.steps, tasks=n, workers=min(workers, n), depends=executor,
                                         logging_dir=str(out / "datatrove-logs" / run.label))
    executor.run()   # runs the runs it depends on first, in order
    return Path(runs[-1].steps[-1].folder)
