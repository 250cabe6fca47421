"""Our stages on datatrove's executors (interop: needs `pip install datatrove`).

Builds `MiniLLMStage`, a datatrove `PipelineStep` that runs one of our document-local
stages (`pipeline.STAGES`, not the corpus-wide dedups) on the documents of one
datatrove task, and `datatrove_pipeline(input_dir, out_dir, stages)`, the list
`LocalPipelineExecutor` (or datatrove's Slurm/Ray executors) runs: JsonlReader ->
our stages -> JsonlWriter. datatrove is HF's engine behind FineWeb; its tasks are
our shards, its completion markers our stats files.

Left out: the corpus-wide stages. datatrove runs dedup as several executor passes
(signatures, buckets, clusters, filter); ours would be the same three steps as
`pipeline.GLOBAL` (keys, decide, apply), each pass one executor run - not wired here.
This module imports datatrove at the top: only the interop tests import it.
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from minillm.datapipe import pipeline
from minillm.utils import MiniLLMError


class MiniLLMStage(PipelineStep):
    """One of our stages as a datatrove step: the task's documents in, the kept ones out."""

    type = "minillm"

    def __init__(self, stage: str, **params):
        super().__init__()
        if stage not in pipeline.STAGES or stage in pipeline.GLOBAL:
            raise MiniLLMError(f"{stage!r} is not a document-local stage; datatrove runs those only")
        self.stage, self.params, self.name = stage, params, f"minillm {stage}"

    def run(self, data, rank: int = 0, world_size: int = 1):
        field = "html" if self.stage == "extract" else "text"
        docs = [{"id": d.id, field: d.text, **{k: v for k, v in d.metadata.items() if k != "file_path"}}
                for d in data]
        kept, stats = pipeline.STAGES[self.stage](docs, **self.params)
        self.stat_update("dropped", value=len(stats["dropped"]))
        for d in kept:
            meta = {k: v for k, v in d.items() if k not in ("id", "text")}
            yield Document(text=d["text"], id=d["id"], metadata=meta)


def datatrove_pipeline(input_dir: str, out_dir: str, stages: list) -> list:
    """Reader -> our document-local stages -> writer, for a datatrove executor.

    Input shards hold our crawl pages ({"id", "url", "html"}): "html" is read as the text.
    """
    steps = [MiniLLMStage(name, **params) for name, params in pipeline.parse_config(stages)]
    text_key = "html" if steps and steps[0].stage == "extract" else "text"
    return [JsonlReader(input_dir, text_key=text_key, glob_pattern="*.jsonl*", add_file_path=False), *steps,
            JsonlWriter(out_dir, output_filename="${rank}.jsonl.gz")]
