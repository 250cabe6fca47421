"""Text -> token ids on disk -> batches (lesson 04).

What it builds:
- a compact token file: a 16-byte header then the ids as uint16 (vocab <= 65,536)
  or uint32, written while streaming the text in chunks so memory stays bounded
  on large files (`tokenize_file`), and read back without copying (`load_tokens`,
  a NumPy memmap);
- batch sampling: random windows (`batch_offsets` + `get_batch`) and sequential
  windows (`sequential_batches`). Random batches are *stateless*: the windows of
  step s depend only on (seed, s), so a resumed run or the 2nd process of a
  multi-process run draws exactly the windows the 1st would have;
- `load_corpus`: TinyWorld, any local text file, or a small public corpus
  downloaded once when online (with a clear error offline).

Left out: shuffling documents across shards, packing with attention masks,
multi-file datasets. The file layout follows nanoGPT's `train.bin` idea (a flat
array of ids) with a small header so the dtype cannot be guessed wrong.
"""

from __future__ import annotations

import os
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from minillm.utils import MiniLLMError, atomic_write

MAGIC = b"MLLMTOK1"                 # 8 bytes, then dtype code (uint32) and count... see _HEADER
_HEADER = struct.Struct("<8sII")    # magic, bytes per id (2 or 4), reserved (0)
_DTYPES = {2: np.uint16, 4: np.uint32}


def token_dtype(vocab_size: int) -> type:
    """The smallest unsigned type that holds every id: uint16 up to 65,536 ids, else uint32.

    >>> token_dtype(50257), token_dtype(100277)
    (<class 'numpy.uint16'>, <class 'numpy.uint32'>)
    """
    if vocab_size < 1:
        raise MiniLLMError(f"vocab_size must be positive, got {vocab_size}")
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def write_tokens(path: str | os.PathLike, chunks: Iterable[Iterable[int]], vocab_size: int) -> int:
    """Write id chunks to a token file at `path` (atomically); returns how many ids.

    Chunks are written as they come, so the whole corpus never sits in memory.
    """
    dtype = token_dtype(vocab_size)
    count = 0

    def write(tmp: str) -> None:
        nonlocal count
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, np.dtype(dtype).itemsize, 0))
            for chunk in chunks:
                arr = np.asarray(list(chunk) if not isinstance(chunk, np.ndarray) else chunk, dtype=np.int64)
                if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                    raise MiniLLMError(f"token id {int(arr.max())} is outside the vocabulary (size {vocab_size})")
                f.write(arr.astype(dtype).tobytes())
                count += int(arr.size)

    atomic_write(path, write)
    return count


def load_tokens(path: str | os.PathLike) -> np.ndarray:
    """The ids of a token file as a read-only memmap (no copy; works for files larger than RAM)."""
    path = Path(path)
    if not path.exists():
        raise MiniLLMError(f"no token file at {path}; make one with minillm.data.tokenize_file")
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
    if len(head) < _HEADER.size or head[:8] != MAGIC:
        raise MiniLLMError(f"{path} is not a minillm token file (bad header)")
    _, width, _ = _HEADER.unpack(head)
    if width not in _DTYPES:
        raise MiniLLMError(f"{path}: unknown id width {width}")
    if path.stat().st_size == _HEADER.size:
        return np.zeros(0, dtype=_DTYPES[width])
    return np.memmap(path, dtype=_DTYPES[width], mode="r", offset=_HEADER.size)


