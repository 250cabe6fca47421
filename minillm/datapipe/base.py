"""What every stage shares: its statistics record.

A stage is a plain function `stage(docs, **params) -> (kept_docs, stats)` over
documents, dicts with at least "id" and "text". Its stats are the same keys for
every stage (plus any the stage adds): documents and UTF-8 bytes in and out, the
ids it dropped (the metrics compare them with the truth) and its wall time.
"""

from __future__ import annotations

import time


def text_bytes(docs: list[dict]) -> int:
    """UTF-8 bytes of the documents' text."""
    return sum(len(d["text"].encode("utf-8", errors="replace")) for d in docs)


def stage_stats(docs_in: list[dict], docs_out: list[dict], t0: float, **extra) -> dict:
    """The common stats of one stage run: counts, bytes, dropped ids, seconds since `t0`."""
    kept = {d["id"] for d in docs_out}
    return dict(docs_in=len(docs_in), docs_out=len(docs_out), bytes_in=text_bytes(docs_in),
                bytes_out=text_bytes(docs_out), dropped=[d["id"] for d in docs_in if d["id"] not in kept],
                seconds=time.perf_counter() - t0, **extra)
