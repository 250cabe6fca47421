"""The instructor kit, part 1: find the exercises and write the student version.

Exercises are regions of the real code (see CONTRIBUTING.md), marked with
nbgrader's delimiters plus a name, points and an optional one-line hint:

    def unigram_bits_per_byte(train, test):
        <BEGIN SOLUTION name=world.unigram points=2>   (written "### BEGIN SOLUTION ...")
        <HINT: count each byte value ...>                (written "### HINT: ...")
        ... the solution ...
        <END SOLUTION>                                   (written "### END SOLUTION")

`find_regions` discovers every region in the package (`minillm/**/*.py`) and in
the notebooks (`notebooks/*.ipynb`, regions inside code cells); nothing here lists
exercises by hand. A region belongs to the lesson of the file it sits in
(`LESSON_OF_MODULE`, then the README's lesson map, then a notebook's `NN_` prefix).

`make_student` copies the repository (the files git tracks; without git, the tree
minus caches, virtual environments and `.git`) and replaces every selected region
by `raise NotImplementedError("<hint>")` at the region's indentation, between
`### BEGIN EXERCISE` / `### END EXERCISE` lines that tell the student where to
write (and let `minillm assign grade` find the exercise in their copy). Each
changed file is parsed with `ast` to prove it still imports, every notebook loses
its outputs, and the whole output is searched for the removed solutions.

Part 2, the grader (`minillm assign grade`), lives in `minillm/grading.py`.
Left out: nbgrader's hidden-test cells and manual grading; one region per
exercise name.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from minillm.utils import MiniLLMError

PACKAGE = "minillm"
MANIFEST = "minillm-assignment.json"  # written into every student version

# Which lesson a module's regions belong to (file stem -> lesson). Modules not listed
# here are looked up in the README's lesson map; notebooks use their `NN_` prefix.
LESSON_OF_MODULE: dict[str, str] = {
    "world": "00",
    "tokenizer": "01",
    "attention": "02",
    "model": "03", "layers": "03",
    "data": "04", "train": "04", "optim": "04", "checkpoint": "04",
    "evaluate": "05",
    "scaling": "06",
    "flops": "07",
}

# The marker words are split so that this file never contains a marker line itself.
_SOL, _EXE = "SOL" + "UTION", "EXER" + "CISE"
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN (?P<kind>" + _SOL + "|" + _EXE + r")\b(?P<attrs>.*?)\s*$")
_END = re.compile(r"^[ \t]*### END (?:" + _SOL + "|" + _EXE + r")\s*$")
_HINT = re.compile(r"^[ \t]*### HINT:\s*(?P<hint>.*?)\s*$")
_ATTR = re.compile(r"(\w+)=(\S+)")
_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", ".pytest_cache", ".hypothesis", ".mypy_cache",
              ".ruff_cache", ".ipynb_checkpoints", ".tox", "node_modules", "build", "dist", "runs"}


@dataclasses.dataclass
class Region:
    """One exercise region: `lines[start:end]` of `path` (in cell `cell` for notebooks)."""

    name: str          # "<module>.<exercise>", unique in the repository
    points: int
    hint: str
    lesson: str        # "00", "01", ... or "??" when no lesson is known for the file
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


# ---------------------------------------------------------------------------------
# Finding regions
# ---------------------------------------------------------------------------------

def repo_root() -> Path:
    """The repository this package was imported from (the instructor's checkout)."""
    return Path(__file__).resolve().parent.parent


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


def _readme_lessons(root: Path) -> dict[str, str]:
    """module stem -> lesson, from the README's lesson map rows (`| 04 | ... minillm/x.py ...`)."""
    table: dict[str, str] = {}
    readme = root / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"\|\s*(\d{2})\s*\|", line)
            if m:
                for mod in re.findall(r"minillm/([\w/]+)\.py", line):
                    table.setdefault(mod.split("/")[-1], m.group(1))
    return table


def lesson_of(path: str, readme_table: dict[str, str] | None = None) -> str:
    """The lesson a file's regions belong to: "minillm/world.py" -> "00",
    "minillm/tokenizer_fast.py" -> "01", "notebooks/03_gpt.ipynb" -> "03"."""
    p = Path(path)
    if p.suffix == ".ipynb":
        m = re.match(r"(\d{2})", p.name)
        return m.group(1) if m else "??"
    stem = p.stem
    for key in (stem, stem.split("_")[0]):  # tokenizer_fast -> tokenizer
        if key in LESSON_OF_MODULE:
            return LESSON_OF_MODULE[key]
        if readme_table and key in readme_table:
            return readme_table[key]
    return "??"


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
                              m.group("indent"), cell, m.group("kind") == _EXE, "".join(lines[j:k])))
        i = k + 1
    return regions


