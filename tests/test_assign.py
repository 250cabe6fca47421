"""The instructor kit: exercise regions, the student version, the grader, Gradescope results.

Subprocess tests grade lesson 00 only (TinyWorld's tests run in a few seconds) with
short timeouts; the proof for every exercise of every lesson is marked slow.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minillm.course import check, grader, lessons, regions, runner, sandbox, student
from minillm.cli import main
from minillm.utils import MiniLLMError

ROOT = Path(__file__).resolve().parent.parent
# Marker lines are assembled so that this file holds no region itself.
BEGIN, END, HINT = "### BEGIN " + "SOLUTION", "### END " + "SOLUTION", "### HINT:"
FAST = runner.Limits(timeout=4, total=90, collect=40, clip=2000)
TOY = runner.Limits(**{**FAST.__dict__, "plugins": ["pytest_timeout"]})  # toy courses: quicker starts
CACHE: dict = {}  # the instructor's tests, collected once for all the grading runs below
REGIONS = regions.find_regions(ROOT)
WORLD = {r.name: r for r in REGIONS if r.lesson == "00"}
# In a student version of this repository lesson 00's regions are stubs: the tests
# that need its solution then have nothing to check.
solved_00 = pytest.mark.skipif(not WORLD or any(r.stubbed for r in WORLD.values()),
                               reason="lesson 00's exercises are not solved in this checkout")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MODULE = f'''"""A module with two exercises."""


def add(a, b):
    {BEGIN} name=toy.add points=2
    {HINT} return the "sum" of a and b \\ nothing else.
    return a + b
    {END}


class Box:
    def double(self, x):
        if x is None:
            return None
        {BEGIN} name=toy.double points=1
        y = x * 2
        return y
        {END}

    def untouched(self):
        return 7
'''


# ---------------------------------------------------------------------------------
# Regions
# ---------------------------------------------------------------------------------

@solved_00
def test_finds_lesson_00_regions_with_points_and_hints():
    assert WORLD["world.unigram"].points == 2 and WORLD["world.bigram"].points == 3
    for r in WORLD.values():
        assert r.path == "minillm/world.py" and r.hint and r.indent == "    "
        source = (ROOT / r.path).read_text().splitlines()
        assert source[r.start].strip().startswith(BEGIN) and source[r.end - 1].strip() == END


def test_region_names_are_unique_and_points_positive():
    names = [r.name for r in REGIONS]
    assert len(names) == len(set(names))
    assert all(r.points > 0 and re.fullmatch(r"\w+\.\w+", r.name) for r in REGIONS)


@pytest.mark.parametrize("path, lesson", [
    ("minillm/world.py", "00"), ("minillm/tokenizer.py", "01"), ("minillm/bpe.py", "01"),
    ("minillm/attention.py", "02"), ("minillm/layers.py", "03"), ("minillm/model.py", "03"),
    ("minillm/checkpoint.py", "04"), ("minillm/optim.py", "04"), ("minillm/evaluate.py", "05"),
    ("minillm/scaling.py", "06"), ("minillm/flops.py", "07"), ("notebooks/05_evaluate.ipynb", "05"),
    ("minillm/unknown.py", "??"),
])
def test_lesson_of_a_file(path, lesson):
    assert lessons.lesson_of(path) == lesson


def readme_lesson_map() -> list[tuple]:
    """The README's lesson map rows as (number, title, reading, notebook, modules, tests)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Lesson map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d{2}", cells[0]):
            title, reading = re.match(r"\[([^\]]+)\]\(([^)]+)\)", cells[1]).groups()  # then an optional note
            files = [re.findall(r"`([^`]+)`", c) for c in cells[2:]]
            rows.append((cells[0], title, reading, files[0][0], tuple(files[1]), tuple(files[2])))
    return rows


def test_the_readme_lesson_map_is_the_lesson_table():
    """One table in code (course/lessons.py); the README shows the same rows."""
    table = [(ls.number, ls.title, ls.reading, ls.notebook, ls.modules, ls.tests) for ls in lessons.LESSONS]
    assert readme_lesson_map() == table


def test_every_module_with_an_exercise_is_in_the_lesson_table():
    orphans = sorted({r.path for r in REGIONS if r.lesson == lessons.UNKNOWN})
    assert not orphans, f"add these modules to minillm/course/lessons.py (and the README): {orphans}"


