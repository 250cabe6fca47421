"""Heuristic quality filters with the published rules and thresholds: Gopher and C4.

Builds `gopher_quality_reasons`, `gopher_repetition_reasons`, `c4_clean` and the
stages `gopher_filter(docs)` and `c4_filter(docs)`. Each rule returns a reason
string when it fires, so the stats say which rule dropped what.

Gopher (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", Appendix A.1.1 quality filters and Table A1 repetition):

    words                      keep 50 <= n <= 100,000
    mean word length           keep 3 <= mean <= 10 characters
    symbol-to-word ratio       drop if (#"#" + #"...") / words > 0.1
    bullet lines               drop if > 90% of lines start with a bullet
    ellipsis lines             drop if > 30% of lines end with "..." or "…"
    alphabetic words           drop if < 80% of words contain a letter
    stop words                 drop if fewer than 2 of: the, be, to, of, and, that, have, with
    duplicate lines            drop if > 30% of lines (or > 20% of characters in them) repeat
    duplicate paragraphs       same with 30% / 20% ("\\n\\n"-separated)
    top n-gram                 drop if the most frequent n-gram covers > 20% / 18% / 16%
                               of the characters (n = 2 / 3 / 4)
    duplicate n-grams          drop if repeated n-grams cover > 15, 14, 13, 12, 11, 10%
                               of the characters (n = 5 .. 10)

C4 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning ...", Sec. 2.2):
keep only lines ending in terminal punctuation (. ! ? ") with at least 3 words;
drop lines with "javascript" and cookie/policy notices (the list of TensorFlow
Datasets' c4_utils); drop pages with fewer than 5 sentences, "lorem ipsum", a curly
bracket "{", or a word of a block list. C4's block list (LDNOOBW) is not shipped:
`BLOCKLIST` is a stand-in of two spam words; pass your own list as a file, one word or
phrase a line, with {"stage": "c4", "blocklist_file": "words.txt"} in a pipeline config.
Left out: C4's three-sentence-span dedup (dedup.py does line dedup), citation-marker removal.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from pathlib import Path

from minillm.datapipe.base import stage_stats
from minillm.utils import MiniLLMError

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
TOP_NGRAM_MAX = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAM_MAX = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "*", "-", "–")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
BLOCKLIST = ("casino", "viagra")  # a stand-in for C4's LDNOOBW list, which we do not ship
TERMINAL = (".", "!", "?", '"')


def top_ngram_char_fraction_reference(text: str, n: int) -> float:
    """Characters covered by the most frequent word n-gram, over the characters of the text.

    Words are the whitespace-separated pieces; an n-gram's length is that of its words
    joined by single spaces; the fraction is length x count / len(text) (datatrove's
    reading of Gopher); 0 when there are fewer than n words.
    Example: "a b a b", n=2: "a b" (3 characters) is the top 2-gram, twice -> 6/7.
    """
    ### BEGIN SOLUTION name=quality.top_ngram points=2
    ### HINT: count every run of n consecutive words in a dict; which one has the largest count?
    words = text.split()
    if len(words) < n:
        return 0.0
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
    best = max(counts, key=lambda g: counts[g])
    return len(" ".join(best)) * counts[best] / len(text)
    ### END SOLUTION


def top_ngram_char_fraction(text: str, n: int) -> float:
    """The fast path: `Counter` over zipped word lists, the same number."""
    words = text.split()
    if len(words) < n:
        return 0.0
    gram, count = Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0]
    return len(" ".join(gram)) * count / len(text)


def dup_ngram_char_fraction(text: str, n: int) -> float:
    """Characters of the words covered by an n-gram seen earlier in the text, over len(text).

    Each word counts once even when several repeated n-grams cover it (Gopher: "characters
    contained within all duplicate n-grams"). Example: "a b c a b c", n=3 -> 3/11.
    """
    words = text.split()
    if len(words) < n:
        return 0.0
    seen, dup = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            dup[i:i + n] = [True] * n
        seen.add(gram)
    return sum(len(w) for w, d in zip(words, dup) if d) / len(text)


def _dup_fractions(parts: list[str], n_chars: int) -> tuple[float, float]:
    """(fraction of parts that repeat an earlier part, their characters over `n_chars`)."""
    seen, n_dup, c_dup = set(), 0, 0
    for p in parts:
        if p in seen:
            n_dup, c_dup = n_dup + 1, c_dup + len(p)
        seen.add(p)
    return (n_dup / len(parts) if parts else 0.0), (c_dup / n_chars if n_chars else 0.0)


def gopher_quality_reasons(text: str) -> list[str]:
    """The Gopher quality rules that `text` fails (empty list: it passes)."""
    words = text.split()
    n, reasons = len(words), []
    if not 50 <= n <= 100_000:
        reasons.append("gopher_word_count")
    if n and not 3 <= sum(len(w) for w in words) / n <= 10:
        reasons.append("gopher_mean_word_length")
    if n and (text.count("#") + text.count("...") + text.count("…")) / n > 0.1:
        reasons.append("gopher_symbol_ratio")
    lines = [line for line in text.split("\n") if line.strip()]
    if lines and sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines) > 0.9:
        reasons.append("gopher_bullets")
    if lines and sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines) > 0.3:
        reasons.append("gopher_ellipsis")
    if n and sum(any(c.isalpha() for c in w) for w in words) / n < 0.8:
        reasons.append("gopher_alpha_words")
    if len(STOP_WORDS & {w.lower().strip(".,!?;:") for w in words}) < 2:
        reasons.append("gopher_stop_words")
    return reasons


def gopher_repetition_reasons(text: str) -> list[str]:
    """The Gopher repetition rules (Table A1) that `text` fails."""
    reasons = []
    for what, parts in (("line", [p for p in text.split("\n") if p.strip()]),
                        ("paragraph", [p for p in text.split("\n\n") if p.strip()])):
        frac, chars = _dup_fractions(parts, len(text))
        if frac > 0.30 or chars > 0.20:
            reasons.append(f"gopher_dup_{what}")
    reasons += [f"gopher_top_{n}gram" for n, m in TOP_NGRAM_MAX.items() if top_ngram_char_fraction(text, n) > m]
    reasons += [f"gopher_dup_{n}gram" for n, m in DUP_NGRAM_MAX.items() if dup_ngram_char_fraction(text, n) > m]
    return reasons


def gopher_filter(docs: list[dict], repetition: bool = True) -> tuple[list[dict], dict]:
    """Stage: drop documents failing any Gopher rule; stats count each rule's firings."""
    t0 = time.perf_counter()
    out, fired = [], Counter()
    for d in docs:
        reasons = gopher_quality_reasons(d["text"]) + (gopher_repetition_reasons(d["text"]) if repetition else [])
        fired.update(reasons)
        if not reasons:
            out.append(d)
    return out, stage_stats(docs, out, t0, rules=dict(fired))


def load_blocklist(path: str) -> tuple[str, ...]:
    """The lower-cased words of a block-list file: one word or phrase a line, blank and '#' lines skipped.

    LDNOOBW's `en` file has this format. A missing, unreadable or empty file is one MiniLLMError.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, TypeError) as e:
        raise MiniLLMError(f"cannot read the C4 block list {path}: {getattr(e, 'strerror', None) or e}") from None
    words = tuple(w.strip().lower() for w in lines if w.strip() and not w.lstrip().startswith("#"))
    if not words:
        raise MiniLLMError(f"the C4 block list {path} has no words (one word or phrase a line)")
    return words


@functools.lru_cache(maxsize=8)
def _blocklist_regex(words: tuple[str, ...]) -> re.Pattern:
    """One pattern for the whole list: any listed word or phrase between word boundaries."""
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b")


def c4_clean(text: str, blocklist: tuple[str, ...] = BLOCKLIST) -> tuple[str | None, str]:
    """(cleaned text, "") or (None, reason): C4's line rules, then its page rules."""
    low = text.lower()
    if "lorem ipsum" in low:
        return None, "c4_lorem_ipsum"
    if "{" in text:
        return None, "c4_curly_bracket"
    if _blocklist_regex(tuple(blocklist)).search(low):
        return None, "c4_blocklist"
    keep = []
    for line in text.split("\n"):
        line = line.strip()
        lw = line.lower()
        if (line.endswith(TERMINAL) and len(line.split()) >= 3 and "javascript" not in lw
                and not any(p in lw for p in POLICY)):
            keep.append(line)
    cleaned = "\n".join(keep)
    if len(re.findall(r"[.!?]+(?=\s|$)", cleaned)) < 5:
        return None, "c4_few_sentences"
    return cleaned, ""


def c4_filter(docs: list[dict], blocklist_file: str = "") -> tuple[list[dict], dict]:
    """Stage: C4's rules; lines are removed in place, pages dropped when a page rule fires.

    `blocklist_file`: a word-list file (see `load_blocklist`) replacing the two-word stand-in.
    """
    t0 = time.perf_counter()
    words = load_blocklist(blocklist_file) if blocklist_file else BLOCKLIST
    out, fired = [], Counter()
    for d in docs:
        text, reason = c4_clean(d["text"], words)
        if text is None:
            fired[reason] += 1
        else:
            out.append({**d, "text": text})
    return out, stage_stats(docs, out, t0, rules=dict(fired))
