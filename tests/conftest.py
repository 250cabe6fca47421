"""Test options for the whole suite.

`pytest --exercise NAME` runs exactly the tests marked `@pytest.mark.exercise(NAME)`
(several: `--exercise a --exercise b`, or `--exercise a,b`), which is the selection
`minillm assign grade` scores for that exercise: every lesson's exercise box says
`**Graded by:** pytest --exercise NAME`. Like the grader, it runs the exercise's slow
tests too: `--exercise` clears the project's `-m 'not slow'`.
"""

from __future__ import annotations

import os

import pytest

# Triton kernels run on the CPU through Triton's interpreter, which must be chosen before
# anything imports Triton (torch.compile does): set it here, before any test module loads.
os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--exercise", action="append", default=[], metavar="NAME",
                     help="run only the tests marked @pytest.mark.exercise(NAME) (repeatable, or a,b)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("exercise"):
        config.option.markexpr = ""  # the grader's selection includes slow tests


def exercises_of(item: pytest.Item) -> set[str]:
    """The exercise names an item's markers carry (all of them, as the grader reads them)."""
    return {str(a) for m in item.iter_markers("exercise") for a in m.args}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {n for opt in config.getoption("exercise") for n in opt.split(",") if n}
    if not wanted:
        return
    keep = [i for i in items if exercises_of(i) & wanted]
    drop = [i for i in items if not exercises_of(i) & wanted]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