@pytest.mark.parametrize("body, message", [
    (f"def f():\n    {BEGIN} name=t.f\n    return 1\n    {END}\n", "points"),
    (f"def f():\n    {BEGIN} name=t.f points=1\n    return 1\n", "no END"),
    (f"def f():\n    {BEGIN} name=t.f points=1\n    {BEGIN} name=t.g points=1\n    {END}\n", "not closed"),
    (f"def f():\n    return 1\n    {END}\n", "without a BEGIN"),
], ids=["no points", "no end", "nested", "end without begin"])
def test_malformed_regions_are_clear_errors(tmp_path, body, message):
    write(tmp_path / "minillm/t.py", body)
    with pytest.raises(MiniLLMError, match=message):
        regions.find_regions(tmp_path)


def test_duplicate_names_are_an_error(tmp_path):
    region = f"def f():\n    {BEGIN} name=t.f points=1\n    return 1\n    {END}\n"
    write(tmp_path / "minillm/a.py", region)
    write(tmp_path / "minillm/b.py", region)
    with pytest.raises(MiniLLMError, match="defined twice"):
        regions.find_regions(tmp_path)


def test_stub_keeps_indentation_and_the_module_imports(tmp_path):
    write(tmp_path / "minillm/toy.py", MODULE)
    found = regions.find_regions(tmp_path)
    assert [(r.name, r.points, len(r.indent)) for r in found] == [("toy.add", 2, 4), ("toy.double", 1, 8)]
    assert found[0].hint == 'return the "sum" of a and b \\ nothing else.'
    stub = "".join(student.stub_lines(MODULE.splitlines(keepends=True), found))
    ast.parse(stub)
    assert "a + b" not in stub and "x * 2" not in stub
    ns: dict = {}
    exec(compile(stub, "toy.py", "exec"), ns)
    with pytest.raises(NotImplementedError) as e:
        ns["add"](1, 2)
    assert str(e.value) == found[0].hint  # quotes and backslash survive the round trip
    box = ns["Box"]()
    assert box.double(None) is None and box.untouched() == 7  # code outside regions still runs
    with pytest.raises(NotImplementedError, match="toy.double"):  # no hint: the name says what to write
        box.double(3)
    # a student version is itself a set of regions (EXERCISE markers) with the same names and points
    again = regions.parse_regions(stub.splitlines(keepends=True), "minillm/toy.py", "??")
    assert [(r.name, r.points, r.stubbed) for r in again] == [("toy.add", 2, True), ("toy.double", 1, True)]


def test_a_region_that_is_not_whole_statements_is_refused(tmp_path):
    # the region opens a block it does not close: the stub would not parse
    write(tmp_path / "minillm/bad.py",
          f"def f(x):\n    {BEGIN} name=bad.f points=1\n    if x:\n    {END}\n        return 1\n")
    with pytest.raises(MiniLLMError, match="does not parse"):
        student.make_student(tmp_path / "out", ["all"], root=tmp_path)


def test_split_points_adds_up_exactly():
    assert grader.split_points(2, 3) == [0.67, 0.67, 0.66]
    assert grader.split_points(3, 4) == [0.75] * 4
    for points in range(0, 12):
        for n in range(1, 15):
            shares = grader.split_points(points, n)
            assert len(shares) == n and math.isclose(sum(shares), points, abs_tol=1e-9)
            assert max(shares) - min(shares) <= 0.01 + 1e-12


# ---------------------------------------------------------------------------------
# The student version
# ---------------------------------------------------------------------------------

