"""Grading a submission with the instructor's tests: the workspace, the points, results.json.

`grade(submission)` builds the workspace in a temporary folder owned by the grader:

1. the student version of the INSTRUCTOR's checkout (`make_student`, the graded
   exercises removed): its tests/, conftest, pyproject.toml and data/;
2. over it, the submission's `minillm/**.py` (and `notebooks/*.ipynb`). Files the
   submission lacks stay stubs, so a partial upload never inherits a solution.

The workspace is made read-only for the test process and fingerprinted; the
tests marked with the graded exercises run in the sandbox (`course.sandbox`,
`course.runner`). A run is flagged, and scores zero, when a record on the grader's
channel fails its check, when the plugin sees pytest tampered with, or when any
file of the workspace changed, appeared or vanished. Before anything is reported
every process the submission started is dead.

Points: an exercise's `points=` are split evenly over its tests (each parametrized
case is a test), in hundredths, the first tests taking the odd hundredths (3 over
4 tests: 0.75 each; 2 over 3: 0.67, 0.67, 0.66). A test that carries several
exercise markers earns its share of each. Passed earns the share; failed, error,
timeout, skipped, xfail and not run earn zero. The results are Gradescope's
`results.json` fields plus a per-exercise summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from minillm.course.regions import MANIFEST, PACKAGE, Region, find_regions, graded_test_files, repo_root, select
from minillm.course.runner import Limits, Outcome, run_pytest
from minillm.course.sandbox import Sandbox, bridges, fresh_uid, hidden_paths, is_root, readable_as
from minillm.course.student import make_student
from minillm.utils import MiniLLMError

VISIBILITY = ("visible", "hidden", "after_due_date", "after_published")


def submission_package(submission: Path) -> tuple[Path, bool]:
    """(folder, is_package): the submission's `minillm/` package, or the folder of loose
    module files (Gradescope uploads) to put into the package."""
    submission = Path(submission)
    if not submission.is_dir():
        raise MiniLLMError(f"submission {submission} is not a folder")
    if (submission / PACKAGE / "__init__.py").is_file():
        return submission / PACKAGE, True
    if submission.name == PACKAGE and (submission / "__init__.py").is_file():
        return submission, True
    nested = [d for d in submission.iterdir() if d.is_dir() and (d / PACKAGE / "__init__.py").is_file()]
    if len(nested) == 1:
        return nested[0] / PACKAGE, True
    if any(submission.glob("*.py")):
        return submission, False
    raise MiniLLMError(f"no {PACKAGE}/ package (and no .py files) in submission {submission}")


def overlay(submission: Path, dest: Path) -> list[str]:
    """Copy the submission's package modules (and notebooks) over the workspace `dest`."""
    pkg, is_package = submission_package(submission)
    taken = []
    base = dest / PACKAGE
    sources = pkg.rglob("*.py") if is_package else pkg.glob("*.py")
    for p in sorted(sources):
        rel = p.relative_to(pkg)
        if p.is_symlink() or "__pycache__" in rel.parts or p.stat().st_size > 5_000_000:
            continue
        if not is_package and not (base / rel).exists():
            continue  # a loose file that is not one of our modules (e.g. a test)
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, base / rel)
        taken.append(f"{PACKAGE}/{rel.as_posix()}")
    nbs = (pkg.parent if is_package else pkg) / "notebooks"
    for p in sorted(nbs.glob("*.ipynb")) if nbs.is_dir() else []:
        if not p.is_symlink() and (dest / "notebooks" / p.name).exists():
            shutil.copyfile(p, dest / "notebooks" / p.name)
            taken.append(f"notebooks/{p.name}")
    return taken


def seal(tree: Path) -> dict[str, str]:
    """Make `tree` readable and not writable for others; return its fingerprint
    (relative path -> BLAKE2 digest of the file, "<dir>" for folders)."""
    os.chmod(tree, 0o755)
    prints = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for d in dirnames:
            os.chmod(Path(dirpath) / d, 0o755)
            prints[(Path(dirpath) / d).relative_to(tree).as_posix()] = "<dir>"
        for f in filenames:
            p = Path(dirpath) / f
            os.chmod(p, 0o644 | (p.stat().st_mode & 0o111))
            prints[p.relative_to(tree).as_posix()] = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
    return prints


