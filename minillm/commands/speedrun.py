"""`minillm speedrun`: the main job: TinyWorld -> tokenizer -> pretraining -> evaluation -> report."""

from __future__ import annotations

import argparse

HELP = "the main job: TinyWorld -> tokenizer -> pretraining -> evaluation -> report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import speedrun  # deferred: importing torch takes a second; `minillm --help` stays instant

    speedrun.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import speedrun  # deferred: see add_arguments

    return speedrun.run(args) or 0
