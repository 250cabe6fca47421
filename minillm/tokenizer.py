"""Lesson 01: a byte-level BPE tokenizer, written out plainly and then made fast.

What it builds:

* the plain algorithm (`pair_counts`, `merge`, `train_bpe_reference`,
  `encode_reference`): count every adjacent pair, merge the most frequent, repeat;
* `Tokenizer`: the tool the rest of minillm uses. `Tokenizer.train` runs the fast
  trainer (`minillm.tokenizer_fast`, same merges, proven by a test); `encode` splits
  text with the GPT-2 or GPT-4 regex, then applies merges by rank, with a cache of
  pre-tokens; special tokens follow tiktoken's rules; `decode` never raises on
  invalid UTF-8; `encode_iterable` streams a file with bounded memory;
  `save`/`load` use a readable JSON file; `from_gpt2_files` imports a GPT-2
  `vocab.json` + `merges.txt`; `to_tiktoken` hands our vocabulary to tiktoken.

Token ids: 0..255 are the bytes, merge i creates id 256 + i, special tokens come
last. Tie-break when two pairs have the same count: the lexicographically greatest
pair of byte strings wins, `(bytes(a), bytes(b))` compared as a tuple.

Left out: the GPT-2 byte-to-unicode remapping inside our own files (we store
bytes, and convert only when importing GPT-2 files), dropout/BPE-regularisation,
and normalisation (NFC etc.). Follows Sennrich et al. 2016 ("Neural Machine
Translation of Rare Words with Subword Units"), Radford et al. 2019 (GPT-2:
byte-level BPE with a regex pre-split) and tiktoken's encoding rules.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator, Literal

import regex

from minillm.tokenizer_fast import merge_word
from minillm.utils import MiniLLMError, atomic_write_text

# The split patterns of tiktoken's `r50k_base` (GPT-2) and `cl100k_base` (GPT-4).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}
ENDOFTEXT = "<|endoftext|>"


class SpecialTokenError(MiniLLMError, ValueError):
    """Text contains a special-token string that the caller did not allow."""


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


def _fix_surrogates(text: str) -> str:
    """Lone surrogates cannot be UTF-8 encoded: turn them into U+FFFD (as tiktoken does)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def utf8_safe(text: str) -> str:
    """`text`, with lone surrogates (not encodable as UTF-8) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _fix_surrogates(text)
    return text


def pretokenize(text: str, pattern: str = "gpt4", special_tokens: Iterable[str] = ()) -> list[str]:
    """The regex split: BPE never merges across these pieces.

    >>> pretokenize("Hello world's 1234!!")
    ['Hello', ' world', "'s", ' ', '123', '4', '!!']
    """
    find = regex.compile(resolve_pattern(pattern)).findall
    return [piece for part in split_on_special(utf8_safe(text), special_tokens) for piece in find(part)]


# ---------------------------------------------------------------------------------
# The plain algorithm (the reference; the exercises live here)
# ---------------------------------------------------------------------------------

def pair_counts(ids: list[int], counts: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs (overlapping), adding into `counts` if given.

    >>> pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    ### BEGIN SOLUTION name=tokenizer.pair_counts points=1
    ### HINT: zip(ids, ids[1:]) walks the adjacent pairs; add 1 to counts[pair] for each.
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts
    ### END SOLUTION


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, left to right, by `idx`.

    >>> merge([97, 97, 97, 98], (97, 97), 256)
    [256, 97, 98]
    """
    ### BEGIN SOLUTION name=tokenizer.merge points=2
    ### HINT: walk ids left to right; where ids[i:i+2] == pair, emit idx and skip two, else emit ids[i].
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    ### END SOLUTION


