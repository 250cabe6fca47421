"""`minillm world`: lesson 00: generate TinyWorld stories (and the data/ files), print the entropy floor."""

from __future__ import annotations

import argparse

HELP = "lesson 00: generate TinyWorld stories (and the data/ files), print the entropy floor"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import world  # deferred: importing torch takes a second; `minillm --help` stays instant

    world.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import world  # deferred: see add_arguments

    return world.run(args) or 0
