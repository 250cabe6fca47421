"""The grader against a cheating submission (the threat model is in lessons/README.md).

Each cheat is a submission for a toy course (two exercises, no numpy: a grading run
takes about a second) whose `toy.add` is unsolved and tries to score anyway; the
honest `toy.double` shows which cheats leave the other tests counting. Run as root
(as on Gradescope) the tests run as a fresh uid; the cheats must then score 0 on
`toy.add` or flag the run, and no process of that uid may be left.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from minillm.cli import main
from minillm.course import grader, runner, sandbox, student

BEGIN, END = "### BEGIN " + "SOLUTION", "### END " + "SOLUTION"
FAST = runner.Limits(timeout=4, total=60, collect=30, clip=2000, memory_mb=2048,
                     plugins=["pytest_timeout"])  # the toy course needs no hypothesis: quicker starts
root_only = pytest.mark.skipif(not sandbox.is_root(), reason="the sandbox uid needs root (as on Gradescope)")
ADD_IDS = ["tests/test_toy.py::test_add", "tests/test_toy.py::test_add_zero[0]", "tests/test_toy.py::test_add_zero[5]"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    write(root / "pyproject.toml", '[tool.pytest.ini_options]\nmarkers = ["exercise(name): graded"]\n')
    write(root / "minillm/__init__.py", "")
    write(root / "minillm/toy.py", f"def add(a, b):\n    {BEGIN} name=toy.add points=2\n    return a + b\n"
                                   f"    {END}\n\n\ndef double(x):\n    {BEGIN} name=toy.double points=1\n"
                                   f"    return 2 * x\n    {END}\n")
    write(root / "tests/test_toy.py", (
        "import pytest\nfrom minillm import toy\n\n"
        "@pytest.mark.exercise('toy.add')\ndef test_add():\n    assert toy.add(1, 2) == 3\n\n"
        "@pytest.mark.exercise('toy.add')\n@pytest.mark.parametrize('a', [0, 5])\n"
        "def test_add_zero(a):\n    assert toy.add(a, 0) == a\n\n"
        "@pytest.mark.exercise('toy.double')\ndef test_double():\n    assert toy.double(4) == 8\n"))
    return root


CACHE: dict = {}


def grade(course: Path, tmp_path: Path, toy_source: str, limits=FAST, isolate=None) -> dict:
    """Grade a submission whose minillm/toy.py is `toy_source`; check that nothing is left."""
    sub = tmp_path / "sub"
    student.make_student(sub, ["all"], root=course)
    write(sub / "minillm/toy.py", toy_source)
    results = grader.grade(sub, tests_from=course, limits=limits, cache=CACHE, isolate=isolate)
    uid = results["extra_data"]["sandbox_uid"]
    if uid is not None:
        assert sandbox.processes_of(uid) == [], "a process of the submission outlived the grader"
    assert math_close(results["score"], sum(t["score"] for t in results["tests"]))
    return results


def math_close(a: float, b: float) -> bool:
    return abs(a - b) < 0.011


def points(results: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in results["tests"]:
        name = t["name"].split(":")[0]
        out[name] = round(out.get(name, 0.0) + t["score"], 2)
    return out


HONEST_DOUBLE = "\n\ndef double(x):\n    return 2 * x\n"


def test_an_honest_submission_scores_full_marks(course, tmp_path):
    results = grade(course, tmp_path, "def add(a, b):\n    return a + b\n" + HONEST_DOUBLE)
    assert points(results) == {"toy.add": 2.0, "toy.double": 1.0}
    assert results["extra_data"]["flags"] == [] and results["extra_data"]["warnings"] == []


CHEATS = {
    # 1. forged records on every pipe (the old channel was a file named in the environment)
    "forged records": f'''
import json, os, stat
def add(a, b):
    for fd in range(3, 256):
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue
        for n in {ADD_IDS!r}:
            for when in ("setup", "call", "teardown"):
                body = json.dumps({{"event": "report", "nodeid": n, "when": when, "outcome": "passed",
                                   "text": "", "captured": "", "captured_chars": 0, "duration": 0.0}})
                for line in (body, "0" * 64 + " " + body):
                    try:
                        os.write(fd, (line + "\\n").encode())
                    except OSError:
                        pass
    for name in ("MINILLM_GRADE_EVENTS", "MINILLM_GRADE_FDS"):
        if name in os.environ:
            open(os.environ[name], "a").write("{{}}\\n")
    os._exit(0)
''',
    # 2. a pytest hook registered from the submission's package that passes every test
    "pytest hook": '''
import gc, pytest
from _pytest.config import Config

class Cheat:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        rep.outcome, rep.longrepr = "passed", None

next(o for o in gc.get_objects() if isinstance(o, Config)).pluginmanager.register(Cheat(), "cheat")

def add(a, b):
    return None
''',
    # 2b. the same by replacing pytest's report constructor
    "pytest patched": '''
import _pytest.reports as reports
_orig = reports.TestReport.from_item_and_call.__func__

def _passed(cls, item, call):
    rep = _orig(cls, item, call)
    rep.outcome, rep.longrepr = "passed", None
    return rep

reports.TestReport.from_item_and_call = classmethod(_passed)

def add(a, b):
    return None
''',
    # 3. run the instructor's solution, found through the installed package's metadata or its path
    "instructor's solution": '''
import importlib.metadata, json, pathlib
COURSE = "{course}"

def add(a, b):
    roots = [pathlib.Path(COURSE)]
    try:
        url = json.loads(importlib.metadata.distribution("minillm").read_text("direct_url.json"))["url"]
        roots.append(pathlib.Path(url[len("file://"):]))
    except Exception:
        pass
    for r in roots:
        try:
            ns = {}
            exec((r / "minillm" / "toy.py").read_text(), ns)
            return ns["add"](a, b)
        except (OSError, KeyError):
            continue
    raise RuntimeError("no solution found")
''',
    # 4. a detached process (new session) that rewrites results.json after the grader
    "detached rewriter": '''
import json, os, time
RESULTS = "{results}"

def add(a, b):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            t = time.time()
            while time.time() - t < 8:
                try:
                    with open(RESULTS, "w") as f:
                        json.dump({"score": 1000, "tests": []}, f)
                except OSError:
                    pass
                time.sleep(0.05)
        os._exit(0)
    return None
''',
    # 5. edit the workspace's conftest (and a test), then crash so the restarted run collects it
    "conftest and crash": '''
import os
PASS_ALL = "import pytest\\n@pytest.hookimpl(tryfirst=True)\\ndef pytest_runtest_call(item):\\n    return True\\n"

def add(a, b):
    for path in ("conftest.py", "tests/conftest.py"):
        try:
            with open(path, "w") as f:
                f.write(PASS_ALL)
        except OSError:
            pass
    os._exit(1)
''',
    # more: kill the grader; fill memory
    "kill the grader": '''
import os, signal

def add(a, b):
    try:
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getppid(), signal.SIGKILL)
    except OSError:
        pass
    return None
''',
    "eat memory": '''
def add(a, b):
    block = bytearray(4 << 30)
    return a + b
''',
}


@root_only
@pytest.mark.parametrize("cheat", list(CHEATS))
def test_a_cheat_scores_zero_or_is_flagged(course, tmp_path, cheat):
    results_path = tmp_path / "out" / "results.json"
    results_path.parent.mkdir()
    source = CHEATS[cheat].replace("{course}", str(course)).replace("{results}", str(results_path)) + HONEST_DOUBLE
    if cheat == "detached rewriter":  # the whole command: results.json written, then watched
        sub = tmp_path / "sub"
        student.make_student(sub, ["all"], root=course)
        write(sub / "minillm/toy.py", source)
        assert main(["assign", "grade", str(sub), "--tests-from", str(course), "--results", str(results_path),
                     "--timeout", "4"]) == 1
        written = results_path.read_text()
        time.sleep(1.0)
        assert results_path.read_text() == written
        results = json.loads(written)
        assert sandbox.processes_of(results["extra_data"]["sandbox_uid"]) == []
    else:
        results = grade(course, tmp_path, source)
    got = points(results)
    flags = results["extra_data"]["flags"]
    assert got["toy.add"] == 0, (cheat, results["output"])
    assert flags or got["toy.double"] == 1.0  # a flagged run earns nothing; otherwise honest parts count
    if cheat in ("forged records", "pytest hook", "pytest patched"):
        assert flags and results["score"] == 0 and "FLAGGED" in results["output"], results["output"]
    else:
        assert not flags, flags


def test_without_a_sandbox_uid_a_changed_workspace_is_flagged(course, tmp_path):
    # as the grader's own user the workspace is writable: the change is seen, the run flagged
    results = grade(course, tmp_path, CHEATS["conftest and crash"] + HONEST_DOUBLE, isolate=False)
    assert results["score"] == 0
    assert any("conftest.py" in f for f in results["extra_data"]["flags"]), results["output"]


def test_without_a_sandbox_uid_detached_processes_are_killed(course, tmp_path):
    marker = tmp_path / "alive"
    source = f'''
import os, time

def add(a, b):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                open("{marker}", "a").close()
                os.utime("{marker}")
                time.sleep(0.05)
        os._exit(0)
    return None
''' + HONEST_DOUBLE
    results = grade(course, tmp_path, source, isolate=False)
    assert points(results) == {"toy.add": 0, "toy.double": 1.0}
    assert marker.exists()
    seen = marker.stat().st_mtime
    time.sleep(0.5)
    assert marker.stat().st_mtime == seen, "the detached process outlived the grader"


BROKEN = {
    # name: (toy.py's add, expected in each toy.add test's output, toy.double keeps its point)
    "infinite loop": ("def add(a, b):\n    while True:\n        pass\n", "Timeout", True),
    "os._exit in a test": ("import os\ndef add(a, b):\n    os._exit(3)\n", "process ended", True),
    "sys.exit in a test": ("import sys\ndef add(a, b):\n    sys.exit(0)\n", "SystemExit", True),
    "10 MB print": ("def add(a, b):\n    print('x' * 10_000_000)\n    return a + b\n", "characters; the limit is", True),
    "syntax error": ("def add(a, b):\n    return (\n", "SyntaxError", False),
    "os._exit at import": ("import os\nos._exit(0)\n", "before it ran this test", False),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_code_scores_zero_and_the_grader_finishes(course, tmp_path, case):
    body, message, double_ok = BROKEN[case]
    limits = runner.Limits(**{**FAST.__dict__, "timeout": 1.5}) if case == "infinite loop" else FAST
    results = grade(course, tmp_path, body + (HONEST_DOUBLE if double_ok else ""), limits=limits)
    got = points(results)
    assert got["toy.add"] == 0 and got["toy.double"] == (1.0 if double_ok else 0.0), results["output"]
    add = [t for t in results["tests"] if t["name"].startswith("toy.add")]
    assert all(message in t["output"] for t in add), add[0]["output"][:800]
    assert all(len(t["output"]) < 10_000 for t in results["tests"])  # output is cut
    assert results["extra_data"]["flags"] == []


@root_only
def test_the_sandbox_cannot_read_the_instructors_files(course, tmp_path):
    sb = grader.sandbox_for(course, tmp_path, FAST)
    installed = Path(grader.__file__).resolve().parents[2]
    world = installed / "minillm" / "world.py"
    assert os.access(world, os.R_OK) and (course / "minillm/toy.py").is_file()  # readable to us
    assert sandbox.readable_as(sb, [str(world), str(course / "minillm/toy.py")], str(tmp_path)) == []
    assert sandbox.processes_of(sb.uid) == []


def test_what_the_sandbox_hides_and_shows(tmp_path):
    checkout = tmp_path / "checkout"
    for d in ("minillm", "tests", ".git", ".venv/lib"):
        (checkout / d).mkdir(parents=True)
    write(checkout / "README.md", "")
    # the interpreter inside the checkout stays; everything else of it is covered
    assert sorted(sandbox.hidden_paths([checkout], [checkout / ".venv"])) == \
        sorted(str(checkout / d) for d in ("minillm", "tests", ".git"))
    assert sandbox.hidden_paths([checkout], [tmp_path / "elsewhere"]) == [str(checkout)]
    locked = tmp_path / "home"
    (locked / ".pyenv/versions").mkdir(parents=True)
    locked.chmod(0o700)
    [(shut, shown)] = sandbox.bridges([locked / ".pyenv/versions"])  # the highest folder others cannot enter
    assert not os.stat(shut).st_mode & 0o001 and Path(shown).parent == Path(shut)
    assert (locked / ".pyenv/versions").is_relative_to(shown) and Path(shut) in [locked, *locked.parents]