def _cell_lines(cell: dict) -> list[str]:
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else src).splitlines(keepends=True)


def find_regions(root: str | os.PathLike | None = None, files: list[str] | None = None) -> list[Region]:
    """Every exercise region of the repository at `root` (default: this checkout), in
    lesson order. Names must be unique."""
    root = Path(root) if root is not None else repo_root()
    files = list_files(root) if files is None else files
    table = _readme_lessons(root)
    regions: list[Region] = []
    for rel in files:
        is_py = rel.startswith(PACKAGE + "/") and rel.endswith(".py")
        if not (is_py or rel.endswith(".ipynb")):
            continue
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        if "### BEGIN" not in text and "### END" not in text:
            continue
        lesson = lesson_of(rel, table)
        if is_py:
            regions += parse_regions(text.splitlines(keepends=True), rel, lesson)
        else:
            for c, cell in enumerate(_load_notebook(root / rel).get("cells", [])):
                if cell.get("cell_type") == "code":
                    regions += parse_regions(_cell_lines(cell), rel, lesson, cell=c)
    seen: dict[str, Region] = {}
    for r in regions:
        if r.name in seen:
            raise MiniLLMError(f"exercise {r.name} is defined twice: {seen[r.name].path} and {r.path}")
        seen[r.name] = r
    return sorted(regions, key=lambda r: (r.lesson, r.path, r.cell or 0, r.start))


