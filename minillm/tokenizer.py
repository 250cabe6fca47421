"""Lesson 01: the `Tokenizer` the rest of minillm uses (byte-level BPE, tiktoken's rules).

What it builds: `Tokenizer`, which holds merges, a split pattern and special tokens.
`train` runs the fast trainer (`minillm.bpe_fast`: the same merges as the plain
`minillm.bpe.train_bpe_reference`, proven by a test); `encode` splits text with the
GPT-2 or GPT-4 regex (ASCII text with its twin for the standard library's `re`: the
same pieces, faster) and merges each pre-token by rank, with a bounded cache of
pre-tokens; special tokens follow tiktoken's rules; `encode_batch` uses processes
for large batches; `encode_iterable` streams a file with bounded memory, the same
ids as `encode` and the same split, cache and merge loop; `decode` never raises on invalid UTF-8; `add_special_tokens`
appends special ids; files and tiktoken go through `minillm.tokenizer_io`. Also
what the lesson plots: bytes per token against vocabulary size.

Token ids: 0..255 are the bytes, merge i creates id 256 + i, special tokens come
last. Left out: the algorithm written plainly (that is `minillm.bpe`), GPT-2's
byte-to-unicode remapping inside our own files, dropout and normalisation.
Follows Radford et al. 2019 (GPT-2) and tiktoken's encoding rules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator, Literal

import regex

from minillm import bpe_fast, tokenizer_io
from minillm.bpe import (ENDOFTEXT, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PATTERNS,  # noqa: F401 (re-exported)
                         pretokenize, resolve_pattern, special_regex, split_on_special, utf8_safe)
from minillm.utils import MiniLLMError

Allowed = Literal["none", "all"] | set[str]
BATCH_CHARS_PER_PROCESS = 1 << 20  # encode_batch starts processes only for batches at least this big
STREAM_CHARS = 1 << 18  # encode_iterable's buffer: per-buffer work (join, cut) paid once per 256K characters


class SpecialTokenError(MiniLLMError, ValueError):
    """Text contains a special-token string that the caller did not allow."""


class _PieceCache(dict):
    """pre-token -> ids. A miss runs BPE on the piece; cleared when full (bounded memory)."""

    def __init__(self, tok: "Tokenizer"):
        super().__init__()
        self.tok = tok

    def __missing__(self, piece: str) -> list[int]:
        ids = self.tok._encode_piece(piece.encode("utf-8"))  # a lone surrogate raises here
        if len(self) >= self.tok.cache_size:
            self.clear()
        self[piece] = ids
        return ids


class Tokenizer:
    """A byte-level BPE tokenizer: merges, a split pattern and special tokens.

    >>> tok = Tokenizer.train("aaabdaaabac", vocab_size=260)
    >>> tok.encode("aaabdaaabac"), tok.eot_id
    ([258, 100, 258, 97, 99], 259)
    """

    FORMAT = tokenizer_io.FORMAT
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
        self.special_tokens: dict[str, int] = {}
        self.inverse_special: dict[int, str] = {}
        self.vocab_size: int = 1 + max(self.vocab)
        for s, i in dict(special_tokens or {}).items():
            self._add_special(s, i)
        self._split = regex.compile(self.pattern)
        self._split_ascii = bpe_fast.ascii_twin(self.pattern)  # GPT patterns: `re`, faster on ASCII
        self._cache = _PieceCache(self)
        self._identity = self.byte_ids == list(range(256))

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    @property
    def eot_id(self) -> int | None:
        """The id of `<|endoftext|>`, or None if this tokenizer has none."""
        return self.special_tokens.get(ENDOFTEXT)

    # --- building ----------------------------------------------------------------

    @classmethod
    def from_merges(cls, merges: Iterable[tuple[int, int]], pattern: str = "gpt4",
                    special_tokens: Iterable[str] = (ENDOFTEXT,)) -> "Tokenizer":
        """Merge i -> id 256 + i; special tokens get the ids after the merges."""
        merges = list(merges)
        n = 256 + len(merges)
        specials = {s: n + k for k, s in enumerate(dict.fromkeys(special_tokens))}
        return cls([(a, b, 256 + i) for i, (a, b) in enumerate(merges)], pattern, specials)

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = "gpt4", special_tokens: Iterable[str] = (ENDOFTEXT,),
              progress: bool = False, workers: int | None = None) -> "Tokenizer":
        """Train on `text` to `vocab_size` ids (256 bytes + merges + special tokens).

        Special-token strings in `text` are document boundaries: no merge crosses
        them and they are not counted. If the text runs out of pairs first, the
        vocabulary is smaller (check `tok.vocab_size`). `workers` processes count
        the pre-tokens (default: all cores; texts under a megabyte use one).
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise MiniLLMError(f"vocab_size must be >= 256 + {len(special_tokens)} special tokens, got {vocab_size}")
        pattern = resolve_pattern(pattern)
        merges = bpe_fast.train_bpe(text, n_merges, pattern, special_tokens, workers=workers, progress=progress)
        return cls.from_merges(merges, pattern, special_tokens)

    def _add_special(self, token: str, i: int) -> None:
        if not isinstance(token, str) or not token:
            raise MiniLLMError(f"a special token must be a non-empty string, got {token!r}")
        if not isinstance(i, int) or i < 0 or i in self.vocab or i in self.inverse_special:
            raise MiniLLMError(f"special token {token!r}: id {i!r} is not a new non-negative integer")
        self.special_tokens[token] = i
        self.inverse_special[i] = token
        self.vocab_size = max(self.vocab_size, i + 1)

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Add special tokens to a trained tokenizer: new ones get the ids after the
        current vocabulary, ones it has keep theirs. Returns the ids of `tokens`.

        Text containing them is plain text unless `allowed_special` names them (and,
        as for every special token, `encode` refuses it by default).

        >>> tok = Tokenizer.from_merges([], special_tokens=[ENDOFTEXT])
        >>> tok.add_special_tokens(["<|im_start|>", ENDOFTEXT]), tok.vocab_size
        ([257, 256], 258)
        """
        tokens = [tokens] if isinstance(tokens, str) else list(tokens)
        for t in tokens:
            if t not in self.special_tokens:
                self._add_special(t, self.vocab_size)
        return [self.special_tokens[t] for t in tokens]

    # --- encoding ----------------------------------------------------------------

    def _encode_piece(self, piece: bytes) -> list[int]:
        """BPE on one pre-token (its UTF-8 bytes), merges applied by rank."""
        ids = list(piece) if self._identity else [self.byte_ids[b] for b in piece]
        return bpe_fast.encode_word(ids, self._rank, self.merges) if len(ids) > 1 else ids

    def _encode_pieces(self, pieces: Iterable[str]) -> list[int]:
        """Pre-tokens -> ids, each looked up in (or added to) the cache."""
        return list(chain.from_iterable(map(self._cache.__getitem__, pieces)))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with every special-token string treated as plain text.

        A long text is split in chunks where cutting cannot change the pre-tokens
        (`bpe_fast.chunk_bounds`), so the list of pre-tokens never holds all of it."""
        try:
            return self._encode_long(text)
        except UnicodeEncodeError:  # lone surrogates: U+FFFD, as tiktoken
            return self._encode_long(utf8_safe(text))

    def _findall(self, text: str, start: int = 0, end: int | None = None) -> list[str]:
        """The pre-tokens of `text[start:end]` (faster than the regex alone: the `re` twin on ASCII)."""
        return bpe_fast.find_pretokens(self._split, self._split_ascii, text, start, end)

    def _encode_long(self, text: str) -> list[int]:
        if len(text) <= bpe_fast.CHUNK_CHARS:
            return self._encode_pieces(self._findall(text))
        out: list[int] = []
        for start, end in bpe_fast.chunk_bounds(text, self.pattern, chunk_chars=bpe_fast.CHUNK_CHARS):
            out.extend(chain.from_iterable(map(self._cache.__getitem__, self._findall(text, start, end))))
        return out

    def _special_sets(self, allowed_special: Allowed, disallowed_special) -> tuple[set[str], set[str]]:
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special in ("none", None):
            allowed = set()
        else:
            allowed = {allowed_special} if isinstance(allowed_special, str) else set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise MiniLLMError(f"not special tokens of this tokenizer: {sorted(unknown)}")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = set(disallowed_special or ())
        return allowed, disallowed

    def encode(self, text: str, allowed_special: Allowed = "none",
               disallowed_special: Literal["all"] | Iterable[str] = "all") -> list[int]:
        """Text -> token ids, with tiktoken's rules for special tokens.

        `allowed_special` strings become their special id. Any other special-token
        string in `text` raises `SpecialTokenError` while `disallowed_special="all"`
        (the default); pass `disallowed_special=()` to encode them as plain text.
        Where special tokens overlap, the leftmost match wins, then the longest.
        """
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        if disallowed:
            _check_disallowed(text, special_regex(disallowed))
        return self._encode_allowed(text, special_regex(allowed))

    def _encode_allowed(self, text: str, allowed_re: regex.Pattern | None) -> list[int]:
        if allowed_re is None:
            return self.encode_ordinary(text)
        out: list[int] = []
        start = 0
        for m in allowed_re.finditer(text):
            out += self.encode_ordinary(text[start:m.start()])
            out.append(self.special_tokens[m.group()])
            start = m.end()
        out += self.encode_ordinary(text[start:])
        return out

    def encode_batch(self, texts: list[str], allowed_special: Allowed = "none",
                     disallowed_special: Literal["all"] | Iterable[str] = "all",
                     workers: int | None = None) -> list[list[int]]:
        """`[encode(t) for t in texts]`, in `workers` processes (default: all cores)
        when the batch holds over a megabyte of text per process."""
        texts = list(texts)
        self._special_sets(allowed_special, disallowed_special)  # bad arguments fail here, not in a worker
        workers = min(workers or os.cpu_count() or 1, sum(map(len, texts)) // BATCH_CHARS_PER_PROCESS)
        if workers <= 1:
            return [self.encode(t, allowed_special, disallowed_special) for t in texts]
        step = max(1, len(texts) // (4 * workers))
        jobs = [(texts[i:i + step], allowed_special, disallowed_special) for i in range(0, len(texts), step)]
        parts = bpe_fast.process_map(_encode_batch_job, jobs, workers, _set_worker_tokenizer, (self,))
        return [ids for part in parts for ids in part]

    def encode_iterable(self, lines: Iterable[str], allowed_special: Allowed = "none",
                        disallowed_special: Literal["all"] | Iterable[str] = "all",
                        chunk_chars: int = STREAM_CHARS) -> Iterator[int]:
        """Encode a stream of strings (e.g. an open text file) lazily, with the same ids
        as `encode("".join(lines))`, holding about `chunk_chars` characters at a time.

        The buffer is cut only at a pre-token boundary, keeping the last two
        pre-tokens (the last one may still grow when more text arrives), never
        inside a possible special token, and never between the halves of a
        surrogate pair. Text just before a possible special token is split as if it
        ended there (it does, if the token completes). One pre-token longer than the
        buffer is kept whole. Tested for the GPT-2 and GPT-4 patterns. The ids come
        from `encode_iterable_chunks`' lists, flattened in C.

        >>> tok = Tokenizer.train("aaabdaaabac", vocab_size=260)
        >>> list(tok.encode_iterable(["aaab", "daaa", "bac"], chunk_chars=2))
        [258, 100, 258, 97, 99]
        """
        return chain.from_iterable(self.encode_iterable_chunks(lines, allowed_special, disallowed_special,
                                                               chunk_chars))

    def encode_iterable_chunks(self, lines: Iterable[str], allowed_special: Allowed = "none",
                               disallowed_special: Literal["all"] | Iterable[str] = "all",
                               chunk_chars: int = STREAM_CHARS) -> Iterator[list[int]]:
        """`encode_iterable`'s ids, one list per buffer (what a token-file writer wants).

        Each buffer goes through `encode`'s own code: the split (`_findall`, run once
        by `bpe_fast.stream_cut`, which only decides where to cut), the pre-token cache
        and the merge loop; only the buffer's cut and its tail are the stream's own.
        """
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        allowed_re, disallowed_re = special_regex(allowed), special_regex(disallowed)
        hold = max((len(s) for s in allowed | disallowed), default=1) - 1
        prefixes = {s[:k] for s in allowed for k in range(1, len(s))}  # a special token may start with these
        lookup = self._cache.__getitem__
        pending: list[str] = []
        size, wait_for = 0, chunk_chars
        for piece in lines:
            pending.append(piece)
            size += len(piece)
            if size < wait_for:
                continue
            raw, carry = "".join(pending), ""
            if raw and "\ud800" <= raw[-1] <= "\udbff":  # a high surrogate: its other half may come next
                raw, carry = raw[:-1], raw[-1]
            buf = raw if raw.isascii() else utf8_safe(raw)  # isascii: O(1), no copy
            if disallowed_re is not None:
                _check_disallowed(buf, disallowed_re)
            head, pieces, cut = bpe_fast.stream_cut(self._split, buf, allowed_re, prefixes, hold, self._findall)
            ids = self._encode_allowed(buf[:head], allowed_re) if head else []
            ids.extend(chain.from_iterable(map(lookup, pieces)))  # as `_encode_long` does
            yield ids
            pending = [buf[cut:] + carry]
            size = len(pending[0])
            wait_for = max(chunk_chars, 2 * size)  # a long pre-token still waiting: rescan it rarely
        yield self.encode("".join(pending), allowed, disallowed)

    # --- decoding ----------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token ids -> the raw bytes they stand for (special tokens as UTF-8)."""
        vocab, parts = self.vocab, []
        for i in ids:
            b = vocab.get(i)
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

    # --- files and other libraries (minillm.tokenizer_io) ---------------------------

    def _merge_triples(self) -> list[tuple[int, int, int]]:
        return [(a, b, new) for (a, b), new in self.merges.items()]

    def save(self, path: str | Path) -> Path:
        """Write a readable JSON file: one merge per line, `[a, b, new_id, "text"]`."""
        return tokenizer_io.write_json(path, self._merge_triples(), self.vocab, self.pattern, self.special_tokens,
                                       None if self._identity else self.byte_ids)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Read a file written by `save` (anything else: one clear MiniLLMError)."""
        d = tokenizer_io.read_json(path)
        try:
            return cls(d["merges"], d["pattern"], d["special_tokens"], d["byte_ids"])
        except (TypeError, ValueError) as e:
            raise MiniLLMError(f"tokenizer file {path} is damaged: {e!r}")

    @classmethod
    def from_gpt2_files(cls, vocab_json: str | Path, merges_txt: str | Path,
                        special_tokens: Iterable[str] = (ENDOFTEXT,), pattern: str = "gpt2") -> "Tokenizer":
        """Import a GPT-2-format `vocab.json` + `merges.txt` (Hugging Face's files),
        keeping its ids."""
        merges, byte_ids, specials = tokenizer_io.read_gpt2_files(vocab_json, merges_txt, list(special_tokens))
        return cls(merges, pattern, specials, byte_ids)

    def to_gpt2_files(self, folder: str | Path) -> tuple[Path, Path]:
        """Write `vocab.json` and `merges.txt` in GPT-2's format (for HF tokenizers)."""
        return tokenizer_io.write_gpt2_files(folder, self._merge_triples(), self.vocab, self.special_tokens)

    def to_tiktoken(self, name: str = "minillm"):
        """A `tiktoken.Encoding` with our ranks, pattern and special tokens (same ids)."""
        return tokenizer_io.tiktoken_encoding(name, self._merge_triples(), self.vocab, self.pattern,
                                              self.special_tokens)


def _check_disallowed(text: str, disallowed_re: regex.Pattern) -> None:
    m = disallowed_re.search(text)
    if m:
        raise SpecialTokenError(
            f"text contains the special token {m.group()!r} at character {m.start()}; "
            f"pass allowed_special={{{m.group()!r}}} (or 'all') to encode it as a special token, "
            f"or disallowed_special=() to encode it as ordinary text")


_WORKER_TOKENIZER: Tokenizer | None = None  # the tokenizer of an encode_batch worker process


def _set_worker_tokenizer(tok: Tokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tok


def _encode_batch_job(job: tuple[list[str], Allowed, object]) -> list[list[int]]:
    texts, allowed, disallowed = job
    return [_WORKER_TOKENIZER.encode(t, allowed, disallowed) for t in texts]


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
    import matplotlib.pyplot as plt  # deferred: plotting is optional for the tokenizer

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


@dataclass
class TokenizerConfig:
    """What `Tokenizer.train` needs; the command line's flags come from these fields."""

    vocab_size: int = field(default=512, metadata={"help": "ids in total: 256 bytes + merges + special tokens"})
    pattern: str = field(default="gpt4", metadata={"help": "split regex: gpt2, gpt4 or a regex"})
    special: str = field(default=ENDOFTEXT, metadata={"help": "special tokens, comma-separated ('' for none)"})
    workers: int = field(default=0, metadata={"help": "processes that count pre-tokens (0: all cores)"})

    def special_tokens(self) -> list[str]:
        return [s for s in self.special.split(",") if s]

    def train(self, text: str, progress: bool = False) -> Tokenizer:
        return Tokenizer.train(text, self.vocab_size, self.pattern, self.special_tokens(), progress=progress,
                               workers=self.workers or None)
