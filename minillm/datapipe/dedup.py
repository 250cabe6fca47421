"""Exact deduplication: whole documents by hash, and lines repeated across the corpus.

Builds the stages `exact_dedup(docs)` and `line_dedup(docs, min_docs)`, each
split into the two halves a sharded runner needs: a *key* step that looks at one
document (`exact_key`, `line_keys`) and a *decision* over all keys of the corpus
(`first_occurrences`, `frequent_lines`), so that a duplicate split over two shards
is found exactly as in memory.

- Exact: documents whose whitespace-normalised text has the same SHA-1 are copies;
  the first in corpus order is kept (mirrors and re-crawls are byte-for-byte copies).
- Lines: a line found in `min_docs` or more documents is boilerplate (a footer, "Share
  this story") and is removed everywhere; a document left empty is dropped. This is
  the idea of CCNet's paragraph dedup (Wenzek et al. 2020) and Dolma's line dedup;
  Gopher (Rae et al. 2021) uses the same duplicate-line statistic as a filter.

Left out: substring dedup with suffix arrays (Lee et al. 2022), Bloom filters for
corpora that do not fit a set in memory.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from typing import Iterable

from minillm.datapipe.base import stage_stats


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", errors="replace")).hexdigest()


def exact_key(text: str) -> str:
    """SHA-1 of the text with whitespace runs collapsed. Example: "a  b" and "a b" share a key."""
    return _sha1(" ".join(text.split()))


def first_occurrences(keys: Iterable[tuple[str, str]]) -> set[str]:
    """Ids to drop: every (id, key) whose key was seen before, in the given order."""
    seen, drop = set(), set()
    for doc_id, key in keys:
        if key in seen:
            drop.add(doc_id)
        seen.add(key)
    return drop


def exact_dedup(docs: list[dict]) -> tuple[list[dict], dict]:
    """Stage: keep the first document of every group with the same `exact_key`."""
    t0 = time.perf_counter()
    drop = first_occurrences((d["id"], exact_key(d["text"])) for d in docs)
    out = [d for d in docs if d["id"] not in drop]
    return out, stage_stats(docs, out, t0)


def line_keys(text: str) -> set[str]:
    """The set of (normalised) line hashes of one document: a line counts once per document."""
    return {_sha1(" ".join(line.split())) for line in text.split("\n") if line.strip()}


def frequent_lines(per_doc_keys: Iterable[set[str]], min_docs: int) -> set[str]:
    """Line hashes found in at least `min_docs` documents."""
    counts = Counter(k for keys in per_doc_keys for k in keys)
    return {k for k, c in counts.items() if c >= min_docs}


def remove_lines(docs: list[dict], frequent: set[str]) -> tuple[list[dict], int]:
    """Drop the frequent lines from each document; (documents left non-empty, lines removed)."""
    out, removed = [], 0
    for d in docs:
        lines = [line for line in d["text"].split("\n") if line.strip()]
        keep = [line for line in lines if _sha1(" ".join(line.split())) not in frequent]
        removed += len(lines) - len(keep)
        if keep:
            out.append({**d, "text": "\n".join(keep)})
    return out, removed


def line_dedup(docs: list[dict], min_docs: int = 3) -> tuple[list[dict], dict]:
    """Stage: remove every line that appears in `min_docs` or more documents.

    Example: three pages ending in "Share this story!" lose that line, and keep the rest.
    """
    t0 = time.perf_counter()
    frequent = frequent_lines((line_keys(d["text"]) for d in docs), min_docs)
    out, removed = remove_lines(docs, frequent)
    return out, stage_stats(docs, out, t0, lines_removed=removed, frequent_lines=len(frequent))
