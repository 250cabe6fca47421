"""Small helpers every module shares: the one seed function, clear errors, atomic writes.

Nothing here is specific to language models; it is the plumbing that keeps the
lessons' code short.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

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


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (POSIX; elsewhere assume it does)."""
    if pid <= 0 or os.name != "posix":
        return pid > 0
    try:
        os.kill(pid, 0)          # signal 0: no signal, only the existence check
    except ProcessLookupError:
        return False
    except PermissionError:      # it exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of `path` left (their pid is dead).

    `atomic_write` names its temporary `.NAME.PID.RANDOM.tmp`; a writer killed before
    the rename leaves it behind. Files of live processes are not touched.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                if tmp.is_dir() and not tmp.is_symlink():   # a `staged_folder` of a killed writer
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()
                removed.append(tmp)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write a file so that readers see either the old or the new file, never half of one.

    `write(tmp_path)` writes the content to a temporary file in the same folder;
    it is flushed to disk and renamed over `path` (rename is atomic on POSIX and
    Windows). If the process dies while writing, `path` keeps its old content, and
    the next write of `path` removes the dead writer's temporary file. A full disk,
    a read-only folder or a path through a file raise `MiniLLMError` (one line).

    >>> atomic_write("out.txt", lambda p: Path(p).write_text("hi"))  # doctest: +SKIP
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):  # disk full, read-only folder, a file where a folder should be
            raise MiniLLMError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    return path


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Write a set of files (a data set, a crawl) into a temporary folder beside `out`,
    then move them into `out`; on any failure the temporary folder is removed.

    A full disk or an interrupt while writing leaves `out` as it was, never part of a
    new set beside part of the old one (moving a file is a rename: it needs no space).
    Errors of the file system are `MiniLLMError`s (one line).

    >>> with staged_folder("data/new") as tmp:  # doctest: +SKIP
    ...     (tmp / "train.txt").write_text("...")
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MiniLLMError(f"{out} is a file; give a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise MiniLLMError(f"cannot create {out}: {e.strerror or e}") from None
    try:
        yield tmp
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dst = out / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    except OSError as e:
        raise MiniLLMError(f"cannot write {out}: {e.strerror or e}") from None
    except MiniLLMError as e:   # name the files where the user will look for them, not the temporary folder
        raise MiniLLMError(str(e).replace(str(tmp), str(out))) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write` for a text file (UTF-8, newlines kept as given)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


def jsonl_objects(text: str, where) -> list[tuple[int, dict]]:
    """Each non-blank line of JSONL `text` as (line number, object). A line that is not a JSON
    object is one clear error naming `where` and the line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MiniLLMError(f"{where}:{n}: not a JSON line ({e.msg})") from None
        if not isinstance(obj, dict):
            raise MiniLLMError(f"{where}:{n}: every line must be a JSON object, got {type(obj).__name__}")
        out.append((n, obj))
    return out
