"""`minillm assign`: instructors: make the student version of lessons, grade submissions."""

from __future__ import annotations

import argparse

HELP = "instructors: make the student version of lessons, grade submissions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import assign  # deferred: importing torch takes a second; `minillm --help` stays instant

    assign.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minillm import assign  # deferred: see add_arguments

    return assign.run(args) or 0
