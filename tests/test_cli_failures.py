"""Every command's documented failure modes: one `error:` line, exit code 2, nothing half-written.

One table (CASES) of bad inputs per command -- missing, empty, a folder for a file and
a file for a folder, binary (not UTF-8), malformed JSON/JSONL, a file of the wrong kind,
mismatched inputs, out-of-range numbers (0, negative, nan, inf), unknown names, unwritable
places -- run in-process through `minillm.cli.main` (fast). For each: exit code 2, no
stdout, exactly one stderr line that starts with `error:` and names the problem, and no
file created, changed or left as a temporary anywhere the command could write.

A few cases also run as real processes (the exit code the shell sees, no traceback, no
warning lines around the error), and so do the full disk (`RLIMIT_FSIZE`: a write past
the limit fails with "File too large") and an interrupt (SIGINT: `error: interrupted`,
exit code 130 by the shell's convention, no half data set).

Not repeated here: `train`'s run folder (tests/test_runfolder.py), `cost --config` on damaged
files (tests/test_cost.py), `evaluate` on an empty text or without a tokenizer
(tests/test_evaluate.py), `generate` on a missing checkpoint (tests/test_generate_command.py).
`tokenizer`, `sft` and `chat` are left out while their modules are being reworked.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from minillm import world
from minillm.cli import main
from minillm.commands import COMMANDS

# a tiny model: every train case fails in milliseconds, before any step
TINY = ("--vocab-size 300 --block-size 16 --n-layer 1 --n-head 2 --n-embd 16 --batch-size 4 "
        "--eval-every 0 --eval-batches 1 --device cpu --no-progress --steps 1")


class Evil:
    """Unpickling this would call os.getpid: a file that needs code to load (never run by minillm)."""

    def __reduce__(self):
        return (os.getpid, ())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The bad (and a few good) inputs every case reads; never written by a case."""
    from minillm.checkpoint import save_checkpoint
    from minillm.model import GPT, GPTConfig
    from minillm.tokenizer import Tokenizer

    f = tmp_path_factory.mktemp("inputs")
    (f / "empty.txt").write_bytes(b"")
    (f / "bin.txt").write_bytes(b"\xff\xfe\x00\x81 not text")
    (f / "bad.json").write_text('{"stages": ["extract",', encoding="utf-8")
    (f / "adir").mkdir()
    stories = "".join(s + "\n" for s in world.load_split("train").splitlines()[:60])
    (f / "stories.txt").write_text(stories, encoding="utf-8")
    tok = Tokenizer.train(stories, 300)
    tok.save(f / "tok.json")
    run = f / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(run / "ckpt.pt", {"model": model.state_dict(), "config": dataclasses.asdict(model.config)})
    tok.save(run / "tokenizer.json")
    data = (run / "ckpt.pt").read_bytes()
    (f / "trunc.pt").write_bytes(data[:len(data) // 2])
    torch.save({"step": 1, "weights": torch.zeros(2)}, f / "wrong.pt")   # a torch file, not a minillm checkpoint
    (f / "evil.pt").write_bytes(pickle.dumps(Evil()))
    (f / "shards_bad").mkdir()
    (f / "shards_bad" / "a.jsonl").write_text('{"id": "p1", "text"\n', encoding="utf-8")
    for name, content in (("stats_bad", '[["extract", {'), ("stats_wrong", '{"extract": 1}')):
        (f / name).mkdir()
        (f / name / "stats.json").write_text(content, encoding="utf-8")
    assert main(["datapipe", "crawl", "--out", str(f / "crawl"), "--pages", "40", "--shards", "2"]) == 0
    assert main(["datapipe", "crawl", "--out", str(f / "crawl2"), "--pages", "30", "--shards", "1",
                 "--seed", "5"]) == 0
    assert main(["datapipe", "run", "--input", str(f / "crawl/pages"), "--out", str(f / "pipe"),
                 "--stages", "extract,exact_dedup"]) == 0
    return f


def case(argv: str, message: str, id: str):
    return pytest.param(argv, message, id=id)


# {f}: the inputs above; {o}: an empty folder the command may write into (it must stay empty)
CASES = [
    # --- tokenizer
    case("tokenizer train --input {f}/empty.txt --out {o}/t.json", "is empty", "tokenizer train empty"),
    case("tokenizer train --input {f}/bin.txt --out {o}/t.json", "cannot read", "tokenizer train binary"),
    case("tokenizer train --input {f}/stories.txt --out {f}/adir", "is a folder", "tokenizer out is a folder"),
    case("tokenizer train --input {f}/stories.txt --out /proc/x/t.json", "does not exist", "tokenizer out unwritable"),
    case("tokenizer encode --tokenizer {f}/bin.txt hi", "", "tokenizer load binary"),
    # --- world
    case("world data --size 0 --out {o}/wd", "positive integer", "world data size 0"),
    case("world data --out {f}/empty.txt --size 12", "is a file", "world data out is a file"),
    case("world data --out /proc/x/y --size 12", "cannot create /proc/x/y", "world data out unwritable"),
    case("world sample --stories -3", "positive integer", "world sample negative"),
    # --- speedrun: every flag checked before the run folder is made
    case("speedrun --fast --out {o}/sp --steps 0", "--steps must be at least 1", "speedrun steps 0"),
    case("speedrun --fast --out {o}/sp --steps -5", "--steps must be at least 1", "speedrun steps negative"),
    case("speedrun --fast --out {o}/sp --time-budget 0", "--time-budget must be", "speedrun budget 0"),
    case("speedrun --fast --out {o}/sp --time-budget nan", "--time-budget must be", "speedrun budget nan"),
    case("speedrun --fast --out {o}/sp --time-budget inf", "--time-budget must be", "speedrun budget inf"),
    case("speedrun --fast --out {o}/sp --seed -1", "--seed must be a non-negative", "speedrun seed negative"),
    case("speedrun --fast --out {o}/sp --device nope", "unknown device 'nope'", "speedrun device unknown"),
    case("speedrun --fast --out {o}/sp --resume", "cannot resume", "speedrun resume nothing"),
    case("speedrun --fast --out {f}/empty.txt", "names a file", "speedrun out is a file"),
    case("speedrun --fast --out /proc/x", "cannot write into /proc/x", "speedrun out unwritable"),
    # --- train: the inputs test_runfolder.py does not cover; all fail before the folder exists
    case("train --data {f}/bin.txt --out {o}/r " + TINY, "not UTF-8 text", "train data binary"),
    case("train --data {f}/empty.txt --out {o}/r " + TINY, "nothing to train on", "train data empty"),
    case("train --data {f}/adir --out {o}/r " + TINY, "is a folder", "train data folder"),
    case("train --data nocorpus --out {o}/r " + TINY, "no known corpus", "train data unknown corpus"),
    case("train --data {f}/stories.txt --val-data {f}/empty.txt --out {o}/r " + TINY, "nothing to validate on",
         "train val empty"),
    case("train --data {f}/stories.txt --val-data {f}/bin.txt --out {o}/r " + TINY, "not UTF-8 text",
         "train val binary"),
    case("train --data {f}/stories.txt --tokenizer {f}/none.json --out {o}/r " + TINY, "No such file",
         "train tokenizer missing"),
    case("train --data {f}/stories.txt --tokenizer {f}/bad.json --out {o}/r " + TINY, "not JSON",
         "train tokenizer malformed"),
    case("train --data {f}/stories.txt --tokenizer {f}/run/ckpt.pt --out {o}/r " + TINY, "not UTF-8 text",
         "train tokenizer is a checkpoint"),
    case("train --data {f}/stories.txt --tokenizer {f}/adir --out {o}/r " + TINY, "Is a directory",
         "train tokenizer folder"),
    case("train --data {f}/stories.txt --out {o}/r --device nope " + TINY.replace("--device cpu ", ""),
         "unknown device 'nope'", "train device unknown"),
    case("train --data {f}/stories.txt --out {o}/r --dtype nope " + TINY, "dtype must be", "train dtype unknown"),
    case("train --data {f}/stories.txt --out {o}/r --lr inf " + TINY, "lr must be a positive finite", "train lr inf"),
    case("train --data {f}/stories.txt --out {o}/r " + TINY + " --steps 0", "steps must be a positive",
         "train steps 0"),
    case("train --data {f}/stories.txt --out {o}/r " + TINY + " --n-head 3", "divisible", "train heads mismatch"),
    case("train --data {f}/stories.txt --out {o}/r " + TINY + " --dropout nan", "dropout must be",
         "train dropout nan"),
    # --- evaluate
    case("evaluate {f}/bin.txt --device cpu", "not a PyTorch checkpoint", "evaluate checkpoint binary"),
    case("evaluate {f}/empty.txt --device cpu", "empty or cut short", "evaluate checkpoint empty"),
    case("evaluate {f}/trunc.pt --device cpu", "truncated", "evaluate checkpoint truncated"),
    case("evaluate {f}/tok.json --device cpu", "not a PyTorch checkpoint", "evaluate checkpoint is a tokenizer"),
    case("evaluate {f}/wrong.pt --device cpu", "not a minillm checkpoint", "evaluate checkpoint wrong kind"),
    case("evaluate {f}/evil.pt --device cpu", "never runs code", "evaluate checkpoint needs code"),
    case("evaluate {f}/adir --device cpu", "not found", "evaluate folder without checkpoint"),
    case("evaluate {f}/run --text {f}/bin.txt --device cpu", "not UTF-8 text", "evaluate text binary"),
    case("evaluate {f}/run --text {f}/adir --device cpu", "is a folder", "evaluate text folder"),
    case("evaluate {f}/run --text nocorpus --device cpu", "no known corpus", "evaluate text unknown"),
    case("evaluate {f}/run --stride 0 --device cpu", "--stride must be a positive", "evaluate stride 0"),
    case("evaluate {f}/run --stride -3 --device cpu", "--stride must be a positive", "evaluate stride negative"),
    case("evaluate {f}/run --stride 99 --device cpu --max-chars 300", "stride must be between 1 and block_size",
         "evaluate stride too big"),
    case("evaluate {f}/run --shots -1 --device cpu", "--shots must be 0 or more", "evaluate shots negative"),
    case("evaluate {f}/run --mc-items -1 --device cpu", "--mc-items must be 0 or more", "evaluate items negative"),
    case("evaluate {f}/run --max-chars -1 --device cpu", "--max-chars must be 0 or more", "evaluate chars negative"),
    case("evaluate {f}/run --device nope", "unknown device 'nope'", "evaluate device unknown"),
    # --- generate (the checkpoint cases test_generate_command.py does not cover)
    case("generate --checkpoint {f}/bin.txt --device cpu", "not a PyTorch checkpoint", "generate checkpoint binary"),
    case("generate --checkpoint {f}/wrong.pt --device cpu", "not a minillm checkpoint", "generate wrong kind"),
    case("generate --checkpoint {f}/evil.pt --device cpu", "never runs code", "generate needs code"),
    case("generate --checkpoint {f}/trunc.pt --device cpu", "truncated", "generate truncated"),
    case("generate --checkpoint {f}/run --temperature nan --device cpu", "temperature", "generate temperature nan"),
    case("generate --checkpoint {f}/run --temperature inf --device cpu", "temperature", "generate temperature inf"),
    case("generate --checkpoint {f}/run --temperature -1 --device cpu", "temperature", "generate temperature neg"),
    case("generate --checkpoint {f}/run --top-k 0 --device cpu", "top_k must be >= 1", "generate top-k 0"),
    case("generate --checkpoint {f}/run --top-p 0 --device cpu", "top_p must be in (0, 1]", "generate top-p 0"),
    case("generate --checkpoint {f}/run --top-p nan --device cpu", "top_p must be in (0, 1]", "generate top-p nan"),
    case("generate --checkpoint {f}/run --top-p 2 --device cpu", "top_p must be in (0, 1]", "generate top-p 2"),
    case("generate --checkpoint {f}/run --max-new-tokens -1 --device cpu", "max_new_tokens", "generate tokens neg"),
    case("generate --checkpoint {f}/run --seed -1 --device cpu", "--seed must be a non-negative", "generate seed neg"),
    case("generate --checkpoint {f}/run --device nope", "unknown device 'nope'", "generate device unknown"),
    case("generate --checkpoint {f}/runs/typo", "no checkpoint file or run folder", "generate path typo"),
    # --- sweep: all before any training
    case("sweep --n-head 0", "--n-head must be a positive", "sweep heads 0"),
    case("sweep --n-head 3", "not divisible by n_head 3", "sweep heads mismatch"),
    case("sweep --batch-size 0", "batch_size must be a positive", "sweep batch 0"),
    case("sweep --block-size 0", "block_size must be >= 1", "sweep block 0"),
    case("sweep --lr nan", "lr must be a positive finite", "sweep lr nan"),
    case("sweep --lr inf", "lr must be a positive finite", "sweep lr inf"),
    case("sweep --vocab-size 100", "vocab_size must be >= 256", "sweep vocab too small"),
    case("sweep --steps 0,-1,5", "positive integers", "sweep steps negative"),
    case("sweep --seed -1", "seed must be a non-negative", "sweep seed negative"),
    case("sweep --out {f}/empty.txt", "is a file", "sweep out is a file"),
    case("sweep --out /proc/x", "cannot write into /proc/x", "sweep out unwritable"),
    # --- cost (the --params side; test_cost.py covers damaged --config files)
    case("cost --params 0", "must be a positive", "cost params 0"),
    case("cost --params -1", "must be a positive", "cost params negative"),
    case("cost --params nan", "--params must be a positive finite", "cost params nan"),
    case("cost --params inf", "--params must be a positive finite", "cost params inf"),
    case("cost --params 1e9 --tokens nan", "--tokens must be a positive finite", "cost tokens nan"),
    case("cost --params 1e9 --tokens 0", "must be a positive", "cost tokens 0"),
    case("cost --params 1e9 --effective-tflops 0", "--effective-tflops must be a positive", "cost tflops 0"),
    case("cost --params 1e9 --n-gpus 0", "must be a positive", "cost gpus 0"),
    case("cost --params 1e9 --mfu 2", "mfu is a fraction", "cost mfu 2"),
    case("cost --params 1e9 --pue nan", "--pue must be a positive finite", "cost pue nan"),
    case("cost --params 1e9 --staff -1", "--staff must be a non-negative", "cost staff negative"),
    case("cost --params 1e9 --gpu NOPE", "unknown GPU 'NOPE'", "cost gpu unknown"),
    case("cost --params 1e9 --dtype fp3", "dtype must be one of", "cost dtype unknown"),
    case("cost --config {f}/adir", "is a folder", "cost config folder"),
    # --- datapipe crawl / run / report
    case("datapipe crawl --out {o}/c --pages 0", "positive integer", "crawl pages 0"),
    case("datapipe crawl --out {o}/c --pages 10 --shards 0", "n_shards must be >= 1", "crawl shards 0"),
    case("datapipe crawl --out {o}/c --pages 10 --seed -1", "seed must be a non-negative", "crawl seed negative"),
    case("datapipe crawl --out {f}/empty.txt --pages 10", "is a file", "crawl out is a file"),
    case("datapipe crawl --out /proc/x --pages 10", "cannot create /proc/x", "crawl out unwritable"),
    case("datapipe run --input {o}/none --out {o}/p", "does not exist", "pipe input missing"),
    case("datapipe run --input {f}/adir --out {o}/p", "no *.jsonl", "pipe input empty folder"),
    case("datapipe run --input {f}/empty.txt --out {o}/p", "is a file", "pipe input is a file"),
    case("datapipe run --input {f}/shards_bad --out {o}/p", "a.jsonl:1: not a JSON line", "pipe shard malformed"),
    case("datapipe run --input {f}/crawl/pages --out {o}/p --stages extract,nope", "unknown stage 'nope'",
         "pipe stage unknown"),
    case("datapipe run --input {f}/crawl/pages --out {o}/p --workers 0", "workers must be a positive",
         "pipe workers 0"),
    case("datapipe run --input {f}/crawl/pages --out {o}/p --config {f}/bin.txt", "not UTF-8 text",
         "pipe config binary"),
    case("datapipe run --input {f}/crawl/pages --out {o}/p --config {f}/bad.json", "cannot read the pipeline config",
         "pipe config malformed"),
    case("datapipe run --input {f}/crawl/pages --out {o}/p --config {f}/none.json", "No such file",
         "pipe config missing"),
    case("datapipe run --input {f}/crawl/pages --out {o}/p --config {f}/adir", "Is a directory", "pipe config folder"),
    case("datapipe run --input {f}/crawl/pages --out {f}/empty.txt", "names a file", "pipe out is a file"),
    case("datapipe run --input {f}/crawl/pages --out /proc/x", "cannot write into /proc/x", "pipe out unwritable"),
    case("datapipe run --input {f}/crawl/pages --out {f}/crawl/pages/sub", "must not be (inside) the input",
         "pipe out inside input"),
    case("datapipe report --run {o}/none --truth {f}/crawl/truth.jsonl.gz", "not found", "report run missing"),
    case("datapipe report --run {f}/stats_bad --truth {f}/crawl/truth.jsonl.gz", "is not JSON",
         "report stats malformed"),
    case("datapipe report --run {f}/stats_wrong --truth {f}/crawl/truth.jsonl.gz", "not a stats file",
         "report stats wrong kind"),
    case("datapipe report --run {f}/pipe --truth {o}/none.gz", "is not a file", "report truth missing"),
    case("datapipe report --run {f}/pipe --truth {f}/crawl/pages", "is not a file", "report truth folder"),
    case("datapipe report --run {f}/pipe --truth {f}/bin.txt", "not a JSON line", "report truth binary"),
    case("datapipe report --run {f}/pipe --truth {f}/crawl2/truth.jsonl.gz", "does not belong to the run",
         "report truth of another crawl"),
    case("datapipe report --run {f}/pipe --truth {f}/crawl/truth.jsonl.gz --plot {o}/f.nope", "name an image file",
         "report plot format unknown"),
    case("datapipe report --run {f}/pipe --truth {f}/crawl/truth.jsonl.gz --plot {f}/adir", "name an image file",
         "report plot folder"),
    case("datapipe report --run {f}/pipe --truth {f}/crawl/truth.jsonl.gz --plot /proc/x/f.png",
         "cannot write /proc/x/f.png", "report plot unwritable"),
    # --- dpo / rm: preference files
    case("dpo --pairs-file {o}/none.jsonl --out {o}/d", "no preference file at", "dpo pairs file missing"),
    case("dpo --pairs-file {f}/empty.txt --out {o}/d", "has no preference pairs", "dpo pairs file empty"),
    case("dpo --pairs-file {f}/bad.json --out {o}/d", ":1: not a JSON line", "dpo pairs file malformed"),
    case("dpo --pairs-file {f}/bin.txt --out {o}/d", "is not UTF-8 text", "dpo pairs file binary"),
    case("dpo --pairs-file {f}/shards_bad/a.jsonl --out {o}/d", ":1: not a JSON line", "dpo pairs file truncated line"),
    case("dpo --write-pairs /proc/x/p.jsonl", "cannot write /proc/x/p.jsonl", "dpo write pairs unwritable"),
    case("rm train --pairs-file {f}/empty.txt --out {o}/r", "has no preference pairs", "rm pairs file empty"),
    case("dpo --experiment /proc/x/e", "cannot write into /proc/x/e", "dpo experiment unwritable"),
    # --- rlhf's experiments and sft's curriculum
    case("rlhf --compare /proc/x/c", "cannot write into /proc/x/c", "rlhf compare unwritable"),
    case("rlhf --hacking {o}/h --kl-coefs a,b", "--kl-coefs must be comma-separated numbers", "rlhf kl coefs text"),
    case("rlhf --hacking {o}/h --kl-coefs 0,-1", "every KL coefficient must be >= 0", "rlhf kl coef negative"),
    case("rlhf --hacking {o}/h --kl-coefs nan", "every KL coefficient must be >= 0", "rlhf kl coef nan"),
    case("sft --curriculum place,nope --out {o}/c", "distinct question kinds", "sft curriculum kind unknown"),
    case("sft --curriculum place,place --out {o}/c", "distinct question kinds", "sft curriculum kind twice"),
    case("sft --curriculum place --new-share 1 --out {o}/c", "new_share must be between 0 and 1", "sft curriculum share"),
    case("sft --curriculum place,colour --stage-steps 5 --out {o}/c", "one positive step count per stage",
         "sft curriculum stage steps count"),
    case("sft --curriculum place --stage-steps x --out {o}/c", "--stage-steps must be comma-separated integers",
         "sft curriculum stage steps text"),
    # --- assign (grading itself: tests/test_assign.py)
    case("assign list --root {f}/adir", "not a minillm checkout", "assign list root not a checkout"),
    case("assign list --root {f}/empty.txt", "not a minillm checkout", "assign list root is a file"),
    case("assign student --out {o}/s", "say which exercises", "assign student nothing chosen"),
    case("assign student --lessons nope --out {o}/s", "lesson numbers", "assign student lessons malformed"),
    case("assign student --lessons 99 --out {o}/s", "99 is not a lesson", "assign student lesson unknown"),
    case("assign student --exercises nope.nope --out {o}/s", "no exercise named nope.nope", "assign exercise unknown"),
    case("assign grade {o}/none", "is not a folder", "assign grade submission missing"),
    case("assign grade {f}/empty.txt", "is not a folder", "assign grade submission is a file"),
    case("assign grade {f}/adir", "no minillm/ package", "assign grade submission empty"),
    case("assign grade {f}/adir --timeout 0", "--timeout must be a positive", "assign grade timeout 0"),
    case("assign grade {f}/adir --total-timeout nan", "--total-timeout must be", "assign grade total nan"),
    case("assign grade {f}/adir --memory -1", "--memory must be", "assign grade memory negative"),
    case("assign check --lessons 99", "99 is not a lesson", "assign check lesson unknown"),
    case("assign check --lessons 00 --timeout inf", "--timeout must be a positive", "assign check timeout inf"),
    case("assign check --root {f}/adir --lessons 00", "not a minillm checkout", "assign check root"),
]


def snapshot(*roots: Path) -> dict:
    """Every file and folder under `roots`, with size and modification time: any write shows."""
    seen = {}
    for root in roots:
        for p in [root, *root.rglob("*")]:
            st = p.stat()
            seen[str(p)] = (p.is_dir(), st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0)
    return seen


def one_error_line(err: str, message: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv, message", CASES)
def test_every_failure_is_one_error_line_exit_2_and_no_output(argv, message, files, tmp_path, capsys):
    args = argv.format(f=files, o=tmp_path).split()
    before = snapshot(files, tmp_path)
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    one_error_line(err, message)
    assert snapshot(files, tmp_path) == before       # nothing written, nothing half-written
    assert not list(files.rglob("*.tmp")) and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_bad_flag_is_argparse_usage_and_exit_2(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--no-such-flag"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"usage: minillm {name}") and "Traceback" not in err
    assert err.rstrip().splitlines()[-1].startswith(f"minillm {name}: error: ")


def test_an_unwritable_out_folder_is_one_error_line(files, tmp_path, capsys, monkeypatch):
    # Tests run as root here, where chmod does not stop writes: refuse writes into `ro` instead.
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    refuse = PermissionError(13, "Permission denied")
    real_write, real_mkdtemp = Path.write_bytes, tempfile.mkdtemp

    def write_bytes(self, data):
        if ro in self.parents:
            raise refuse
        return real_write(self, data)

    def mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and (Path(dir) == ro or ro in Path(dir).parents or Path(dir) == ro.parent):
            raise refuse
        return real_mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    for argv in (["world", "data", "--out", str(ro), "--size", "12"],
                 ["datapipe", "crawl", "--out", str(ro), "--pages", "10"],
                 ["datapipe", "run", "--input", str(files / "crawl/pages"), "--out", str(ro)],
                 ["sweep", "--out", str(ro)],
                 ["speedrun", "--fast", "--out", str(ro)]):
        assert main(argv) == 2, argv
        one_error_line(capsys.readouterr().err, "Permission denied")
        assert list(ro.iterdir()) == [], argv


# --- as real processes ---------------------------------------------------------------

def run_minillm(*args: str, preamble: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    code = preamble + "import sys\nfrom minillm.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


# each of these once ended in a traceback or printed warnings around its error
PROCESS_CASES = [
    ("evaluate {f}/evil.pt --device cpu", "never runs code"),
    ("cost --params 1e9 --gpu NOPE", "unknown GPU"),
    ("train --data {f}/bin.txt --out {o}/r " + TINY, "not UTF-8 text"),
    ("datapipe report --run {f}/stats_bad --truth {f}/crawl/truth.jsonl.gz", "is not JSON"),
    ("speedrun --fast --out {o}/sp --time-budget inf", "--time-budget must be"),
]


@pytest.mark.parametrize("argv, message", PROCESS_CASES, ids=[c[0].split(" {")[0] for c in PROCESS_CASES])
def test_as_a_process_the_exit_code_is_2_and_stderr_one_line(argv, message, files, tmp_path):
    r = run_minillm(*argv.format(f=files, o=tmp_path).split())
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-2000:])
    one_error_line(r.stderr, message)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_flag_as_a_process_prints_usage(tmp_path):
    r = subprocess.run([sys.executable, "-m", "minillm", "--no-such-flag"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("usage: minillm") and "Traceback" not in r.stderr


DISK_LIMIT = textwrap.dedent("""
    import resource
    limit = {limit}
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # a write past it fails: "File too large"
""")


@pytest.mark.skipif(not hasattr(os, "setsid") or sys.platform == "darwin", reason="RLIMIT_FSIZE on Linux")
@pytest.mark.parametrize("argv, limit", [
    # train.txt (40 kB), val.txt and floor.json fit; qa_train.jsonl (0.9 MB) does not
    ("world data --out {o}/wd --size 120", 100_000),
    # both shards (about 35 kB) fit; the truth (about 55 kB) does not
    ("datapipe crawl --out {o}/crawl --pages 200 --shards 2", 40_000),
])
def test_a_full_disk_leaves_no_partial_set_and_no_temporary(argv, limit, tmp_path):
    r = run_minillm(*argv.format(o=tmp_path).split(), preamble=DISK_LIMIT.format(limit=limit))
    assert r.returncode == 2 and r.stdout == "", r.stderr[-2000:]
    line = one_error_line(r.stderr, "File too large")
    assert line.startswith(f"error: cannot write {tmp_path}/") and ".tmp" not in line   # names the real file
    assert list(tmp_path.iterdir()) == []            # no part of a data set, no temporary folder


def test_an_existing_data_set_survives_a_full_disk(tmp_path):
    out = tmp_path / "wd"
    assert main(["world", "data", "--out", str(out), "--size", "24"]) == 0
    before = snapshot(out)
    r = run_minillm("world", "data", "--out", str(out), "--size", "120",
                    preamble=DISK_LIMIT.format(limit=100_000))
    assert r.returncode == 2
    one_error_line(r.stderr, "File too large")
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["wd"]


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_write(tmp_path, capsys):
    stale = tmp_path / ".wd.999999999.x1y2.tmp"          # pid 999999999 cannot be alive (above pid_max)
    stale.mkdir()
    (stale / "train.txt").write_text("half a data set")
    assert main(["world", "data", "--out", str(tmp_path / "wd"), "--size", "12"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wd"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.skip(reason="races on a quiet machine: the run can finish between the poll and the signal "
                         "(exit 0 seen twice in a fresh clone); to be rewritten with a deterministic hook")
def test_an_interrupt_is_one_error_line_and_leaves_no_partial_set(tmp_path):
    out = tmp_path / "wd"
    code = "import sys\nfrom minillm.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "world", "data", "--out", str(out), "--size", "40000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".wd.*.tmp/*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)                                 # wait until it is writing
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stdout == "", stderr[-2000:]
    one_error_line(stderr, "interrupted")
    assert list(tmp_path.iterdir()) == []            # the temporary folder went with it