def changes(tree: Path, before: dict[str, str]) -> list[str]:
    """Flags for every file of `tree` added, removed or changed since `seal`."""
    now = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        now.update({(Path(dirpath) / d).relative_to(tree).as_posix(): "<dir>" for d in dirnames})
        for f in filenames:
            p = Path(dirpath) / f
            try:
                digest = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest() if not p.is_symlink() else "<link>"
            except OSError:
                digest = "<unreadable>"
            now[p.relative_to(tree).as_posix()] = digest
    diff = sorted(set(now) ^ set(before) | {k for k in now.keys() & before.keys() if now[k] != before[k]})
    return [f"the submission changed the grader's workspace: {', '.join(diff[:10])}"] if diff else []


def sandbox_for(root: Path, workspace_parent: Path, limits: Limits, isolate: bool | None = None) -> Sandbox:
    """A fresh uid and the instructor's folders to hide, when the grader is root (and
    `isolate` is not False); else a sandbox that only limits resources."""
    if not (is_root() if isolate is None else isolate):
        return Sandbox(memory_mb=limits.memory_mb)
    installed = Path(__file__).resolve().parent.parent  # the instructor's minillm package
    keep = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent, workspace_parent,
            Path(tempfile.gettempdir())]
    python = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent]
    return Sandbox(uid=fresh_uid(), hide=hidden_paths([root, installed], keep), bridge=bridges(python),
                   memory_mb=limits.memory_mb)


def exposure(sandbox: Sandbox, root: Path, chosen: list[Region], cwd: Path) -> list[str]:
    """Warnings: the instructor's solution files the test process can read."""
    installed = Path(__file__).resolve().parent.parent.parent
    paths = sorted({str(base / r.path) for r in chosen for base in (root, installed) if (base / r.path).is_file()})
    try:
        seen = readable_as(sandbox, paths, str(cwd))
    except PermissionError as e:
        raise MiniLLMError(f"the sandbox user cannot run {sys.executable} ({e.strerror}): install Python where "
                           "other users can read it (e.g. /usr or /opt); see lessons/README.md, "
                           "'Threat model'") from e
    who = "the submission's code (it runs as your user: grade as root)" if sandbox.uid is None else \
        "the submission's code"
    return [f"{who} can read your solutions: {', '.join(seen[:3])}; see lessons/README.md, "
            "'Threat model'"] if seen else []


def _default_selection(submission: Path) -> tuple[list[str] | None, list[str] | None]:
    """What to grade when the command line does not say: the student version's manifest."""
    for d in (submission, *[c for c in submission.iterdir() if c.is_dir()]):
        if (d / MANIFEST).is_file():
            m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
            return None, [e["name"] for e in m.get("exercises", [])]
    return ["all"], None


def split_points(points: int, n: int) -> list[float]:
    """`points` split over `n` tests in hundredths: split_points(2, 3) -> [0.67, 0.67, 0.66]."""
    if n == 0:
        return []
    base, extra = divmod(points * 100, n)
    return [(base + (i < extra)) / 100 for i in range(n)]


def _prepare(ws: Path, root: Path, names: set[str], files: list[str], limits: Limits, sandbox: Sandbox,
             cache: dict | None) -> list[dict]:
    """Write the stubbed student version into `ws`; return its graded tests with their markers
    (collected on the instructor's code, before the submission is in). `cache`, a dict the
    caller keeps, saves the collection while the instructor's package and tests are unchanged."""
    make_student(ws, exercises=sorted(names), root=root)
    seal(ws)
    stamp = max((p.stat().st_mtime_ns for d in ("tests", PACKAGE) for p in (root / d).rglob("*.py")), default=0)
    key = (str(root), tuple(files), tuple(sorted(names)), stamp)
    if cache is None or key not in cache:
        collected = run_pytest(ws, files, None, limits, sandbox, collect_only=True).collected if files else []
        if cache is None:
            return [t for t in collected if names & set(t["exercises"])]
        cache[key] = collected
    return [t for t in cache[key] if names & set(t["exercises"])]


