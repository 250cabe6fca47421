"""The `minillm` command line (also `python -m minillm`).

`minillm COMMAND ...` looks COMMAND up in `minillm.commands.COMMANDS`, lets the
command module add its flags and runs it. A `MiniLLMError` becomes one `error:`
line on stderr and exit code 2; Ctrl-C is one `error: interrupted` line and exit
code 130 (128 + SIGINT, as shells expect).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from minillm import __version__
from minillm.commands import COMMANDS
from minillm.utils import MiniLLMError

EPILOG = """\
start here:
  minillm speedrun            the whole pipeline on the embedded TinyWorld data
  minillm doctor              what this machine can do
  minillm COMMAND --help      the options of one command

Every lesson in lessons/ says which command goes with it."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: the list of commands (their flags are added when one runs)."""
    parser = argparse.ArgumentParser(
        prog="minillm", description="minillm: build a large language model from scratch, step by step.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minillm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.HELP, description=command.HELP)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command, with its flags."""
    command = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"minillm {name}", description=command.HELP,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        args = parser.parse_args(argv)   # --help, --version and unknown commands exit here
        parser.print_help()
        return 0
    name = argv[0]
    try:
        args = command_parser(name).parse_args(argv[1:])
        return int(COMMANDS[name].run(args) or 0)
    except MiniLLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (files are written whole or not at all: rerun, or --resume where the "
              "command has it)", file=sys.stderr)
        return 130


# Until every lesson module has handed its command to minillm/commands/, they import
# these names from here.
from minillm.config import add_dataclass_arguments, dataclass_from_args  # noqa: E402,F401

if __name__ == "__main__":
    raise SystemExit(main())
