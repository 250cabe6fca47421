"""`minillm tokenizer train|encode|decode`: lesson 01's byte-level BPE from the command line.

    minillm tokenizer train --vocab-size 512 --out tok.json     # TinyWorld by default; --input FILE
    minillm tokenizer encode --tokenizer tok.json "Once upon a time"
    minillm tokenizer encode --tokenizer tok.json "Once upon a time" | minillm tokenizer decode --tokenizer tok.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minillm.config import add_dataclass_arguments, dataclass_from_args
from minillm.utils import MiniLLMError

HELP = "lesson 01: train a byte-level BPE tokenizer, encode and decode text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import tokenizer  # deferred: `minillm --help` does not import the lessons (start-up speed)

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fmt = argparse.ArgumentDefaultsHelpFormatter  # subparsers do not inherit it: show every default
    t = sub.add_parser("train", formatter_class=fmt,
                       help="train a tokenizer on a text file (default: TinyWorld's train split)")
    t.add_argument("--input", help="UTF-8 text file (default: TinyWorld's train split)")
    t.add_argument("--out", default="tokenizer.json", help="where to save the tokenizer")
    add_dataclass_arguments(t, tokenizer.TokenizerConfig)
    for name, help_text in (("encode", "text -> ids (one line of space-separated ids)"), ("decode", "ids -> text")):
        p = sub.add_parser(name, help=help_text, formatter_class=fmt)
        p.add_argument("--tokenizer", default="tokenizer.json", help="a file written by `train`")
        p.add_argument("text", nargs="?", help="the text (encode) or ids (decode); default: stdin")
        if name == "encode":
            p.add_argument("--allow-special", action="store_true", help="turn special-token strings into their ids")


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MiniLLMError(f"cannot read {path}: {e}")


def run(args: argparse.Namespace) -> int:
    from minillm import tokenizer  # deferred: see add_arguments

    if args.action == "train":
        out = Path(args.out)
        if out.is_dir():
            raise MiniLLMError(f"--out {out} is a folder; give the tokenizer's file name (e.g. {out / 'tokenizer.json'})")
        if not out.parent.is_dir():
            raise MiniLLMError(f"--out {out}: the folder {out.parent} does not exist")
        if args.input:
            text = _read_text(args.input)
            if not text.strip():
                raise MiniLLMError(f"{args.input} is empty: there is nothing to train on")
        else:
            from minillm import world  # deferred: only the default corpus needs it

            text = world.load_split("train")
        cfg = dataclass_from_args(tokenizer.TokenizerConfig, args)
        t0 = time.perf_counter()
        tok = cfg.train(text, progress=True)
        dt = time.perf_counter() - t0
        n = len(tok.encode(text, disallowed_special=()))
        tok.save(args.out)
        print(f"trained {tok!r} in {dt:.2f} s; {len(text.encode('utf-8', 'replace')) / max(n, 1):.2f} bytes/token "
              f"on the training text; saved {args.out}")
        return 0
    tok = tokenizer.Tokenizer.load(args.tokenizer)
    data = args.text if args.text is not None else sys.stdin.read()
    if args.action == "encode":
        try:
            ids = tok.encode(data, allowed_special="all" if args.allow_special else "none")
        except tokenizer.SpecialTokenError as e:
            raise MiniLLMError(f"{str(e).split(';')[0]}; add --allow-special to encode it as a special token")
        print(" ".join(map(str, ids)))
        return 0
    try:
        ids = [int(x) for x in data.replace(",", " ").split()]
    except ValueError:
        raise MiniLLMError("decode expects integer ids separated by spaces or commas")
    sys.stdout.write(tok.decode(ids))
    sys.stdout.write("\n" if sys.stdout.isatty() else "")
    return 0
