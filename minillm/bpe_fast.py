"""Lesson 01, the fast paths behind `Tokenizer`: the same merges and ids as `minillm.bpe`.

The reference trainer (`bpe.train_bpe_reference`) recounts every pair of the whole
corpus after each merge. `train_bpe` makes exactly the same merges (a test proves
it) with four ideas:

1. **Count unique pre-tokens once**, in parallel processes over chunks of the
   text (`count_pretokens`). BPE never merges across pre-tokens, so a word that
   occurs 10,000 times is one entry with a frequency. Each process keeps only a
   `Counter` of its chunk's distinct pre-tokens: memory stays bounded.
2. **Touch only the neighbours of a merge.** Merging (a, b) -> n at a spot
   `x a b y` removes the pairs (x, a), (a, b), (b, y) and adds (x, n), (n, y);
   every other pair of the word keeps its count.
3. **An index `pair -> words that contain it`** finds the words a merge changes
   (kept lazily: a word that lost the pair since is skipped).
4. **A heap for the best pair**, keyed by `(-count, inverted bytes of a, inverted
   bytes of b)`: the smallest key is the highest count and, on ties, the greatest
   pair of byte strings. A changed count is pushed again; a popped entry whose
   count is out of date is skipped ("lazy deletion").

`encode_word` is the encoder's inner loop: per pre-token, merge the adjacent pair
of lowest rank, keeping a list of pair ranks and recomputing only the two next to
each merge (tiktoken's loop), instead of rebuilding the pairs after every merge.
`ascii_twin` is the split pattern rewritten for the standard library's `re`, which
splits ASCII text about 2.5x faster than `regex` (same pieces, tested), and
`find_pretokens` uses it on the ASCII parts of a text;
`stream_cut` decides where `Tokenizer.encode_iterable` may cut its buffer, and
`process_map` runs work in processes (pre-token counting, `encode_batch`).

Left out: a compiled core (Hugging Face `tokenizers` and tiktoken are Rust); this
stays pure Python. Follows Sennrich et al. 2016 and GPT-2's byte-level BPE.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import re
from collections import Counter, defaultdict
from typing import Iterable, Iterator

import regex

from minillm.bpe import PATTERNS, special_regex, split_on_special, utf8_safe
from minillm.utils import MiniLLMError

# A cut between a letter and " <letter>" is a pre-token boundary of both GPT patterns
# whatever comes before or after it (the letter run ends there; " word" starts there),
# so chunks cut there pre-tokenize exactly like the whole text. Custom patterns: no cuts.
_SAFE_CUT = regex.compile(r"\p{L}(?= \p{L})")
CHUNK_CHARS = 1 << 20  # characters per counting chunk (bounds the memory of one findall)
ENCODE_CHUNK_CHARS = 1 << 16  # characters per encoding chunk of a long or non-ASCII text
MIN_CHUNKS_PER_WORKER = 2  # chunks per process: 2 processes from 4 chunks (about 4 MB of text) on


def chunk_bounds(text: str, pattern: str, special_tokens: Iterable[str] = (),
                 chunk_chars: int = CHUNK_CHARS) -> list[tuple[int, int]]:
    """(start, end) spans covering `text`, each about `chunk_chars` long, cut only where
    splitting cannot change the pre-tokens (never inside a special token).

    >>> chunk_bounds("ab cd ef", PATTERNS["gpt2"], chunk_chars=3)
    [(0, 5), (5, 8)]
    """
    if pattern not in PATTERNS.values():
        return [(0, len(text))]
    special_re = special_regex(special_tokens)
    longest = max((len(s) for s in special_tokens), default=0)
    bounds, start = [], 0
    while len(text) - start > chunk_chars:
        m = _SAFE_CUT.search(text, start + chunk_chars)
        while m and special_re and any(s.start() < m.end() < s.end() for s in special_re.finditer(
                text, max(0, m.end() - longest), m.end() + longest)):
            m = _SAFE_CUT.search(text, m.end())  # this cut is inside a special token
        if not m:
            break
        bounds.append((start, m.end()))
        start = m.end()
    bounds.append((start, len(text)))
    return bounds


_FORKED_TEXT = ""  # the text being counted, as forked worker processes inherit it


def _count_chunk(job: tuple[str | None, int, int, str, list[str]]) -> Counter:
    """Pre-token counts of text[start:end] (runs in a worker process). `text` is None
    when the worker was forked: it reads the inherited copy instead of a pickled one."""
    text, start, end, pattern, special_tokens = job
    text = _FORKED_TEXT if text is None else text
    find = regex.compile(pattern).findall
    counts: Counter = Counter()
    for part in split_on_special(utf8_safe(text[start:end]), special_tokens):
        counts.update(find(part))
    return counts


def count_pretokens(text: str, pattern: str, special_tokens: Iterable[str] = (),
                    workers: int | None = None, chunk_chars: int | None = None) -> Counter:
    """How often each pre-token occurs; special tokens split documents and are dropped.
    `workers` processes (default: all cores) count chunks of about `chunk_chars`;
    memory holds the distinct pre-tokens, never the list of all of them.

    >>> count_pretokens("the cat the", r" ?\\w+", workers=1)
    Counter({'the': 1, ' cat': 1, ' the': 1})
    """
    global _FORKED_TEXT
    special_tokens = list(special_tokens)
    bounds = chunk_bounds(text, pattern, special_tokens, chunk_chars or CHUNK_CHARS)
    # starting processes costs more than it saves below a few chunks
    workers = min(len(bounds) // MIN_CHUNKS_PER_WORKER, workers or os.cpu_count() or 1)
    total: Counter = Counter()
    if workers <= 1:
        for s, e in bounds:
            total.update(_count_chunk((text, s, e, pattern, special_tokens)))
        return total
    forked = "fork" in multiprocessing.get_all_start_methods()
    jobs = [(None, s, e, pattern, special_tokens) if forked else (text[s:e], 0, e - s, pattern, special_tokens)
            for s, e in bounds]
    _FORKED_TEXT = text
    try:
        for counts in process_map(_count_chunk, jobs, workers):
            total.update(counts)
    finally:
        _FORKED_TEXT = ""
    return total


def _inverted(b: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in *descending* order: invert each byte and end
    with 256, so a prefix ("ab") sorts after its extensions ("abc"), as it must."""
    return tuple(255 - x for x in b) + (256,)


