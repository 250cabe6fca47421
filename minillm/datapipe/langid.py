"""Language identification: a character n-gram naive Bayes classifier, trained on generated text.

Builds `train_langid(texts_by_lang)` -> `LangId`, whose `predict(text)` returns
(language, probability), and the stage `langid_filter(docs, model, keep="en")`.
It follows the idea behind langid.py and fastText's lid.176 model: a language
leaves fingerprints in its letter sequences ("the", "sch", "ção"), so counts of
character 1-3-grams per language are enough to tell languages apart on a page.

    score(lang) = log p(lang) + sum over n-grams g of the text: log p(g | lang)
    p(g | lang) = (count(g, lang) + 1) / (total(lang) + |vocabulary|)   (add-one)

The probability is the softmax of the scores divided by the number of n-grams
(a per-n-gram average, so that a long page is not infinitely confident).
Left out: scripts other than Latin, the hundreds of languages of a real model.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections import Counter

from minillm import world
from minillm.datapipe import crawl
from minillm.datapipe.base import stage_stats
from minillm.utils import MiniLLMError


def char_ngrams(text: str, n_max: int = 3) -> list[str]:
    """Character 1..n_max-grams of the lower-cased text, padded with spaces.

    Example: `char_ngrams("Ab", 2)` -> [' ', 'a', 'b', ' ', ' a', 'ab', 'b '].
    """
    t = f" {' '.join(text.lower().split())} "
    return [t[i:i + n] for n in range(1, n_max + 1) for i in range(len(t) - n + 1)]


class LangId:
    """Naive Bayes over character n-grams (see the module docstring)."""

    def __init__(self, counts: dict[str, Counter], n_max: int = 3):
        self.n_max = n_max
        self.langs = sorted(counts)
        vocab = set().union(*counts.values())
        self.logp, self.unseen = {}, {}
        for lang in self.langs:
            total = sum(counts[lang].values()) + len(vocab) + 1
            self.logp[lang] = {g: math.log((c + 1) / total) for g, c in counts[lang].items()}
            self.unseen[lang] = math.log(1 / total)

    def scores(self, text: str) -> dict[str, float]:
        """Mean log p(n-gram | lang) per language (uniform prior)."""
        grams = char_ngrams(text[:2000], self.n_max)  # the first 2000 characters are plenty
        if not grams:
            return {lang: 0.0 for lang in self.langs}
        return {lang: sum(self.logp[lang].get(g, self.unseen[lang]) for g in grams) / len(grams)
                for lang in self.langs}

    def predict(self, text: str) -> tuple[str, float]:
        """(most likely language, its probability). Example: `predict("Es war einmal")` -> ('de', ...)."""
        s = self.scores(text)
        top = max(s.values())
        z = sum(math.exp(50 * (v - top)) for v in s.values())  # 50: a temperature, per-n-gram means are close
        best = max(s, key=s.get)
        return best, 1.0 / z


def train_langid(texts_by_lang: dict[str, list[str]], n_max: int = 3) -> LangId:
    """Count n-grams per language. `texts_by_lang`: {"en": [...], "de": [...]}."""
    if len(texts_by_lang) < 2:
        raise MiniLLMError("language identification needs training text for at least two languages")
    return LangId({lang: Counter(g for t in texts for g in char_ngrams(t, n_max))
                   for lang, texts in texts_by_lang.items()}, n_max)


@functools.lru_cache(maxsize=4)
def default_langid(seed: int = 12345, n: int = 200) -> LangId:
    """A classifier trained on fresh generated text: TinyWorld (en) and the crawl's German
    and Portuguese templates, from seeds the crawl does not use."""
    rng = random.Random(f"langid/{seed}")
    texts = {"en": [s.text for s in world.generate(n, seed=seed, split="langid")]}
    for lang in crawl.LANGS:
        texts[lang] = [crawl.foreign_story(rng, lang) for _ in range(n)]
    return train_langid(texts)


def langid_filter(docs: list[dict], model: LangId | None = None, keep: str = "en",
                  min_prob: float = 0.5) -> tuple[list[dict], dict]:
    """Stage: keep documents whose language is `keep` with probability >= `min_prob`."""
    t0 = time.perf_counter()
    model = model or default_langid()
    out, found = [], Counter()
    for d in docs:
        lang, p = model.predict(d["text"])
        found[lang] += 1
        if lang == keep and p >= min_prob:
            out.append(d)
    return out, stage_stats(docs, out, t0, languages=dict(found))
