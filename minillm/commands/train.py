"""`minillm train`: lesson 04: pretrain a GPT on a text file or TinyWorld.

The route: flags -> GPTConfig + TrainConfig (checked before anything is written) ->
the run folder (created, checked writable, locked for this run) -> the tokenizer
first (trained on the data or `--tokenizer`), then the model's vocab_size from it ->
token files (`minillm.data.write_token_files`) -> `minillm.train.train`.
`--resume` reuses the folder's own tokenizer and token files.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

HELP = "lesson 04: pretrain a GPT on a text file or TinyWorld"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm.config import add_dataclass_arguments
    from minillm.model import GPTConfig
    from minillm.train import TrainConfig

    parser.add_argument("--data", default="tinyworld", help="tinyworld, a text file, or a corpus name (tinyshakespeare)")
    parser.add_argument("--val-data", default=None, help="validation text file (default: TinyWorld's val split, "
                        "or the last 10%% of the data)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer.json to use (default: train one on the data "
                        "with --vocab-size ids); the model's vocab_size is the tokenizer's")
    parser.add_argument("--out", default="runs/train", help="run folder: checkpoint, metrics, plots")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt (with OUT's tokenizer and token files)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    add_dataclass_arguments(parser, GPTConfig)
    add_dataclass_arguments(parser, TrainConfig)


def split_texts(data: str, val_data: str | None) -> tuple[str, str]:
    """(train text, validation text): TinyWorld's splits, --val-data, or the last 10% of the data."""
    from minillm.data import load_corpus
    from minillm.utils import MiniLLMError

    text = load_corpus(data, "train")
    if val_data is not None:
        val_text = load_corpus(val_data, "val", purpose="validate on")
    elif data == "tinyworld":
        val_text = load_corpus("tinyworld", "val")
    else:
        cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
        text, val_text = text[:cut], text[cut:]
    if not val_text.strip():
        raise MiniLLMError("the validation text is empty: give more data or --val-data")
    return text, val_text


def check_inputs(args: argparse.Namespace, tcfg) -> tuple[str, str, object]:
    """(train text, val text, the --tokenizer or None): every input read and the device and dtype
    checked before the run folder is made, so a bad flag or file leaves nothing behind."""
    from minillm.device import pick_device
    from minillm.runtime import resolve_dtype
    from minillm.tokenizer import Tokenizer

    resolve_dtype(tcfg.dtype, pick_device(tcfg.device))
    text, val_text = split_texts(args.data, args.val_data)
    tok = Tokenizer.load(args.tokenizer) if args.tokenizer is not None and not args.resume else None
    return text, val_text, tok


def prepare_run(args: argparse.Namespace, out: Path, vocab_size: int, inputs: tuple[str, str, object]):
    """(tokenizer, train token file, val token file, val bytes per token) in OUT."""
    from minillm.data import load_tokens, write_token_files
    from minillm.tokenizer import Tokenizer
    from minillm.utils import MiniLLMError

    text, val_text, tok = inputs
    if args.resume:  # the run's own files: a resume must see exactly what the run saw
        paths = [out / "tokenizer.json", out / "train.bin", out / "val.bin"]
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise MiniLLMError(f"cannot resume: {out} has no {', '.join(missing)}")
        bpt = len(val_text.encode("utf-8")) / len(load_tokens(paths[2]))
        return Tokenizer.load(paths[0]), paths[1], paths[2], bpt
    if tok is None:
        print(f"training a tokenizer with {vocab_size} ids on {min(len(text), 1 << 20):,} characters")
        tok = Tokenizer.train(text[:1 << 20], vocab_size)
    files = write_token_files(out, tok, {"train": text, "val": val_text}, progress=args.progress)
    return tok, files["train"].path, files["val"].path, files["val"].bytes_per_token


def run(args: argparse.Namespace) -> int:
    from minillm import world  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.model import GPTConfig
    from minillm.runfolder import locked, prepare_out_dir
    from minillm.train import TrainConfig, train

    mcfg = dataclass_from_args(GPTConfig, args)       # bad flags fail here, before any file is written
    tcfg = dataclass_from_args(TrainConfig, args)
    inputs = check_inputs(args, tcfg)                 # bad files, device or dtype: before any file is written
    out = prepare_out_dir(args.out)
    with locked(out):                                 # one run per folder, from the first file on
        tok, train_path, val_path, bpt = prepare_run(args, out, mcfg.vocab_size, inputs)
        mcfg = dataclasses.replace(mcfg, vocab_size=tok.vocab_size)   # the tokenizer owns the vocabulary
        floor = None
        if args.data == "tinyworld" and args.val_data is None:
            floor = world.split_floor("val").bits_per_byte
        result = train(mcfg, tcfg, train_path, val_path, out_dir=out, resume=args.resume, tokenizer=tok,
                       bytes_per_token=bpt, floor_bits_per_byte=floor, progress=args.progress,
                       run_files={"train.bin": train_path, "val.bin": val_path})
    if result.final_val_loss is not None:
        print(f"final validation loss {result.final_val_loss:.4f} nats/token = "
              f"{result.final_val_loss / math.log(2) / bpt:.4f} bits/byte")
    print(f"checkpoint: {result.checkpoint}")
    return 0
