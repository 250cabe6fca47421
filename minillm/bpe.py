"""Lesson 01, the plain algorithm: byte-level BPE written out the way you would on paper.

What it builds:

* pre-tokenization (`pretokenize`): the GPT-2 / GPT-4 regex that cuts text into
  pieces merges never cross, and special tokens (`<|endoftext|>`) as document
  boundaries;
* training (`pair_counts`, `merge`, `train_bpe_reference`): count every adjacent
  pair, merge the most frequent into a new id, repeat;
* encoding (`encode_reference`): replay the merges in the order they were learned.

This file is the reference: short, slow, obviously right. The fast paths that
`Tokenizer` runs (`minillm.bpe_fast`) give the same merges and ids, and the tests
prove it. Token ids: 0..255 are the bytes, merge i creates id 256 + i.

Tie-break when two pairs have the same count: the lexicographically greatest pair
of byte strings wins, `(bytes(a), bytes(b))` compared as a tuple. Any fixed rule
works; this one is written down so that every trainer agrees.

Left out: normalisation (NFC etc.), BPE dropout, and anything fast. Follows
Sennrich et al. 2016 ("Neural Machine Translation of Rare Words with Subword
Units"), Radford et al. 2019 (GPT-2: byte-level BPE with a regex pre-split) and
tiktoken's split patterns.
"""

from __future__ import annotations

from typing import Iterable

import regex

from minillm.utils import MiniLLMError

# The split patterns of tiktoken's `r50k_base` (GPT-2) and `cl100k_base` (GPT-4).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}
ENDOFTEXT = "<|endoftext|>"


# ---------------------------------------------------------------------------------
# Pre-tokenization: where merges may not go
# ---------------------------------------------------------------------------------

def resolve_pattern(pattern: str) -> str:
    """'gpt2' / 'gpt4' -> the split regex; any other string is taken as a regex."""
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as e:
        raise MiniLLMError(f"bad split pattern {pattern!r}: {e} (use 'gpt2', 'gpt4' or a valid regex)")
    return pattern


def special_regex(tokens: Iterable[str]) -> regex.Pattern | None:
    """A regex matching any of `tokens`; at one position the longest token wins."""
    tokens = sorted(set(tokens), key=len, reverse=True)
    return regex.compile("|".join(regex.escape(t) for t in tokens)) if tokens else None


def split_on_special(text: str, special_tokens: Iterable[str]) -> list[str]:
    """Cut `text` at special-token strings, dropping them (training sees documents).

    >>> split_on_special("a<|endoftext|>b", ["<|endoftext|>"])
    ['a', 'b']
    """
    pat = special_regex(special_tokens)
    return pat.split(text) if pat else [text]


def utf8_safe(text: str) -> str:
    """`text` with lone surrogates (not encodable as UTF-8) replaced by U+FFFD, as
    tiktoken does; a surrogate *pair* ("\\ud83d\\ude00") becomes its character.

    >>> utf8_safe("a\\ud800b"), utf8_safe("\\ud83d\\ude00")
    ('a�b', '😀')
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def pretokenize(text: str, pattern: str = "gpt4", special_tokens: Iterable[str] = ()) -> list[str]:
    """The regex split: BPE never merges across these pieces.

    >>> pretokenize("Hello world's 1234!!")
    ['Hello', ' world', "'s", ' ', '123', '4', '!!']
    """
    find = regex.compile(resolve_pattern(pattern)).findall
    return [piece for part in split_on_special(utf8_safe(text), special_tokens) for piece in find(part)]


# ---------------------------------------------------------------------------------
# Training: count, pick the most frequent pair, merge, repeat
# ---------------------------------------------------------------------------------

def pair_counts(ids: list[int], counts: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs (overlapping), adding into `counts` if given.

    >>> pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    ### BEGIN SOLUTION name=bpe.pair_counts points=1
    ### HINT: which pairs does [7, 7, 7] contain? Every position but the last starts one.
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):  # (ids[0], ids[1]), (ids[1], ids[2]), ...
        counts[pair] = counts.get(pair, 0) + 1
    return counts
    ### END SOLUTION


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, left to right, by `idx`.

    >>> merge([97, 97, 97, 98], (97, 97), 256)
    [256, 97, 98]
    """
    ### BEGIN SOLUTION name=bpe.merge points=2
    ### HINT: after you replace a pair, which position must you look at next, so that 'aaa' gives [aa, a]?
    out, i = [], 0
    while i < len(ids):
        # a match at i: emit the new id and jump past both halves (no overlaps)
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    ### END SOLUTION


def train_bpe_reference(text: str, num_merges: int, pattern: str = "gpt4",
                        special_tokens: Iterable[str] = ()) -> dict[tuple[int, int], int]:
    """The plain BPE trainer: recount all pairs, merge the most frequent, repeat.

    Returns the merges in the order they were learned, pair -> new id (256, 257, ...);
    fewer than `num_merges` if the text runs out of pairs. Ties go to the
    lexicographically greatest `(bytes(a), bytes(b))`. Slow (every merge rescans
    the corpus); `Tokenizer.train` gives the same merges fast.

    >>> train_bpe_reference("aaabdaaabac", 3)
    {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    """
    # one list of byte ids per pre-token: merges happen inside these, never across
    chunks = [list(p.encode("utf-8")) for p in pretokenize(text, pattern, special_tokens)]
    vocab = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
    merges: dict[tuple[int, int], int] = {}
    ### BEGIN SOLUTION name=bpe.train_reference points=3
    ### HINT: one round = count pairs in every chunk, choose by count and then by the pair's bytes (see the tie-break), merge it everywhere; what if no pair is left?
    for i in range(num_merges):
        counts: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            pair_counts(chunk, counts)
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        # highest count; on a tie the greatest pair of byte strings
        best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        idx = 256 + i
        chunks = [merge(chunk, best, idx) for chunk in chunks]
        vocab[idx] = vocab[best[0]] + vocab[best[1]]
        merges[best] = idx
    ### END SOLUTION
    return merges


# ---------------------------------------------------------------------------------
# Encoding: replay the merges by rank
# ---------------------------------------------------------------------------------

def encode_reference(text: str, merges: dict[tuple[int, int], int], pattern: str = "gpt4") -> list[int]:
    """Encode ordinary text the plain way: per pre-token, apply the earliest-learned
    merge present, until none applies. `merges` maps pair -> new id (= its rank).

    >>> encode_reference("aaabdaaabac", {(97, 97): 256, (256, 97): 257, (257, 98): 258})
    [258, 100, 258, 97, 99]
    """
    out: list[int] = []
    for piece in pretokenize(text, pattern):
        ids = list(piece.encode("utf-8"))
        ### BEGIN SOLUTION name=bpe.encode_reference points=2
        ### HINT: training learned merge 256 before 257; which of the pairs present should be merged first, and when are you done?
        while len(ids) >= 2:
            # the pair learned first; pairs that are not merges rank last (inf)
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break  # no pair of this pre-token is a merge
            ids = merge(ids, pair, merges[pair])
        ### END SOLUTION
        out.extend(ids)
    return out
