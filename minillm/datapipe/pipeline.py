"""The stage registry and the in-memory pipeline.

Builds `STAGES` (name -> stage function), `DEFAULT_STAGES` (the notes' order),
`parse_config` and `run_stages(pages, config)`. A config is a list of stage names
or {"stage": name, ...params} dicts, e.g.

    ["extract", "langid", "pii", "exact_dedup", {"stage": "minhash", "bands": 20, "rows": 5}]

The order follows the notes (crawl -> extract -> undesirable content and PII ->
dedup -> heuristic filters -> model-based filters -> domains), with one choice
made explicit: line dedup runs after near-dedup, because removing the lines that
near-duplicates share would hide them from MinHash.

Three stages need the whole corpus at once (`GLOBAL`): exact, near and line dedup.
For the sharded runner each is split into a per-document key, a decision over all
keys, and an apply step (`GLOBAL[name]`), so sharded output equals this one.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from minillm.datapipe import dedup, extract, langid, minhash, mixing, modelfilter, pii, quality
from minillm.datapipe.base import stage_stats
from minillm.utils import MiniLLMError


def _gopher_quality(docs: list[dict]) -> tuple[list[dict], dict]:
    """Gopher's quality rules alone (App. A.1.1)."""
    return quality.gopher_filter(docs, repetition=False)


def _gopher_repetition(docs: list[dict]) -> tuple[list[dict], dict]:
    """Gopher's repetition rules alone (Table A1)."""
    t0 = time.perf_counter()
    out = [d for d in docs if not quality.gopher_repetition_reasons(d["text"])]
    return out, stage_stats(docs, out, t0)


STAGES: dict[str, Callable] = {
    "extract": extract.extract,
    "langid": langid.langid_filter,
    "pii": pii.pii_mask,
    "exact_dedup": dedup.exact_dedup,
    "minhash": minhash.minhash_dedup,
    "line_dedup": dedup.line_dedup,
    "gopher_quality": _gopher_quality,
    "gopher_repetition": _gopher_repetition,
    "c4": quality.c4_filter,
    "classifier": modelfilter.classifier_filter,
    "perplexity": modelfilter.perplexity_filter,
    "domain": mixing.domain_tag,
}
DEFAULT_STAGES = ["extract", "langid", "pii", "exact_dedup", "minhash", "line_dedup",
                  "gopher_quality", "gopher_repetition", "c4", "classifier", "perplexity", "domain"]


@dataclasses.dataclass
class GlobalStage:
    """A corpus-wide stage in three steps: key(doc, **p), decide(list of (id, key), **p), apply(docs, decision)."""

    key: Callable
    decide: Callable
    apply: Callable


def _minhash_key(doc: dict, num_perm: int = 112, bands: int = 14, rows: int = 8, ngram: int = 5, seed: int = 1):
    return minhash.minhash_signature(doc["text"], minhash.permutations(num_perm, seed), ngram).tolist()


def _minhash_decide(keys: list, num_perm: int = 112, bands: int = 14, rows: int = 8, ngram: int = 5,
                    seed: int = 1) -> set[str]:
    if not keys:
        return set()
    sigs = np.array([k for _, k in keys], dtype=np.uint64)
    drop = minhash.clusters_to_drop(len(keys), minhash.candidate_pairs(sigs, bands, rows))
    return {keys[i][0] for i in drop}


GLOBAL: dict[str, GlobalStage] = {
    "exact_dedup": GlobalStage(lambda d: dedup.exact_key(d["text"]),
                               lambda keys: dedup.first_occurrences(keys),
                               lambda docs, drop: [d for d in docs if d["id"] not in drop]),
    "minhash": GlobalStage(_minhash_key, _minhash_decide,
                           lambda docs, drop: [d for d in docs if d["id"] not in drop]),
    "line_dedup": GlobalStage(lambda d, min_docs=3: sorted(dedup.line_keys(d["text"])),
                              lambda keys, min_docs=3: dedup.frequent_lines((set(k) for _, k in keys), min_docs),
                              lambda docs, frequent: dedup.remove_lines(docs, frequent)[0]),
}


def parse_config(config: list) -> list[tuple[str, dict]]:
    """[(stage name, params)]; one clear MiniLLMError for an unknown stage or a bad entry."""
    if not isinstance(config, list) or not config:
        raise MiniLLMError("a pipeline config is a non-empty list of stage names or {'stage': name, ...} dicts")
    out = []
    for entry in config:
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and isinstance(entry.get("stage"), str):
            name, params = entry["stage"], {k: v for k, v in entry.items() if k != "stage"}
        else:
            raise MiniLLMError(f"bad pipeline entry {entry!r}: use a stage name or {{'stage': name, ...}}")
        if name not in STAGES:
            raise MiniLLMError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}")
        out.append((name, params))
    if out[0][0] != "extract" and any(n == "extract" for n, _ in out):
        raise MiniLLMError("'extract' must come first: every other stage reads text, not HTML")
    return out


def run_stages(pages: list[dict], config: list | None = None) -> tuple[list[dict], list[tuple[str, dict]]]:
    """Run the stages in order over `pages` in memory: (final docs, [(stage name, stats)]).

    Example: `docs, records = run_stages(make_crawl(200)[0], ["extract", "exact_dedup"])`.
    """
    docs, records = pages, []
    for name, params in parse_config(config or DEFAULT_STAGES):
        try:
            docs, stats = STAGES[name](docs, **params)
        except TypeError as e:
            raise MiniLLMError(f"stage {name!r}: bad parameters {params}: {e}") from None
        records.append((name, stats))
    return docs, records
