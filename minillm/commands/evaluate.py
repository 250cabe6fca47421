"""`minillm evaluate`: lesson 05: perplexity, bits per byte and few-shot accuracy of a checkpoint.

Scores a text (default: TinyWorld's validation split) with `minillm.evaluate.score_text`,
compares it with the entropy floor of exactly the scored stories, and runs the
multiple-choice evaluation on TinyWorld's `mc_val` items.
"""

from __future__ import annotations

import argparse

HELP = "lesson 05: perplexity, bits per byte and few-shot accuracy of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint file or run folder (with tokenizer.json beside it)")
    parser.add_argument("--text", default="tinyworld", help="text file to score, or tinyworld (its val split)")
    parser.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: context / 2)")
    parser.add_argument("--shots", type=int, default=2, help="solved examples before each multiple-choice question")
    parser.add_argument("--mc-items", type=int, default=300, help="TinyWorld multiple-choice items to use (0: skip)")
    parser.add_argument("--scoring", default="text", choices=["text", "letter"],
                        help="multiple choice: score each choice's text (GPT-3) or the answer letter (MMLU)")
    parser.add_argument("--max-chars", type=int, default=0, help="score only the first N characters (cut at a "
                        "line end; 0: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def load_text(name: str, max_chars: int = 0) -> str:
    """The text to score (a file, or 'tinyworld' for its validation split), cut at a line end."""
    from minillm.data import load_corpus  # deferred: see run

    text = load_corpus(name, "val", purpose="evaluate")
    if max_chars > 0 and len(text) > max_chars:
        text = text[:text.rfind("\n", 0, max_chars) + 1 or max_chars]
    return text


def check_flags(args: argparse.Namespace) -> None:
    """Counts that cannot be negative, a stride that must be positive: refused before loading anything."""
    from minillm.utils import MiniLLMError  # deferred: see run

    if args.stride is not None and args.stride < 1:
        raise MiniLLMError(f"--stride must be a positive number of tokens, got {args.stride}")
    for flag in ("shots", "mc_items", "max_chars"):
        if getattr(args, flag) < 0:
            raise MiniLLMError(f"--{flag.replace('_', '-')} must be 0 or more, got {getattr(args, flag)}")


def run(args: argparse.Namespace) -> int:
    from minillm import evaluate, world  # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm.checkpoint import load_run
    from minillm.device import pick_device
    from minillm.utils import MiniLLMError

    check_flags(args)
    loaded = load_run(args.checkpoint, pick_device(args.device))
    if loaded.tokenizer is None:
        raise MiniLLMError(f"no tokenizer.json beside {loaded.meta['path']}: cannot turn the text into tokens")
    model, tok = loaded.model, loaded.tokenizer
    text = load_text(args.text, args.max_chars)
    s = evaluate.score_text(model, tok, text, stride=args.stride)
    print(s)
    if args.text == "tinyworld":
        floor = world.text_floor(text).bits_per_byte  # of exactly the scored stories
        print(f"vs TinyWorld's entropy floor {floor:.4f}: {evaluate.floor_gap(s.bits_per_byte, floor)}")
    if args.mc_items > 0:
        items = world.load_jsonl("mc_val")[:args.mc_items]
        print(evaluate.multiple_choice_eval(model, tok, items, shots=args.shots, scoring=args.scoring))
    return 0
