"""Notebooks read as a student meets them: real markdown, each figure shown once, labelled plots.

Static checks over the committed notebooks (the notebooks themselves are executed by
nbmake in the same test run):
- markdown cells are markdown, not code comments pasted in (`# ` before every line
  renders each line as a heading);
- a cell does not end with a bare figure (the inline backend has already drawn every
  open figure at the end of the cell, so `fig` as the last line draws it twice);
- every axes that a cell sets up gets labels or a title somewhere in that cell.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIGURE_MAKERS = re.compile(r"(subplots|figure|^plot_\w*|_plot$|^plot$)")


def cells(nb: Path, kind: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == kind]


def heading_problems(markdown: str) -> list[str]:
    """Lines that render as headings but are prose or comment markers.

    >>> heading_problems("# Lesson 00\\nSome prose.")
    []
    >>> heading_problems("# # Lesson 00\\n#\\n# Read the lesson alongside, then run each cell in turn.")
    ['# # Lesson 00', '#', '# Read the lesson alongside, then run each cell in turn.']
    """
    lines = [ln for ln in markdown.splitlines() if ln.strip()]
    heads = [ln for ln in lines if ln.startswith("#")]
    bad = [ln for ln in heads if re.match(r"^#+(\s+#|\s*$)", ln) or len(ln.split()) > 20]
    if len(lines) >= 3 and len(heads) == len(lines):   # every line a heading: comments pasted in
        return heads
    return bad


def figure_names(tree: ast.Module) -> set[str]:
    """Names bound to the result of a figure-making call (`fig, ax = plt.subplots()`, `fig = plot_x()`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if FIGURE_MAKERS.search(fname):
                for target in node.targets:
                    elts = target.elts if isinstance(target, ast.Tuple) else [target]
                    if elts and isinstance(elts[0], ast.Name):
                        names.add(elts[0].id)
    return names


def shows_figure_twice(source: str) -> bool:
    """The cell's last statement is a bare figure while the figure is still open.

    >>> shows_figure_twice("fig, ax = plt.subplots()\\nax.plot([1])\\nfig")
    True
    >>> shows_figure_twice("fig, ax = plt.subplots()\\nax.plot([1])\\nplt.show()")
    False
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:     # IPython magics: not our concern here
        return False
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return False
    last = tree.body[-1].value
    closed = "plt.close(" in source       # closed before the end: the bare name draws it once
    return isinstance(last, ast.Name) and last.id in figure_names(tree) and not closed


def unlabelled_axes(source: str) -> bool:
    """A cell that makes a figure with `plt.subplots`/`plt.figure` but never labels or titles it."""
    if not re.search(r"plt\.(subplots|figure)\(", source):
        return False
    return not re.search(r"set_(xlabel|ylabel|title)|set\(.*(xlabel|ylabel|title)|plt\.(xlabel|ylabel|title)"
                         r"|suptitle", source, flags=re.S)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_renders_as_prose(nb):
    bad = [ln for md in cells(nb, "markdown") for ln in heading_problems(md)]
    assert not bad, f"{nb.name}: lines that render as headings: {bad[:3]}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_each_figure_is_shown_once(nb):
    twice = [src.splitlines()[-1] for src in cells(nb, "code") if shows_figure_twice(src)]
    assert not twice, f"{nb.name}: cells end with an open figure, drawn twice: {twice}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_labelled(nb):
    bad = [src.splitlines()[0] for src in cells(nb, "code") if unlabelled_axes(src)]
    assert not bad, f"{nb.name}: figures without axis labels or a title, in cells starting {bad}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_prose_between_the_cells(nb):
    """At least one markdown cell for every three code cells: a notebook teaches, not only runs."""
    n_code, n_md = len(cells(nb, "code")), len(cells(nb, "markdown"))
    assert n_md * 3 >= n_code, f"{nb.name}: {n_md} markdown cells for {n_code} code cells"


def test_the_checks_catch_the_known_faults():
    assert heading_problems("# # Lesson\n#\n# prose one\n# prose two")
    assert shows_figure_twice("fig = plot_history(h)\nfig")
    assert unlabelled_axes("fig, ax = plt.subplots()\nax.plot([1, 2])")
    assert not unlabelled_axes("fig, ax = plt.subplots()\nax.set(xlabel='step')")
