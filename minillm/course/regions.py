"""Finding the exercises: regions of the real code between nbgrader's markers.

    def unigram_bits_per_byte(train, test):
        <BEGIN SOLUTION name=world.unigram points=2>   (written "### BEGIN SOLUTION ...")
        <HINT: count each byte value ...>                (written "### HINT: ...")
        ... the solution ...
        <END SOLUTION>                                   (written "### END SOLUTION")

`find_regions` reads every region of the package (`minillm/**/*.py`) and of the
notebooks (regions inside code cells); nothing lists exercises by hand. A region's
lesson comes from the lesson table (`course.lessons`). A student version's stubs
are regions too (`### BEGIN EXERCISE ...`, `stubbed=True`). `marked_exercises`
reads the `@pytest.mark.exercise(...)` names of a test file with `ast`, without
running it. Left out: nbgrader's hidden-test cells; one region per exercise name.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from minillm.course.lessons import LESSONS, lesson_of
from minillm.utils import MiniLLMError

PACKAGE = "minillm"
MANIFEST = "minillm-assignment.json"  # written into every student version

# The marker words are split so that this file never contains a marker line itself.
SOL, EXE = "SOL" + "UTION", "EXER" + "CISE"
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN (?P<kind>" + SOL + "|" + EXE + r")\b(?P<attrs>.*?)\s*$")
_END = re.compile(r"^[ \t]*### END (?:" + SOL + "|" + EXE + r")\s*$")
_HINT = re.compile(r"^[ \t]*### HINT:\s*(?P<hint>.*?)\s*$")
_ATTR = re.compile(r"(\w+)=(\S+)")
_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", ".pytest_cache", ".hypothesis", ".mypy_cache",
              ".ruff_cache", ".ipynb_checkpoints", ".tox", "node_modules", "build", "dist", "runs"}
TEST_FILE = re.compile(r"tests/(.*/)?test[^/]*\.py")


@dataclasses.dataclass
class Region:
    """One exercise region: `lines[start:end]` of `path` (in cell `cell` for notebooks)."""

    name: str          # "<module>.<exercise>", unique in the repository
    points: int
    hint: str
    lesson: str        # "00", "01", ... or "??" when no lesson lists the file
    path: str          # relative to the repository root, with "/"
    start: int         # 0-based line of the BEGIN marker (within the cell for notebooks)
    end: int           # 0-based line after the END marker
    indent: str
    cell: int | None = None
    stubbed: bool = False  # True for an EXERCISE region (a student version's marker)
    body: str = ""     # the solution lines between the markers (hint excluded)

    def as_dict(self) -> dict:
        return {"name": self.name, "points": self.points, "lesson": self.lesson, "path": self.path,
                "hint": self.hint}


def repo_root() -> Path:
    """The repository this package was imported from (the instructor's checkout)."""
    return Path(__file__).resolve().parent.parent.parent


def list_files(root: str | os.PathLike) -> list[str]:
    """Relative paths ("/"-separated) of the repository's files: `git ls-files` in a git
    checkout (tracked files that exist), else a walk that skips caches, venvs and `.git`."""
    root = Path(root)
    if (root / ".git").exists() and shutil.which("git"):
        r = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, timeout=60)
        if r.returncode == 0:
            names = [n for n in r.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
            return sorted(n for n in names if (root / n).is_file() and not (root / n).is_symlink())
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")
                             and not (Path(dirpath) / d / MANIFEST).exists())
        for f in filenames:
            p = Path(dirpath) / f
            if f.endswith((".pyc", ".pyo")) or p.is_symlink():
                continue
            out.append(p.relative_to(root).as_posix())
    return sorted(out)


def parse_regions(lines: list[str], path: str, lesson: str, cell: int | None = None) -> list[Region]:
    """The regions in `lines` (one file or one notebook cell); malformed markers raise
    MiniLLMError naming the file and line."""
    where = f"{path}" + (f" (cell {cell})" if cell is not None else "")
    regions, i = [], 0
    while i < len(lines):
        line = lines[i].rstrip("\r\n")
        m = _BEGIN.match(line)
        if _END.match(line):
            raise MiniLLMError(f"{where}:{i + 1}: END marker without a BEGIN marker")
        if not m:
            i += 1
            continue
        attrs = dict(_ATTR.findall(m.group("attrs")))
        if "name" not in attrs or "points" not in attrs or not re.fullmatch(r"\d+", attrs["points"]):
            raise MiniLLMError(f"{where}:{i + 1}: a region needs `name=<module>.<exercise> points=<int>`, "
                               f"got {line.strip()!r}")
        hint, j = "", i + 1
        if j < len(lines) and _HINT.match(lines[j].rstrip("\r\n")):
            hint = _HINT.match(lines[j].rstrip("\r\n")).group("hint")
            j += 1
        k = j
        while k < len(lines) and not _END.match(lines[k].rstrip("\r\n")):
            if _BEGIN.match(lines[k].rstrip("\r\n")):
                raise MiniLLMError(f"{where}:{k + 1}: region {attrs['name']} opened at line {i + 1} "
                                   "is not closed before the next BEGIN marker")
            k += 1
        if k == len(lines):
            raise MiniLLMError(f"{where}:{i + 1}: region {attrs['name']} has no END marker")
        regions.append(Region(attrs["name"], int(attrs["points"]), hint, lesson, path, i, k + 1,
                              m.group("indent"), cell, m.group("kind") == EXE, "".join(lines[j:k])))
        i = k + 1
    return regions


