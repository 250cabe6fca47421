"""Where submitted code runs: its own uid, a mount namespace, resource limits, and its end.

When the grader runs as root (as on Gradescope) every test process starts as a
fresh uid that no account and no other process has (`fresh_uid`), with no groups,
in its own session, so that:

- it cannot write the workspace, the grader's files or `results.json` (all root's);
- it cannot signal or trace the grader;
- `kill_uid` ends *every* process it started, new sessions included: a helper
  running as that uid calls `kill(-1, SIGKILL)` until `/proc` shows none left;
- with `CAP_SYS_ADMIN` it also gets a private mount namespace in which the
  instructor's checkout and installed package are covered by empty read-only tmpfs
  (`hide`); `readable_as` checks the result from the sandbox's side.

Without root the test process runs as the grader's user: the grader then becomes a
child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`), so that processes that detach
are re-parented to it and `kill_tree` finds them. Limits in both cases: no core
files, a file-size limit, an address-space limit; as root also a process limit.
Linux only for the namespace, the uid sweep and the subreaper; elsewhere only the
process group is killed.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 1, 2, 4, 1 << 14, 1 << 18
_CLONE_NEWNS, _PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 0x00020000, 36, 37
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass
class Sandbox:
    uid: int | None = None           # run as this uid (and gid), or None: as the grader's user
    hide: list[str] = field(default_factory=list)   # folders covered by an empty tmpfs (root only)
    bridge: list[tuple[str, str]] = field(default_factory=list)  # (locked folder, the child to show in it)
    memory_mb: int = 8192            # RLIMIT_AS, MiB (0: none)
    file_mb: int = 256               # RLIMIT_FSIZE, MiB: a runaway print fills no disk
    nproc: int = 512                 # RLIMIT_NPROC for the fresh uid (threads count)

    def preexec(self) -> None:
        """Runs in the child between fork and exec: limits, namespace, then the uid."""
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.file_mb:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_mb << 20,) * 2)
        if self.memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_mb << 20,) * 2)
        if self.uid is None:
            return
        if (self.hide or self.bridge) and _LIBC is not None and _LIBC.unshare(_CLONE_NEWNS) == 0:
            _LIBC.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
            for locked, child in self.bridge:  # e.g. /root (0700) holding the interpreter in /root/.pyenv
                fd = os.open(child, os.O_PATH | os.O_DIRECTORY)
                if _LIBC.mount(b"tmpfs", os.fsencode(locked), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=4k,mode=0755") == 0:
                    os.mkdir(child)
                    _LIBC.mount(os.fsencode(f"/proc/self/fd/{fd}"), os.fsencode(child), None, 4096, None)  # MS_BIND
                os.close(fd)
            for path in self.hide:  # failures leave the path visible; `readable_as` tells
                _LIBC.mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                            b"size=4k,mode=0555")
        resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))
        os.setgroups([])
        os.setresgid(self.uid, self.uid, self.uid)
        os.setresuid(self.uid, self.uid, self.uid)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def fresh_uid() -> int:
    """A uid no account and no running process has (root only; nothing is created)."""
    import pwd

    while True:
        uid = 1_900_000_000 + secrets.randbelow(100_000_000)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if not processes_of(uid):
                return uid


def _status(pid: str) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            return dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes with `uid` as real, effective or saved uid, from /proc."""
    out = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if pid.isdigit():
            st = _status(pid)
            if st and str(uid) in st.get("Uid", "").split()[:3] and not st.get("State", "").strip().startswith("Z"):
                out.append(int(pid))
    return out


def _reap_orphans() -> None:
    """Wait for zombies re-parented to us (we are a subreaper) without touching other children."""
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            st = _status(pid)
            if st.get("PPid", "").strip() == me and st.get("State", "").strip().startswith("Z"):
                try:
                    os.waitpid(int(pid), os.WNOHANG)
                except ChildProcessError:
                    pass


