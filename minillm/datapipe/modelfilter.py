"""Model-based quality filters: "does this look like the reference text?"

Builds two filters that learn what good text looks like from a *reference*
corpus (clean TinyWorld, playing the part Wikipedia plays in the notes):

- `HashedLogReg`: a linear classifier over hashed word 1-2-grams (fastText-style
  features, the hashing trick of Weinberger et al. 2009), trained by gradient
  descent to tell reference pages (label 1) from raw crawl pages (label 0) - the
  GPT-3 / LLaMA recipe ("classify as Wikipedia-referenced or not"). The stage
  `classifier_filter` keeps pages with p(reference) >= threshold.
- `NgramLM`: a word bigram model interpolated with unigrams (Jelinek-Mercer) fitted
  on the reference text; the stage `perplexity_filter` keeps pages whose perplexity
  is at most the given percentile of held-out reference pages' - CCNet's idea
  (Wenzek et al. 2020: a KenLM 5-gram on Wikipedia, pages bucketed by perplexity).

Both are trained on data the pipeline never sees: fresh TinyWorld stories and a
crawl from another seed (`default_models`). Left out: fastText itself (subword
embeddings), KenLM's modified Kneser-Ney smoothing, DCLM-style model choice.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import re
import time
import zlib
from collections import Counter

import numpy as np

from minillm import world
from minillm.datapipe import crawl, extract
from minillm.datapipe.base import stage_stats

_WORD = re.compile(r"\w+|[^\w\s]")


def words_of(text: str) -> list[str]:
    """Lower-cased words and punctuation marks. Example: "Hi, Bo." -> ['hi', ',', 'bo', '.']."""
    return _WORD.findall(text.lower())


def hashed_features(text: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket ids, values) of the word 1- and 2-grams hashed into `dim` buckets, L2-normalised."""
    w = words_of(text)
    grams = w + [a + " " + b for a, b in zip(w, w[1:])]
    counts = Counter(zlib.crc32(g.encode()) % dim for g in grams)
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    idx = np.fromiter(counts.keys(), dtype=np.int64)
    val = np.fromiter(counts.values(), dtype=float)
    return idx, val / np.linalg.norm(val)