def _load_notebook(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MiniLLMError(f"{path}: not a readable notebook ({e})") from e


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


def select(regions: list[Region], lessons: list[str] | None, exercises: list[str] | None) -> list[Region]:
    """The regions of the given lessons plus the named exercises (unknown names are an error)."""
    names = {r.name for r in regions}
    unknown = [e for e in exercises or [] if e not in names]
    if unknown:
        raise MiniLLMError(f"no exercise named {', '.join(unknown)}; there are: {', '.join(sorted(names)) or 'none'}")
    lessons = lessons or []
    return [r for r in regions if "all" in lessons or r.lesson in lessons or r.name in (exercises or [])]


# ---------------------------------------------------------------------------------
# The student version
# ---------------------------------------------------------------------------------

def _py_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stub_lines(lines: list[str], regions: list[Region]) -> list[str]:
    """`lines` with each region's body replaced by `raise NotImplementedError(hint)`."""
    out = list(lines)
    for r in sorted(regions, key=lambda r: r.start, reverse=True):
        nl = "\r\n" if lines[r.start].endswith("\r\n") else "\n"
        hint = r.hint or f"exercise {r.name}: write this part (lesson {r.lesson})"
        stub = [f"{r.indent}### BEGIN {_EXE} name={r.name} points={r.points}{nl}"]
        if r.hint:
            stub.append(f"{r.indent}### HINT: {r.hint}{nl}")
        stub += [f"{r.indent}raise NotImplementedError({_py_string(hint)}){nl}", f"{r.indent}### END {_EXE}{nl}"]
        out[r.start:r.end] = stub
    return out


def _check_python(source: str, where: str) -> None:
    try:
        ast.parse(source, filename=where)
    except SyntaxError as e:
        raise MiniLLMError(f"{where}: the student version does not parse ({e.msg}, line {e.lineno}); "
                           "a region must be whole statements (see CONTRIBUTING.md)") from e


def _cell_python(source: str) -> str:
    """A notebook cell as plain Python: IPython magics and shell lines become `pass`."""
    return "".join((ln[:len(ln) - len(ln.lstrip())] + "pass\n" if ln.lstrip().startswith(("%", "!")) else ln)
                   for ln in source.splitlines(keepends=True))


def clear_outputs(nb: dict) -> dict:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def _normalize(text: str) -> str:
    return " ".join(text.split())


def make_student(out: str | os.PathLike, lessons: list[str] | None = None, exercises: list[str] | None = None,
                 root: str | os.PathLike | None = None, force: bool = False) -> list[Region]:
    """Write the student version of the repository at `root` into `out`; return the
    regions it replaced. Unselected lessons keep their solutions."""
    root = Path(root).resolve() if root is not None else repo_root()
    out = Path(out).resolve()
    if out == root or out in root.parents:
        raise MiniLLMError(f"--out {out} would overwrite the repository; pick a new folder")
    if out.exists() and any(out.iterdir()):
        if not (force and (out / MANIFEST).is_file()):
            raise MiniLLMError(f"{out} exists and is not empty; pick a new folder "
                               "(or --force to replace a student version made earlier)")
        shutil.rmtree(out)
    files = list_files(root)
    files = [f for f in files if not (root / f).resolve().is_relative_to(out)]
    regions = find_regions(root, files)
    chosen = select(regions, lessons, exercises)
    by_file: dict[str, list[Region]] = {}
    for r in chosen:
        by_file.setdefault(r.path, []).append(r)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same file system: rename works
    try:
        for rel in files:
            src, dst = root / rel, tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(".ipynb"):
                nb = clear_outputs(_load_notebook(src))
                for c, cell in enumerate(nb.get("cells", [])):
                    mine = [r for r in by_file.get(rel, []) if r.cell == c]
                    if mine:
                        cell["source"] = stub_lines(_cell_lines(cell), mine)
                        _check_python(_cell_python("".join(cell["source"])), f"{rel} (cell {c})")
                dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            elif rel in by_file:
                text = "".join(stub_lines(src.read_text(encoding="utf-8").splitlines(keepends=True), by_file[rel]))
                _check_python(text, rel)
                dst.write_text(text, encoding="utf-8", newline="")
            else:
                shutil.copyfile(src, dst)
            shutil.copymode(src, dst)
        manifest = {"made_by": "minillm assign student", "lessons": sorted({r.lesson for r in chosen}),
                    "exercises": [r.as_dict() for r in chosen]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        check_no_solutions(tmp, chosen)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return chosen


def check_no_solutions(tree: str | os.PathLike, regions: list[Region]) -> None:
    """Raise MiniLLMError if any file under `tree` (notebook cells included) contains
    the body of one of `regions`, or if `tree` holds a `.git` folder or caches."""
    tree = Path(tree)
    bodies = {r.name: _normalize(r.body) for r in regions if not r.stubbed and _normalize(r.body)}
    for dirpath, dirnames, filenames in os.walk(tree):
        bad = [d for d in dirnames if d in (".git", "__pycache__", ".pytest_cache", ".ipynb_checkpoints")]
        if bad:
            raise MiniLLMError(f"{Path(dirpath) / bad[0]} must not be in a student version")
        for f in filenames:
            p = Path(dirpath) / f
            text = p.read_text(encoding="utf-8", errors="ignore")
            if f.endswith(".ipynb"):
                try:
                    text = "\n".join("".join(c.get("source", "")) for c in json.loads(text).get("cells", []))
                except json.JSONDecodeError:
                    pass
            flat = _normalize(text)
            for name, body in bodies.items():
                if body in flat:
                    raise MiniLLMError(f"the solution of {name} is still in {p.relative_to(tree)}")


# ---------------------------------------------------------------------------------
# Command line: `minillm assign student|grade|list`
# ---------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list the exercises, their lessons and points")
    ls.add_argument("--root", default=None, help="repository to read (default: this checkout)")
    st = sub.add_parser("student", help="write the student version of the repository")
    st.add_argument("--lessons", default=None, help="lessons whose exercises to remove, e.g. 00,01 (or all)")
    st.add_argument("--exercises", default=None, help="more exercises to remove, by name, e.g. world.bigram")
    st.add_argument("--out", required=True, help="new folder for the student version")
    st.add_argument("--root", default=None, help="repository to copy (default: this checkout)")
    st.add_argument("--force", action="store_true", help="replace a student version made earlier in --out")
    from minillm import grading

    grading.add_grade_arguments(sub.add_parser("grade", help="grade a submission with the instructor's tests"))
    grading.add_check_arguments(sub.add_parser("check", help="prove that the tests grade: the solution passes, "
                                               "each stub fails exactly its exercise's tests"))


def _names(text: str | None) -> list[str] | None:
    return [n for n in text.replace(" ", "").split(",") if n] if text else None


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        regions = find_regions(args.root)
        print(f"{'exercise':<28} {'lesson':<7} {'points':>6}  file")
        for r in regions:
            print(f"{r.name:<28} {r.lesson:<7} {r.points:>6}  {r.path}")
        print(f"{len(regions)} exercises, {sum(r.points for r in regions)} points")
        return 0
    if args.action == "student":
        lessons, exercises = parse_lessons(args.lessons), _names(args.exercises)
        if not lessons and not exercises:
            raise MiniLLMError("say which exercises to remove: --lessons 00,01 (or all) and/or --exercises NAME,...")
        chosen = make_student(args.out, lessons, exercises, root=args.root, force=args.force)
        print(f"wrote the student version to {args.out}: {len(chosen)} exercises removed, "
              f"{sum(r.points for r in chosen)} points")
        for r in chosen:
            print(f"  {r.name:<28} lesson {r.lesson}  {r.points} points  {r.path}")
        print("next: put it in a NEW repository (git init) -- never a fork of this one; see lessons/README.md")
        return 0
    from minillm import grading

    return grading.run_check(args) if args.action == "check" else grading.run_grade(args)