def _merge_in_word(word: list[int], a: int, b: int, new: int, f: int,
                   counts: dict[tuple[int, int], int], changed: set[tuple[int, int]]) -> list[int]:
    """Merge (a, b) -> new in `word`, moving `f` (the word's frequency) between the pair
    counts of the neighbours only: x a b y loses (x, a), (a, b), (b, y), gains (x, n), (n, y)."""
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            counts[(a, b)] -= f
            if out:  # left neighbour, already merged if the previous spot was a match
                x = out[-1]
                counts[(x, a)] -= f
                counts[(x, new)] += f
                changed.add((x, a))
                changed.add((x, new))
            if i + 2 < n:  # right neighbour, as it is now (the next spot fixes it if it merges too)
                y = word[i + 2]
                counts[(b, y)] -= f
                counts[(new, y)] += f
                changed.add((b, y))
                changed.add((new, y))
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _index_pairs(words: list[list[int]], freqs: list[int]) -> tuple[dict, dict]:
    """pair -> total count over the corpus (each word times its frequency), and
    pair -> indices of the words containing it (lists, not sets: a word is added once
    per pair, at the merge that creates the pair)."""
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], list[int]] = defaultdict(list)
    for wi, (word, f) in enumerate(zip(words, freqs)):
        pairs = list(zip(word, word[1:]))
        for pair in pairs:
            counts[pair] += f
        for pair in set(pairs):
            where[pair].append(wi)
    return counts, where


