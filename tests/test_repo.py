"""Repository hygiene: the README's commands are what CI runs, notebooks carry no outputs,
the lesson map points at files that exist."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)


def test_quick_start_is_two_commands():
    cmds = readme_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "speedrun" in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    assert readme_commands()[1] in (ROOT / ".ci" / "run").read_text()


def test_notebooks_have_no_outputs():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{nb.name} has stored outputs"
                assert cell.get("execution_count") is None, f"{nb.name} has execution counts"
        first_code = next(c for c in cells if c["cell_type"] == "code")
        assert "FAST" in "".join(first_code["source"]), f"{nb.name}: first code cell must set FAST"


def test_lesson_map_files_exist():
    text = (ROOT / "README.md").read_text()
    table = text.split("## Lesson map", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"`((?:notebooks|minillm|tests)/[^`]+)`", table) + re.findall(r"\]\((lessons/[^)]+)\)", table)
    assert paths
    for p in paths:
        found = list(ROOT.glob(p)) if "*" in p else [ROOT / p] if (ROOT / p).exists() else []
        assert found, f"lesson map names {p}, which does not exist"


def test_every_lesson_is_in_the_map():
    text = (ROOT / "README.md").read_text()
    for lesson in sorted((ROOT / "lessons").glob("[0-9][0-9]-*.md")):
        assert f"lessons/{lesson.name}" in text, f"{lesson.name} missing from the README lesson map"
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{nb.name}" in text, f"{nb.name} missing from the README lesson map"
