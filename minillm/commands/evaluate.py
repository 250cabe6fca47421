"""`minillm evaluate`: lesson 05: perplexity, bits per byte and few-shot accuracy of a checkpoint."""

from __future__ import annotations

import argparse

HELP = "lesson 05: perplexity, bits per byte and few-shot accuracy of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import evaluate  # deferred: importing torch takes a second; `minillm --help` stays instant

    evaluate.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import evaluate  # deferred: see add_arguments

    return evaluate.run(args) or 0
