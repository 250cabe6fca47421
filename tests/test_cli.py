"""The command line: help for newcomers, doctor, one-line errors instead of tracebacks."""

import subprocess
import sys

import pytest

from minillm import config
from minillm.commands import COMMANDS, doctor


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minillm", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for name in ("speedrun", "doctor", "world"):
        assert name in r.stdout


def test_no_arguments_prints_help():
    r = run_cli()
    assert r.returncode == 0 and "speedrun" in r.stdout


def test_unknown_command_fails_cleanly():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_doctor_report():
    report = doctor.doctor_report()
    assert report["device"] in ("cpu", "cuda", "mps")
    assert set(report["extras"]) >= {"dev", "interop"}
    r = run_cli("doctor")
    assert r.returncode == 0 and "torch" in r.stdout and "bf16" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["world", "sample", "--stories", "0"], "positive integer"),
    (["world", "floor", "--seed", "-1"], "non-negative"),
    (["world", "data", "--out", "/proc/no/such/dir"], "cannot create"),
])
def test_bad_input_is_one_clear_line(args, message):
    r = run_cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_world_sample_prints_bits():
    r = run_cli("world", "sample", "--stories", "2")
    assert r.returncode == 0 and r.stdout.count("bits") == 2 and "The end." in r.stdout


def test_every_command_module_has_help_flags_and_run():
    for name, command in COMMANDS.items():
        assert isinstance(command.HELP, str) and command.HELP, name
        assert callable(command.add_arguments) and callable(command.run), name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_works(name):
    """`minillm NAME --help` prints its flags (a `%` in a help text once crashed argparse)."""
    r = run_cli(name, "--help")
    assert r.returncode == 0, r.stderr
    assert f"minillm {name}" in r.stdout and "Traceback" not in r.stderr


def test_build_advice_names_a_cuda_build_without_gpu():
    assert doctor.build_advice(True, False, False).startswith("CUDA build, but no GPU")
    assert doctor.build_advice(False, False, True).startswith("CPU build, but an NVIDIA GPU")
    assert doctor.build_advice(True, True, True).endswith("good")
    assert doctor.build_advice(False, False, False).endswith("good")


def test_dataclass_flags_round_trip():
    import argparse
    import dataclasses

    @dataclasses.dataclass
    class Cfg:
        steps: int = 10
        lr: float = 1e-3
        name: str = "x"
        compile: bool = False
        width: int | None = None

    p = argparse.ArgumentParser()
    config.add_dataclass_arguments(p, Cfg)
    args = p.parse_args(["--steps", "3", "--lr", "0.5", "--compile", "--width", "7"])
    assert config.dataclass_from_args(Cfg, args) == Cfg(steps=3, lr=0.5, name="x", compile=True, width=7)


def test_percent_in_a_help_text_is_escaped():
    import argparse
    import dataclasses

    @dataclasses.dataclass
    class Cfg:
        frac: float = dataclasses.field(default=0.1, metadata={"help": "the last 10% of the data"})

    p = argparse.ArgumentParser()
    config.add_dataclass_arguments(p, Cfg)
    assert "10% of the data" in p.format_help()