def train_bpe(text: str, n_merges: int, pattern: str, special_tokens: Iterable[str] = (),
              workers: int | None = None, progress: bool = False) -> dict[tuple[int, int], int]:
    """Learn up to `n_merges` BPE merges on `text`: pair -> new id (256, 257, ...), in order.

    Same result as `bpe.train_bpe_reference` (a test proves it), far faster.

    >>> train_bpe("aaabdaaabac", 3, r"\\w+", workers=1)
    {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    """
    if n_merges < 0:
        raise MiniLLMError(f"the number of merges must be >= 0, got {n_merges}")
    word_counts = count_pretokens(text, pattern, special_tokens, workers)
    words = [list(w.encode("utf-8")) for w in word_counts]
    freqs = list(word_counts.values())
    del word_counts

    counts, where = _index_pairs(words, freqs)
    inv = [_inverted(bytes([i])) for i in range(256)]  # tie-break key of each token id
    heap = [(-c, inv[a], inv[b], a, b) for (a, b), c in counts.items()]
    heapq.heapify(heap)

    merges: dict[tuple[int, int], int] = {}
    bar = None
    if progress:
        from tqdm import tqdm  # deferred: only the command line shows a bar

        bar = tqdm(total=n_merges, desc="BPE merges", unit="merge")
    while len(merges) < n_merges and heap:
        neg, _, _, a, b = heapq.heappop(heap)
        if counts.get((a, b), 0) != -neg or neg == 0:
            continue  # stale entry: the pair's count changed after it was pushed
        new = 256 + len(merges)
        merges[(a, b)] = new
        inv.append(inv[a][:-1] + inv[b])  # bytes(new) = bytes(a) + bytes(b)
        changed: set[tuple[int, int]] = set()
        for wi in where.pop((a, b)):
            word = words[wi]
            merged = _merge_in_word(word, a, b, new, freqs[wi], counts, changed)
            if len(merged) == len(word):
                continue  # the index is lazy: this word lost the pair earlier
            words[wi] = merged
            for pair in {p for p in zip(merged, merged[1:]) if new in p}:  # the pairs this merge made
                where[pair].append(wi)
        del counts[(a, b)]
        for pair in changed:
            c = counts.get(pair, 0)
            if c > 0:
                heapq.heappush(heap, (-c, inv[pair[0]], inv[pair[1]], pair[0], pair[1]))
            else:
                counts.pop(pair, None)
                where.pop(pair, None)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


def encode_word(ids: list[int], ranks: dict[tuple[int, int], int],
                merges: dict[tuple[int, int], int]) -> list[int]:
    """BPE on one pre-token, in place: merge the adjacent pair of lowest rank until no
    pair is a merge. `ranks` keeps one rank per adjacent pair; a merge at i changes
    only the ranks at i - 1 and i (the pairs now holding the new id).

    >>> encode_word([97, 97, 97, 98], {(97, 97): 0, (256, 97): 1}, {(97, 97): 256, (256, 97): 257})
    [257, 98]
    """
    none = 1 << 62  # the rank of a pair that is not a merge
    get = ranks.get
    pr = [get(p, none) for p in zip(ids, ids[1:])]  # pr[i]: rank of (ids[i], ids[i + 1])
    while pr:
        best = min(pr)
        if best == none:
            break
        i = pr.index(best)  # the leftmost of the lowest rank, as tiktoken
        ids[i:i + 2] = [merges[(ids[i], ids[i + 1])]]
        del pr[i]
        if i > 0:
            pr[i - 1] = get((ids[i - 1], ids[i]), none)
        if i < len(pr):
            pr[i] = get((ids[i], ids[i + 1]), none)
    return ids


# The two GPT patterns for ASCII text, written for the standard library's `re`, which
# splits ASCII about 2.5x faster than `regex` (that takes a lock per match). Same pieces
# on any ASCII text (tests/test_tokenizer.py checks): \p{L} is [A-Za-z], \p{N} is [0-9],
# \s is [\t\n\v\f\r ] (re's own \s also has \x1c-\x1f); greedy instead of possessive
# (Python 3.10 has no ++) matches the same here, as no alternative can backtrack usefully.
_S, _NOT_S = r"[\t\n\x0b\x0c\r ]", r"[^\t\n\x0b\x0c\r ]"
_ASCII_TWINS = {
    PATTERNS["gpt2"]: rf"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+"""
                      rf"""|{_S}+$|{_S}+(?!{_NOT_S})|{_S}""",
    PATTERNS["gpt4"]: rf"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{{1,3}}"""
                      rf"""| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+[\r\n]*|{_S}+$|{_S}*[\r\n]|{_S}+(?!{_NOT_S})|{_S}""",
}
_TILING = frozenset(PATTERNS.values())  # patterns whose pieces cover every character


