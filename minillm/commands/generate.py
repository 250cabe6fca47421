"""`minillm generate`: lesson 03: sample text from a checkpoint or GPT-2."""

from __future__ import annotations

import argparse

HELP = "lesson 03: sample text from a checkpoint or GPT-2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import model  # deferred: importing torch takes a second; `minillm --help` stays instant

    model.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import model  # deferred: see add_arguments

    return model.run(args) or 0