class HashedLogReg:
    """Logistic regression p(reference | text) = sigmoid(w . x(text) + b) over hashed n-grams."""

    def __init__(self, dim: int = 1 << 16):
        self.dim, self.w, self.b = dim, np.zeros(dim), 0.0

    def _batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feats = [hashed_features(t, self.dim) for t in texts]
        doc = np.concatenate([np.full(len(i), k) for k, (i, _) in enumerate(feats)] + [np.zeros(0, int)])
        idx = np.concatenate([i for i, _ in feats] + [np.zeros(0, int)])
        val = np.concatenate([v for _, v in feats] + [np.zeros(0)])
        return doc.astype(np.int64), idx, val

    def fit(self, texts: list[str], labels: list[int], steps: int = 300, lr: float = 2.0, l2: float = 1e-4):
        """Full-batch gradient descent on the mean log loss plus (l2/2)|w|^2."""
        doc, idx, val = self._batch(texts)
        y, n = np.asarray(labels, dtype=float), len(texts)
        for _ in range(steps):
            z = np.bincount(doc, weights=self.w[idx] * val, minlength=n) + self.b  # (n,) scores
            g = 1.0 / (1.0 + np.exp(-z)) - y                                     # dloss/dz
            self.w -= lr * (np.bincount(idx, weights=g[doc] * val, minlength=self.dim) / n + l2 * self.w)
            self.b -= lr * g.mean()
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(len(texts),) p(reference)."""
        doc, idx, val = self._batch(texts)
        z = np.bincount(doc, weights=self.w[idx] * val, minlength=len(texts)) + self.b
        return 1.0 / (1.0 + np.exp(-z))


class NgramLM:
    """Word bigram LM, interpolated: p(w | v) = l2 c(v,w)/c(v) + l1 c(w)/N + l0 / V."""

    def __init__(self, texts: list[str], lambdas: tuple[float, float, float] = (0.6, 0.35, 0.05)):
        self.l2, self.l1, self.l0 = lambdas
        self.uni, self.bi = Counter(), Counter()
        for t in texts:
            w = ["<s>"] + words_of(t)
            self.uni.update(w)
            self.bi.update(zip(w, w[1:]))
        self.total = sum(self.uni.values())
        self.vocab = len(self.uni) + 1  # + 1: the unknown word

    def perplexity(self, text: str) -> float:
        """exp of the mean negative log-prob per word (first 1000 words)."""
        w = ["<s>"] + words_of(text)[:1000]
        if len(w) < 2:
            return float("inf")
        nll = 0.0
        for v, x in zip(w, w[1:]):
            p2 = self.bi[(v, x)] / self.uni[v] if self.uni[v] else 0.0
            nll -= math.log(self.l2 * p2 + self.l1 * self.uni[x] / self.total + self.l0 / self.vocab)
        return math.exp(nll / (len(w) - 1))


def reference_pages(n: int, seed: int, split: str) -> list[str]:
    """Clean pages of 1-6 TinyWorld stories, one per line, 15% with question-answer lines:
    what a good page holds, without its boilerplate."""
    rng, stories = random.Random(f"reference/{seed}/{split}"), world.iter_stories(7 * n, seed, split)
    pages = []
    for _ in range(n):
        page = [next(stories) for _ in range(rng.randrange(1, 7))]
        qa = crawl.qa_lines(page[0].facts) if rng.random() < 0.15 else []
        pages.append("\n".join([s.text for s in page] + qa))
    return pages


@dataclasses.dataclass
class QualityModels:
    """The two filters' models and their scores on held-out reference pages (to set cut-offs)."""

    classifier: HashedLogReg
    lm: NgramLM
    heldout_scores: np.ndarray       # p(reference) of held-out reference pages
    heldout_perplexity: np.ndarray   # perplexity of the same pages


@functools.lru_cache(maxsize=4)
def default_models(seed: int = 4242, n: int = 400) -> QualityModels:
    """Models trained on data the pipeline never sees: reference pages from TinyWorld split
    "reference" and the extracted pages of a crawl with another seed (its good pages too:
    the classifier learns what raw crawl text looks like, as GPT-3's did)."""
    good = reference_pages(n, seed, "reference")
    bad = [d["text"] for d in extract.extract(crawl.make_crawl(n, seed=seed)[0])[0]]
    clf = HashedLogReg().fit(good + bad, [1] * len(good) + [0] * len(bad))
    lm = NgramLM(good)
    held = reference_pages(200, seed, "reference_heldout")
    return QualityModels(clf, lm, clf.predict_proba(held), np.array([lm.perplexity(t) for t in held]))


def classifier_filter(docs: list[dict], percentile: float = 1.0, models: QualityModels | None = None
                      ) -> tuple[list[dict], dict]:
    """Stage: keep pages scoring at least the `percentile` of held-out reference pages' scores
    (1.0: the cut-off that keeps 99% of reference pages)."""
    t0 = time.perf_counter()
    models = models or default_models()
    cut = float(np.percentile(models.heldout_scores, percentile))
    p = models.classifier.predict_proba([d["text"] for d in docs]) if docs else np.zeros(0)
    out = [d for d, q in zip(docs, p) if q >= cut]
    return out, stage_stats(docs, out, t0, min_score=cut)


def perplexity_filter(docs: list[dict], percentile: float = 99.0, models: QualityModels | None = None
                      ) -> tuple[list[dict], dict]:
    """Stage: keep pages with perplexity <= the `percentile` of held-out reference pages'."""
    t0 = time.perf_counter()
    models = models or default_models()
    lm, cut = models.lm, float(np.percentile(models.heldout_perplexity, percentile))
    out = [d for d in docs if lm.perplexity(d["text"]) <= cut]
    return out, stage_stats(docs, out, t0, max_perplexity=cut)
