"""The proof that the tests grade (`minillm assign check`).

For the solution, and for each exercise removed alone, run every non-slow test of
its lesson's test files (the lesson table's and those marking the lesson's
exercises): the solution must pass them all, and each stub must fail exactly the
tests marked with its exercise. This is the instructor's own code, so it runs
without the grader's sandbox uid (but with its watchdog and limits).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

from minillm.course.lessons import lesson
from minillm.course.regions import find_regions, graded_test_files, list_files, repo_root
from minillm.course.runner import Limits, run_pytest
from minillm.course.student import make_student


def lesson_test_files(root: Path, number: str) -> list[str]:
    """The test files of a lesson: those marking its exercises, and the lesson table's."""
    names = {r.name for r in find_regions(root) if r.lesson == number}
    files = set(graded_test_files(root, names))
    patterns = lesson(number).tests if lesson(number) else ()
    listed = {f for f in list_files(root) if any(fnmatch.fnmatch(f, p) for p in patterns)}
    return sorted(files | listed)


def check_exercises(root: str | os.PathLike | None = None, names: list[str] | None = None,
                    limits: Limits | None = None) -> dict[str, dict[str, list[str]]]:
    """Prove that the tests grade, for the exercises `names` (default: all).

    Returns {"<solution of lesson NN>": {"failed": [...]}, name: {"unmarked_failed": [...],
    "marked_passed": [...]}}; every list is empty when the exercises are sound.
    """
    root = Path(root).resolve() if root is not None else repo_root()
    limits = limits or Limits()
    limits = Limits(**{**limits.__dict__, "extra": [*limits.extra, "-m", "not slow"]})
    regions = {r.name: r for r in find_regions(root)}
    names = list(regions) if names is None else names
    report: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="minillm-check-") as tmp:
        for number in sorted({regions[n].lesson for n in names}):
            files = lesson_test_files(root, number)
            ws = Path(tmp) / f"solution{number}"
            make_student(ws, exercises=[], root=root, allow_empty=True)
            outcomes = run_pytest(ws, files, None, limits).outcomes
            report[f"<solution of lesson {number}>"] = {"failed": sorted(n for n, o in outcomes.items()
                                                                        if not o.passed)}
            for name in [n for n in names if regions[n].lesson == number]:
                ws = Path(tmp) / name
                make_student(ws, exercises=[name], root=root)
                run = run_pytest(ws, files, None, limits)
                failed = {n for n, o in run.outcomes.items() if not o.passed}
                marked = {t["nodeid"] for t in run.collected if name in t["exercises"]}
                report[name] = {"unmarked_failed": sorted(failed - marked), "marked_passed": sorted(marked - failed)}
                if not marked:
                    report[name]["marked_passed"] = ["(no non-slow test is marked with this exercise)"]
                shutil.rmtree(ws, ignore_errors=True)
    return report
