"""Test options for the whole suite.

`pytest --exercise NAME` runs exactly the tests marked `@pytest.mark.exercise(NAME)`
(several: `--exercise a --exercise b`, or `--exercise a,b`), which is the selection
`minillm assign grade` scores for that exercise: every lesson's exercise box says
`**Graded by:** pytest --exercise NAME`. Like the grader, it runs the exercise's slow
tests too: `--exercise` clears the project's `-m 'not slow'`.
"""

from __future__ import annotations

import os

import numpy as np
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


# --- a stand-in for the ratings exercises (lesson 12's arena tests grade other things) -----

def standin_fit(battles, anchor=None, anchor_rating=1000.0, **_):
    """Stands in for _ratings().fit_bradley_terry where a test checks something else (so a stubbed
    exercise fails only its own tests): Hunter's MM iteration, with half a pseudo-win each way."""
    names = sorted({m for a, b, _ in battles for m in (a, b)})
    W = _ratings().win_matrix(battles, names) + 0.5 * (1 - np.eye(len(names)))
    N = W + W.T
    p = np.ones(len(names))
    for _ in range(500):
        p = W.sum(1) / (N / (p[:, None] + p[None, :])).sum(1)
        p /= np.exp(np.log(p).mean())
    r = np.log(p) / _ratings().ALPHA
    r += anchor_rating - (r[names.index(anchor)] if anchor else r.mean())
    return _ratings().Ratings(names, r, False)


def standin_bootstrap(battles, n_boot=200, level=0.95, seed=0, **_):
    """Stands in for _ratings().bootstrap_ratings: +-1 point around the stand-in fit."""
    return {n: (r - 1.0, r + 1.0) for n, r in standin_fit(battles).as_dict().items()}


@pytest.fixture
def standin_ratings(monkeypatch):
    monkeypatch.setattr(_ratings(), "fit_bradley_terry", standin_fit)
    monkeypatch.setattr(_ratings(), "bootstrap_ratings", standin_bootstrap)


def _ratings():
    from minillm import ratings  # deferred: conftest loads before every test, most need no torch

    return ratings
