"""The `minillm` command line (also `python -m minillm`).

Each subcommand lives in the module it belongs to: the module defines
`add_arguments(parser)` and `run(args) -> int | None`, and is listed once in
COMMANDS below. Modules are imported only when their command runs, so `--help`
is instant. Config dataclasses become flags with `add_dataclass_arguments`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import sys
import typing
from typing import Any, Sequence

from minillm.utils import MiniLLMError

# name -> (module, one-line help). Order is the order of the lessons.
COMMANDS: dict[str, tuple[str, str]] = {
    "speedrun": ("minillm.speedrun", "the main job: TinyWorld -> tokenizer -> pretraining -> evaluation -> report"),
    "doctor": ("minillm.cli", "report Python/torch versions, the device we would use, bf16 support and extras"),
    "world": ("minillm.world", "lesson 00: generate TinyWorld stories (and the data/ files), print the entropy floor"),
    "tokenizer": ("minillm.tokenizer", "lesson 01: train a byte-level BPE tokenizer, encode and decode text"),
    "generate": ("minillm.model", "lesson 03: sample text from a checkpoint or GPT-2"),
    "train": ("minillm.train", "lesson 04: pretrain a GPT on a text file or TinyWorld"),
    "evaluate": ("minillm.evaluate", "lesson 05: perplexity, bits per byte and few-shot accuracy of a checkpoint"),
    "sweep": ("minillm.scaling", "lesson 06: train small models of several sizes and fit scaling laws"),
    "cost": ("minillm.flops", "lesson 07: FLOPs, GPU-hours, dollars and CO2 of a training run"),
    "assign": ("minillm.assign", "instructors: make the student version of lessons, grade submissions"),
}

EPILOG = """\
start here:
  minillm speedrun            the whole pipeline on the embedded TinyWorld data
  minillm doctor              what this machine can do
  minillm COMMAND --help      the options of one command

Every lesson in lessons/ says which command goes with it."""


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minillm",
        description="minillm: build a large language model from scratch, step by step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from minillm import __version__

    parser.add_argument("--version", action="version", version=f"minillm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if not _available(module):
            continue
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Only the chosen subcommand's module is imported (torch is slow to import).
    if argv and argv[0] in COMMANDS and _available(COMMANDS[argv[0]][0]):
        name = argv[0]
        module = importlib.import_module(COMMANDS[name][0])
        sub = argparse.ArgumentParser(
            prog=f"minillm {name}", description=COMMANDS[name][1],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        adder = _doctor_arguments if name == "doctor" else module.add_arguments
        runner = run_doctor if name == "doctor" else module.run
        adder(sub)
        args = sub.parse_args(argv[1:])
        try:
            code = runner(args)
        except MiniLLMError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        return int(code or 0)
    args = parser.parse_args(argv)
    parser.print_help()
    return 0 if args.command is None and not argv else 2


# --- config dataclasses <-> flags -------------------------------------------------

def _field_type(cls: type, field: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    t = hints.get(field.name, str)
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one `--flag` per field of config dataclass `cls`; the field's comment-free
    `metadata["help"]` (if any) is the flag's help, its default the flag's default."""
    group = parser.add_argument_group(f"{cls.__name__} ({prefix or 'config'})")
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        t = _field_type(cls, f)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        flag = "--" + (prefix + f.name).replace("_", "-")
        help_text = f.metadata.get("help", "")
        if t is bool:
            group.add_argument(flag, dest=prefix + f.name, default=default, help=help_text,
                               action=argparse.BooleanOptionalAction)
        else:
            conv = t if t in (int, float, str) else str
            group.add_argument(flag, dest=prefix + f.name, type=conv, default=default, help=help_text)


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = ""):
    """Build config `cls` from the flags `add_dataclass_arguments` added."""
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
              if hasattr(args, prefix + f.name)}
    return cls(**values)


# --- doctor ---------------------------------------------------------------------

EXTRAS = {
    "dev": ["pytest", "hypothesis", "nbmake"],
    "notebooks": ["jupyter"],
    "interop": ["tiktoken", "transformers", "tokenizers", "peft", "safetensors"],
    "gpu": ["triton"],
}


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def doctor_report() -> dict[str, Any]:
    """What `minillm doctor` prints, as a dict (tests read it)."""
    import platform

    import torch

    from minillm.device import bf16_supported, device_name, pick_device

    device = pick_device()
    extras = {}
    for extra, mods in EXTRAS.items():
        extras[extra] = {m: _available(m) for m in mods}
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count(),
        "bf16": bf16_supported(device),
        "threads": torch.get_num_threads(),
        "extras": extras,
    }


def run_doctor(args: argparse.Namespace) -> int:
    r = doctor_report()
    print(f"python        {r['python']}")
    print(f"torch         {r['torch']}")
    print(f"device        {r['device']} ({r['device_name']}; {r['gpu_count']} CUDA GPUs; {r['threads']} CPU threads)")
    print(f"bf16          {'yes' if r['bf16'] else 'no'}")
    for extra, mods in r["extras"].items():
        have = ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in mods.items())
        print(f"extra {extra:<8}{have}")
    missing = [e for e, mods in r["extras"].items() if not all(mods.values()) and e in ("dev", "interop")]
    if missing:
        print(f"hint: pip install -e '.[{','.join(missing)}]' to add the missing extras")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