def cell_lines(cell: dict) -> list[str]:
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else src).splitlines(keepends=True)


def load_notebook(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MiniLLMError(f"{path}: not a readable notebook ({e})") from e


def find_regions(root: str | os.PathLike | None = None, files: list[str] | None = None) -> list[Region]:
    """Every exercise region of the repository at `root` (default: this checkout), in
    lesson order. Names must be unique."""
    root = Path(root) if root is not None else repo_root()
    files = list_files(root) if files is None else files
    regions: list[Region] = []
    for rel in files:
        is_py = rel.startswith(PACKAGE + "/") and rel.endswith(".py")
        if not (is_py or rel.endswith(".ipynb")):
            continue
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        if "### BEGIN" not in text and "### END" not in text:
            continue
        if is_py:
            regions += parse_regions(text.splitlines(keepends=True), rel, lesson_of(rel))
        else:
            for c, cell in enumerate(load_notebook(root / rel).get("cells", [])):
                if cell.get("cell_type") == "code":
                    regions += parse_regions(cell_lines(cell), rel, lesson_of(rel), cell=c)
    seen: dict[str, Region] = {}
    for r in regions:
        if r.name in seen:
            raise MiniLLMError(f"exercise {r.name} is defined twice: {seen[r.name].path} and {r.path}")
        seen[r.name] = r
    return sorted(regions, key=lambda r: (r.lesson, r.path, r.cell or 0, r.start))


def marked_exercises(path: str | os.PathLike) -> set[str]:
    """The exercise names a test file marks: every `<...>mark.exercise("a", "b", ...)` call
    (decorators, `pytestmark`, `pytest.param(marks=...)`), read with `ast`, not run."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        f = node.func if isinstance(node, ast.Call) else None
        if isinstance(f, ast.Attribute) and f.attr == "exercise" and isinstance(f.value, ast.Attribute) \
                and f.value.attr == "mark":
            names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return names


def graded_test_files(root: Path, names: set[str]) -> list[str]:
    """Test files (relative; those the repository lists) that mark one of the exercises `names`."""
    return [f for f in list_files(root) if TEST_FILE.fullmatch(f) and marked_exercises(root / f) & names]


def parse_lessons(text: str | None) -> list[str] | None:
    """"0,1" -> ["00", "01"]; "all" -> ["all"]; None -> None."""
    if text is None:
        return None
    out = []
    for part in text.replace(" ", "").split(","):
        if part == "all":
            out.append("all")
        elif re.fullmatch(r"\d{1,2}", part):
            out.append(f"{int(part):02d}")
        elif part:
            raise MiniLLMError(f"--lessons takes lesson numbers like 00,01 or 'all', got {part!r}")
    return out


def parse_names(text: str | None) -> list[str] | None:
    """"a.b, c.d" -> ["a.b", "c.d"]; None or "" -> None."""
    names = [n for n in (text or "").replace(" ", "").split(",") if n]
    return names or None


def select(regions: list[Region], lessons: list[str] | None, exercises: list[str] | None,
           allow_empty: bool = False) -> list[Region]:
    """The regions of the given lessons plus the named exercises. An unknown exercise, a
    lesson that has no exercise, or (unless `allow_empty`) an empty selection is an error."""
    names = {r.name for r in regions}
    unknown = [e for e in exercises or [] if e not in names]
    if unknown:
        raise MiniLLMError(f"no exercise named {', '.join(unknown)}; there are: {', '.join(sorted(names)) or 'none'}")
    lessons = [ls for ls in lessons or [] if ls != "all"] if "all" not in (lessons or []) else ["all"]
    have = sorted({r.lesson for r in regions})
    empty = [ls for ls in lessons if ls != "all" and ls not in have]
    if empty:
        known = {ls.number for ls in LESSONS}
        what = "has no exercise" if all(ls in known for ls in empty) else "is not a lesson"
        raise MiniLLMError(f"lesson {', '.join(empty)} {what}; lessons with exercises: {', '.join(have) or 'none'}")
    chosen = [r for r in regions if "all" in lessons or r.lesson in lessons or r.name in (exercises or [])]
    if not chosen and not allow_empty:
        raise MiniLLMError("no exercise selected: name lessons (--lessons 00,01 or all) and/or exercises "
                           "(--exercises NAME,...); `minillm assign list` shows them (regions are read from the files "
                           "git tracks: add new files first)")
    return chosen
