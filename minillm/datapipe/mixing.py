"""Domains and mixing: tag each document with a domain, then sample to target weights.

Builds `classify_domain(text)`, `mix(docs, weights, total_bytes, seed)` and the
stage `domain_tag(docs)`. The notes' last step: "classify the data into domains
(books, code, entertainment) and raise or lower each domain's weight". Real
pipelines use a classifier (the Pile and Dolma tag by source, DoReMi learns the
weights); our crawl has two domains, plain stories and question-answer pages,
and a rule tells them apart: a page with two or more "Q: ... A: ..." lines is "qa".

Mixing samples documents per domain, with replacement once a domain is used up
(an epoch over it), until each domain has its share of `total_bytes`; the
realised mixture (bytes per domain, and how many epochs each domain was repeated)
is reported, because weights that ask for more than a domain holds mean repetition.
Left out: learned weights (DoReMi, RegMix), temperature sampling over languages.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from minillm.datapipe.base import stage_stats, text_bytes
from minillm.utils import MiniLLMError


def classify_domain(text: str) -> str:
    """'qa' if >= 2 lines start with "Q:", else 'stories'."""
    return "qa" if sum(line.startswith("Q:") for line in text.split("\n")) >= 2 else "stories"


def domain_tag(docs: list[dict]) -> tuple[list[dict], dict]:
    """Stage: add "domain" to every document (none is dropped)."""
    t0 = time.perf_counter()
    out = [{**d, "domain": classify_domain(d["text"])} for d in docs]
    return out, stage_stats(docs, out, t0, domains=dict(Counter(d["domain"] for d in out)))


def mix(docs: list[dict], weights: dict[str, float], total_bytes: int, seed: int = 0
        ) -> tuple[list[dict], dict]:
    """Sample documents so that domain k gets about weights[k] / sum(weights) of `total_bytes`.

    Returns (sampled docs, report) where report[k] = dict(target, realised bytes, epochs).
    Example: `mix(docs, {"stories": 0.8, "qa": 0.2}, 10**6)`.
    """
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise MiniLLMError(f"mixing weights must be non-negative and not all zero, got {weights}")
    by_domain: dict[str, list[dict]] = {}
    for d in docs:
        by_domain.setdefault(d.get("domain") or classify_domain(d["text"]), []).append(d)
    rng, total_w = random.Random(f"mix/{seed}"), sum(weights.values())
    out, report = [], {}
    for dom, w in sorted(weights.items()):
        pool, target = by_domain.get(dom, []), int(total_bytes * w / total_w)
        if target and not pool:
            raise MiniLLMError(f"mixing asks for domain {dom!r} but no document has it")
        got, taken, order = 0, 0, []
        while got < target:
            if not order:  # a new epoch over the domain, in a fresh random order
                order = rng.sample(pool, len(pool))
            d = order.pop()
            out.append(d)
            got, taken = got + len(d["text"].encode("utf-8")) + 1, taken + 1
        report[dom] = dict(target=target, realised=got, epochs=taken / max(len(pool), 1),
                           available=text_bytes(pool))
    rng.shuffle(out)
    return out, report
