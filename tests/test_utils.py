"""The shared helpers: one seed function, atomic writes, device and precision choice."""

import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from minillm.device import autocast, bf16_supported, device_name, pick_device
from minillm.utils import MiniLLMError, atomic_write, atomic_write_text, set_seed


def test_set_seed_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    set_seed(5)
    a = draw()
    set_seed(5)
    assert draw() == a
    set_seed(6)
    assert draw() != a


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_set_seed_rejects_bad_seeds(bad):
    with pytest.raises(MiniLLMError):
        set_seed(bad)


def test_atomic_write_replaces_and_uses_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new\r\n")
    assert path.read_bytes() == b"new\r\n"  # newlines kept as given
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]  # no temp file left


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_atomic_write_survives_a_killed_writer(tmp_path):
    # The writer dies (os._exit) after writing the temp file, before the rename.
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    code = ("import os, sys\nfrom minillm.utils import atomic_write\n"
            "def w(tmp):\n    open(tmp, 'w').write('new')\n    os._exit(9)\n"
            "atomic_write(sys.argv[1], w)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert r.returncode == 9 and path.read_text() == "old"


def test_pick_device():
    auto = pick_device()
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(MiniLLMError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(MiniLLMError, match="unknown device"):
        pick_device("tpu-ish")
    assert device_name("cpu") == "cpu"


def test_autocast_on_cpu():
    assert bf16_supported("cpu")
    x = torch.randn(4, 4)
    with autocast("cpu", "float32"):
        assert (x @ x).dtype == torch.float32
    with autocast("cpu", "bfloat16"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(MiniLLMError):
        autocast("cpu", "float8")


def test_remove_stale_temps_only_removes_dead_writers_files(tmp_path):
    from minillm.utils import remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".f.txt.{dead}.abc.tmp"
    live = tmp_path / f".f.txt.{os.getpid()}.abc.tmp"
    other = tmp_path / f".g.txt.{dead}.abc.tmp"
    for p in (stale, live, other):
        p.write_text("x")
    assert remove_stale_temps(tmp_path / "f.txt") == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_atomic_write_turns_a_failed_write_into_one_line(tmp_path):
    import errno

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MiniLLMError, match="cannot write .*f.bin: No space left on device"):
        atomic_write(tmp_path / "f.bin", full)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MiniLLMError, match="cannot write"):
        atomic_write_text(tmp_path / "afile" / "g.txt", "y")   # a file where a folder should be
