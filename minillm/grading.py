"""The instructor kit, part 2: grade a submission with the instructor's tests.

`grade(submission)` builds a workspace that the submission cannot change:

1. the student version of the INSTRUCTOR's repository (`assign.make_student`, the
   graded exercises removed): its tests/, conftest, pyproject.toml and data/;
2. over it, the submission's `minillm/*.py` (and `notebooks/*.ipynb`). Files the
   submission lacks stay stubs, so a partial upload never inherits a solution.

It then runs pytest on the tests marked `@pytest.mark.exercise(...)` of the graded
exercises in a subprocess (PYTHONPATH = the workspace, `-p no:cacheprovider`, the
project's addopts replaced by our own), with a small plugin (`PLUGIN_SOURCE`) that
writes one JSON line per event (collected, test started, phase report) the moment
it happens. A watchdog reads those lines: a test that outlives its timeout (also one
pytest-timeout could not stop) gets its process group killed; a process that dies
(`os._exit`, a crash, a signal) is restarted on the tests still to run, the test it
died in scores zero. Output is captured per test; a test that prints more than
`max_output` characters fails, and every output is cut to a few kB.

Points: an exercise's `points=` are split evenly over its tests (each parametrized
case is a test), in hundredths, the first tests taking the odd hundredths
(3 points over 4 tests: 0.75 each; 2 over 3: 0.67, 0.67, 0.66). A test that carries
several exercise markers earns its share of each. Passed earns the share; failed,
error, timeout, skipped, xfail and not run earn zero.

The results are Gradescope's `results.json` (score, tests[] with name, score,
max_score, status, output, visibility) and a per-exercise summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from minillm import assign
from minillm.utils import MiniLLMError, atomic_write_text

VISIBILITY = ("visible", "hidden", "after_due_date", "after_published")

# The pytest plugin the grader loads in the subprocess (`-p minillm_grade_plugin`). It
# lives outside the workspace so the submission cannot shadow it, and opens its event
# file before any submission code is imported.
PLUGIN_SOURCE = r'''
import json, os, time
import pytest

_fh = open(os.environ["MINILLM_GRADE_EVENTS"], "a", encoding="utf-8", errors="replace")
_KEEP = None
if os.environ.get("MINILLM_GRADE_SELECT"):
    with open(os.environ["MINILLM_GRADE_SELECT"], encoding="utf-8") as _f:
        _KEEP = set(_f.read().splitlines())
_CLIP = int(os.environ.get("MINILLM_GRADE_CLIP", "4000"))


def _emit(**rec):
    rec["t"] = time.time()
    _fh.write(json.dumps(rec) + "\n")
    _fh.flush()


def _clip(text):
    if len(text) <= _CLIP:
        return text
    h = _CLIP // 2
    return text[:h] + "\n... [%d characters cut] ...\n" % (len(text) - 2 * h) + text[-h:]


def pytest_collectreport(report):
    if report.failed:
        _emit(event="collect_error", nodeid=report.nodeid, text=_clip(str(report.longrepr)))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if _KEEP is not None:
        drop = [i for i in items if i.nodeid not in _KEEP]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i.nodeid in _KEEP]
    tests = []
    for item in items:
        exercises, visibility = [], None
        for m in item.iter_markers("exercise"):
            exercises += [str(a) for a in m.args]
            visibility = visibility or m.kwargs.get("visibility")
        tests.append({"nodeid": item.nodeid, "exercises": exercises, "visibility": visibility,
                      "slow": item.get_closest_marker("slow") is not None})
    _emit(event="collected", tests=tests)


def pytest_runtest_logstart(nodeid, location):
    _emit(event="start", nodeid=nodeid)


def pytest_runtest_logreport(report):
    text = ""
    if report.failed:
        text = str(report.longrepr)
    elif report.skipped:
        lr = report.longrepr
        reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
        text = "skipped: " + (reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason)
        if hasattr(report, "wasxfail"):
            text = "xfail: " + str(report.wasxfail)
    captured = "".join("--- %s ---\n%s\n" % (n, c) for n, c in report.sections)
    _emit(event="report", nodeid=report.nodeid, when=report.when, outcome=report.outcome,
          text=_clip(text), captured=_clip(captured), captured_chars=len(captured),
          duration=report.duration)


def pytest_sessionfinish(session, exitstatus):
    _emit(event="finish", exitstatus=int(exitstatus))
'''


@dataclass
class Outcome:
    """The result of one test: `passed` or why not, and its (cut) output."""

    nodeid: str
    passed: bool
    output: str = ""
    duration: float = 0.0


@dataclass
class Limits:
    timeout: float = 120.0          # seconds per test (setup + call + teardown)
    total: float = 1200.0           # seconds for the whole grading run
    collect: float = 120.0          # seconds for pytest to import and collect the tests
    max_output: int = 1_000_000     # characters a test may print before it fails
    clip: int = 4000                # characters of output kept per test
    extra: list[str] = field(default_factory=list)  # more pytest arguments
    # pytest plugins to load (if installed); others are not auto-loaded, which saves a
    # second per pytest start
    plugins: list[str] = field(default_factory=lambda: ["pytest_timeout", "_hypothesis_pytestplugin"])


# ---------------------------------------------------------------------------------
# Running pytest in a subprocess, with a watchdog
# ---------------------------------------------------------------------------------

def _limit_resources() -> None:  # runs in the child before exec (POSIX)
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    big = 1 << 29  # 512 MiB per file: a runaway print fills no disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (big, big))


def _kill(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)  # the test's own children too
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: Path, n: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - n))
        return f.read().decode("utf-8", "replace")


class _Events:
    """Reads the plugin's JSON lines as they are written (partial last lines wait)."""

    def __init__(self, path: Path):
        self.f, self.buf, self.events = open(path, "rb"), b"", []

    def poll(self) -> list[dict]:
        self.buf += self.f.read()
        *lines, self.buf = self.buf.split(b"\n")
        new = []
        for line in lines:
            try:
                new.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # something else wrote into the file: ignore it
        self.events += new
        return new