def train_bpe_reference(text: str, vocab_size: int, pattern: str = "gpt4",
                        special_tokens: Iterable[str] = (ENDOFTEXT,)) -> "Tokenizer":
    """The plain BPE trainer: recount all pairs, merge the most frequent, repeat.

    `vocab_size` counts the 256 bytes, the merges and the special tokens. Ties
    are broken by the lexicographically greatest `(bytes(a), bytes(b))`. Slow
    (every merge rescans the corpus); `Tokenizer.train` gives the same merges fast.

    >>> train_bpe_reference("aaabdaaabac", 259, special_tokens=()).merges
    {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    """
    special_tokens = list(special_tokens)
    n_merges = vocab_size - 256 - len(special_tokens)
    chunks = [list(p.encode("utf-8")) for p in pretokenize(text, pattern, special_tokens)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges: list[tuple[int, int]] = []
    ### BEGIN SOLUTION name=tokenizer.train_reference points=3
    ### HINT: each round: counts over all chunks (pair_counts), best = max by (count, vocab[a], vocab[b]), merge it in every chunk.
    for i in range(n_merges):
        counts: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            pair_counts(chunk, counts)
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        idx = 256 + i
        chunks = [merge(chunk, best, idx) for chunk in chunks]
        vocab[idx] = vocab[best[0]] + vocab[best[1]]
        merges.append(best)
    ### END SOLUTION
    return Tokenizer.from_merges(merges, pattern, special_tokens)


def encode_reference(text: str, merges: dict[tuple[int, int], int], pattern: str = "gpt4") -> list[int]:
    """Encode ordinary text the plain way: per pre-token, apply the earliest-learned
    merge present, until none applies. `merges` maps pair -> new id (= its rank).

    >>> encode_reference("aaabdaaabac", {(97, 97): 256, (256, 97): 257, (257, 98): 258})
    [258, 100, 258, 97, 99]
    """
    out: list[int] = []
    for piece in pretokenize(text, pattern):
        ids = list(piece.encode("utf-8"))
        ### BEGIN SOLUTION name=tokenizer.encode_reference points=2
        ### HINT: while 2+ ids: pick the adjacent pair with the smallest merges.get(pair, inf); stop if it is not in merges, else merge it.
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            ids = merge(ids, pair, merges[pair])
        ### END SOLUTION
        out.extend(ids)
    return out


# ---------------------------------------------------------------------------------
# The tokenizer the rest of minillm uses
# ---------------------------------------------------------------------------------

def _printable(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


class Tokenizer:
    """A byte-level BPE tokenizer: merges, a split pattern and special tokens.

    >>> tok = Tokenizer.train("aaabdaaabac", vocab_size=260)
    >>> tok.encode("aaabdaaabac"), tok.eot_id
    ([258, 100, 258, 97, 99], 259)
    """

    FORMAT = "minillm-bpe"
    cache_size = 1 << 16  # pre-tokens remembered by encode (cleared when full)

    def __init__(self, merges: list[tuple[int, int, int]], pattern: str = "gpt4",
                 special_tokens: dict[str, int] | None = None, byte_ids: list[int] | None = None):
        """`merges`: (a, b, new_id) in rank order; `byte_ids[b]`: the id of byte b
        (identity unless imported from GPT-2 files)."""
        self.pattern = resolve_pattern(pattern)
        self.byte_ids = list(range(256)) if byte_ids is None else list(byte_ids)
        if sorted(self.byte_ids) != sorted(set(self.byte_ids)) or len(self.byte_ids) != 256:
            raise MiniLLMError("byte_ids must be 256 distinct token ids")
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        self.merges: dict[tuple[int, int], int] = {}  # pair -> new id, in rank order
        self._rank: dict[tuple[int, int], int] = {}
        for a, b, new in merges:
            if a not in self.vocab or b not in self.vocab or new in self.vocab:
                raise MiniLLMError(f"bad merge ({a}, {b}) -> {new}: unknown part or id already used")
            self.vocab[new] = self.vocab[a] + self.vocab[b]
            self._rank[(a, b)] = len(self.merges)
            self.merges[(a, b)] = new
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        for s, i in self.special_tokens.items():
            if i in self.vocab:
                raise MiniLLMError(f"special token {s!r} reuses id {i}")
        self.inverse_special = {i: s for s, i in self.special_tokens.items()}
        self.vocab_size: int = 1 + max([*self.vocab, *self.inverse_special])
        self.eot_id: int | None = self.special_tokens.get(ENDOFTEXT)
        self._split = regex.compile(self.pattern)
        self._cache: dict[str, list[int]] = {}
        self._identity = self.byte_ids == list(range(256))

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    # --- building ----------------------------------------------------------------

    @classmethod
    def from_merges(cls, merges: list[tuple[int, int]], pattern: str = "gpt4",
                    special_tokens: Iterable[str] = (ENDOFTEXT,)) -> "Tokenizer":
        """Merge i -> id 256 + i; special tokens get the ids after the merges."""
        n = 256 + len(merges)
        specials = {s: n + k for k, s in enumerate(dict.fromkeys(special_tokens))}
        return cls([(a, b, 256 + i) for i, (a, b) in enumerate(merges)], pattern, specials)

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = "gpt4",
              special_tokens: Iterable[str] = (ENDOFTEXT,), progress: bool = False) -> "Tokenizer":
        """Train on `text` to `vocab_size` ids (256 bytes + merges + special tokens).

        Special-token strings in `text` are document boundaries: no merge crosses
        them and they are not counted. If the text runs out of pairs first, the
        vocabulary is smaller (check `tok.vocab_size`).
        """
        from minillm.tokenizer_fast import train_bpe

        special_tokens = list(dict.fromkeys(special_tokens))
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise MiniLLMError(f"vocab_size must be >= 256 + {len(special_tokens)} special tokens, got {vocab_size}")
        pattern = resolve_pattern(pattern)
        merges = train_bpe(text, n_merges, pattern, special_tokens, progress=progress)
        return cls.from_merges(merges, pattern, special_tokens)

    # --- encoding ----------------------------------------------------------------

    def _encode_piece(self, piece: bytes) -> list[int]:
        """BPE on one pre-token: apply the lowest-rank merge present until none is."""
        ids = list(piece) if self._identity else [self.byte_ids[b] for b in piece]
        rank, merges = self._rank, self.merges
        while len(ids) >= 2:
            pairs = list(zip(ids, ids[1:]))
            best = min(pairs, key=lambda p: rank.get(p, 1 << 62))
            if best not in rank:
                break
            ids = merge_word(ids, best[0], best[1], merges[best])
        return list(ids)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with every special-token string treated as plain text."""
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:
            return self._encode_ordinary(_fix_surrogates(text))

    def _encode_ordinary(self, text: str) -> list[int]:
        return self._encode_pieces(self._split.findall(text))

    def _encode_pieces(self, pieces: Iterable[str]) -> list[int]:
        """Pre-tokens -> ids, each looked up in (or added to) the cache."""
        out: list[int] = []
        cache = self._cache
        for piece in pieces:
            ids = cache.get(piece)
            if ids is None:
                ids = self._encode_piece(piece.encode("utf-8"))
                if len(cache) >= self.cache_size:
                    cache.clear()
                cache[piece] = ids
            out.extend(ids)
        return out

    def _special_sets(self, allowed_special, disallowed_special) -> tuple[set[str], set[str]]:
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special in ("none", None):
            allowed = set()
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise MiniLLMError(f"not special tokens of this tokenizer: {sorted(unknown)}")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = set(disallowed_special or ())
        return allowed, disallowed

    def encode(self, text: str, allowed_special: Literal["none", "all"] | set[str] = "none",
               disallowed_special: Literal["all"] | Iterable[str] = "all") -> list[int]:
        """Text -> token ids, with tiktoken's rules for special tokens.

        `allowed_special` strings become their special id. Any other special-token
        string in `text` raises `SpecialTokenError` while `disallowed_special="all"`
        (the default); pass `disallowed_special=()` to encode them as plain text.
        Where special tokens overlap, the leftmost match wins, then the longest.
        """
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        if disallowed:
            self._check_disallowed(text, special_regex(disallowed))
        pat = special_regex(allowed)
        if pat is None:
            return self.encode_ordinary(text)
        out: list[int] = []
        start = 0
        for m in pat.finditer(text):
            out.extend(self.encode_ordinary(text[start:m.start()]))
            out.append(self.special_tokens[m.group()])
            start = m.end()
        out.extend(self.encode_ordinary(text[start:]))
        return out

    def encode_iterable(self, lines: Iterable[str], allowed_special: Literal["none", "all"] | set[str] = "none",
                        disallowed_special: Literal["all"] | Iterable[str] = "all",
                        chunk_chars: int = 1 << 16) -> Iterator[int]:
        """Encode a stream of strings (e.g. an open text file) lazily, with the same ids
        as `encode("".join(lines))`, holding about `chunk_chars` characters at a time.

        The buffer is cut only at a pre-token boundary, keeping the last two
        pre-tokens (the last one may still grow when more text arrives), and
        never inside a possible special token. One pre-token longer than the
        buffer (a megabyte without a space) is kept whole. Tested for the GPT-2
        and GPT-4 patterns; a custom pattern with long look-aheads may need more.

        >>> tok = Tokenizer.train("aaabdaaabac", vocab_size=260)
        >>> list(tok.encode_iterable(["aaab", "daaa", "bac"], chunk_chars=2))
        [258, 100, 258, 97, 99]
        """
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        allowed_re, disallowed_re = special_regex(allowed), special_regex(disallowed)
        hold = max((len(s) for s in allowed | disallowed), default=1) - 1
        pending: list[str] = []
        size = 0
        for piece in lines:
            pending.append(piece)
            size += len(piece)
            if size < chunk_chars:
                continue
            buf = "".join(pending)
            try:
                buf.encode("utf-8")
            except UnicodeEncodeError:
                buf = _fix_surrogates(buf)
            if disallowed_re is not None:
                self._check_disallowed(buf, disallowed_re)
            head, pieces, cut = self._safe_cut(buf, allowed_re, hold)
            if head:
                yield from self.encode(buf[:head], allowed, disallowed_special=())
            yield from self._encode_pieces(pieces)
            pending, size = [buf[cut:]], len(buf) - cut
        yield from self.encode("".join(pending), allowed, disallowed)

    def _safe_cut(self, buf: str, allowed_re: regex.Pattern | None, hold: int) -> tuple[int, list[str], int]:
        """Split `buf` into a final part and a tail that must wait for more text.

        Returns (head, pieces, cut): `buf[:head]` ends with a complete allowed special
        token (encode it as text); `pieces` are the pre-tokens of `buf[head:cut]`,
        each as the regex found it in the whole buffer (re-splitting `buf[head:cut]`
        alone could differ at its end); `buf[cut:]` is kept.
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
        matches = list(self._split.finditer(buf, head, seg_end))
        # the last pre-token may grow with more text; keep the last two for a margin
        final = [m for m in matches[:-2] if m.end() <= limit]
        return head, [m.group() for m in final], final[-1].end() if final else head

    @staticmethod
    def _check_disallowed(text: str, disallowed_re: regex.Pattern) -> None:
        m = disallowed_re.search(text)
        if m:
            raise SpecialTokenError(
                f"text contains the special token {m.group()!r} at character {m.start()}; "
                f"pass allowed_special={{{m.group()!r}}} (or 'all') to encode it as a special token, "
                f"or disallowed_special=() to encode it as ordinary text")

    # --- decoding ----------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token ids -> the raw bytes they stand for (special tokens as UTF-8)."""
        parts = []
        for i in ids:
            b = self.vocab.get(i)
            if b is None:
                s = self.inverse_special.get(i)
                if s is None:
                    raise MiniLLMError(f"token id {i} is not in this tokenizer (vocab_size {self.vocab_size})")
                b = s.encode("utf-8")
            parts.append(b)
        return b"".join(parts)

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text; bytes that are not valid UTF-8 become U+FFFD (never raises)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- files -------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a readable JSON file: one merge per line, `[a, b, new_id, "text"]`."""
        head = {"format": self.FORMAT, "version": 1, "pattern": self.pattern,
                "special_tokens": self.special_tokens}
        if not self._identity:
            head["byte_ids"] = self.byte_ids
        lines = [json.dumps(head, ensure_ascii=False)[:-1] + ',\n "merges": [']
        body = [" " + json.dumps([a, b, new, _printable(self.vocab[new])], ensure_ascii=False)
                for (a, b), new in self.merges.items()]
        text = lines[0] + ("\n" + ",\n".join(body) + "\n" if body else "") + "]}\n"
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Read a file written by `save`."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise MiniLLMError(f"cannot read tokenizer file {path}: {e}")
        if not isinstance(d, dict) or d.get("format") != cls.FORMAT:
            raise MiniLLMError(f"{path} is not a minillm tokenizer file (format {cls.FORMAT!r})")
        try:
            merges = [(int(m[0]), int(m[1]), int(m[2])) for m in d["merges"]]
            return cls(merges, d["pattern"], d.get("special_tokens", {}), d.get("byte_ids"))
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise MiniLLMError(f"tokenizer file {path} is damaged: {e!r}")

    # --- interop: GPT-2 files and tiktoken -----------------------------------------

    @classmethod
    def from_gpt2_files(cls, vocab_json: str | Path, merges_txt: str | Path,
                        special_tokens: Iterable[str] = (ENDOFTEXT,), pattern: str = "gpt2") -> "Tokenizer":
        """Import a GPT-2-format `vocab.json` + `merges.txt` (Hugging Face's files),
        keeping its ids. Strings in the files use GPT-2's byte-to-unicode map."""
        from minillm.tokenizer_fast import gpt2_unicode_to_byte

        to_byte = gpt2_unicode_to_byte()
        try:
            vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
            lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
            byte_ids = [vocab[ch] for ch, _ in sorted(to_byte.items(), key=lambda kv: kv[1])]
            merges = []
            for line in lines:
                if not line.strip() or line.startswith("#version"):
                    continue
                a, b = line.split(" ")
                merges.append((vocab[a], vocab[b], vocab[a + b]))
        except (OSError, json.JSONDecodeError, KeyError, ValueError) as e:
            raise MiniLLMError(f"cannot import GPT-2 files {vocab_json}, {merges_txt}: {e!r}")
        specials = {s: vocab[s] for s in special_tokens if s in vocab}
        return cls(merges, pattern, specials, byte_ids)

    def to_gpt2_files(self, folder: str | Path) -> tuple[Path, Path]:
        """Write `vocab.json` and `merges.txt` in GPT-2's format (for HF tokenizers)."""
        from minillm.tokenizer_fast import gpt2_unicode_to_byte

        to_char = {b: ch for ch, b in gpt2_unicode_to_byte().items()}
        text = {i: "".join(to_char[x] for x in b) for i, b in self.vocab.items()}
        if len(set(text.values())) != len(text):
            raise MiniLLMError("two tokens have the same bytes: GPT-2's vocab.json cannot hold that")
        vocab = {t: i for i, t in sorted(text.items())} | self.special_tokens
        folder = Path(folder)
        v = atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
        m = atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(
            f"{text[a]} {text[b]}\n" for a, b in self.merges))
        return v, m

    def to_tiktoken(self, name: str = "minillm"):
        """A `tiktoken.Encoding` with our ranks, pattern and special tokens (same ids,
        tiktoken's speed). tiktoken ranks tokens by id, so merged ids must grow with
        merge rank and no two tokens may share bytes."""
        import tiktoken

        ranks = {b: i for i, b in self.vocab.items()}
        if len(ranks) != len(self.vocab):
            raise MiniLLMError("two tokens have the same bytes: tiktoken cannot represent this vocabulary")
        if list(self.merges.values()) != sorted(self.merges.values()):
            raise MiniLLMError("merged ids do not grow with merge rank: tiktoken cannot represent this order")
        return tiktoken.Encoding(name, pat_str=self.pattern, mergeable_ranks=ranks,
                                 special_tokens=dict(self.special_tokens))


# ---------------------------------------------------------------------------------
# What the lesson plots: compression against vocabulary size
# ---------------------------------------------------------------------------------

def bytes_per_token(tok: Tokenizer, text: str) -> float:
    """Compression: UTF-8 bytes of `text` per token (special strings as plain text)."""
    return len(utf8_safe(text).encode("utf-8")) / max(1, len(tok.encode(text, disallowed_special=())))


def compression_curve(train_text: str, vocab_sizes: Iterable[int], test_text: str | None = None,
                      pattern: str = "gpt4") -> dict[int, float]:
    """Bytes per token of `test_text` (default: the training text) at each vocab size.

    Trains once, to the largest size: BPE is greedy, so the tokenizer with the
    first k merges *is* the one trained to 256 + k ids.
    """
    sizes = sorted(set(vocab_sizes))
    if not sizes or sizes[0] < 256:
        raise MiniLLMError(f"vocab sizes must be >= 256, got {sizes}")
    big = Tokenizer.train(train_text, sizes[-1], pattern, special_tokens=())
    pairs = list(big.merges)
    test_text = train_text if test_text is None else test_text
    return {v: bytes_per_token(Tokenizer.from_merges(pairs[:v - 256], big.pattern, ()), test_text) for v in sizes}


def plot_compression(curves: dict[str, dict[int, float]]):
    """One line per named curve from `compression_curve`; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size (ids)")
    ax.set_ylabel("bytes per token (higher = shorter sequences)")
    ax.set_title("Compression against vocabulary size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------
# Command line: minillm tokenizer train|encode|decode
# ---------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a tokenizer on a text file (default: TinyWorld's train split)")
    t.add_argument("--input", help="UTF-8 text file (default: TinyWorld train split)")
    t.add_argument("--vocab-size", type=int, default=512, help="ids in total: 256 bytes + merges + special tokens")
    t.add_argument("--pattern", default="gpt4", help="split regex: gpt2, gpt4 or a regex")
    t.add_argument("--special", nargs="*", default=[ENDOFTEXT], help="special tokens")
    t.add_argument("--out", default="tokenizer.json", help="where to save the tokenizer")
    for name, help_text in (("encode", "text -> ids (one line of space-separated ids)"),
                            ("decode", "ids -> text")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--tokenizer", default="tokenizer.json", help="a file written by `train`")
        p.add_argument("text", nargs="?", help="the text (encode) or ids (decode); default: stdin")
        if name == "encode":
            p.add_argument("--allow-special", action="store_true", help="turn special-token strings into their ids")


def run(args: argparse.Namespace) -> int:
    if args.action == "train":
        import time

        if args.input:
            try:
                text = Path(args.input).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise MiniLLMError(f"cannot read {args.input}: {e}")
        else:
            from minillm import world

            text = world.load_split("train")
        t0 = time.perf_counter()
        tok = Tokenizer.train(text, args.vocab_size, args.pattern, args.special, progress=True)
        dt = time.perf_counter() - t0
        n = len(tok.encode(text, disallowed_special=()))
        tok.save(args.out)
        print(f"trained {tok!r} in {dt:.2f} s; {len(text.encode()) / max(n, 1):.2f} bytes/token on the "
              f"training text; saved {args.out}")
        return 0
    tok = Tokenizer.load(args.tokenizer)
    data = args.text if args.text is not None else sys.stdin.read()
    if args.action == "encode":
        try:
            ids = tok.encode(data, allowed_special="all" if args.allow_special else "none")
        except SpecialTokenError as e:
            raise MiniLLMError(f"{str(e).split(';')[0]}; add --allow-special to encode it as a special token")
        print(" ".join(map(str, ids)))
    else:
        try:
            ids = [int(x) for x in data.replace(",", " ").split()]
        except ValueError:
            raise MiniLLMError("decode expects integer ids separated by spaces or commas")
        sys.stdout.write(tok.decode(ids))
        sys.stdout.write("\n" if sys.stdout.isatty() else "")
    return 0
