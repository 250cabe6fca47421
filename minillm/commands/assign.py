"""`minillm assign list|student|grade|check`: the instructor kit's command line.

The kit itself is `minillm/course/` (no argparse there); this module turns flags
into its calls, prints, and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "instructors: make the student version of lessons, grade submissions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.course.grader import VISIBILITY  # deferred: the kit imports more than `minillm --help` needs
    from minillm.course.runner import Limits

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list the exercises, their lessons and points")
    ls.add_argument("--root", default=None, help="repository to read (default: this checkout)")
    st = sub.add_parser("student", help="write the student version of the repository")
    st.add_argument("--lessons", default=None, help="lessons whose exercises to remove, e.g. 00,01 (or all)")
    st.add_argument("--exercises", default=None, help="more exercises to remove, by name, e.g. world.bigram")
    st.add_argument("--out", required=True, help="new folder for the student version")
    st.add_argument("--root", default=None, help="repository to copy (default: this checkout)")
    st.add_argument("--force", action="store_true", help="replace a student version made earlier in --out")
    g = sub.add_parser("grade", help="grade a submission with the instructor's tests")
    g.add_argument("submission", help="the student's folder (a copy of the student version, or minillm/ files)")
    g.add_argument("--lessons", default=None, help="lessons to grade, e.g. 00,01 (default: the student "
                   "version's minillm-assignment.json, else all)")
    g.add_argument("--exercises", default=None, help="more exercises to grade, by name")
    g.add_argument("--results", default=None, help="write Gradescope's results.json here")
    g.add_argument("--tests-from", default=None, help="the instructor's checkout whose tests grade "
                   "(default: the checkout minillm is imported from)")
    g.add_argument("--timeout", type=float, default=Limits.timeout, help="seconds per test")
    g.add_argument("--total-timeout", type=float, default=Limits.total, help="seconds for the whole run")
    g.add_argument("--memory", type=int, default=Limits.memory_mb, help="address space of the test "
                   "process in MiB (0: no limit; use 0 where tests start CUDA, which reserves much address space)")
    g.add_argument("--plugin", action="append", default=[], help="another pytest plugin your tests need "
                   "(module name; pytest-timeout and hypothesis are loaded, nothing else is)")
    g.add_argument("--visibility", choices=VISIBILITY, default="visible", help="Gradescope visibility of "
                   "tests without their own (`@pytest.mark.exercise(name, visibility=...)`)")
    c = sub.add_parser("check", help="prove that the tests grade: the solution passes, each stub fails "
                       "exactly its exercise's tests")
    c.add_argument("--lessons", default=None, help="lessons whose exercises to check (default: all)")
    c.add_argument("--exercises", default=None, help="exercises to check, by name")
    c.add_argument("--root", default=None, help="the checkout to check (default: this one)")
    c.add_argument("--timeout", type=float, default=Limits.timeout, help="seconds per test")


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    return {"list": run_list, "student": run_student, "grade": run_grade, "check": run_check}[args.action](args)


def check_flags(args: argparse.Namespace) -> None:
    """--root is a checkout, time limits are positive and finite, memory is not negative: before any work."""
    import math

    from minillm.utils import MiniLLMError  # deferred: see add_arguments

    root = getattr(args, "root", None)
    if root is not None and not (Path(root) / "minillm").is_dir():
        raise MiniLLMError(f"--root {root} is not a minillm checkout (it has no minillm/ folder)")
    for flag in ("timeout", "total_timeout"):
        v = getattr(args, flag, None)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise MiniLLMError(f"--{flag.replace('_', '-')} must be a positive finite number of seconds, got {v}")
    if getattr(args, "memory", 0) < 0:
        raise MiniLLMError(f"--memory must be a size in MiB, or 0 for no limit; got {args.memory}")


def run_list(args: argparse.Namespace) -> int:
    from minillm.course.regions import find_regions  # deferred: see add_arguments

    regions = find_regions(args.root)
    width = max([len("exercise"), *(len(r.name) for r in regions)]) + 2
    print(f"{'exercise':<{width}} {'lesson':<7} {'points':>6}  file")
    for r in regions:
        print(f"{r.name:<{width}} {r.lesson:<7} {r.points:>6}  {r.path}")
    print(f"{len(regions)} exercises, {sum(r.points for r in regions)} points")
    return 0


def run_student(args: argparse.Namespace) -> int:
    from minillm.course.regions import parse_lessons, parse_names  # deferred: see add_arguments
    from minillm.course.student import make_student
    from minillm.utils import MiniLLMError

    lessons, exercises = parse_lessons(args.lessons), parse_names(args.exercises)
    if not lessons and not exercises:
        raise MiniLLMError("say which exercises to remove: --lessons 00,01 (or all) and/or --exercises NAME,...")
    try:
        chosen = make_student(args.out, lessons, exercises, root=args.root, force=args.force)
    except OSError as e:  # an unwritable place, a full disk: make_student leaves no partial copy
        raise MiniLLMError(f"cannot write the student version to {args.out}: {e.strerror or e}") from None
    print(f"wrote the student version to {args.out}: {len(chosen)} exercises removed, "
          f"{sum(r.points for r in chosen)} points")
    width = max(len(r.name) for r in chosen) + 2
    for r in chosen:
        print(f"  {r.name:<{width}} lesson {r.lesson}  {r.points} points  {r.path}")
    print("next: put it in a NEW repository (git init) -- never a fork of this one; see lessons/README.md")
    return 0


def check_results_path(path: str) -> None:
    """Refuse a --results that cannot be written, before the grading run."""
    from minillm.utils import MiniLLMError  # deferred: see add_arguments

    p = Path(path)
    if p.is_dir():
        raise MiniLLMError(f"--results {path} is a folder; name the file, e.g. {p / 'results.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise MiniLLMError(f"--results {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise MiniLLMError(f"--results {path}: the folder {parent} is not writable")


def run_grade(args: argparse.Namespace) -> int:
    from minillm.course.grader import grade  # deferred: see add_arguments
    from minillm.course.regions import parse_lessons, parse_names
    from minillm.course.runner import Limits
    from minillm.utils import atomic_write_text

    if args.results:
        check_results_path(args.results)
    limits = Limits(timeout=args.timeout, total=args.total_timeout, collect=max(args.timeout, 60.0),
                    memory_mb=args.memory)
    limits.plugins += args.plugin
    results = grade(args.submission, parse_lessons(args.lessons), parse_names(args.exercises),
                    tests_from=args.tests_from, limits=limits, visibility=args.visibility)
    if args.results:  # written after every process of the submission is dead (grade() made sure)
        atomic_write_text(args.results, json.dumps(results, indent=1) + "\n")
    print(results["output"])
    if args.results:
        print(f"wrote {args.results}")
    return 0 if results["score"] >= results["extra_data"]["max_score"] else 1


def run_check(args: argparse.Namespace) -> int:
    from minillm.course.check import check_exercises  # deferred: see add_arguments
    from minillm.course.regions import find_regions, parse_lessons, parse_names, select
    from minillm.course.runner import Limits

    exercises = parse_names(args.exercises)
    chosen = select(find_regions(args.root), parse_lessons(args.lessons) or (None if exercises else ["all"]),
                    exercises)
    report = check_exercises(args.root, [r.name for r in chosen], Limits(timeout=args.timeout))
    bad = 0
    for name, problems in report.items():
        issues = [f"{k.replace('_', ' ')}: {n}" for k, v in problems.items() for n in v]
        bad += bool(issues)
        print(f"{'ok  ' if not issues else 'FAIL'} {name}")
        for line in issues:
            print(f"       {line}")
    print("every exercise grades" if not bad else f"{bad} problems: a test that passes on a stub, or a "
          "failing test without the exercise's marker (see lessons/README.md)")
    return 1 if bad else 0
