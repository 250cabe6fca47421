"""pytest in the sandbox, under a watchdog, its results read over an authenticated pipe.

`run_pytest` starts `python -m pytest` on the workspace with the grader's plugin
(`course/plugin.py`, copied outside the workspace) and reads the plugin's records
from a pipe as they come, checking each one's HMAC with a key only the grader and
the plugin know. A test that outlives its timeout (also one pytest-timeout could
not stop) has the process killed; a process that dies (`os._exit`, a crash, a
signal) is started again on the tests still to run, and the test it died in
scores zero. After every start, every process the tests left behind is killed
(`sandbox.kill_uid` or `kill_tree`) before anything else happens.

Records the grader cannot verify, and the plugin's `tamper` records, become
`Run.flags`: the grader scores a flagged run zero. Output is captured per test; a
test that prints more than `max_output` characters fails; outputs are cut.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import importlib.util
from collections.abc import Callable
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from minillm.course.sandbox import Sandbox, Subreaper, descendants, kill_tree, kill_uid
from minillm.utils import MiniLLMError


@dataclass
class Limits:
    timeout: float = 120.0          # seconds per test (setup + call + teardown)
    total: float = 1200.0           # seconds for the whole grading run
    collect: float = 120.0          # seconds for pytest to import and collect the tests
    max_output: int = 1_000_000     # characters a test may print before it fails
    clip: int = 4000                # characters of output kept per test
    memory_mb: int = 8192           # address space of the test process (RLIMIT_AS), MiB; 0: none
    extra: list[str] = field(default_factory=list)  # more pytest arguments
    # pytest plugins to load (if installed); others are not auto-loaded, which saves a
    # second per pytest start
    plugins: list[str] = field(default_factory=lambda: ["pytest_timeout", "_hypothesis_pytestplugin"])


@dataclass
class Outcome:
    """The result of one test: `passed` or why not, and its (cut) output."""

    nodeid: str
    passed: bool
    output: str = ""
    duration: float = 0.0


class Stop(enum.Enum):
    """Why the watchdog ended a pytest process (NONE: it ended by itself)."""

    NONE = ""
    TOTAL = "the whole grading run passed its limit"
    COLLECT = "importing and collecting the tests took too long"
    TEST = "the test ran longer than its timeout and did not stop"


@dataclass
class Run:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    collected: list[dict] = field(default_factory=list)   # the first start's tests and markers
    notes: list[str] = field(default_factory=list)         # crashes and restarts
    flags: list[str] = field(default_factory=list)         # evidence of tampering: the run scores 0


def pytest_command(files: list[str], limits: Limits, collect_only: bool = False) -> list[str]:
    cmd = [sys.executable, "-s", "-m", "pytest", *files, "-p", "minillm_grade_plugin", "-p", "no:cacheprovider",
           "-o", "addopts=", "--rootdir", ".", "-q", "--tb=short", "--show-capture=no",
           "--continue-on-collection-errors", "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    for plugin in limits.plugins:
        if importlib.util.find_spec(plugin) is not None:
            cmd += ["-p", plugin]
    if collect_only:
        cmd.append("--collect-only")
    elif "pytest_timeout" in limits.plugins and importlib.util.find_spec("pytest_timeout") is not None:
        cmd += [f"--timeout={limits.timeout:g}", "--timeout-method=signal"]
    return cmd + list(limits.extra)


class _Channel:
    """The parent's end of the record pipe: verified records, and flags for the rest."""

    def __init__(self):
        self.key = secrets.token_bytes(32)
        self.read_fd, self.write_fd = os.pipe()
        self.key_read, key_write = os.pipe()
        os.write(key_write, self.key)
        os.close(key_write)
        os.set_blocking(self.read_fd, False)
        self.buf, self.events, self.flags, self.seq = b"", [], [], 0

    def child_fds(self) -> tuple[int, int]:
        return self.write_fd, self.key_read

    def started(self) -> None:  # the child holds its copies now
        os.close(self.write_fd)
        os.close(self.key_read)

    def poll(self, wait: float = 0.0) -> list[dict]:
        new = []
        if select.select([self.read_fd], [], [], wait)[0]:
            try:
                while chunk := os.read(self.read_fd, 1 << 16):
                    self.buf += chunk
            except BlockingIOError:
                pass
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            mac, _, body = line.partition(b" ")
            good = hmac.compare_digest(mac, hmac.new(self.key, body, hashlib.sha256).hexdigest().encode())
            rec = json.loads(body) if good else None
            if not good or rec.get("seq") != self.seq:
                self.flags.append("a record on the grader's channel was not written by the grader's plugin "
                                  "(forged, replayed or out of order)")
                continue
            self.seq += 1
            new.append(rec)
        self.events += new
        return new

    def close(self) -> None:
        os.close(self.read_fd)