def iter_text_chunks(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> Iterator[str]:
    """Read a UTF-8 text file in pieces of about `chunk_bytes`, cut at line ends.

    Cutting at line ends (never inside a word) keeps the tokenization the same as
    encoding the whole file at once for any split pattern that does not merge
    across newlines (TinyWorld: one story per line).
    """
    with open(path, encoding="utf-8") as f:
        yield from join_lines(f, chunk_bytes)


def join_lines(lines: Iterable[str], chunk_chars: int) -> Iterator[str]:
    """Group lines (newlines kept) into pieces of about `chunk_chars` characters.

    >>> list(join_lines(["ab\\n", "c\\n", "d\\n"], 4))
    ['ab\\nc\\n', 'd\\n']
    """
    buf: list[str] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= chunk_chars:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


def _encode_stream(tokenizer, pieces: Iterator[str], allowed_special) -> Iterator[list[int]]:
    """Ids for a stream of text pieces, in lists.

    A BPE tokenizer with `encode_iterable_chunks` (minillm.tokenizer.Tokenizer) gives
    exactly the ids of encoding the whole text at once, one list per buffer: it cuts only
    at pre-token boundaries. A plain `encode(text)` tokenizer is called per piece (pieces
    are line-aligned).
    """
    if hasattr(tokenizer, "encode_iterable_chunks"):
        yield from tokenizer.encode_iterable_chunks(pieces, allowed_special=allowed_special)
    else:
        for piece in pieces:
            yield tokenizer.encode(piece)


def tokenize_file(text_path: str | os.PathLike, tokenizer, out_path: str | os.PathLike,
                  chunk_bytes: int = 1 << 20, progress: bool = True,
                  allowed_special: str | set[str] = "none") -> int:
    """Encode a text file into a token file, streaming; returns the number of ids.

    Memory stays at about `chunk_bytes` of text plus its ids, whatever the file size.
    A progress bar (tqdm) counts the bytes read. `allowed_special`: special-token
    strings in the file (e.g. {"<|endoftext|>"} between documents) that become
    special tokens; by default one in the text is an error, as in tiktoken.
    """
    from tqdm.auto import tqdm

    text_path = Path(text_path)
    if not text_path.exists():
        raise MiniLLMError(f"no text file at {text_path}")
    total = text_path.stat().st_size
    if total == 0:
        raise MiniLLMError(f"{text_path} is empty: there is nothing to train on")
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"tokenizing {text_path.name}",
               disable=not progress)

    def pieces() -> Iterator[str]:
        for piece in iter_text_chunks(text_path, chunk_bytes):
            bar.update(len(piece.encode("utf-8")))
            yield piece

    try:
        return write_tokens(out_path, _encode_stream(tokenizer, pieces(), allowed_special),
                            tokenizer.vocab_size)
    finally:
        bar.close()


def tokenize_text(text: str, tokenizer, chunk_bytes: int = 1 << 20,
                  allowed_special: str | set[str] = "none") -> np.ndarray:
    """Encode a string (streamed in line-aligned chunks) into an array of ids (uint16 or uint32)."""
    if not text:
        raise MiniLLMError("the text is empty: there is nothing to tokenize")
    pieces = join_lines(text.splitlines(keepends=True), chunk_bytes)
    dtype = token_dtype(tokenizer.vocab_size)
    return np.concatenate([np.asarray(p, dtype=dtype)
                           for p in _encode_stream(tokenizer, pieces, allowed_special)])


@dataclass
class TokenFile:
    """A token file written by `write_token_files`, with what it encodes."""

    path: Path
    n_tokens: int
    n_bytes: int            # UTF-8 bytes of the text it encodes

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / max(self.n_tokens, 1)


def write_token_files(out_dir: str | os.PathLike, tokenizer, texts: dict[str, str | Path], *,
                      progress: bool = False, allowed_special: str | set[str] = "none") -> dict[str, TokenFile]:
    """Text -> token files: the one way `train`, `speedrun`, `sweep` and the notebooks tokenize.

    `texts` maps a split name to its text: a `str` is the text itself, a `Path` a UTF-8
    text file (streamed, never read whole). Writes OUT_DIR/NAME.bin per split.
    """
    out = {}
    for name, text in texts.items():
        path = Path(out_dir) / f"{name}.bin"
        if isinstance(text, Path):
            n = tokenize_file(text, tokenizer, path, progress=progress, allowed_special=allowed_special)
            n_bytes = text.stat().st_size
        else:
            n = write_tokens(path, [tokenize_text(text, tokenizer, allowed_special=allowed_special)],
                             tokenizer.vocab_size)
            n_bytes = len(text.encode("utf-8"))
        out[name] = TokenFile(path, n, n_bytes)
    return out


def check_enough_tokens(tokens: np.ndarray, block_size: int, what: str = "data") -> None:
    """A batch window needs block_size + 1 ids (inputs plus the shifted targets)."""
    if len(tokens) < block_size + 1:
        raise MiniLLMError(
            f"the {what} has {len(tokens)} tokens but a context of {block_size} needs at least "
            f"{block_size + 1}: use more text or a smaller --block-size")


