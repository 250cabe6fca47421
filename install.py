"""Set up minillm in a virtual environment with the right PyTorch build for this machine.

    python3 install.py                      # .venv with minillm (and the right torch)
    python3 install.py --extras dev,interop # ... plus what the tests need
    python3 install.py --gpu                # a CUDA build even where no GPU is seen now

Why a script: on Linux, PyPI's `torch` is a CUDA build of several GB, which a machine
without an NVIDIA GPU cannot use. Without a GPU this script installs a CPU build
instead, from the first source that has one:
  1. a CPU build (version `...+cpu`) that pip's configured package sources already
     offer (a local wheel folder or mirror);
  2. PyTorch's own CPU index (https://download.pytorch.org/whl/cpu);
  3. otherwise it says so and installs PyPI's default build.
With a GPU (or `--gpu`), and on macOS and Windows (whose PyPI builds are the right
ones), it installs PyPI's default `torch`. A torch already in the environment that
fits is kept. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

MIN_TORCH = (2, 3)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver is loaded or nvidia-smi is on the PATH."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


def newest_cpu_build(available: list[str]) -> str | None:
    """The newest `+cpu` version at or above MIN_TORCH in a list of versions.

    >>> newest_cpu_build(["2.14.1", "2.13.0+cpu", "2.12.0+cpu", "2.1.0+cpu"])
    '2.13.0+cpu'
    >>> newest_cpu_build(["2.14.1", "2.13.0"]) is None
    True
    """
    cpu = [v for v in available if v.endswith("+cpu") and _version_tuple(v)[:2] >= MIN_TORCH]
    return max(cpu, key=_version_tuple) if cpu else None


def plan_torch(system: str, gpu: bool, installed: str | None, installed_cuda: bool | None) -> str:
    """What to do about torch: 'keep', 'default' (PyPI's build) or 'cpu' (find a CPU build).

    >>> plan_torch("Linux", gpu=False, installed=None, installed_cuda=None)
    'cpu'
    >>> plan_torch("Linux", gpu=False, installed="2.13.0+cpu", installed_cuda=False)
    'keep'
    >>> plan_torch("Linux", gpu=True, installed="2.13.0+cpu", installed_cuda=False)
    'default'
    >>> plan_torch("Darwin", gpu=False, installed=None, installed_cuda=None)
    'default'
    """
    if installed is not None and _version_tuple(installed)[:2] >= MIN_TORCH:
        # A CUDA build on a machine without a GPU still works (on the CPU): keep it.
        if not (system == "Linux" and gpu and not installed_cuda):
            return "keep"
    if system != "Linux" or gpu:
        return "default"
    return "cpu"


def pip(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(python), "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check)


def installed_torch(python: Path) -> tuple[str | None, bool | None]:
    """(version, is a CUDA build) of the torch in `python`'s environment, or (None, None)."""
    code = "import torch; print(torch.__version__); print(torch.version.cuda is not None)"
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None, None
    version, cuda = r.stdout.split()
    return version, cuda == "True"


def available_versions(python: Path) -> list[str]:
    r = subprocess.run([str(python), "-m", "pip", "index", "versions", "torch"], capture_output=True, text=True)
    m = re.search(r"Available versions:\s*(.+)", r.stdout)
    return [v.strip() for v in m.group(1).split(",")] if m else []


def install_cpu_torch(python: Path) -> None:
    local = newest_cpu_build(available_versions(python))
    if local is not None:
        print(f"no NVIDIA GPU here: installing the CPU build torch=={local} that pip's sources offer")
        if pip(python, "install", f"torch=={local}", check=False).returncode == 0:
            return
    print(f"no NVIDIA GPU here: installing the CPU build from {CPU_INDEX}")
    if pip(python, "install", "torch", "--index-url", CPU_INDEX, "--timeout", "20", "--retries", "1",
           check=False).returncode == 0:
        return
    print("warning: no CPU build of torch could be found; installing PyPI's default build, "
          "which on Linux is a CUDA build of several GB (it works on the CPU too)")
    pip(python, "install", "torch>=%d.%d" % MIN_TORCH)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=".venv", help="where the virtual environment goes (default: .venv)")
    parser.add_argument("--extras", default="", help="comma-separated extras: dev, interop, notebooks, gpu")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--gpu", action="store_true", help="install a CUDA build even without a visible GPU")
    group.add_argument("--cpu", action="store_true", help="install a CPU build even with a GPU")
    args = parser.parse_args(argv)

    root = Path(__file__).resolve().parent
    env = Path(args.venv)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"creating the virtual environment {env}")
        venv.create(env, with_pip=True)
    gpu = args.gpu or (not args.cpu and nvidia_gpu_present())
    version, cuda = installed_torch(python)
    plan = plan_torch(platform.system(), gpu, version, cuda)
    if plan == "cpu":
        install_cpu_torch(python)
    elif plan == "default":
        pip(python, "install", "torch>=%d.%d" % MIN_TORCH)
    extras = f"[{args.extras}]" if args.extras else ""
    pip(python, "install", "-e", f"{root}{extras}")
    version, cuda = installed_torch(python)
    print(f"done: torch {version} ({'CUDA' if cuda else 'CPU'} build) in {env}; "
          f"try `{env}/bin/minillm doctor`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
