"""The student version: the repository with the selected exercise regions removed.

`make_student` copies the repository (the files git tracks; without git, the tree
minus caches, virtual environments and `.git`) and replaces every selected region
by `raise NotImplementedError("<hint>")` at the region's indentation, between
`### BEGIN EXERCISE` / `### END EXERCISE` lines that tell the student where to
write (and let the grader find the exercise in their copy). Each changed file is
parsed with `ast` to prove it still imports, every notebook loses its outputs, and
the whole output is searched for the removed solutions. The copy is built in a
temporary folder beside `out` and renamed into place, so a failure leaves nothing.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
from pathlib import Path

from minillm.course.regions import (EXE, MANIFEST, Region, cell_lines, find_regions, list_files, load_notebook,
                                    repo_root, select)
from minillm.utils import MiniLLMError


def _py_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stub_lines(lines: list[str], regions: list[Region]) -> list[str]:
    """`lines` with each region's body replaced by `raise NotImplementedError(hint)`."""
    out = list(lines)
    for r in sorted(regions, key=lambda r: r.start, reverse=True):
        nl = "\r\n" if lines[r.start].endswith("\r\n") else "\n"
        hint = r.hint or f"exercise {r.name}: write this part (lesson {r.lesson})"
        stub = [f"{r.indent}### BEGIN {EXE} name={r.name} points={r.points}{nl}"]
        if r.hint:
            stub.append(f"{r.indent}### HINT: {r.hint}{nl}")
        stub += [f"{r.indent}raise NotImplementedError({_py_string(hint)}){nl}", f"{r.indent}### END {EXE}{nl}"]
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


def _write_copy(root: Path, tmp: Path, files: list[str], by_file: dict[str, list[Region]]) -> None:
    """Copy `files` from `root` to `tmp`, stubbing the regions `by_file` names."""
    for rel in files:
        src, dst = root / rel, tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".ipynb"):
            nb = clear_outputs(load_notebook(src))
            for c, cell in enumerate(nb.get("cells", [])):
                mine = [r for r in by_file.get(rel, []) if r.cell == c]
                if mine:
                    cell["source"] = stub_lines(cell_lines(cell), mine)
                    _check_python(_cell_python("".join(cell["source"])), f"{rel} (cell {c})")
            dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        elif rel in by_file:
            text = "".join(stub_lines(src.read_text(encoding="utf-8").splitlines(keepends=True), by_file[rel]))
            _check_python(text, rel)
            dst.write_text(text, encoding="utf-8", newline="")
        else:
            shutil.copyfile(src, dst)
        shutil.copymode(src, dst)


def make_student(out: str | os.PathLike, lessons: list[str] | None = None, exercises: list[str] | None = None,
                 root: str | os.PathLike | None = None, force: bool = False,
                 allow_empty: bool = False) -> list[Region]:
    """Write the student version of the repository at `root` into `out`; return the
    regions it replaced. Unselected lessons keep their solutions. An unknown lesson or
    exercise, or an empty selection (unless `allow_empty`: a plain copy), is an error."""
    root = Path(root).resolve() if root is not None else repo_root()
    out = Path(out).resolve()
    if out == root or out in root.parents:
        raise MiniLLMError(f"--out {out} would overwrite the repository; pick a new folder")
    files = [f for f in list_files(root) if not (root / f).resolve().is_relative_to(out)]
    chosen = select(find_regions(root, files), lessons, exercises, allow_empty=allow_empty)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (force and (out / MANIFEST).is_file()):
            raise MiniLLMError(f"{out} exists and is not empty; pick a new folder "
                               "(or --force to replace a student version made earlier)")
        shutil.rmtree(out)
    by_file: dict[str, list[Region]] = {}
    for r in chosen:
        by_file.setdefault(r.path, []).append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same file system: rename works
    try:
        _write_copy(root, tmp, files, by_file)
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
