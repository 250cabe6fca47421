"""`minillm sweep`: lesson 06: train small models of several sizes and fit scaling laws."""

from __future__ import annotations

import argparse

HELP = "lesson 06: train small models of several sizes and fit scaling laws"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import scaling  # deferred: importing torch takes a second; `minillm --help` stays instant

    scaling.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import scaling  # deferred: see add_arguments

    return scaling.run(args) or 0
