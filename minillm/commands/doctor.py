"""`minillm doctor`: what this machine can do, and whether the installed PyTorch fits it."""

from __future__ import annotations

import argparse
import importlib.util
import platform
from typing import Any

HELP = "report Python/torch versions, the PyTorch build (CPU or CUDA) against the hardware, bf16 and extras"

# extra -> the modules it installs (pyproject.toml's optional dependencies)
EXTRAS = {
    "dev": ["pytest", "hypothesis", "nbmake"],
    "notebooks": ["jupyter"],
    "interop": ["tiktoken", "transformers", "tokenizers", "peft", "safetensors"],
}


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _nvidia_gpu_present() -> bool:
    """An NVIDIA driver is loaded (Linux) or nvidia-smi is on the PATH: a CUDA build could use it."""
    import os
    import shutil

    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def build_advice(cuda_build: bool, cuda_available: bool, gpu_present: bool) -> str:
    """One line on whether the PyTorch build matches the hardware.

    >>> build_advice(cuda_build=True, cuda_available=False, gpu_present=False)[:33]
    'CUDA build, but no GPU was found:'
    """
    if cuda_build and cuda_available:
        return "CUDA build, GPU found: good"
    if cuda_build:
        return ("CUDA build, but no GPU was found: it runs on the CPU and costs a few GB of disk; "
                "the CPU build is enough here (see the README's install notes)")
    if gpu_present:
        return ("CPU build, but an NVIDIA GPU is present: install a CUDA build to use it "
                "(see the README's install notes)")
    return "CPU build, no GPU: good"


def doctor_report() -> dict[str, Any]:
    """What `minillm doctor` prints, as a dict (tests read it)."""
    import torch

    from minillm.device import bf16_supported, device_name, pick_device

    device = pick_device()
    cuda_build = torch.version.cuda is not None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "build": f"CUDA {torch.version.cuda}" if cuda_build else "CPU",
        "build_advice": build_advice(cuda_build, torch.cuda.is_available(), _nvidia_gpu_present()),
        "device": str(device),
        "device_name": device_name(device),
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count(),
        "bf16": bf16_supported(device),
        "threads": torch.get_num_threads(),
        "extras": {extra: {m: _available(m) for m in mods} for extra, mods in EXTRAS.items()},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    r = doctor_report()
    print(f"python        {r['python']}")
    print(f"torch         {r['torch']} ({r['build']} build)")
    print(f"build         {r['build_advice']}")
    print(f"device        {r['device']} ({r['device_name']}; {r['gpu_count']} CUDA GPUs; {r['threads']} CPU threads)")
    print(f"bf16          {'yes' if r['bf16'] else 'no'}")
    for extra, mods in r["extras"].items():
        have = ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in mods.items())
        print(f"extra {extra:<9} {have}")
    missing = [e for e, mods in r["extras"].items() if not all(mods.values()) and e in ("dev", "interop")]
    if missing:
        print(f"hint: pip install -e '.[{','.join(missing)}]' to add the missing extras")
    return 0