def _tail(path: Path, n: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - n))
        return f.read().decode("utf-8", "replace")


def _watch(proc: subprocess.Popen, ch: _Channel, limits: Limits, deadline: float) -> Stop:
    """Read records until the process ends; kill it (and return why) when a limit passes."""
    t0, current, started, collected = time.monotonic(), None, 0.0, False
    while proc.poll() is None:
        for e in ch.poll(0.05):
            if e.get("event") == "collected":
                collected = True
            elif e.get("event") == "start":
                current, started = e["nodeid"], time.monotonic()
            elif e.get("event") == "report" and e.get("when") == "teardown":
                current = None
        now = time.monotonic()
        stop = Stop.TOTAL if now > deadline else Stop.COLLECT if not collected and now - t0 > limits.collect \
            else Stop.TEST if current and now - started > limits.timeout + max(2.0, 0.25 * limits.timeout) \
            else Stop.NONE
        if stop is not Stop.NONE:
            return stop
    return Stop.NONE


def _start(workspace: Path, scratch: Path, cmd: list[str], env: dict, sandbox: Sandbox, log_path: Path,
           ch: _Channel) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=ch.child_fds(),
                                preexec_fn=sandbox.preexec)
    ch.started()
    return proc


def _end(proc: subprocess.Popen, sandbox: Sandbox, known: set[int]) -> None:
    """Kill the test process and everything it started, then reap."""
    if sandbox.uid is not None:
        try:
            os.killpg(proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        kill_uid(sandbox.uid)
    else:
        kill_tree(proc, known)


PLUGIN_FILE = Path(__file__).with_name("plugin.py")   # copied as minillm_grade_plugin.py


def _why(stop: Stop, limits: Limits, code: int | None) -> str:
    if stop is Stop.TOTAL:
        return f"{stop.value} of {limits.total:g} s"
    if stop is Stop.COLLECT:
        return f"{stop.value} (more than {limits.collect:g} s)"
    if stop is Stop.TEST:
        return f"the test ran longer than {limits.timeout:g} s and did not stop"
    return f"the test process ended during this test (exit code {code}): os._exit, a crash or a signal"


def _scratch(sandbox: Sandbox, limits: Limits, workspace: Path) -> tuple[Path, dict]:
    """A folder for the plugin, the selection, the logs (root's) and a home (the sandbox's);
    and the child's environment."""
    scratch = Path(tempfile.mkdtemp(prefix="minillm-grade-"))
    os.chmod(scratch, 0o755)
    (scratch / "plugin").mkdir(mode=0o755)
    shutil.copyfile(PLUGIN_FILE, scratch / "plugin" / "minillm_grade_plugin.py")
    os.chmod(scratch / "plugin" / "minillm_grade_plugin.py", 0o644)
    (scratch / "private").mkdir(mode=0o700)
    home = scratch / "home"
    home.mkdir(mode=0o700)
    if sandbox.uid is not None:
        os.chown(home, sandbox.uid, sandbox.uid)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MINILLM_GRADE", "PYTHON"))}
    env.update(PYTHONPATH=os.pathsep.join([str(workspace), str(scratch / "plugin")]), HOME=str(home),
               TMPDIR=str(home), MPLCONFIGDIR=str(home), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
               MINILLM_GRADE_CLIP=str(limits.clip), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if sandbox.uid is not None:
        env.update(USER=f"grader{sandbox.uid}", LOGNAME=f"grader{sandbox.uid}")
    return scratch, env


def run_pytest(workspace: Path, files: list[str], nodeids: list[str] | None, limits: Limits,
               sandbox: Sandbox | None = None, collect_only: bool = False,
               check: Callable[[], list[str]] | None = None) -> Run:
    """Run the tests `nodeids` of `files` in `workspace` until each has an outcome.

    `nodeids=None` runs every collected test; `collect_only` returns only the
    collection. `check()` runs after each start, once every process the tests
    started is dead, and returns flags (the workspace's integrity).
    """
    workspace, sandbox = Path(workspace), sandbox or Sandbox(memory_mb=limits.memory_mb)
    scratch, env = _scratch(sandbox, limits, workspace)
    deadline, run = time.monotonic() + limits.total, Run()
    todo = list(nodeids) if nodeids is not None else None
    known = descendants(os.getpid()) if os.path.isdir("/proc") else set()
    try:
        with Subreaper():
            for attempt in range(10_000):
                if todo is not None:
                    (scratch / "select.txt").write_text("\n".join(todo) + "\n", encoding="utf-8")
                    env["MINILLM_GRADE_SELECT"] = str(scratch / "select.txt")
                ch, log_path = _Channel(), scratch / "private" / f"log{attempt}.txt"
                env["MINILLM_GRADE_FDS"] = ",".join(map(str, ch.child_fds()))
                proc = _start(workspace, scratch, pytest_command(files, limits, collect_only), env, sandbox,
                              log_path, ch)
                try:
                    stop = _watch(proc, ch, limits, deadline)
                finally:
                    _end(proc, sandbox, known)
                ch.poll()
                ch.close()
                run.flags += ch.flags + [f"pytest was tampered with ({e['when']}): {w}" for e in ch.events
                                         if e.get("event") == "tamper" for w in e.get("what", [])]
                run.flags += check() if check else []
                if _fold(run, ch.events, todo, limits, stop, proc.returncode, log_path, collect_only):
                    break
                todo = [n for n in (todo if todo is not None else [t["nodeid"] for t in run.collected])
                        if n not in run.outcomes]
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fold(run: Run, events: list[dict], todo: list[str] | None, limits: Limits, stop: Stop, code: int | None,
          log_path: Path, collect_only: bool) -> bool:
    """Add one start's results to `run`; True when no further start is needed."""
    if not run.collected:
        run.collected = next((e["tests"] for e in events if e.get("event") == "collected"), [])
    if collect_only:
        errors = [e["text"] for e in events if e.get("event") == "collect_error"]
        if run.flags or errors or not any(e.get("event") == "collected" for e in events):
            raise MiniLLMError("the tests do not collect:\n" + "\n".join(run.flags + errors)
                               if run.flags or errors else
                               "pytest did not collect the tests:\n" + _tail(log_path, limits.clip))
        return True
    new = _outcomes(events, limits)
    wanted = set(todo) if todo is not None else {t["nodeid"] for t in run.collected}
    run.outcomes.update({k: v for k, v in new.items() if k in wanted})
    starts = [e["nodeid"] for e in events if e.get("event") == "start"]
    culprit = starts[-1] if starts and starts[-1] not in new else None
    if culprit:
        why = _why(stop, limits, code)
        run.outcomes[culprit] = Outcome(culprit, False, why + "\n" + _tail(log_path, limits.clip // 2))
        run.notes.append(f"{culprit}: {why}")
    left = [n for n in wanted if n not in run.outcomes]
    if not left:
        return True
    finished = any(e.get("event") == "finish" for e in events)
    if not (run.flags or finished or new or culprit or stop is Stop.TOTAL):
        why = (f"pytest ended (exit code {code}) before it ran this test: the code crashed or exited while "
               "being imported\n")
    elif run.flags or finished or stop is Stop.TOTAL:
        why = ("not run: the run was flagged" if run.flags else _why(stop, limits, code) + "\n"
               if stop is Stop.TOTAL else "not run: ")
    else:
        return False  # a test crashed the process: start again on the tests left
    errors = "\n".join(e["text"] for e in events if e.get("event") == "collect_error")
    detail = errors or ("pytest did not collect this test" if finished else _tail(log_path, limits.clip // 2))
    for n in left:
        run.outcomes[n] = Outcome(n, False, why + ("" if run.flags else detail))
    run.notes.append((why + detail).splitlines()[0])
    return True


def _outcomes(events: list[dict], limits: Limits) -> dict[str, Outcome]:
    """Fold the phase reports of each finished test (its teardown was reported) into one Outcome."""
    phases: dict[str, list[dict]] = {}
    for e in events:
        if e.get("event") == "report":
            phases.setdefault(e["nodeid"], []).append(e)
    out = {}
    for nodeid, reps in phases.items():
        if not any(r["when"] == "teardown" for r in reps):
            continue
        duration = sum(r.get("duration") or 0.0 for r in reps)
        failed = next((r for r in reps if r["outcome"] == "failed"), None)
        skipped = next((r for r in reps if r["outcome"] == "skipped"), None)
        printed = max(r.get("captured_chars", 0) for r in reps)
        captured = reps[-1].get("captured", "")
        if failed:
            out[nodeid] = Outcome(nodeid, False, failed["text"] + ("\n" + captured if captured else ""), duration)
        elif skipped:
            out[nodeid] = Outcome(nodeid, False, skipped["text"] + " (a skipped test earns no points)", duration)
        elif printed > limits.max_output:
            out[nodeid] = Outcome(nodeid, False, f"the test printed {printed:,} characters; the limit is "
                                  f"{limits.max_output:,}\n" + captured, duration)
        else:
            out[nodeid] = Outcome(nodeid, True, "", duration)
    return out
