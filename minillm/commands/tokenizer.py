"""`minillm tokenizer`: lesson 01: train a byte-level BPE tokenizer, encode and decode text."""

from __future__ import annotations

import argparse

HELP = "lesson 01: train a byte-level BPE tokenizer, encode and decode text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import tokenizer  # deferred: importing torch takes a second; `minillm --help` stays instant

    tokenizer.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import tokenizer  # deferred: see add_arguments

    return tokenizer.run(args) or 0
