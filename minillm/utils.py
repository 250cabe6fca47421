"""Small helpers every module shares: the one seed function, clear errors, atomic writes.

Nothing here is specific to language models; it is the plumbing that keeps the
lessons' code short.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


class MiniLLMError(Exception):
    """A problem with the user's input (a bad path, size, seed, config, ...).

    The command line prints it as one line (`error: ...`) instead of a traceback.
    """


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (CPU and CUDA) at once."""
    if not isinstance(seed, int) or seed < 0:
        raise MiniLLMError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # the world generator and calculators work without torch
        return
    torch.manual_seed(seed)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write a file so that readers see either the old or the new file, never half of one.

    `write(tmp_path)` writes the content to a temporary file in the same folder;
    it is flushed to disk and renamed over `path` (rename is atomic on POSIX and
    Windows). If the process dies while writing, `path` keeps its old content.

    >>> atomic_write("out.txt", lambda p: Path(p).write_text("hi"))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write` for a text file (UTF-8, newlines kept as given)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)
