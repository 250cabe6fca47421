"""Our stages as datatrove pipeline steps (interop: needs `pip install datatrove`).

datatrove is HF's engine behind FineWeb: a pipeline is a list of `PipelineStep`s that
pass `Document`s along, and an executor (local, Slurm, Ray) runs that list as `tasks`
independent tasks. This module builds the document-local steps:

- `ShardReader(folder)` reads our shards with `runner.read_jsonl` (task r takes shards
  r, r + tasks, ... - datatrove's rule) and tags each document with its shard's name;
- `MiniLLMStage(stage, **params)` runs one of our document-local stages
  (`pipeline.STAGES`) once per shard, exactly as our runner does;
- `ShardWriter(source, folder)` writes one output shard per input shard with
  `runner.write_jsonl` (empty shards too), so its files are byte-identical to ours;
- `datatrove_pipeline(input_dir, out_dir, stages)`: the one-run pipeline with
  datatrove's own JsonlReader/JsonlWriter, for document-local configs.

The corpus-wide stages (exact, near and line dedup) need several executor runs; they
are in `datatrove_dedup.py`, which also runs a whole config. Left out: datatrove's
own readers for the multi-run pipeline (its JsonlReader skips documents whose text
is empty, ours keeps them). This module imports datatrove at the top: only the
interop code and tests import it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.typeshelper import StatHints

from minillm.datapipe import pipeline, runner
from minillm.utils import MiniLLMError

SHARD = "file_path"  # the metadata key of a document's shard name (datatrove's readers put the file there)


def to_document(d: dict, shard: str | None, field: str = "text") -> Document:
    """Our document dict as a datatrove Document: d[field] is its text, the other keys its metadata.

    Example: {"id": "p1", "url": "u", "text": "hi"} -> Document(text="hi", id="p1", metadata={"url": "u"}).
    """
    if field not in d:
        raise MiniLLMError(f"document {d.get('id')!r} in {shard} has no {field!r} field")
    meta = {k: v for k, v in d.items() if k not in ("id", field)}
    if shard is not None:
        meta[SHARD] = shard
    return Document(text=d[field], id=d["id"], metadata=meta)


def to_dict(doc: Document, field: str = "text") -> dict:
    """The inverse of `to_document` (the shard tag dropped): what our stage functions take."""
    return {"id": doc.id, field: doc.text, **{k: v for k, v in doc.metadata.items() if k != SHARD}}


def rank_shards(folder: str | Path, rank: int, world_size: int) -> list[Path]:
    """The shards of task `rank` of `world_size`: every world_size-th name from `rank` (datatrove's get_shard)."""
    return runner.list_shards(folder)[rank::world_size]


class ShardReader(PipelineStep):
    """Reads task `rank`'s shards of `folder`; `field` names the key read as the text ("html" for pages)."""

    type, name = "minillm", "shard reader"

    def __init__(self, folder: str | Path, field: str = "text"):
        super().__init__()
        self.folder, self.field = str(folder), field

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for path in rank_shards(self.folder, rank, world_size):
            for d in runner.read_jsonl(path):
                self.stat_update(StatHints.total)
                yield to_document(d, path.name, self.field)


class ShardStep(PipelineStep):
    """Base of our steps: `process(shard, docs)` once per shard, on our dicts, as the runner calls a stage.

    Documents arrive grouped by shard (a task reads its shards one after the other). With a
    `source` folder, shards of this task that no document reached are processed too, empty:
    a writer then still writes their (empty) output, as our runner does.
    """

    type = "minillm"
    field = "text"  # the document key that Document.text fills

    def __init__(self, source: str | Path | None = None):
        super().__init__()
        self.source = None if source is None else str(source)

    def process(self, shard: str | None, docs: list[dict]) -> list[dict]:
        raise NotImplementedError

    def run(self, data, rank: int = 0, world_size: int = 1):
        seen = set()
        for shard, group in itertools.groupby(data or (), key=lambda doc: doc.metadata.get(SHARD)):
            seen.add(shard)
            docs = [to_dict(doc, self.field) for doc in group]
            kept = self.process(shard, docs)
            self.stat_update(StatHints.total, value=len(docs))
            self.stat_update(StatHints.forwarded, value=len(kept))
            self.stat_update(StatHints.dropped, value=len(docs) - len(kept))
            for d in kept:
                yield to_document(d, shard)
        if self.source is not None:
            for path in rank_shards(self.source, rank, world_size):
                if path.name not in seen:
                    self.process(path.name, [])


class MiniLLMStage(ShardStep):
    """One of our document-local stages as a datatrove step: a shard's documents in, the kept ones out."""

    def __init__(self, stage: str, **params):
        super().__init__()
        if stage not in pipeline.STAGES or stage in pipeline.GLOBAL:
            raise MiniLLMError(f"{stage!r} is not a document-local stage; the corpus-wide ones are "
                               "datatrove_dedup's runs (run_datatrove runs a whole config)")
        self.stage, self.params, self.name = stage, params, f"minillm {stage}"
        self.field = "html" if stage == "extract" else "text"

    def process(self, shard: str | None, docs: list[dict]) -> list[dict]:
        return pipeline.STAGES[self.stage](docs, **self.params)[0]


class ShardWriter(ShardStep):
    """Writes each shard's documents to `folder`/<shard name> with our `write_jsonl` (atomic, same bytes)."""

    name = "shard writer"

    def __init__(self, source: str | Path, folder: str | Path):
        super().__init__(source)
        self.folder = str(folder)

    def process(self, shard: str | None, docs: list[dict]) -> list[dict]:
        runner.write_jsonl(Path(self.folder) / shard, docs)
        return docs


def datatrove_pipeline(input_dir: str, out_dir: str, stages: list) -> list:
    """Reader -> our document-local stages -> writer, with datatrove's own JsonlReader and JsonlWriter.

    Input shards hold our crawl pages ({"id", "url", "html"}): "html" is read as the text.
    One executor run; a task is one group for the stages (its shards together).
    """
    steps = [MiniLLMStage(name, **params) for name, params in pipeline.parse_config(stages)]
    text_key = "html" if steps and steps[0].stage == "extract" else "text"
    return [JsonlReader(input_dir, text_key=text_key, glob_pattern="*.jsonl*", add_file_path=False), *steps,
            JsonlWriter(out_dir, output_filename="${rank}.jsonl.gz")]
