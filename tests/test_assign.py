"""The instructor kit: exercise regions, the student version, the grader, Gradescope results.

Subprocess tests grade lesson 00 only (TinyWorld's tests run in a few seconds) with
short timeouts; the proof for every exercise of every lesson is marked slow.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from minillm import assign, grading
from minillm.cli import main
from minillm.utils import MiniLLMError

ROOT = Path(__file__).resolve().parent.parent
# Marker lines are assembled so that this file holds no region itself.
BEGIN, END, HINT = "### BEGIN " + "SOLUTION", "### END " + "SOLUTION", "### HINT:"
FAST = grading.Limits(timeout=4, total=90, collect=40, clip=2000)
REGIONS = assign.find_regions(ROOT)
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
    ("minillm/world.py", "00"), ("minillm/tokenizer.py", "01"), ("minillm/tokenizer_fast.py", "01"),
    ("minillm/attention.py", "02"), ("minillm/layers.py", "03"), ("minillm/model.py", "03"),
    ("minillm/checkpoint.py", "04"), ("minillm/optim.py", "04"), ("minillm/evaluate.py", "05"),
    ("minillm/scaling.py", "06"), ("minillm/flops.py", "07"), ("notebooks/05_evaluate.ipynb", "05"),
    ("minillm/unknown.py", "??"),
])
def test_lesson_of_a_file(path, lesson):
    assert assign.lesson_of(path) == lesson


def test_lesson_from_the_readme_map_for_new_modules(tmp_path):
    write(tmp_path / "README.md", "| 09 | [LoRA](lessons/09-lora.md) | `notebooks/09_lora.ipynb` | "
                                  "`minillm/lora.py` | `tests/test_lora.py` |\n")
    write(tmp_path / "minillm/lora.py", f"def f():\n    {BEGIN} name=lora.f points=1\n    return 1\n    {END}\n")
    (region,) = assign.find_regions(tmp_path)
    assert (region.name, region.lesson) == ("lora.f", "09")


@pytest.mark.parametrize("body, message", [
    (f"def f():\n    {BEGIN} name=t.f\n    return 1\n    {END}\n", "points"),
    (f"def f():\n    {BEGIN} name=t.f points=1\n    return 1\n", "no END"),
    (f"def f():\n    {BEGIN} name=t.f points=1\n    {BEGIN} name=t.g points=1\n    {END}\n", "not closed"),
    (f"def f():\n    return 1\n    {END}\n", "without a BEGIN"),
], ids=["no points", "no end", "nested", "end without begin"])
def test_malformed_regions_are_clear_errors(tmp_path, body, message):
    write(tmp_path / "minillm/t.py", body)
    with pytest.raises(MiniLLMError, match=message):
        assign.find_regions(tmp_path)


def test_duplicate_names_are_an_error(tmp_path):
    region = f"def f():\n    {BEGIN} name=t.f points=1\n    return 1\n    {END}\n"
    write(tmp_path / "minillm/a.py", region)
    write(tmp_path / "minillm/b.py", region)
    with pytest.raises(MiniLLMError, match="defined twice"):
        assign.find_regions(tmp_path)


def test_stub_keeps_indentation_and_the_module_imports(tmp_path):
    write(tmp_path / "minillm/toy.py", MODULE)
    regions = assign.find_regions(tmp_path)
    assert [(r.name, r.points, len(r.indent)) for r in regions] == [("toy.add", 2, 4), ("toy.double", 1, 8)]
    assert regions[0].hint == 'return the "sum" of a and b \\ nothing else.'
    stub = "".join(assign.stub_lines(MODULE.splitlines(keepends=True), regions))
    ast.parse(stub)
    assert "a + b" not in stub and "x * 2" not in stub
    ns: dict = {}
    exec(compile(stub, "toy.py", "exec"), ns)
    with pytest.raises(NotImplementedError) as e:
        ns["add"](1, 2)
    assert str(e.value) == regions[0].hint  # quotes and backslash survive the round trip
    box = ns["Box"]()
    assert box.double(None) is None and box.untouched() == 7  # code outside regions still runs
    with pytest.raises(NotImplementedError, match="toy.double"):  # no hint: the name says what to write
        box.double(3)
    # a student version is itself a set of regions (EXERCISE markers) with the same names and points
    again = assign.parse_regions(stub.splitlines(keepends=True), "minillm/toy.py", "??")
    assert [(r.name, r.points, r.stubbed) for r in again] == [("toy.add", 2, True), ("toy.double", 1, True)]


def test_a_region_that_is_not_whole_statements_is_refused(tmp_path):
    # the region opens a block it does not close: the stub would not parse
    write(tmp_path / "minillm/bad.py",
          f"def f(x):\n    {BEGIN} name=bad.f points=1\n    if x:\n    {END}\n        return 1\n")
    with pytest.raises(MiniLLMError, match="does not parse"):
        assign.make_student(tmp_path / "out", ["all"], root=tmp_path)


def test_split_points_adds_up_exactly():
    assert assign is not None and grading.split_points(2, 3) == [0.67, 0.67, 0.66]
    assert grading.split_points(3, 4) == [0.75] * 4
    for points in range(0, 12):
        for n in range(1, 15):
            shares = grading.split_points(points, n)
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
    chosen = assign.make_student(out, lessons=["03", "??"], root=src)
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
    manifest = json.loads((out / assign.MANIFEST).read_text())
    assert {e["name"]: e["points"] for e in manifest["exercises"]} == {"nb.triple": 2, "toy.add": 2, "toy.double": 1}


def test_student_version_refuses_to_overwrite(tmp_path):
    src = toy_repo(tmp_path / "src")
    with pytest.raises(MiniLLMError, match="overwrite the repository"):
        assign.make_student(src, ["all"], root=src)
    write(tmp_path / "full/notes.txt", "mine")
    with pytest.raises(MiniLLMError, match="not empty"):
        assign.make_student(tmp_path / "full", ["all"], root=src, force=True)  # not made by us: kept
    assert (tmp_path / "full/notes.txt").exists()
    assign.make_student(tmp_path / "out", ["all"], root=src)
    assign.make_student(tmp_path / "out", ["03"], root=src, force=True)  # ours: replaced
    assert json.loads((tmp_path / "out" / assign.MANIFEST).read_text())["lessons"] == ["03"]


def test_leftover_solution_is_found(tmp_path):
    src = toy_repo(tmp_path / "src")
    regions = assign.find_regions(src)
    out = tmp_path / "out"
    assign.make_student(out, ["all"], root=src)
    assign.check_no_solutions(out, regions)
    write(out / "lessons/00-notes.md", "The answer:\n```\ny = x * 2\n        return y\n```\n")
    with pytest.raises(MiniLLMError, match="toy.double"):
        assign.check_no_solutions(out, regions)


@solved_00
def test_student_version_of_this_repository(tmp_path):
    out = tmp_path / "handout"
    assert main(["assign", "student", "--lessons", "00", "--out", str(out)]) == 0
    tracked = set(assign.list_files(ROOT))
    made = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert made == tracked | {assign.MANIFEST}
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
    assert {r.name for r in assign.find_regions(out) if r.stubbed} == set(WORLD) | {r.name for r in REGIONS if r.stubbed}


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
            "visibility": {"enum": list(grading.VISIBILITY)}, "stdout_visibility": {"enum": list(grading.VISIBILITY)},
            "extra_data": {"type": "object"},
            "tests": {"type": "array", "items": {
                "type": "object", "required": ["name", "score", "max_score", "status", "output", "visibility"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "score": {"type": "number"},
                               "max_score": {"type": "number"}, "status": {"enum": sorted(STATUS)},
                               "output": {"type": "string"}, "visibility": {"enum": list(grading.VISIBILITY)}}}},
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
    assign.make_student(out, ["00"], root=ROOT)
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

    solution = grading.grade(ROOT, ["00"], tests_from=ROOT, limits=FAST)
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


SOLUTION_OF_UNIGRAM = "counts = [1] * 256\nfor b in train:\n    counts[b] += 1\n" \
    "total = sum(counts)\nreturn sum(-math.log2(counts[b] / total) for b in test) / len(test)"

ADVERSARIAL = {
    # name: (replacement of world.unigram, text after the module, expect bigram to keep its points, message)
    "infinite loop": ("while True:\n    pass", "", True, "Timeout"),
    "os._exit in a test": ("import os\nos._exit(3)", "", True, "process ended"),
    "sys.exit in a test": ("import sys\nsys.exit(0)", "", True, "SystemExit"),
    "10 MB print": ("print('x' * 10_000_000)\n" + SOLUTION_OF_UNIGRAM, "", True, "characters; the limit is"),
    "syntax error": ("return (", "", False, "SyntaxError"),
    "os._exit at import": (SOLUTION_OF_UNIGRAM, "import os\nos._exit(0)\n", False, "before it ran this test"),
}


@solved_00
@pytest.mark.parametrize("case", list(ADVERSARIAL))
def test_adversarial_submissions_score_zero_and_the_grader_finishes(tmp_path, case):
    body, suffix, bigram_ok, message = ADVERSARIAL[case]
    limits = grading.Limits(**{**FAST.__dict__, "timeout": 2}) if case == "infinite loop" else FAST
    results = grading.grade(submission(tmp_path, body, suffix), ["00"], tests_from=ROOT, limits=limits)
    check_gradescope(results)
    scores = by_exercise(results)
    assert scores["world.unigram"][0] == 0
    unigram = [t for t in results["tests"] if t["name"].startswith("world.unigram")]
    assert all(message in t["output"] for t in unigram), unigram[0]["output"][:800]
    assert all(len(t["output"]) < 10_000 for t in results["tests"])  # output is cut
    # bigram's tests that do not also grade unigram keep their points (if the module imports)
    unigram_ids = {t["name"].split(": ", 1)[1] for t in unigram}
    bigram = [t for t in results["tests"] if t["name"].startswith("world.bigram")]
    independent = [t for t in bigram if t["name"].split(": ", 1)[1] not in unigram_ids]
    assert independent, "lesson 00 should have a test of world.bigram alone"
    assert all((t["status"] == "passed") == (bigram_ok and t in independent) for t in bigram)
    assert results["execution_time"] < 80


@solved_00
def test_a_submission_cannot_change_the_tests(tmp_path):
    # the stubbed exercise plus "tests" that pass anything, a conftest that passes every
    # test, and points raised in the manifest: none of it is used
    sub = tmp_path / "sub"
    assign.make_student(sub, ["00"], root=ROOT)
    write(sub / "tests/test_world.py", "import pytest\n\n@pytest.mark.exercise('world.unigram')\n"
                                       "def test_unigram_hand_example():\n    pass\n")
    write(sub / "tests/conftest.py", "import pytest\n\n@pytest.hookimpl(tryfirst=True)\n"
                                     "def pytest_runtest_call(item):\n    return True\n")
    results = grading.grade(sub, ["00"], exercises=None, tests_from=ROOT, limits=FAST)
    assert results["score"] == 0
    assert {t["name"].split(": ")[1] for t in results["tests"]} >= {"tests/test_world.py::test_unigram_hand_example"}


@solved_00
def test_loose_module_files_are_graded_on_top_of_the_stubs(tmp_path):
    # a Gradescope upload of world.py alone; other modules stay the instructor's
    sub = tmp_path / "upload"
    write(sub / "world.py", (ROOT / "minillm/world.py").read_text())
    results = grading.grade(sub, ["00"], tests_from=ROOT, limits=FAST)
    assert results["score"] == 5


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
    assign.make_student(sub, ["all"], root=course)
    # toy.add solved; toy.double "solved" by skipping its test, which earns nothing
    toy = (sub / "minillm/toy.py").read_text()
    toy = toy.replace('raise NotImplementedError("return', 'return a + b  # ("return', 1)
    toy = toy.replace('raise NotImplementedError("exercise toy.double', 'import pytest; pytest.skip("later")  # ("', 1)
    (sub / "minillm/toy.py").write_text(toy)
    results = grading.grade(sub, tests_from=course, limits=FAST, visibility="after_due_date")
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
    report = grading.check_exercises(course, limits=FAST)
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
    report = grading.check_exercises(ROOT, names, limits=grading.Limits(timeout=300, total=3000))
    assert report == {f"<solution of lesson {lesson}>": {"failed": []},
                      **{n: {"unmarked_failed": [], "marked_passed": []} for n in names}}


def test_every_marked_exercise_exists_and_every_exercise_has_tests():
    names = {r.name for r in REGIONS}
    tests = [f for f in assign.list_files(ROOT) if re.fullmatch(r"tests/(.*/)?test[^/]*\.py", f)]
    marked = set().union(*(assign.marked_exercises(ROOT / f) for f in tests))
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
    assert assign.marked_exercises(path) == {"m.a", "m.b", "m.c", "m.d"}


def test_git_is_not_needed(tmp_path):
    src = toy_repo(tmp_path / "src")
    shutil.rmtree(src / ".git")  # toy_repo's .git is a fake
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(src)], check=True)
        subprocess.run(["git", "-C", str(src), "add", "minillm/toy.py"], check=True)
        assert assign.list_files(src) == ["minillm/toy.py"]  # a checkout: only what git tracks
        shutil.rmtree(src / ".git")
    assert "minillm/world.py" in assign.list_files(src)
