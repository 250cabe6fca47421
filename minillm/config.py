"""Config dataclasses <-> command-line flags: the one config idiom of every command.

Every command's options are dataclasses (a comment or `metadata["help"]` per field);
`add_dataclass_arguments` turns one into `--flags` and `dataclass_from_args` turns the
parsed flags back into the dataclass. The lesson modules define the dataclasses and
know nothing of argparse; `minillm/commands/` calls these two functions.

    >>> import argparse, dataclasses
    >>> @dataclasses.dataclass
    ... class Cfg:
    ...     steps: int = dataclasses.field(default=10, metadata={"help": "100% of the steps"})
    >>> p = argparse.ArgumentParser()
    >>> add_dataclass_arguments(p, Cfg)
    >>> dataclass_from_args(Cfg, p.parse_args(["--steps", "3"]))
    Cfg(steps=3)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    t = hints.get(field.name, str)
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def field_default(field: dataclasses.Field) -> Any:
    """The default value of a dataclass field (None when it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one `--flag` per public field of config dataclass `cls`.

    The field's `metadata["help"]` is the flag's help (a `%` in it is escaped, since
    argparse formats help strings), its default the flag's default.
    """
    group = parser.add_argument_group(f"{cls.__name__} ({prefix or 'config'})")
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        t = _field_type(cls, f)
        flag = "--" + (prefix + f.name).replace("_", "-")
        help_text = f.metadata.get("help", "").replace("%", "%%")
        if t is bool:
            group.add_argument(flag, dest=prefix + f.name, default=field_default(f), help=help_text,
                               action=argparse.BooleanOptionalAction)
        else:
            conv = t if t in (int, float, str) else str
            group.add_argument(flag, dest=prefix + f.name, type=conv, default=field_default(f), help=help_text)


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = ""):
    """Build config `cls` from the flags `add_dataclass_arguments` added."""
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
              if hasattr(args, prefix + f.name)}
    return cls(**values)