def kill_uid(uid: int, rounds: int = 200) -> int:
    """SIGKILL every process of `uid` (new sessions and double forks included) until none
    is left; return how many rounds it took. Raises RuntimeError if some survive."""
    for n in range(rounds):
        _reap_orphans()
        if not processes_of(uid):
            return n
        # the helper kills between fork and exec, as `uid` (kill(-1) spares only itself), then
        # execs `true`: no interpreter needed where `uid` may not reach one
        subprocess.run([shutil.which("true") or "/bin/true"], user=uid, group=uid, extra_groups=[],
                       preexec_fn=lambda: os.kill(-1, signal.SIGKILL), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        time.sleep(0.01)
    raise RuntimeError(f"processes of uid {uid} survive SIGKILL: {processes_of(uid)}")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` in the process tree (/proc PPid links)."""
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if p.isdigit():
            ppid = _status(p).get("PPid", "").strip()
            if ppid.isdigit():
                children.setdefault(int(ppid), []).append(int(p))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def kill_tree(proc: subprocess.Popen, known: set[int]) -> None:
    """Without a uid of its own: kill the process group, every descendant of `proc`, and
    every child re-parented to us (the subreaper) that is not one of our `known` children."""
    targets = {proc.pid} | descendants(proc.pid) if os.path.isdir("/proc") else {proc.pid}
    if os.path.isdir("/proc"):
        orphans = {c for c in descendants(os.getpid()) if c not in known} - {os.getpid()}
        targets |= {c for c in orphans if _status(str(c)).get("PPid", "").strip() == str(os.getpid())}
        targets |= {d for c in set(targets) for d in descendants(c)}
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()
    if os.path.isdir("/proc"):
        _reap_orphans()


class Subreaper:
    """`with Subreaper():` orphaned descendants are re-parented to this process (Linux)."""

    def __enter__(self):
        self.old = ctypes.c_int(0)
        if _LIBC is not None:
            _LIBC.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(self.old), 0, 0, 0)
            _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return self

    def __exit__(self, *exc):
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, self.old.value, 0, 0, 0)


def readable_as(sandbox: Sandbox, paths: list[str], cwd: str) -> list[str]:
    """Which of `paths` a process started like the test process can read."""
    if not paths:
        return []
    code = "import sys\nfor p in sys.argv[1:]:\n try:\n  open(p, 'rb').read(1); print(p)\n except OSError: pass\n"
    r = subprocess.run([sys.executable, "-S", "-c", code, *paths], capture_output=True, text=True, cwd=cwd,
                       preexec_fn=sandbox.preexec, stdin=subprocess.DEVNULL, timeout=60)
    if sandbox.uid is not None:
        kill_uid(sandbox.uid)
    return r.stdout.splitlines()


def bridges(paths: list[Path]) -> list[tuple[str, str]]:
    """For each of `paths` (the interpreter's folders), the highest folder above it that
    others cannot enter, and its child on the way: the sandbox shows only that child."""
    out = []
    for p in paths:
        p = Path(os.path.realpath(p))
        for a in reversed(p.parents):
            if not os.stat(a).st_mode & 0o001:
                child = str(Path(a) / p.relative_to(a).parts[0])
                if (str(a), child) not in out:
                    out.append((str(a), child))
                break
    return out


def hidden_paths(roots: list[Path], keep: list[Path]) -> list[str]:
    """The top-level folders of each of `roots` (the instructor's checkout, the installed
    package) that hold none of `keep` (the interpreter, the workspace): what to cover."""
    keep = [Path(os.path.realpath(k)) for k in keep]
    out: list[str] = []
    for root in roots:
        root = Path(os.path.realpath(root))
        entries = [root] if not any(k.is_relative_to(root) for k in keep) else \
            [e for e in root.iterdir() if e.is_dir() and not e.is_symlink()]
        for e in entries:
            if not any(k.is_relative_to(e) for k in keep) and str(e) not in out:
                out.append(str(e))
    return out