def grade(submission: str | os.PathLike, lessons: list[str] | None = None, exercises: list[str] | None = None,
          tests_from: str | os.PathLike | None = None, limits: Limits | None = None,
          visibility: str = "visible", cache: dict | None = None, isolate: bool | None = None) -> dict:
    """Grade `submission` with the tests of `tests_from` (default: this checkout); return
    Gradescope's results dict. Nothing is graded twice; no exception for bad code.
    `cache`: a dict kept between calls to collect the instructor's tests only once.
    `isolate`: run the tests as a fresh uid (default: when root; False: as the grader's user)."""
    t_start, limits = time.monotonic(), limits or Limits()
    submission = Path(submission).resolve()
    submission_package(submission)  # a clear error before any work
    root = Path(tests_from).resolve() if tests_from else repo_root()
    if not (root / "tests").is_dir():
        raise MiniLLMError(f"{root} has no tests/ folder; pass --tests-from with the instructor's checkout")
    if lessons is None and exercises is None:
        lessons, exercises = _default_selection(submission)
    chosen = select(find_regions(root), lessons, exercises)
    names = {r.name for r in chosen}
    files = graded_test_files(root, names)
    tmp = Path(tempfile.mkdtemp(prefix="minillm-ws-"))
    try:
        os.chmod(tmp, 0o755)
        ws = tmp / "ws"
        sandbox = sandbox_for(root, tmp, limits, isolate)
        warnings = exposure(sandbox, root, chosen, tmp)
        graded = _prepare(ws, root, names, files, limits, sandbox, cache)
        overlay(submission, ws)
        prints = seal(ws)
        run = run_pytest(ws, files, [t["nodeid"] for t in graded], limits, sandbox,
                         check=lambda: changes(ws, prints)) if graded else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outcomes, notes, flags = (run.outcomes, run.notes, sorted(set(run.flags))) if run else ({}, [], [])
    tests = _tests(chosen, graded, outcomes, flags, visibility)
    results = {"score": round(sum(t["score"] for t in tests), 2),
               "execution_time": round(time.monotonic() - t_start, 1), "visibility": visibility,
               "stdout_visibility": visibility, "tests": tests,
               "extra_data": {"max_score": float(sum(r.points for r in chosen)),
                              "exercises": {r.name: r.points for r in chosen}, "flags": flags,
                              "warnings": warnings, "sandbox_uid": sandbox.uid}}
    results["output"] = summary(results, chosen) + "".join(
        f"\n{title}:\n" + "\n".join(lines) for title, lines in
        (("FLAGGED (scored 0)", flags), ("warnings", warnings), ("notes", notes)) if lines)
    return results


def _tests(chosen: list[Region], graded: list[dict], outcomes: dict[str, Outcome], flags: list[str],
           visibility: str) -> list[dict]:
    """Gradescope's tests[]: one entry per exercise and test; a flagged run earns nothing."""
    tests = []
    for r in chosen:
        mine = [t for t in graded if r.name in t["exercises"]]
        if not mine:
            tests.append({"name": f"{r.name}: no test is marked for this exercise", "score": 0.0,
                          "max_score": float(r.points), "status": "failed", "visibility": visibility,
                          "output": f"no test carries @pytest.mark.exercise({r.name!r}); tell the instructor"})
        for t, share in zip(mine, split_points(r.points, len(mine))):
            o = outcomes.get(t["nodeid"], Outcome(t["nodeid"], False, "not run"))
            if flags:
                o = Outcome(o.nodeid, False, "flagged: " + "; ".join(flags) + "\n" + o.output)
            tests.append({"name": f"{r.name}: {t['nodeid']}", "score": share if o.passed else 0.0,
                          "max_score": share, "status": "passed" if o.passed else "failed",
                          "output": o.output, "visibility": t.get("visibility") or visibility})
    return tests


def _first_error(output: str) -> str:
    lines = [ln[1:].strip() for ln in output.splitlines() if ln.startswith("E ")]
    line = lines[0] if lines else (output.strip().splitlines() or [""])[0]
    return line[:150]


def summary(results: dict, chosen: list[Region]) -> str:
    """One line per exercise: points, tests passed, and the first failure's message."""
    width = max([len("exercise"), *(len(r.name) for r in chosen)]) + 2
    rows = [f"{'exercise':<{width}} {'lesson':<6} {'points':>13}  tests"]
    for r in chosen:
        mine = [t for t in results["tests"] if t["name"].startswith(r.name + ":")]
        got = sum(t["score"] for t in mine)
        ok = sum(t["status"] == "passed" for t in mine)
        row = f"{r.name:<{width}} {r.lesson:<6} {got:>6.2f} / {r.points:<4} {ok}/{len(mine)} passed"
        bad = next((t for t in mine if t["status"] != "passed"), None)
        if bad:
            row += f"   first failure: {bad['name'].split(': ', 1)[1]}\n{'':<{width + 10}}{_first_error(bad['output'])}"
        rows.append(row)
    rows.append(f"{'total':<{width + 7}} {results['score']:>6.2f} / {results['extra_data']['max_score']:g}")
    return "\n".join(rows)
