"""`minillm cost`: lesson 07: FLOPs, GPU-hours, dollars and CO2 of a training run."""

from __future__ import annotations

import argparse

HELP = "lesson 07: FLOPs, GPU-hours, dollars and CO2 of a training run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import flops  # deferred: importing torch takes a second; `minillm --help` stays instant

    flops.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import flops  # deferred: see add_arguments

    return flops.run(args) or 0