def ascii_twin(pattern: str) -> re.Pattern | None:
    """The `re` twin of a GPT split pattern, for ASCII text only (None for other patterns).

    >>> ascii_twin(PATTERNS["gpt2"]).findall("I'll pay  42!")
    ['I', "'ll", ' pay', ' ', ' 42', '!']
    """
    twin = _ASCII_TWINS.get(pattern)
    return None if twin is None else re.compile(twin, re.ASCII)


def find_pretokens(split: regex.Pattern, twin: re.Pattern | None, text: str, start: int = 0,
                   end: int | None = None) -> list[str]:
    """`split.findall(text, start, end)`, faster where `twin` (`ascii_twin`) is given: ASCII
    text goes to the twin; other text in chunks of about `ENCODE_CHUNK_CHARS` (cut where
    cutting cannot change the pieces), each to the twin if it is ASCII.

    >>> find_pretokens(regex.compile(PATTERNS["gpt2"]), ascii_twin(PATTERNS["gpt2"]), "a café", 1)
    [' café']
    """
    end = len(text) if end is None else end
    if twin is None or text.isascii():
        return (split if twin is None else twin).findall(text, start, end)
    part, out = text[start:end], []
    for s, e in chunk_bounds(part, split.pattern, chunk_chars=ENCODE_CHUNK_CHARS):
        chunk = part[s:e]  # a copy: an ASCII-only string if its characters are
        out += (twin if chunk.isascii() else split).findall(chunk)
    return out


def stream_cut(split: regex.Pattern, buf: str, allowed_re: regex.Pattern | None, prefixes: set[str],
               hold: int, findall=None) -> tuple[int, list[str], int]:
    """Where `Tokenizer.encode_iterable` may cut its buffer: (head, pieces, cut).

    `buf[:head]` ends with a complete allowed special token; `pieces` are the final
    pre-tokens of `buf[head:cut]`; `buf[cut:]` waits for more text. `prefixes` are the
    proper prefixes of the allowed special tokens, `hold` the longest token's length - 1.
    `findall(buf, start, end)`, if given, finds the same pieces as `split.findall`, faster.
    """
    limit = len(buf) - hold  # a special token starting at or after here may be incomplete
    head, seg_end = 0, len(buf)
    if allowed_re is not None:
        for m in allowed_re.finditer(buf):
            if m.end() <= limit:
                head = m.end()  # everything up to a complete special token is final
            else:
                seg_end = m.start()
                break
        else:  # the buffer may end with the start of a special token ("x\n\n<|endoftext|")
            for s in range(max(head, limit), len(buf)):
                if buf[s:] in prefixes:
                    seg_end = s
                    break
    # pre-tokens of buf[head:seg_end] as if the text ended at seg_end (it does if a
    # special token starts there; if not, only the last two pieces can change)
    found = (findall or split.findall)(buf, head, seg_end)
    if split.pattern in _TILING or len("".join(found)) == seg_end - head:  # the pieces tile the text
        cut = seg_end
        for _ in range(min(2, len(found))):
            cut -= len(found.pop())  # in place: no copy, no sum over the buffer
        while found and cut > limit:  # keep the last `hold` characters too
            cut -= len(found.pop())
        return head, found, cut if found else head
    ms = [m for m in list(split.finditer(buf, head, seg_end))[:-2] if m.end() <= limit]
    return head, [m.group() for m in ms], ms[-1].end() if ms else head


def process_map(fn, jobs: list, workers: int, initializer=None, initargs: tuple = ()) -> Iterator:
    """`fn(job) for job in jobs`, in order, lazily, in `workers` processes (forked where
    the OS can: no re-import, and the parent's objects are there already)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        yield from pool.imap(fn, jobs)