def notebook(cells: list[tuple[str, str]]) -> str:
    out = []
    for kind, src in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=3, outputs=[{"output_type": "stream", "name": "stdout", "text": ["42\n"]}])
        out.append(cell)
    return json.dumps({"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def toy_repo(root: Path) -> Path:
    write(root / "minillm/__init__.py", "")
    write(root / "minillm/toy.py", MODULE)
    write(root / "minillm/world.py", f"def keep():\n    {BEGIN} name=world.keep points=1\n    return 'kept'\n    {END}\n")
    write(root / "minillm/__pycache__/toy.cpython-311.pyc", "junk")
    write(root / ".git/config", "[core]\n")  # not a real repository: the tree is walked
    write(root / ".venv/lib/x.py", "x = 1\n")
    write(root / "notebooks/03_toy.ipynb", notebook([
        ("code", "FAST = True\n%matplotlib inline\n"),
        ("code", f"def triple(x):\n    {BEGIN} name=nb.triple points=2\n    {HINT} multiply.\n    return 3 * x\n    {END}\n"),
        ("markdown", "text"),
    ]))
    return root


def test_student_version_of_a_tree_with_a_notebook(tmp_path):
    src, out = toy_repo(tmp_path / "src"), tmp_path / "out"
    chosen = student.make_student(out, lessons=["03", "??"], root=src)
    assert sorted(r.name for r in chosen) == ["nb.triple", "toy.add", "toy.double"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["minillm-assignment.json", "minillm/__init__.py", "minillm/toy.py", "minillm/world.py",
                     "notebooks/03_toy.ipynb"]  # no .git, no caches, no venv
    assert "return 'kept'" in (out / "minillm/world.py").read_text()  # lesson 00 not selected: solution kept
    toy = (out / "minillm/toy.py").read_text()
    assert "a + b" not in toy and "x * 2" not in toy and "### BEGIN EXERCISE name=toy.add points=2" in toy
    nb = json.loads((out / "notebooks/03_toy.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    cell = "".join(code[1]["source"])
    assert "3 * x" not in cell and '    raise NotImplementedError("multiply.")' in cell
    manifest = json.loads((out / regions.MANIFEST).read_text())
    assert {e["name"]: e["points"] for e in manifest["exercises"]} == {"nb.triple": 2, "toy.add": 2, "toy.double": 1}


def test_student_version_refuses_to_overwrite(tmp_path):
    src = toy_repo(tmp_path / "src")
    with pytest.raises(MiniLLMError, match="overwrite the repository"):
        student.make_student(src, ["all"], root=src)
    write(tmp_path / "full/notes.txt", "mine")
    with pytest.raises(MiniLLMError, match="not empty"):
        student.make_student(tmp_path / "full", ["all"], root=src, force=True)  # not made by us: kept
    assert (tmp_path / "full/notes.txt").exists()
    student.make_student(tmp_path / "out", ["all"], root=src)
    student.make_student(tmp_path / "out", ["03"], root=src, force=True)  # ours: replaced
    assert json.loads((tmp_path / "out" / regions.MANIFEST).read_text())["lessons"] == ["03"]


def test_leftover_solution_is_found(tmp_path):
    src = toy_repo(tmp_path / "src")
    found = regions.find_regions(src)
    out = tmp_path / "out"
    student.make_student(out, ["all"], root=src)
    student.check_no_solutions(out, found)
    write(out / "lessons/00-notes.md", "The answer:\n```\ny = x * 2\n        return y\n```\n")
    with pytest.raises(MiniLLMError, match="toy.double"):
        student.check_no_solutions(out, found)


@solved_00
def test_student_version_of_this_repository(tmp_path):
    out = tmp_path / "handout"
    assert main(["assign", "student", "--lessons", "00", "--out", str(out)]) == 0
    tracked = set(regions.list_files(ROOT))
    made = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert made == tracked | {regions.MANIFEST}
    assert not (out / ".git").exists()
    world = (out / "minillm/world.py").read_text()
    ast.parse(world)
    for r in WORLD.values():
        body = [ln.strip() for ln in r.body.splitlines() if len(ln.strip()) > 12]
        assert body and not any(ln in world for ln in body), r.name
        assert f'raise NotImplementedError("{r.hint}")' in world
    for r in REGIONS:  # other lessons keep their solutions, so later lessons still work
        if r.lesson != "00":
            assert " ".join(r.body.split()) in " ".join((out / r.path).read_text().split())
    assert {r.name for r in regions.find_regions(out) if r.stubbed} == set(WORLD) | {r.name for r in REGIONS if r.stubbed}


# ---------------------------------------------------------------------------------
# Grading (subprocesses: lesson 00 only, short timeouts)
# ---------------------------------------------------------------------------------

STATUS = {"passed", "failed"}


def check_gradescope(results: dict) -> None:
    """Gradescope's results.json format (https://gradescope-autograders.readthedocs.io)."""
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    schema = {
        "type": "object", "required": ["score", "tests"],
        "properties": {
            "score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
            "visibility": {"enum": list(grader.VISIBILITY)}, "stdout_visibility": {"enum": list(grader.VISIBILITY)},
            "extra_data": {"type": "object"},
            "tests": {"type": "array", "items": {
                "type": "object", "required": ["name", "score", "max_score", "status", "output", "visibility"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "score": {"type": "number"},
                               "max_score": {"type": "number"}, "status": {"enum": sorted(STATUS)},
                               "output": {"type": "string"}, "visibility": {"enum": list(grader.VISIBILITY)}}}},
        },
        "additionalProperties": False,
    }
    if jsonschema is not None:
        jsonschema.validate(results, schema)
    assert set(results) <= set(schema["properties"])
    for t in results["tests"]:
        assert set(t) == set(schema["properties"]["tests"]["items"]["required"]) and t["status"] in STATUS
        assert 0 <= t["score"] <= t["max_score"]
    assert math.isclose(results["score"], sum(t["score"] for t in results["tests"]), abs_tol=0.01)


def by_exercise(results: dict) -> dict[str, tuple[float, float, int]]:
    """exercise -> (score, max score, number of tests)."""
    out: dict[str, list] = {}
    for t in results["tests"]:
        s = out.setdefault(t["name"].split(":")[0], [0.0, 0.0, 0])
        s[0] += t["score"]
        s[1] += t["max_score"]
        s[2] += 1
    return {k: (round(a, 2), round(b, 2), n) for k, (a, b, n) in out.items()}


@solved_00
def test_grade_the_student_version_and_the_solution(tmp_path, capsys):
    out = tmp_path / "handout"
    student.make_student(out, ["00"], root=ROOT)
    results_path = tmp_path / "results.json"
    code = main(["assign", "grade", str(out), "--results", str(results_path), "--timeout", "4"])
    printed = capsys.readouterr().out
    assert code == 1  # not full marks
    results = json.loads(results_path.read_text())
    check_gradescope(results)
    assert results["score"] == 0 and results["extra_data"]["max_score"] == 5
    assert all(t["status"] == "failed" and "NotImplementedError" in t["output"] for t in results["tests"])
    assert {k: v[:2] for k, v in by_exercise(results).items()} == {"world.unigram": (0, 2), "world.bigram": (0, 3)}
    assert "world.bigram" in printed and "0.00 / 3" in printed and WORLD["world.bigram"].hint[:40] in printed

    solution = grader.grade(ROOT, ["00"], tests_from=ROOT, limits=FAST, cache=CACHE)
    check_gradescope(solution)
    assert solution["score"] == 5 and all(t["status"] == "passed" for t in solution["tests"])
    # the split: every marked test of the exercise, shares that add up to its points
    for name, (score, max_score, n) in by_exercise(solution).items():
        assert score == max_score == WORLD[name].points and n >= 1


def submission(tmp_path: Path, unigram_body: str, module_suffix: str = "") -> Path:
    """A copy of the solution package whose world.unigram region is replaced by `unigram_body`."""
    sub = tmp_path / "submission"
    shutil.copytree(ROOT / "minillm", sub / "minillm", ignore=shutil.ignore_patterns("__pycache__"))
    r = WORLD["world.unigram"]
    lines = (ROOT / r.path).read_text().splitlines(keepends=True)
    body = "".join(r.indent + ln + "\n" for ln in unigram_body.splitlines())
    text = "".join(lines[:r.start + 1] + [body] + lines[r.end - 1:]) + module_suffix
    (sub / r.path).write_text(text)
    return sub


INSTRUCTORS_UNIGRAM = """import importlib.metadata, json, pathlib
url = json.loads(importlib.metadata.distribution("minillm").read_text("direct_url.json"))["url"]
ns = {}
exec((pathlib.Path(url[len("file://"):]) / "minillm" / "world.py").read_text(), ns)
return ns["unigram_bits_per_byte"](train, test)"""


@solved_00
@pytest.mark.skipif(not sandbox.is_root(), reason="the sandbox uid needs root (as on Gradescope)")
def test_the_instructors_installed_solution_is_out_of_reach(tmp_path):
    # the cheat: find this checkout through the installed package's metadata, run its world.py
    import importlib.metadata

    direct = json.loads(importlib.metadata.distribution("minillm").read_text("direct_url.json") or "{}")
    if Path(direct.get("url", "file://")[len("file://"):]).resolve() != ROOT:
        pytest.skip("minillm is not installed from this checkout in editable mode")
    results = grader.grade(submission(tmp_path, INSTRUCTORS_UNIGRAM), ["00"], tests_from=ROOT, limits=FAST,
                           cache=CACHE)
    scores = by_exercise(results)
    assert scores["world.unigram"][0] == 0 and scores["world.bigram"][0] > 0, results["output"]
    assert any("Permission" in t["output"] or "No such file" in t["output"] for t in results["tests"]
               if t["name"].startswith("world.unigram"))


def test_a_submission_cannot_change_the_tests(tmp_path):
    # the stubbed exercise plus "tests" that pass anything, a conftest that passes every
    # test, and points raised in the manifest: none of it is used
    course = toy_course(tmp_path / "course")
    sub = tmp_path / "sub"
    student.make_student(sub, ["all"], root=course)
    write(sub / "tests/test_toy.py", "import pytest\n\n@pytest.mark.exercise('toy.add')\n"
                                     "def test_add():\n    pass\n")
    write(sub / "tests/conftest.py", "import pytest\n\n@pytest.hookimpl(tryfirst=True)\n"
                                     "def pytest_runtest_call(item):\n    return True\n")
    manifest = json.loads((sub / regions.MANIFEST).read_text())
    manifest["exercises"] = [dict(e, points=100) for e in manifest["exercises"]]
    (sub / regions.MANIFEST).write_text(json.dumps(manifest))
    results = grader.grade(sub, tests_from=course, limits=TOY, cache=CACHE)
    assert results["score"] == 0 and results["extra_data"]["max_score"] == 3
    assert {t["name"].split(": ")[1] for t in results["tests"]} >= {"tests/test_toy.py::test_add"}


def test_loose_module_files_are_graded_on_top_of_the_stubs(tmp_path):
    # a Gradescope upload of toy.py alone, solved; other modules stay the instructor's
    course = toy_course(tmp_path / "course")
    write(tmp_path / "upload/toy.py", MODULE)
    write(tmp_path / "upload/test_cheat.py", "")  # not one of our modules: ignored
    results = grader.grade(tmp_path / "upload", ["all"], tests_from=course, limits=TOY, cache=CACHE)
    assert results["score"] == 3


def toy_course(root: Path) -> Path:
    """A tiny repository (no numpy, fast to grade) with two exercises and their tests."""
    write(root / "pyproject.toml", '[tool.pytest.ini_options]\naddopts = "-m \'not slow\'"\n'
                                   'markers = ["slow: slow", "exercise(name): graded"]\n')
    write(root / "minillm/__init__.py", "")
    write(root / "minillm/toy.py", MODULE)
    write(root / "tests/test_toy.py", (
        "import pytest\nfrom minillm import toy\n\n"
        "@pytest.mark.exercise('toy.add')\ndef test_add():\n    assert toy.add(1, 2) == 3\n\n"
        "@pytest.mark.exercise('toy.add', visibility='hidden')\n@pytest.mark.parametrize('a', [0, 5])\n"
        "def test_add_zero(a):\n    assert toy.add(a, 0) == a\n\n"
        "@pytest.mark.exercise('toy.double')\n@pytest.mark.slow\n"
        "def test_double():\n    assert toy.Box().double(4) == 8\n\n"
        "def test_unmarked():\n    assert toy.Box().untouched() == 7\n"))
    return root


def test_points_visibility_and_skips_on_a_toy_course(tmp_path):
    course = toy_course(tmp_path / "course")
    sub = tmp_path / "sub"
    student.make_student(sub, ["all"], root=course)
    # toy.add solved; toy.double "solved" by skipping its test, which earns nothing
    toy = (sub / "minillm/toy.py").read_text()
    toy = toy.replace('raise NotImplementedError("return', 'return a + b  # ("return', 1)
    toy = toy.replace('raise NotImplementedError("exercise toy.double', 'import pytest; pytest.skip("later")  # ("', 1)
    (sub / "minillm/toy.py").write_text(toy)
    results = grader.grade(sub, tests_from=course, limits=TOY, visibility="after_due_date")
    check_gradescope(results)
    tests = {t["name"]: t for t in results["tests"]}
    assert {n: (t["score"], t["max_score"], t["visibility"]) for n, t in tests.items()} == {
        "toy.add: tests/test_toy.py::test_add": (0.67, 0.67, "after_due_date"),
        "toy.add: tests/test_toy.py::test_add_zero[0]": (0.67, 0.67, "hidden"),
        "toy.add: tests/test_toy.py::test_add_zero[5]": (0.66, 0.66, "hidden"),
        "toy.double: tests/test_toy.py::test_double": (0.0, 1.0, "after_due_date"),  # slow tests grade too
    }
    assert "skipped: later" in tests["toy.double: tests/test_toy.py::test_double"]["output"]
    assert results["score"] == 2 and results["extra_data"]["max_score"] == 3


def test_check_names_tests_that_do_not_grade(tmp_path, capsys):
    course = toy_course(tmp_path / "course")
    with open(course / "tests/test_toy.py", "a") as f:  # a test of the lesson's file that forgot its marker
        f.write("\n\ndef test_uses_add_unmarked():\n    assert toy.add(2, 2) == 4\n")
    assert main(["assign", "list", "--root", str(course)]) == 0
    assert "toy.add" in capsys.readouterr().out
    # fast limits; only the lesson "??" exists in the toy course
    report = check.check_exercises(course, limits=TOY)
    assert report == {
        "<solution of lesson ??>": {"failed": []},
        "toy.add": {"unmarked_failed": ["tests/test_toy.py::test_uses_add_unmarked"], "marked_passed": []},
        "toy.double": {"unmarked_failed": [], "marked_passed": ["(no non-slow test is marked with this exercise)"]},
    }


@pytest.mark.slow
@pytest.mark.parametrize("lesson", sorted({r.lesson for r in REGIONS if not r.stubbed}))
def test_each_exercise_fails_exactly_its_marked_tests(lesson):
    """The proof that the tests grade: the solution passes every non-slow test of the
    lesson's test files; with one exercise removed, exactly the tests marked with it fail."""
    names = sorted(r.name for r in REGIONS if r.lesson == lesson and not r.stubbed)
    report = check.check_exercises(ROOT, names, limits=runner.Limits(timeout=300, total=3000))
    assert report == {f"<solution of lesson {lesson}>": {"failed": []},
                      **{n: {"unmarked_failed": [], "marked_passed": []} for n in names}}


def test_every_marked_exercise_exists_and_every_exercise_has_tests():
    names = {r.name for r in REGIONS}
    tests = [f for f in regions.list_files(ROOT) if re.fullmatch(r"tests/(.*/)?test[^/]*\.py", f)]
    marked = set().union(*(regions.marked_exercises(ROOT / f) for f in tests))
    assert marked <= names, f"tests mark exercises that have no region: {sorted(marked - names)}"
    assert names <= marked, f"exercises without a marked test: {sorted(names - marked)}"


def test_marked_exercises_are_read_from_the_code_not_from_strings(tmp_path):
    path = write(tmp_path / "test_x.py", (
        "import pytest\n"
        "pytestmark = pytest.mark.exercise('m.a')\n"
        "@pytest.mark.exercise('m.b', 'm.c')\n"
        "@pytest.mark.parametrize('x', [pytest.param(1, marks=pytest.mark.exercise('m.d'))])\n"
        "def test_x(x):\n"
        "    assert \"@pytest.mark.exercise('m.e')\"\n"))
    assert regions.marked_exercises(path) == {"m.a", "m.b", "m.c", "m.d"}


def test_git_is_not_needed(tmp_path):
    src = toy_repo(tmp_path / "src")
    shutil.rmtree(src / ".git")  # toy_repo's .git is a fake
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(src)], check=True)
        subprocess.run(["git", "-C", str(src), "add", "minillm/toy.py"], check=True)
        assert regions.list_files(src) == ["minillm/toy.py"]  # a checkout: only what git tracks
        shutil.rmtree(src / ".git")
    assert "minillm/world.py" in regions.list_files(src)


# ---------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lessons, message", [("99", "99 is not a lesson"), ("07", "07 has no exercise"),
                                              ("00,99", "99 is not a lesson")])
def test_student_refuses_unknown_lessons_and_writes_nothing(tmp_path, capsys, lessons, message):
    src = toy_repo(tmp_path / "src")  # lessons 00 and 03 have exercises
    out = tmp_path / "handout"
    assert main(["assign", "student", "--lessons", lessons, "--out", str(out), "--root", str(src)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_list_aligns_long_names(tmp_path, capsys):
    write(tmp_path / "minillm/toy.py", MODULE.replace("toy.double", "toy.a_rather_long_exercise_name_indeed"))
    assert main(["assign", "list", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[:3]
    assert len({ln.index("??") if "??" in ln else ln.index("lesson") for ln in lines}) == 1, lines


def test_results_naming_a_folder_fails_before_grading(tmp_path, capsys, monkeypatch):
    def no_grading(*a, **k):
        raise AssertionError("graded although --results is unusable")

    monkeypatch.setattr(grader, "grade", no_grading)
    sub = write(tmp_path / "sub/world.py", "")
    for results, message in [(tmp_path, "is a folder"), (tmp_path / "missing/r.json", "does not exist")]:
        assert main(["assign", "grade", str(sub.parent), "--results", str(results)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def exercise_option_selection(name: str, files: list[str]) -> set[str]:
    """What `pytest --exercise NAME` collects in this checkout (tests/conftest.py)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "--exercise", name, *files], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return {ln.strip() for ln in r.stdout.splitlines() if "::" in ln}


def grader_selection(files: list[str]) -> list[dict]:
    """The tests and markers the grader's plugin collects from `files` in this checkout."""
    return runner.run_pytest(ROOT, files, None, FAST, collect_only=True).collected


def test_the_exercise_option_selects_what_the_grader_grades_in_a_toy_course(tmp_path):
    course = toy_course(tmp_path / "course")
    shutil.copyfile(ROOT / "tests/conftest.py", course / "tests/conftest.py")
    collected = runner.run_pytest(course, ["tests/test_toy.py"], None, TOY, collect_only=True).collected
    for name in ("toy.add", "toy.double"):
        r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                            "--exercise", name, "tests/test_toy.py"], cwd=course, capture_output=True, text=True,
                           env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        got = {ln.strip() for ln in r.stdout.splitlines() if "::" in ln}
        assert got == {t["nodeid"] for t in collected if name in t["exercises"]} != set()  # slow one included


@pytest.mark.slow
@pytest.mark.parametrize("lesson", sorted({r.lesson for r in REGIONS}))
def test_the_exercise_option_selects_what_the_grader_grades(lesson):
    names = sorted(r.name for r in REGIONS if r.lesson == lesson)
    files = regions.graded_test_files(ROOT, set(names))
    collected = grader_selection(files)
    for name in names:
        assert exercise_option_selection(name, files) == {t["nodeid"] for t in collected if name in t["exercises"]}


def test_every_graded_by_command_names_an_exercise():
    """A lesson box's `pytest --exercise NAME` names a region (of the files on disk, so a
    module not yet committed counts)."""
    on_disk = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "minillm").rglob("*.py"))
    names = {r.name for r in regions.find_regions(ROOT, on_disk)}
    for reading in sorted((ROOT / "lessons").glob("[0-9][0-9]-*.md")):
        for name in re.findall(r"pytest --exercise ([\w.]+)", reading.read_text(encoding="utf-8")):
            assert name in names, f"{reading.name}: `pytest --exercise {name}` names no exercise region"


@pytest.mark.slow
@pytest.mark.parametrize("lesson", sorted({r.lesson for r in REGIONS if not r.stubbed}))
def test_the_solution_scores_full_marks_in_the_grader(lesson):
    """End to end through the sandbox (as root: a fresh uid, a read-only workspace): the
    solution earns every point and nothing is flagged."""
    results = grader.grade(ROOT, [lesson], tests_from=ROOT, limits=runner.Limits(timeout=300, total=3000))
    assert results["score"] == results["extra_data"]["max_score"], results["output"]
    assert results["extra_data"]["flags"] == [] and results["extra_data"]["warnings"] == []
