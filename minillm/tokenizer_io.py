"""Lesson 01, tokenizer files: our JSON file, GPT-2's `vocab.json` + `merges.txt`, tiktoken.

What it builds: functions between plain data (merges as `(a, b, new_id)` triples,
`vocab` as id -> bytes, special tokens as str -> id) and files or other libraries.
`Tokenizer.save/load/from_gpt2_files/to_gpt2_files/to_tiktoken` call them; this
module knows nothing of the `Tokenizer` class (no import cycle).

* our file (`write_json` / `read_json`): readable JSON, one merge per line,
  `[a, b, new_id, "text"]`;
* GPT-2's files (Hugging Face's format): the same merges, with every byte written as
  a printable character (`gpt2_unicode_to_byte`), and the file's own ids kept;
* tiktoken: an `Encoding` built from our ranks, pattern and special tokens.

Left out: SentencePiece models and Hugging Face's single-file `tokenizer.json`.
Follows GPT-2's `encoder.py` (the byte-to-unicode table) and tiktoken's `Encoding`.
"""

from __future__ import annotations

import json
from pathlib import Path

from minillm.utils import MiniLLMError, atomic_write_text

FORMAT = "minillm-bpe"
Merges = list[tuple[int, int, int]]  # (a, b, new_id) in rank order


def _printable(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def write_json(path: str | Path, merges: Merges, vocab: dict[int, bytes], pattern: str,
               special_tokens: dict[str, int], byte_ids: list[int] | None = None) -> Path:
    """Write our readable JSON file: one merge per line, `[a, b, new_id, "text"]`."""
    head = {"format": FORMAT, "version": 1, "pattern": pattern, "special_tokens": special_tokens}
    if byte_ids is not None:
        head["byte_ids"] = byte_ids
    first = json.dumps(head, ensure_ascii=False)[:-1] + ',\n "merges": ['
    body = [" " + json.dumps([a, b, new, _printable(vocab[new])], ensure_ascii=False) for a, b, new in merges]
    return atomic_write_text(path, first + ("\n" + ",\n".join(body) + "\n" if body else "") + "]}\n")


def read_json(path: str | Path) -> dict:
    """Read a file written by `write_json`: {"merges", "pattern", "special_tokens",
    "byte_ids"}. Anything else (missing, a folder, binary, other JSON) raises one
    clear MiniLLMError."""
    try:
        d = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise MiniLLMError(f"cannot read tokenizer file {path}: {e.strerror or e}")
    except UnicodeDecodeError:
        raise MiniLLMError(f"cannot read tokenizer file {path}: it is not UTF-8 text "
                           f"(expected the JSON file `Tokenizer.save` writes)")
    except json.JSONDecodeError as e:
        raise MiniLLMError(f"cannot read tokenizer file {path}: not JSON ({e})")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise MiniLLMError(f"{path} is not a minillm tokenizer file (format {FORMAT!r})")
    try:
        return {"merges": [(int(m[0]), int(m[1]), int(m[2])) for m in d["merges"]],
                "pattern": d["pattern"], "special_tokens": dict(d.get("special_tokens", {})),
                "byte_ids": d.get("byte_ids")}
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise MiniLLMError(f"tokenizer file {path} is damaged: {e!r}")


def gpt2_unicode_to_byte() -> dict[str, int]:
    """GPT-2's files write each byte as a printable character: bytes that are
    printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the other
    68 bytes take the characters chr(256), chr(257), ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def read_gpt2_files(vocab_json: str | Path, merges_txt: str | Path,
                    special_tokens: list[str]) -> tuple[Merges, list[int], dict[str, int]]:
    """GPT-2-format files -> (merges, byte_ids, special tokens found in the vocab),
    keeping the files' ids: `byte_ids[b]` is the id of byte b."""
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
        raise MiniLLMError(f"cannot import GPT-2 files {vocab_json}, {merges_txt}: {e!r}")
    return merges, byte_ids, {s: vocab[s] for s in special_tokens if s in vocab}


def write_gpt2_files(folder: str | Path, merges: Merges, vocab: dict[int, bytes],
                     special_tokens: dict[str, int]) -> tuple[Path, Path]:
    """Write `vocab.json` and `merges.txt` in GPT-2's format (for HF tokenizers)."""
    to_char = {b: ch for ch, b in gpt2_unicode_to_byte().items()}
    text = {i: "".join(to_char[x] for x in b) for i, b in vocab.items()}
    if len(set(text.values())) != len(text):
        raise MiniLLMError("two tokens have the same bytes: GPT-2's vocab.json cannot hold that")
    folder = Path(folder)
    v = atomic_write_text(folder / "vocab.json", json.dumps({t: i for i, t in sorted(text.items())} | special_tokens,
                                                           ensure_ascii=False))
    m = atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(
        f"{text[a]} {text[b]}\n" for a, b, _ in merges))
    return v, m


def tiktoken_encoding(name: str, merges: Merges, vocab: dict[int, bytes], pattern: str,
                      special_tokens: dict[str, int]):
    """A `tiktoken.Encoding` with our ranks (same ids, tiktoken's speed). tiktoken
    ranks tokens by id, so merged ids must grow with merge rank and no two tokens
    may share bytes."""
    import tiktoken  # deferred: an optional dependency (the interop extra)

    ranks = {b: i for i, b in vocab.items()}
    if len(ranks) != len(vocab):
        raise MiniLLMError("two tokens have the same bytes: tiktoken cannot represent this vocabulary")
    new_ids = [new for _, _, new in merges]
    if new_ids != sorted(new_ids):
        raise MiniLLMError("merged ids do not grow with merge rank: tiktoken cannot represent this order")
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=dict(special_tokens))
