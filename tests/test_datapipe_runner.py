"""Lesson 13's sharded runner: resumable after a kill, parallel, dedup across shards, the same
output as the in-memory pipeline, inputs untouched, bad input handled or one clear error."""

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from minillm.datapipe import crawl, pipeline, runner
from minillm.utils import MiniLLMError

CFG = ["extract", "langid", "pii", "exact_dedup", "minhash", "line_dedup", "gopher_quality", "c4", "domain"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    pages, truth = crawl.make_crawl(160, seed=11)
    folder = tmp_path_factory.mktemp("crawl") / "pages"
    runner.write_shards(pages, folder, 4)
    return folder, pages


def _files(folder: Path) -> dict:
    """Every shard output file (not keys or stats timing) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.jsonl*"))
            if not p.name.endswith((".stats.json", ".keys.gz"))}


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_sharded_equals_in_memory_and_inputs_untouched(shards, tmp_path):
    folder, pages = shards
    before = _digest(folder)
    runner.run_sharded(folder, tmp_path / "out", CFG)
    assert _digest(folder) == before
    final = sorted((tmp_path / "out").glob(f"{len(CFG) - 1:02d}-domain/*.jsonl.gz"))
    got = [d for p in final for d in runner.read_jsonl(p)]
    want, _ = pipeline.run_stages(pages, CFG)
    assert got == want


def test_two_workers_give_the_same_bytes(shards, tmp_path):
    folder, _ = shards
    cfg = ["extract", "exact_dedup", "minhash", "line_dedup"]
    runner.run_sharded(folder, tmp_path / "one", cfg, workers=1)
    runner.run_sharded(folder, tmp_path / "two", cfg, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


CRASH = """
import json, os, sys
from minillm.datapipe import runner
real, calls = runner.write_jsonl, [0]
def crashing(path, docs):
    calls[0] += 1
    if calls[0] == int(sys.argv[3]):   # die half-way through writing this shard, as a kill would
        def half(tmp):
            with open(tmp, "w") as f:
                f.write(json.dumps(docs[0]) if docs else "")
                f.flush()
            os._exit(9)
        runner.atomic_write(path, half)
    return real(path, docs)
runner.write_jsonl = crashing
runner.run_sharded(sys.argv[1], sys.argv[2], %r)
"""


def test_killed_mid_shard_then_rerun_gives_identical_output(shards, tmp_path):
    folder, _ = shards
    cfg = ["extract", "exact_dedup", "line_dedup"]
    runner.run_sharded(folder, tmp_path / "clean", cfg)
    for crash_at in (2, 6):  # in the first stage; in the global stage's apply step
        out = tmp_path / f"crashed{crash_at}"
        r = subprocess.run([sys.executable, "-c", CRASH % cfg, str(folder), str(out), str(crash_at)],
                           capture_output=True, text=True)
        assert r.returncode == 9, r.stderr
        done = [p for p in out.rglob("*.jsonl.gz")]
        assert all(p.with_name(p.name + ".stats.json").exists() for p in done)  # no half shard counts as done
        runner.run_sharded(folder, out, cfg)
        assert _files(out) == _files(tmp_path / "clean")
        assert not list(out.rglob(".*.tmp"))


def test_duplicates_split_over_shards_are_found(tmp_path):
    a = "<p>" + " ".join(f"word{i} and the story goes on." for i in range(40)) + "</p>"
    near = a.replace("word7 ", "other ")
    runner.write_jsonl(tmp_path / "in" / "s0.jsonl", [{"id": "a", "html": a}, {"id": "b", "html": "<p>unique page one</p>"}])
    runner.write_jsonl(tmp_path / "in" / "s1.jsonl", [{"id": "c", "html": a}, {"id": "d", "html": near}])
    recs = runner.run_sharded(tmp_path / "in", tmp_path / "out", ["extract", "exact_dedup", "minhash"])
    assert dict(recs)["exact_dedup"]["dropped"] == ["c"]
    assert dict(recs)["minhash"]["dropped"] == ["d"]
    assert runner.read_jsonl(tmp_path / "out" / "02-minhash" / "s1.jsonl") == []


def test_bad_inputs(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.jsonl").write_bytes(b'{"id": "x", "html": "<p>caf\xff\xfe ok and more text</p>"}\n')  # invalid UTF-8
    (inp / "b.jsonl").write_bytes(b"")                                                                 # an empty shard
    runner.write_jsonl(inp / "c.jsonl.gz", [{"id": "y", "html": "\x00\x01\x02\x03" * 50}])            # binary content
    runner.write_jsonl(inp / "d.jsonl", [{"id": "z", "html": "<div><p>unclosed <b>tags"}])             # malformed HTML
    recs = runner.run_sharded(inp, tmp_path / "out", ["extract", "exact_dedup"])
    assert dict(recs)["extract"]["dropped"] == ["y"]
    assert runner.read_jsonl(tmp_path / "out" / "00-extract" / "b.jsonl") == []
    assert runner.read_jsonl(tmp_path / "out" / "00-extract" / "a.jsonl")[0]["text"] == "caf\ufffd\ufffd ok and more text"
    assert runner.read_jsonl(tmp_path / "out" / "00-extract" / "d.jsonl")[0]["text"] == "unclosed tags"

    with pytest.raises(MiniLLMError, match="unknown stage 'nope'"):
        runner.run_sharded(inp, tmp_path / "out2", ["extract", "nope"])
    assert not (tmp_path / "out2").exists()  # nothing written for a bad config
    with pytest.raises(MiniLLMError, match="must not be"):
        runner.run_sharded(inp, inp / "out", ["extract"])
    with pytest.raises(MiniLLMError, match="does not exist"):
        runner.run_sharded(tmp_path / "missing", tmp_path / "o3", ["extract"])
    with pytest.raises(MiniLLMError, match="workers"):
        runner.run_sharded(inp, tmp_path / "o4", ["extract"], workers=0)


def test_bad_json_and_bad_gzip_are_clear_errors(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"id": "a", "html": "x"}\nnot json\n')
    with pytest.raises(MiniLLMError, match=r"a.jsonl:2: not a JSON line"):
        runner.run_sharded(tmp_path / "in", tmp_path / "out", ["extract"])
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "a.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(MiniLLMError, match="not a valid gzip"):
        runner.run_sharded(tmp_path / "in2", tmp_path / "out2", ["extract"])
    (tmp_path / "in3").mkdir()
    with pytest.raises(MiniLLMError, match="no \\*.jsonl"):
        runner.run_sharded(tmp_path / "in3", tmp_path / "out3", ["extract"])


def test_gzip_shards_are_byte_identical_across_runs(tmp_path):
    docs = [{"id": "a", "text": "x"}]
    one = runner.write_jsonl(tmp_path / "a.jsonl.gz", docs).read_bytes()
    two = runner.write_jsonl(tmp_path / "b.jsonl.gz", docs).read_bytes()
    assert one == two and json.loads(gzip.decompress(one)) == docs[0]


def test_command_line_crawl_run_report(tmp_path, capsys):
    import argparse

    from minillm.commands import datapipe as command

    def go(*argv):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        return command.run(parser.parse_args(list(argv)))

    assert go("crawl", "--out", str(tmp_path / "c"), "--pages", "60", "--shards", "2") == 0
    assert sorted(p.name for p in (tmp_path / "c" / "pages").iterdir()) == ["shard-00000.jsonl.gz", "shard-00001.jsonl.gz"]
    assert go("run", "--input", str(tmp_path / "c" / "pages"), "--out", str(tmp_path / "r"),
              "--stages", "extract,langid,exact_dedup") == 0
    assert go("report", "--run", str(tmp_path / "r"), "--truth", str(tmp_path / "c" / "truth.jsonl.gz"),
              "--plot", str(tmp_path / "f.png")) == 0
    out = capsys.readouterr().out
    assert "| langid | 60 |" in out and (tmp_path / "f.png").stat().st_size > 0
    with pytest.raises(MiniLLMError, match="not found"):
        go("report", "--run", str(tmp_path / "nothing"), "--truth", str(tmp_path / "c" / "truth.jsonl.gz"))
    with pytest.raises(MiniLLMError, match="either"):
        go("run", "--input", str(tmp_path / "c" / "pages"), "--out", str(tmp_path / "r2"), "--stages", "extract",
           "--config", "x.json")