def batch_offsets(n_tokens: int, block_size: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Start positions of the `batch_size` random windows of step `step`.

    Stateless: the same (seed, step) always gives the same windows, so resuming at
    step k and splitting a batch across processes need no sampler state.

    >>> batch_offsets(100, 8, 2, seed=0, step=3).tolist() == batch_offsets(100, 8, 2, 0, 3).tolist()
    True
    """
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - block_size, size=batch_size)  # start <= n - block - 1


def get_batch(tokens: np.ndarray, offsets: np.ndarray, block_size: int,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and targets y (x shifted by one) for windows starting at `offsets`.

    Returns two (B, T) int64 tensors, T = block_size: y[b, t] = x[b, t + 1] inside
    the window, and y's last column is the id after the window.
    """
    rows = np.stack([np.asarray(tokens[o:o + block_size + 1], dtype=np.int64) for o in offsets])  # (B, T+1)
    xy = torch.from_numpy(rows)
    x, y = xy[:, :-1], xy[:, 1:]  # (B, T) each
    device = torch.device(device)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous().to(device), y.contiguous().to(device)


def random_batch(tokens: np.ndarray, batch_size: int, block_size: int, seed: int = 0, step: int = 0,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows for step `step`: x, y of shape (B, T)."""
    check_enough_tokens(tokens, block_size)
    return get_batch(tokens, batch_offsets(len(tokens), block_size, batch_size, seed, step), block_size, device)


def sequential_batches(tokens: np.ndarray, batch_size: int, block_size: int, start: int = 0,
                       device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Non-overlapping windows in order: yields (x, y, next_start) until the data runs out.

    Window i covers ids [start + i*T, start + (i+1)*T] (T + 1 ids; the last one
    only as a target). `next_start` is the data position to resume from. The last
    batch may have fewer than `batch_size` rows; a tail shorter than T + 1 is dropped.
    """
    check_enough_tokens(tokens, block_size)
    pos = start
    while pos + block_size + 1 <= len(tokens):
        offsets = []
        while len(offsets) < batch_size and pos + block_size + 1 <= len(tokens):
            offsets.append(pos)
            pos += block_size
        x, y = get_batch(tokens, np.array(offsets), block_size, device)
        yield x, y, pos


# ---------------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------------

# Small public corpora we know how to fetch (only when asked, never at test time).
CORPORA = {
    "tinyshakespeare": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
}


def load_corpus(name_or_path: str, split: str = "train", cache_dir: str | os.PathLike | None = None,
                purpose: str = "train on") -> str:
    """The text of a corpus: 'tinyworld' (embedded), a local text file, or a name in CORPORA.

    A named corpus is downloaded once into `cache_dir` (default ~/.cache/minillm);
    offline, it fails with a message that says how to proceed instead of hanging.
    `split` only applies to TinyWorld ('train' or 'val'); `purpose` finishes the message
    for an empty file ("... there is nothing to train on").
    """
    if name_or_path == "tinyworld":
        from minillm import world

        return world.load_split(split)
    path = Path(name_or_path)
    if path.exists():
        if path.is_dir():
            raise MiniLLMError(f"{path} is a folder; give a text file")
        text = read_text_file(path)
        if not text:
            raise MiniLLMError(f"{path} is empty: there is nothing to {purpose}")
        return text
    if name_or_path not in CORPORA:
        raise MiniLLMError(f"no file {name_or_path!r} and no known corpus of that name "
                           f"(known: tinyworld, {', '.join(CORPORA)})")
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "minillm"
    target = cache / f"{name_or_path}.txt"
    if not target.exists():
        url = CORPORA[name_or_path]
        try:
            with urllib.request.urlopen(url, timeout=20) as r:
                data = r.read()
        except OSError as e:
            raise MiniLLMError(f"could not download {name_or_path} from {url} ({e}); are you offline? "
                               f"Download it by hand and pass the file's path instead") from None
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
    return read_text_file(target)


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text file's text; unreadable or not UTF-8 is a one-line MiniLLMError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MiniLLMError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}): "
                           "give a text file") from None
    except OSError as e:
        raise MiniLLMError(f"cannot read {path}: {e.strerror or e}") from None
