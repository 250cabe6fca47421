"""The run folder: one run at a time, files that belong together, a metrics log (lesson 04).

A run folder (`minillm train --out DIR`) holds `ckpt.pt`, `tokenizer.json`, the
token files, `config.json`, `metrics.jsonl` and `run.json`. This module keeps it
consistent:
- a lock (`.lock`, holding the owner's pid): a second run into the same folder
  fails at once instead of mixing its files with the first's. The lock is an OS
  file lock (`fcntl.flock`), so the kernel releases it when its owner dies: a
  stale lock file left by a killed run is recognised and taken over;
- a run id: `run.json` names the run and the SHA-256 of each of its files
  (tokenizer, token files); the checkpoint and config.json carry the same id, so a
  resume (or `load_run`) refuses a folder whose files come from different runs;
- the metrics log, one JSON record per line.

Left out: locks across machines (NFS), Windows file locks (there the lock only
records the pid).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterator

from minillm.utils import MiniLLMError, atomic_write_text, pid_alive

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file still records the owner
    fcntl = None

LOCK_NAME, MANIFEST_NAME, METRICS_NAME = ".lock", "run.json", "metrics.jsonl"
_held: dict[Path, list] = {}   # folder -> [open lock file, depth]: the lock is re-entrant per process


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create the run folder and check that it can be written (before any compute is spent)."""
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise MiniLLMError(f"--out {out} names a file ({p}), not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MiniLLMError(f"cannot write into {out}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def locked(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the folder's run lock for the `with` block; another live run holding it is an error."""
    folder = prepare_out_dir(folder).resolve()
    if folder in _held:                       # this process holds it already (command -> fit)
        _held[folder][1] += 1
        try:
            yield folder
        finally:
            _held[folder][1] -= 1
        return
    path = folder / LOCK_NAME
    f = open(path, "a+", encoding="utf-8")
    _acquire(f, path)                         # closes f and raises if another run holds it
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _held[folder] = [f, 1]
        yield folder
    finally:
        _held.pop(folder, None)
        with contextlib.suppress(OSError):
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _acquire(f, path: Path) -> None:
    f.seek(0)
    owner = f.read().strip()
    if fcntl is not None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return                     # a lock file without a lock holder is stale: taken over
        except BlockingIOError:
            pass
    elif not (owner.isdigit() and pid_alive(int(owner))):
        return
    f.close()
    raise MiniLLMError(f"{path.parent} is in use by another run (pid {owner or '?'}); wait for it, "
                       f"stop it, or choose another --out")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_run_id(folder: str | os.PathLike) -> str | None:
    """The run id recorded in `folder/run.json` (None when there is none or it is unreadable)."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(folder: Path, run_id: str, files: dict[str, Path]) -> None:
    """run.json: the run id and the digest of each file that belongs to the run."""
    entries = {name: dict(path=str(p), sha256=file_digest(p)) for name, p in files.items()}
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(dict(run_id=run_id, files=entries), indent=2) + "\n")


def check_manifest(folder: Path, run_id: str | None, files: dict[str, Path]) -> str:
    """The folder's run id, after checking that the checkpoint's id and every file match it."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        folder_id, recorded = manifest["run_id"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise MiniLLMError(f"{folder} has no readable {MANIFEST_NAME}: cannot tell which run its files "
                           "belong to; start a new run instead of resuming") from None
    if run_id != folder_id:
        raise MiniLLMError(f"the checkpoint in {folder} belongs to run {run_id} but the folder's files to "
                           f"run {folder_id}: the folder mixes two runs; start a new one")
    for name, p in files.items():
        if name not in recorded or file_digest(p) != recorded[name]["sha256"]:
            raise MiniLLMError(f"{name} is not the one run {folder_id} was trained with (its content "
                               "changed): resume with the run's own files, or start a new run")
    return folder_id


def write_metrics(folder: Path, history: list[dict]) -> None:
    """Restart the metrics log with `history` (a new run: empty; a resumed one: up to its step)."""
    atomic_write_text(folder / METRICS_NAME, "".join(json.dumps(h) + "\n" for h in history))


def append_metrics(folder: Path, record: dict) -> None:
    try:
        with open(folder / METRICS_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise MiniLLMError(f"cannot write {folder / METRICS_NAME}: {e.strerror or e}") from None
