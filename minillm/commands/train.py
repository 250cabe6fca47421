"""`minillm train`: lesson 04: pretrain a GPT on a text file or TinyWorld."""

from __future__ import annotations

import argparse

HELP = "lesson 04: pretrain a GPT on a text file or TinyWorld"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import train  # deferred: importing torch takes a second; `minillm --help` stays instant

    train.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import train  # deferred: see add_arguments

    return train.run(args) or 0