def pytest_command(files: list[str], limits: Limits, collect_only: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", *files, "-p", "minillm_grade_plugin", "-p", "no:cacheprovider",
           "-o", "addopts=", "--rootdir", ".", "-q", "--tb=short", "--show-capture=no",
           "--continue-on-collection-errors", "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    for plugin in limits.plugins:
        if importlib.util.find_spec(plugin) is not None:
            cmd += ["-p", plugin]
    if collect_only:
        cmd.append("--collect-only")
    elif "pytest_timeout" in limits.plugins and importlib.util.find_spec("pytest_timeout") is not None:
        cmd += [f"--timeout={limits.timeout:g}", "--timeout-method=signal"]
    return cmd + list(limits.extra)


def run_pytest(workspace: Path, files: list[str], nodeids: list[str] | None, limits: Limits,
               collect_only: bool = False) -> tuple[dict[str, Outcome], list[dict], str]:
    """Run the tests `nodeids` of `files` in `workspace` until each has an outcome.

    Returns (outcomes by node id, the tests pytest collected in the first run with
    their exercise markers, notes on crashes). With `nodeids=None` every collected
    test is run; with `collect_only` only the collection is returned.
    """
    workspace = Path(workspace)
    scratch = Path(tempfile.mkdtemp(prefix="minillm-grade-"))
    (scratch / "plugin").mkdir()
    (scratch / "plugin" / "minillm_grade_plugin.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MINILLM_GRADE"))}
    env.update(PYTHONPATH=os.pathsep.join([str(workspace), str(scratch / "plugin")]),
               PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg", MINILLM_GRADE_CLIP=str(limits.clip),
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    deadline = time.monotonic() + limits.total
    outcomes: dict[str, Outcome] = {}
    collected: list[dict] | None = None
    notes: list[str] = []
    todo = list(nodeids) if nodeids is not None else None
    try:
        for attempt in range(10_000):
            events_path, log_path = scratch / f"events{attempt}.jsonl", scratch / f"log{attempt}.txt"
            events_path.touch()
            if todo is not None:
                (scratch / "select.txt").write_text("\n".join(todo) + "\n", encoding="utf-8")
                env["MINILLM_GRADE_SELECT"] = str(scratch / "select.txt")
            env["MINILLM_GRADE_EVENTS"] = str(events_path)
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(pytest_command(files, limits, collect_only), cwd=workspace, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=os.name == "posix",
                                        preexec_fn=_limit_resources if os.name == "posix" else None)
            ev = _Events(events_path)
            t0, current, started, killed = time.monotonic(), None, None, ""
            seen_collected = False
            while proc.poll() is None:
                time.sleep(0.05)
                for e in ev.poll():
                    if e.get("event") == "collected":
                        seen_collected = True
                    elif e.get("event") == "start":
                        current, started = e["nodeid"], time.monotonic()
                    elif e.get("event") == "report" and e.get("when") == "teardown":
                        current = None
                now = time.monotonic()
                if now > deadline:
                    killed = f"the whole grading run passed its limit of {limits.total:g} s"
                elif not seen_collected and now - t0 > limits.collect:
                    killed = f"importing and collecting the tests took more than {limits.collect:g} s"
                elif current and now - started > limits.timeout + max(2.0, 0.25 * limits.timeout):
                    killed = f"the test ran longer than {limits.timeout:g} s and did not stop"
                if killed:
                    _kill(proc)
                    break
            code = proc.returncode
            _kill(proc)  # what the tests started and left behind
            ev.poll()
            ev.f.close()
            new = _outcomes(ev.events, limits)
            if collected is None:
                collected = next((e["tests"] for e in ev.events if e.get("event") == "collected"), None)
            if collect_only:
                if collected is None:
                    raise MiniLLMError("pytest did not collect the tests:\n" + _tail(log_path, limits.clip))
                errors = [e for e in ev.events if e.get("event") == "collect_error"]
                if errors:
                    raise MiniLLMError("the tests do not collect:\n" + errors[0]["text"])
                return {}, collected, ""
            outcomes.update({k: v for k, v in new.items() if todo is None or k in todo})
            starts = [e["nodeid"] for e in ev.events if e.get("event") == "start"]
            culprit = starts[-1] if starts and starts[-1] not in new else None
            finished = any(e.get("event") == "finish" for e in ev.events)
            if culprit:
                why = killed or (f"the test process ended during this test (exit code {code}): "
                                 "os._exit, a crash or a signal")
                outcomes[culprit] = Outcome(culprit, False, why + "\n" + _tail(log_path, limits.clip // 2))
                notes.append(f"{culprit}: {why}")
            if todo is None:
                todo = [t["nodeid"] for t in collected or []]
            todo = [n for n in todo if n not in outcomes]
            if not todo:
                break
            if finished or not (new or culprit) or killed.startswith("the whole"):
                errors = "\n".join(e["text"] for e in ev.events if e.get("event") == "collect_error")
                if finished:
                    why = "not run: " + (errors or "pytest did not collect this test")
                elif killed:
                    why = killed + "\n" + _tail(log_path, limits.clip // 2)
                else:
                    why = (f"pytest ended (exit code {code}) before it ran this test: the code crashed or "
                           "exited while being imported\n" + (errors or _tail(log_path, limits.clip // 2)))
                for n in todo:
                    outcomes[n] = Outcome(n, False, why)
                notes.append(why.splitlines()[0])
                break
        return outcomes, collected or [], "\n".join(notes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _outcomes(events: list[dict], limits: Limits) -> dict[str, Outcome]:
    """Fold the phase reports of each finished test (its teardown was reported) into one Outcome."""
    phases: dict[str, list[dict]] = {}
    for e in events:
        if e.get("event") == "report":
            phases.setdefault(e["nodeid"], []).append(e)
    out = {}
    for nodeid, reps in phases.items():
        if not any(r["when"] == "teardown" for r in reps):
            continue
        duration = sum(r.get("duration") or 0.0 for r in reps)
        failed = next((r for r in reps if r["outcome"] == "failed"), None)
        skipped = next((r for r in reps if r["outcome"] == "skipped"), None)
        printed = max(r.get("captured_chars", 0) for r in reps)
        captured = reps[-1].get("captured", "")
        if failed:
            out[nodeid] = Outcome(nodeid, False, failed["text"] + ("\n" + captured if captured else ""), duration)
        elif skipped:
            out[nodeid] = Outcome(nodeid, False, skipped["text"] + " (a skipped test earns no points)", duration)
        elif printed > limits.max_output:
            out[nodeid] = Outcome(nodeid, False, f"the test printed {printed:,} characters; the limit is "
                                  f"{limits.max_output:,}\n" + captured, duration)
        else:
            out[nodeid] = Outcome(nodeid, True, "", duration)
    return out


# ---------------------------------------------------------------------------------
# Workspace and grading
# ---------------------------------------------------------------------------------

def graded_test_files(root: Path, names: set[str]) -> list[str]:
    """Test files (relative; those the repository lists) that mark one of the exercises `names`."""
    return [f for f in assign.list_files(root) if re.fullmatch(r"tests/(.*/)?test[^/]*\.py", f)
            and assign.marked_exercises(root / f) & names]


def submission_package(submission: Path) -> tuple[Path, bool]:
    """(folder, is_package): the submission's `minillm/` package, or the folder of loose
    module files (Gradescope uploads) to put into the package."""
    submission = Path(submission)
    if not submission.is_dir():
        raise MiniLLMError(f"submission {submission} is not a folder")
    if (submission / assign.PACKAGE / "__init__.py").is_file():
        return submission / assign.PACKAGE, True
    if submission.name == assign.PACKAGE and (submission / "__init__.py").is_file():
        return submission, True
    nested = [d for d in submission.iterdir() if d.is_dir() and (d / assign.PACKAGE / "__init__.py").is_file()]
    if len(nested) == 1:
        return nested[0] / assign.PACKAGE, True
    if any(submission.glob("*.py")):
        return submission, False
    raise MiniLLMError(f"no {assign.PACKAGE}/ package (and no .py files) in submission {submission}")


def overlay(submission: Path, dest: Path) -> list[str]:
    """Copy the submission's package modules (and notebooks) over the workspace `dest`."""
    pkg, is_package = submission_package(submission)
    taken = []
    base = dest / assign.PACKAGE
    sources = pkg.rglob("*.py") if is_package else pkg.glob("*.py")
    for p in sorted(sources):
        rel = p.relative_to(pkg)
        if p.is_symlink() or "__pycache__" in rel.parts or p.stat().st_size > 5_000_000:
            continue
        if not is_package and not (base / rel).exists():
            continue  # a loose file that is not one of our modules (e.g. a test)
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, base / rel)
        taken.append(f"{assign.PACKAGE}/{rel.as_posix()}")
    nbs = (pkg.parent if is_package else pkg) / "notebooks"
    for p in sorted(nbs.glob("*.ipynb")) if nbs.is_dir() else []:
        if not p.is_symlink() and (dest / "notebooks" / p.name).exists():
            shutil.copyfile(p, dest / "notebooks" / p.name)
            taken.append(f"notebooks/{p.name}")
    return taken


_COLLECTED: dict[tuple, list[dict]] = {}


def _collect(ws: Path, root: Path, files: list[str], names: set[str], limits: Limits) -> list[dict]:
    """The tests of `files` with their markers, collected on the instructor's code with
    `names` removed (cached while the instructor's package and tests are unchanged)."""
    if not files:
        return []
    stamp = max((p.stat().st_mtime_ns for d in ("tests", assign.PACKAGE) for p in (root / d).rglob("*.py")),
                default=0)
    key = (str(root), tuple(files), tuple(sorted(names)), stamp)
    if key not in _COLLECTED:
        _COLLECTED[key] = run_pytest(ws, files, None, limits, collect_only=True)[1]
    return _COLLECTED[key]


def lesson_test_files(root: Path, lesson: str) -> list[str]:
    """The test files of a lesson: those marking its exercises, and the README's lesson map row."""
    names = {r.name for r in assign.find_regions(root) if r.lesson == lesson}
    files = set(graded_test_files(root, names))
    readme = root / "README.md"
    for line in readme.read_text(encoding="utf-8").splitlines() if readme.is_file() else []:
        if re.match(rf"\|\s*{lesson}\s*\|", line):
            files |= {f for f in re.findall(r"tests/[\w/]+\.py", line) if f in assign.list_files(root)}
    return sorted(files)


def check_exercises(root: str | os.PathLike | None = None, names: list[str] | None = None,
                    limits: Limits | None = None) -> dict[str, dict[str, list[str]]]:
    """Prove that the tests grade: for the solution and for each exercise `names` (default:
    all) removed alone, run every non-slow test of its lesson's test files.

    Returns {"<solution>": {"failed": [...]}, name: {"unmarked_failed": [...],
    "marked_passed": [...]}}; every list is empty when the exercises are sound.
    """
    root = Path(root).resolve() if root is not None else assign.repo_root()
    limits = limits or Limits()
    limits = Limits(**{**limits.__dict__, "extra": [*limits.extra, "-m", "not slow"]})
    regions = {r.name: r for r in assign.find_regions(root)}
    names = list(regions) if names is None else names
    report: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="minillm-check-") as tmp:
        for lesson in sorted({regions[n].lesson for n in names}):
            files = lesson_test_files(root, lesson)
            ws = Path(tmp) / f"solution{lesson}"
            assign.make_student(ws, exercises=[], root=root)
            outcomes, _, _ = run_pytest(ws, files, None, limits)
            report[f"<solution of lesson {lesson}>"] = {"failed": sorted(n for n, o in outcomes.items() if not o.passed)}
            for name in [n for n in names if regions[n].lesson == lesson]:
                ws = Path(tmp) / name
                assign.make_student(ws, exercises=[name], root=root)
                outcomes, collected, _ = run_pytest(ws, files, None, limits)
                failed = {n for n, o in outcomes.items() if not o.passed}
                marked = {t["nodeid"] for t in collected if name in t["exercises"]}
                report[name] = {"unmarked_failed": sorted(failed - marked), "marked_passed": sorted(marked - failed)}
                if not marked:
                    report[name]["marked_passed"] = ["(no non-slow test is marked with this exercise)"]
                shutil.rmtree(ws, ignore_errors=True)
    return report


def split_points(points: int, n: int) -> list[float]:
    """`points` split over `n` tests in hundredths: split_points(2, 3) -> [0.67, 0.67, 0.66]."""
    if n == 0:
        return []
    base, extra = divmod(points * 100, n)
    return [(base + (i < extra)) / 100 for i in range(n)]


def _default_selection(submission: Path) -> tuple[list[str] | None, list[str] | None]:
    """What to grade when the command line does not say: the student version's manifest."""
    for d in (submission, *[c for c in submission.iterdir() if c.is_dir()]):
        if (d / assign.MANIFEST).is_file():
            m = json.loads((d / assign.MANIFEST).read_text(encoding="utf-8"))
            return None, [e["name"] for e in m.get("exercises", [])]
    return ["all"], None


def grade(submission: str | os.PathLike, lessons: list[str] | None = None, exercises: list[str] | None = None,
          tests_from: str | os.PathLike | None = None, limits: Limits | None = None,
          visibility: str = "visible") -> dict:
    """Grade `submission` with the tests of `tests_from` (default: this checkout); return
    Gradescope's results dict. Nothing is graded twice; no exception for bad code."""
    t_start = time.monotonic()
    limits = limits or Limits()
    submission = Path(submission).resolve()
    submission_package(submission)  # a clear error before any work
    root = Path(tests_from).resolve() if tests_from else assign.repo_root()
    if not (root / "tests").is_dir():
        raise MiniLLMError(f"{root} has no tests/ folder; pass --tests-from with the instructor's checkout")
    if lessons is None and exercises is None:
        lessons, exercises = _default_selection(submission)
    regions = assign.find_regions(root)
    chosen = assign.select(regions, lessons, exercises)
    if not chosen:
        raise MiniLLMError("no exercise to grade: check --lessons / --exercises (`minillm assign list`)")
    names = {r.name for r in chosen}
    files = graded_test_files(root, names)
    with tempfile.TemporaryDirectory(prefix="minillm-ws-") as tmp:
        ws = Path(tmp) / "ws"
        assign.make_student(ws, exercises=sorted(names), root=root)
        graded = [t for t in _collect(ws, root, files, names, limits) if names & set(t["exercises"])]
        overlay(submission, ws)
        outcomes, _, notes = run_pytest(ws, files, [t["nodeid"] for t in graded], limits) if graded else ({}, [], "")
    tests = []
    for r in chosen:
        mine = [t for t in graded if r.name in t["exercises"]]
        if not mine:
            tests.append({"name": f"{r.name}: no test is marked for this exercise", "score": 0.0,
                          "max_score": float(r.points), "status": "failed", "visibility": visibility,
                          "output": f"no test carries @pytest.mark.exercise({r.name!r}); tell the instructor"})
        for t, share in zip(mine, split_points(r.points, len(mine))):
            o = outcomes.get(t["nodeid"], Outcome(t["nodeid"], False, "not run"))
            tests.append({"name": f"{r.name}: {t['nodeid']}", "score": share if o.passed else 0.0,
                          "max_score": share, "status": "passed" if o.passed else "failed",
                          "output": o.output, "visibility": t.get("visibility") or visibility})
    results = {"score": round(sum(t["score"] for t in tests), 2),
               "execution_time": round(time.monotonic() - t_start, 1), "visibility": visibility,
               "stdout_visibility": visibility, "tests": tests,
               "extra_data": {"max_score": float(sum(r.points for r in chosen)),
                              "exercises": {r.name: r.points for r in chosen}}}
    results["output"] = summary(results, chosen) + (f"\nnotes:\n{notes}" if notes else "")
    return results


def _first_error(output: str) -> str:
    lines = [ln[1:].strip() for ln in output.splitlines() if ln.startswith("E ")]
    line = lines[0] if lines else (output.strip().splitlines() or [""])[0]
    return line[:150]


def summary(results: dict, chosen: list[assign.Region]) -> str:
    """One line per exercise: points, tests passed, and the first failure's message."""
    rows = [f"{'exercise':<26} {'lesson':<6} {'points':>13}  tests"]
    for r in chosen:
        mine = [t for t in results["tests"] if t["name"].startswith(r.name + ":")]
        got = sum(t["score"] for t in mine)
        ok = sum(t["status"] == "passed" for t in mine)
        row = f"{r.name:<26} {r.lesson:<6} {got:>6.2f} / {r.points:<4} {ok}/{len(mine)} passed"
        bad = next((t for t in mine if t["status"] != "passed"), None)
        if bad:
            row += f"   first failure: {bad['name'].split(': ', 1)[1]}\n{'':<36}{_first_error(bad['output'])}"
        rows.append(row)
    rows.append(f"{'total':<33} {results['score']:>6.2f} / {results['extra_data']['max_score']:g}")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------
# Command line: `minillm assign grade`
# ---------------------------------------------------------------------------------

def add_grade_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", help="the student's folder (a copy of the student version, or minillm/ files)")
    p.add_argument("--lessons", default=None, help="lessons to grade, e.g. 00,01 (default: the student "
                   "version's minillm-assignment.json, else all)")
    p.add_argument("--exercises", default=None, help="more exercises to grade, by name")
    p.add_argument("--results", default=None, help="write Gradescope's results.json here")
    p.add_argument("--tests-from", default=None, help="the instructor's checkout whose tests grade "
                   "(default: the checkout minillm is imported from)")
    p.add_argument("--timeout", type=float, default=Limits.timeout, help="seconds per test")
    p.add_argument("--total-timeout", type=float, default=Limits.total, help="seconds for the whole run")
    p.add_argument("--plugin", action="append", default=[], help="another pytest plugin your tests need "
                   "(module name; pytest-timeout and hypothesis are loaded, nothing else is)")
    p.add_argument("--visibility", choices=VISIBILITY, default="visible", help="Gradescope visibility of "
                   "tests without their own (`@pytest.mark.exercise(name, visibility=...)`)")


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lessons", default=None, help="lessons whose exercises to check (default: all)")
    p.add_argument("--exercises", default=None, help="exercises to check, by name")
    p.add_argument("--root", default=None, help="the checkout to check (default: this one)")
    p.add_argument("--timeout", type=float, default=Limits.timeout, help="seconds per test")


def run_check(args: argparse.Namespace) -> int:
    regions = assign.find_regions(args.root)
    lessons = assign.parse_lessons(args.lessons)
    exercises = [n for n in (args.exercises or "").replace(" ", "").split(",") if n] or None
    chosen = assign.select(regions, lessons or (None if exercises else ["all"]), exercises)
    if not chosen:  # nothing to prove is not a proof (regions are read from files git tracks)
        raise MiniLLMError("no exercise region found for that selection (new files must be committed "
                           "or at least tracked by git before `assign check` sees them)")
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


def run_grade(args: argparse.Namespace) -> int:
    limits = Limits(timeout=args.timeout, total=args.total_timeout, collect=max(args.timeout, 60.0))
    limits.plugins += args.plugin
    results = grade(args.submission, assign.parse_lessons(args.lessons),
                    [n for n in (args.exercises or "").replace(" ", "").split(",") if n] or None,
                    tests_from=args.tests_from, limits=limits, visibility=args.visibility)
    if args.results:
        atomic_write_text(args.results, json.dumps(results, indent=1) + "\n")
    print(results["output"])
    if args.results:
        print(f"wrote {args.results}")
    return 0 if results["score"] >= results["extra_data"]["max_score"] else 1
