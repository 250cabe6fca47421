"""install.py: the PyTorch build it picks for each machine (its decisions, not the downloads)."""

import doctest
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("install", ROOT / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)


def test_doctests():
    assert doctest.testmod(install).failed == 0


@pytest.mark.parametrize("system, gpu, installed, cuda, plan", [
    ("Linux", False, None, None, "cpu"),              # fresh CPU machine: never PyPI's CUDA build
    ("Linux", True, None, None, "default"),           # fresh GPU machine: PyPI's CUDA build
    ("Linux", False, "2.13.0+cpu", False, "keep"),    # CI: torch==2.13.0 installed first
    ("Linux", False, "2.14.1", True, "keep"),         # a CUDA build without GPU works: no new download
    ("Linux", True, "2.13.0+cpu", False, "default"),  # a GPU but a CPU build: get the CUDA one
    ("Linux", False, "2.1.0+cpu", False, "cpu"),      # too old for minillm
    ("Darwin", False, None, None, "default"),         # macOS/Windows: PyPI's build is right
    ("Windows", True, "2.5.0", False, "keep"),
])
def test_plan(system, gpu, installed, cuda, plan):
    assert install.plan_torch(system, gpu, installed, cuda) == plan


def test_newest_cpu_build_respects_the_minimum():
    assert install.newest_cpu_build(["2.2.0+cpu", "2.10.0+cpu", "2.9.1+cpu", "2.15.0"]) == "2.10.0+cpu"
    assert install.newest_cpu_build(["2.2.0+cpu"]) is None
    assert install.newest_cpu_build([]) is None
