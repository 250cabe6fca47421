"""The run folder: one run at a time, files that belong together, and every failure a one-line error.

The failure table runs `minillm train` as a user would and checks the same three
things for every case: exactly one `error:` line on stderr, exit code 2, and no
partial or mixed output left in the folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from minillm import MiniLLMError
from minillm.checkpoint import load_checkpoint, load_run
from minillm.cli import main
from minillm.runfolder import locked, read_run_id

REPO = Path(__file__).resolve().parent.parent

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from minillm.runfolder import locked
    with locked(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_into_a_locked_folder_fails_and_a_stale_lock_is_taken_over(tmp_path):
    proc = hold_lock(tmp_path)
    try:
        with pytest.raises(MiniLLMError, match=f"in use by another run \\(pid {proc.pid}\\)"):
            with locked(tmp_path):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)   # killed: its lock file stays behind, stale
        proc.wait(timeout=30)
    assert (tmp_path / ".lock").read_text().strip() == str(proc.pid)
    with locked(tmp_path):                  # the kernel released the dead owner's lock
        with locked(tmp_path):              # re-entrant in one process (the command, then fit)
            assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


# --- a small run folder to damage ------------------------------------------------

FLAGS = ["--vocab-size", "300", "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
         "--batch-size", "4", "--eval-every", "0", "--eval-batches", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def stories(tmp_path_factory) -> Path:
    from minillm import world

    path = tmp_path_factory.mktemp("text") / "stories.txt"
    path.write_text("".join(s + "\n" for s in world.load_split("train").splitlines()[:60]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, stories) -> Path:
    out = tmp_path_factory.mktemp("runs") / "base"
    assert main(["train", "--data", str(stories), "--out", str(out), *FLAGS, "--steps", "2"]) == 0
    return out


def copy_run(base: Path, tmp_path: Path, name: str = "run") -> Path:
    dst = tmp_path / name
    shutil.copytree(base, dst)
    return dst


def test_resume_refuses_a_folder_that_mixes_two_runs(base_run, tmp_path, stories):
    a, b = copy_run(base_run, tmp_path, "a"), tmp_path / "b"
    assert main(["train", "--data", str(stories), "--out", str(b), *FLAGS, "--steps", "2", "--seed", "1"]) == 0
    assert read_run_id(a) != read_run_id(b)
    shutil.copy(b / "ckpt.pt", a / "ckpt.pt")            # another run's checkpoint
    with pytest.raises(MiniLLMError, match="mixes two runs"):
        load_run(a)
    mixed = copy_run(base_run, tmp_path, "c")
    shutil.copy(b / "ckpt.pt", mixed / "ckpt.pt")
    assert main(["train", "--data", str(stories), "--out", str(mixed), *FLAGS, "--steps", "4", "--resume"]) == 2


def test_load_run_gives_model_tokenizer_config_and_meta(base_run):
    run = load_run(base_run)
    assert run.tokenizer is not None and run.config.vocab_size == run.tokenizer.vocab_size == 300
    assert not run.model.training and run.meta["step"] == 2 and run.meta["run_id"] == read_run_id(base_run)
    ids = torch.tensor([run.tokenizer.encode("Once upon a time")])
    assert run.model(ids)[0].shape == (1, ids.shape[1], 300)


def test_a_killed_save_leaves_no_temporary_file_behind(tmp_path):
    code = ("import os, sys\nfrom minillm.utils import atomic_write\n"
            "def w(tmp):\n    open(tmp, 'wb').write(b'x' * 1000)\n    os._exit(9)\n"
            "atomic_write(sys.argv[1], w)\n")
    path = tmp_path / "ckpt.pt"
    assert subprocess.run([sys.executable, "-c", code, str(path)], timeout=60).returncode == 9
    assert len(list(tmp_path.glob(".ckpt.pt.*.tmp"))) == 1      # the dead writer's leftover...
    from minillm.checkpoint import save_checkpoint

    save_checkpoint(path, {"step": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]   # ...removed by the next save


# --- the failure table -----------------------------------------------------------

def damage_checkpoint(change):
    def make(base: Path, tmp_path: Path) -> Path:
        out = copy_run(base, tmp_path)
        ckpt = load_checkpoint(out)
        torch.save(change(ckpt), out / "ckpt.pt")
        return out
    return make


def weights_disagree(ckpt):
    k = next(k for k, v in ckpt["model"].items() if v.dim() == 2)
    ckpt["model"][k] = torch.zeros(3, 3)
    return ckpt


def out_is_file(base: Path, tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("keep me")
    return tmp_path / "afile"


def fresh(base: Path, tmp_path: Path) -> Path:
    return tmp_path / "new"


CASES = {
    "out names a file": (out_is_file, [], "names a file"),
    "batch size 0": (fresh, ["--batch-size", "0"], "batch_size must be a positive integer"),
    "grad accum 0": (fresh, ["--grad-accum", "0"], "grad_accum must be a positive integer"),
    "lr nan": (fresh, ["--lr", "nan"], "lr must be a positive finite number"),
    "lr -1": (fresh, ["--lr", "-1"], "lr must be a positive finite number"),
    "resume without a checkpoint": (fresh, ["--resume"], "cannot resume"),
    "checkpoint is a list": (damage_checkpoint(lambda c: [1, 2, 3]), ["--resume"], "holds a list"),
    "weights disagree with config": (damage_checkpoint(weights_disagree), ["--resume"], "do not match its config"),
    "config of wrong types": (damage_checkpoint(lambda c: {**c, "config": {**c["config"], "n_layer": "1"}}),
                              ["--resume"], "different model config"),
    "no optimizer state": (damage_checkpoint(lambda c: {k: v for k, v in c.items() if k != "optimizer"}),
                           ["--resume"], "no optimizer state"),
    "truncated checkpoint": (None, ["--resume"], "cannot read checkpoint"),
}


def truncated(base: Path, tmp_path: Path) -> Path:
    out = copy_run(base, tmp_path)
    data = (out / "ckpt.pt").read_bytes()
    (out / "ckpt.pt").write_bytes(data[:len(data) // 2])
    return out


CASES["truncated checkpoint"] = (truncated, ["--resume"], "cannot read checkpoint")


def snapshot(path: Path) -> dict:
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"} if path.exists() else {}


@pytest.mark.parametrize("case", list(CASES))
def test_every_failure_is_one_error_line_exit_2_and_no_partial_output(case, base_run, tmp_path, stories, capsys):
    make, extra, message = CASES[case]
    out = make(base_run, tmp_path)
    before = snapshot(out)
    code = main(["train", "--data", str(stories), "--out", str(out), *FLAGS, "--steps", "4", *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert snapshot(out) == before            # nothing written, nothing half-written
    assert not list(out.parent.rglob("*.tmp")) and not list(out.parent.rglob("ckpt.pending.pt"))


def test_read_only_folder_is_one_error_line(tmp_path, stories, capsys, monkeypatch):
    # Tests run as root here, where chmod does not stop writes: simulate the refusal instead.
    out = tmp_path / "ro"
    out.mkdir()
    real = Path.write_bytes

    def refuse(self, data):
        if self.parent == out:
            raise PermissionError(13, "Permission denied")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    assert main(["train", "--data", str(stories), "--out", str(out), *FLAGS, "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write into {out}: Permission denied" and list(out.iterdir()) == []


DISK_FULL = textwrap.dedent("""
    import resource, sys
    from minillm.cli import main
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past it fail: "File too large"
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("limit", [20_000, 60_000])   # the token file fails; the checkpoint (127 kB) fails
def test_a_full_disk_is_one_error_line_and_leaves_no_temporary_file(tmp_path, stories, limit):
    out = tmp_path / "full"
    r = subprocess.run([sys.executable, "-c", DISK_FULL, str(limit), "train", "--data", str(stories),
                        "--out", str(out), *FLAGS, "--steps", "2"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: cannot write ") and ("File too large" in lines[0] or "disk" in lines[0])
    assert not list(out.glob(".*.tmp")) and not (out / "ckpt.pt").exists()


@pytest.mark.parametrize("change, message", [
    (lambda c: {**c, "config": {**c["config"], "n_layer": "1"}}, "config field 'n_layer' should be a int"),
    (lambda c: {**c, "config": [1, 2]}, "'config' must be a dict"),
    (lambda c: {**c, "step": "2"}, "'step' must be a non-negative integer"),
    (lambda c: {k: v for k, v in c.items() if k != "model"}, "no 'model'"),
    (weights_disagree, "do not match its config"),
])
def test_load_run_checks_the_checkpoint_before_building_a_model(base_run, tmp_path, change, message):
    out = damage_checkpoint(change)(base_run, tmp_path)
    with pytest.raises(MiniLLMError, match=message):
        load_run(out)


def test_the_tokenizer_owns_the_vocabulary(base_run, tmp_path, stories):
    # Before: --tokenizer with 300 ids failed against the model flag's default vocab size.
    out = tmp_path / "own"
    flags = [f for f in FLAGS]
    flags[flags.index("--vocab-size") + 1] = "64"         # the model flag disagrees with the tokenizer
    assert main(["train", "--data", str(stories), "--out", str(out), *flags, "--steps", "1",
                 "--tokenizer", str(base_run / "tokenizer.json")]) == 0
    run = load_run(out)
    assert run.config.vocab_size == run.tokenizer.vocab_size == 300
