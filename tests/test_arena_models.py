"""Checkpoints as arena players and judges (lesson 12), against independent paths:
one-by-one generation (`instruct.qa_exact_match`), the reference log-prob of lesson 05,
hand-made tokenizers and scorers."""

import math

import numpy as np
import pytest

from minillm import arena, arena_models as am, ratings
from minillm.evaluate import choice_logprob_reference
from minillm.generation import generate_batch
from minillm.instruct import qa_exact_match
from minillm.sft import render_chat
from minillm.utils import MiniLLMError


@pytest.fixture(scope="module")
def sft():
    return am.open_run("sft")


@pytest.fixture(scope="module")
def items():
    return am.course_items(6, seed=3)


def test_batched_answers_equal_one_by_one_generation(sft, items):
    ours = am.ModelAnswerer(sft, max_new_tokens=8).answer_many(items)
    theirs = qa_exact_match(sft.model, sft.tokenizer, items, max_new_tokens=8)
    assert theirs.skipped == 0 and ours == theirs.answers


def test_answers_are_cached_and_prompts_fit(items):
    pre = am.open_run("pretrained")
    a = am.ModelAnswerer(pre, shots=3, max_new_tokens=8)
    first = a.answer_many(items)
    assert a.answer_many(items[::-1]) == first[::-1] and len(a.cache) == len(items)
    assert all(len(a.prompt_ids(it)) + 8 <= pre.config.block_size for it in items)
    assert a.shortened >= 1              # 3 shots do not fit a 128-token context (measured, not assumed)
    assert all("\n" not in x for x in first)
    with pytest.raises(MiniLLMError, match="chat tokens"):
        am.ModelAnswerer(pre)            # a pretrained model has no chat format


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 7)])
def test_streaming_equals_batched_generation(sft, items, temperature, seed):
    ids, _ = render_chat([dict(role="user", content=items[0]["story"] + "\n" + items[0]["prompt"])],
                         sft.tokenizer, am.TEMPLATE, add_generation_prompt=True)
    end = [sft.tokenizer.special_tokens[am.TEMPLATE.end]]
    room = sft.config.block_size - len(ids)
    streamed = list(am.stream_tokens(sft.model, ids, room, temperature=temperature, stop_ids=end, seed=seed))
    batched = generate_batch(sft.model, [ids], room, temperature=temperature, stop_ids=end, seed=seed)[0]
    assert streamed == batched


class ByteTokenizer:
    """Ids are single bytes: every multi-byte character is split across tokens."""

    def decode_bytes(self, ids):
        return bytes(ids)


def test_decode_stream_never_shows_half_a_character(sft):
    text = "Zoë saw a 🦊 — 狐."
    pieces = list(am.decode_stream(ByteTokenizer(), list(text.encode("utf-8"))))
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    assert len(pieces) == len(text)      # one piece per character, each whole
    broken = list(am.decode_stream(ByteTokenizer(), [0xC3]))   # a truncated character at the end
    assert broken == ["\ufffd"]
    ids = sft.tokenizer.encode(text)
    assert "".join(am.decode_stream(sft.tokenizer, ids)) == sft.tokenizer.decode(ids)


def test_stream_answerer_streams_the_greedy_answer(items):
    item = items[0]
    prompt = item["story"] + "\n" + item["prompt"]
    chat = am.stream_answerer("sft", max_new_tokens=8)
    assert "".join(chat(prompt)).strip() == am.ModelAnswerer(am.open_run("sft"), max_new_tokens=8)(item)
    plain = am.stream_answerer("pretrained", max_new_tokens=6)
    out = "".join(plain(prompt))
    assert "\n" not in out and out == "".join(plain(prompt))   # greedy: the same every time


def test_model_judge_compares_the_reference_log_probs(sft, items):
    judge = am.model_judge(sft)
    item = items[1]
    ids, _ = render_chat([dict(role="user", content=am.judge_prompt(item, "four", "near the mill"))],
                         sft.tokenizer, am.TEMPLATE, add_generation_prompt=True)
    choices = [sft.tokenizer.encode(c) for c in (" A", " B")]
    ids = ids[-(sft.config.block_size - max(map(len, choices))):]   # the oldest tokens go, as documented
    lp = [choice_logprob_reference(sft.model, ids, c) for c in choices]
    assert judge(item, "four", "near the mill") == ("a" if lp[0] > lp[1] else "b")
    assert am.model_judge(sft, margin=1e9)(item, "four", "two") == "tie"
    assert am.model_judge("pretrained")(item, "four", "two") in arena.VERDICTS


def test_scorer_judge_and_the_likelihood_scorer(sft, items):
    judge = am.scorer_judge(lambda item, ans: len(ans), margin=1)
    assert [judge({}, "aaaa", "a"), judge({}, "a", "aaaa"), judge({}, "aa", "a")] == ["a", "b", "tie"]
    with pytest.raises(MiniLLMError, match="NaN"):
        am.scorer_judge(lambda item, ans: math.nan)({}, "a", "b")
    score = am.likelihood_scorer(sft)
    item = items[2]
    ids, _ = render_chat([dict(role="user", content=item["story"] + "\n" + item["prompt"])],
                         sft.tokenizer, am.TEMPLATE, add_generation_prompt=True)
    body = sft.tokenizer.encode(" " + item["answer"]) + [sft.tokenizer.special_tokens[am.TEMPLATE.end]]
    assert score(item, item["answer"]) == pytest.approx(choice_logprob_reference(sft.model, ids, body) / len(body),
                                                        abs=1e-4)
    with pytest.raises(MiniLLMError, match="chat model"):
        am.likelihood_scorer("pretrained")


def test_reward_model_judge_follows_the_reward(sft, items, tmp_path):
    reward = pytest.importorskip("minillm.reward")
    import copy

    import torch

    rm = reward.RewardModel(copy.deepcopy(sft.model))
    torch.manual_seed(0)
    torch.nn.init.normal_(rm.head.weight)           # an untrained head: any fixed reward will do
    reward.save_reward_model(tmp_path / "rm", rm, sft.tokenizer)
    judge, debias = arena.make_judge(f"rm:{tmp_path / 'rm'}")
    item, a, b = items[0], "four", "near the mill"
    pair = dict(story=item["story"], question=item["question"], prompt=item["prompt"], chosen=a, rejected=b)
    r_a, r_b, _ = reward.score_pairs(rm, sft.tokenizer, [pair])
    assert debias and judge(item, a, b) == ("a" if r_a[0] > r_b[0] else "b")
    assert judge(item, b, a) == arena.swap(judge(item, a, b))   # scores each answer alone


def test_specs_and_bad_input(tmp_path):
    assert am.parse_spec("pretrained:2shot:t=0.5") == am.ModelSpec("pretrained:2shot:t=0.5", "pretrained", 2, 0.5)
    assert am.parse_spec("sft") == am.ModelSpec("sft", "sft", None, 0.0)
    for bad, msg in [("sft:hot", "unknown option"), ("sft:t=x", "not a number"), (":2shot", "names no")]:
        with pytest.raises(MiniLLMError, match=msg):
            am.parse_spec(bad)
    with pytest.raises(MiniLLMError, match="at least two"):
        am.build_answerers(["sft"])
    with pytest.raises(MiniLLMError, match="named twice"):
        am.build_answerers(["sft", "sft"])
    with pytest.raises(MiniLLMError, match="no checkpoint"):
        am.build_answerers(["sft", str(tmp_path / "nope")])
    assert am.build_answerers(["pretrained", "sft"])["pretrained"].shots == 1


def test_judges_by_name_and_a_failing_judge():
    assert arena.make_judge("oracle")[1] is False and arena.make_judge("ai:sft")[1] is True
    assert arena.make_judge("ai:sft", raw=True)[1] is False
    with pytest.raises(MiniLLMError, match="unknown judge"):
        arena.make_judge("gpt-4")

    def broken(item, a, b):
        raise ZeroDivisionError("oops")

    with pytest.raises(MiniLLMError, match="'mine' failed on the answers 'x' / 'y'"):
        arena.checked(broken, "mine")({}, "x", "y")


def test_kendall_tau_by_hand():
    x = {"a": 3, "b": 2, "c": 1}
    assert arena.kendall_tau(x, x) == 1 and arena.kendall_tau(x, {"a": 1, "b": 2, "c": 3}) == -1
    assert arena.kendall_tau(x, {"a": 3, "b": 1, "c": 2}) == pytest.approx(1 / 3)
    with pytest.raises(MiniLLMError):
        arena.kendall_tau({"a": 1}, {"a": 2})


def test_a_tiny_course_arena(standin_ratings):
    res = arena.course_arena(["sft", "pretrained:1shot"], judges=("oracle", "lik:sft"), n_items=6,
                             n_battles=16, n_boot=5, val_stories=3)
    for judge in ("oracle", "lik:sft"):
        assert len(res["battles"][judge]) == 16 and "| sft |" in res["tables"][judge]
    assert set(res["agreement"]) == {"oracle vs lik:sft", "oracle vs -bits/byte", "lik:sft vs -bits/byte"}
    bias = res["bias"]["lik:sft"]
    assert bias["flip_rate"] == 0            # a scorer judges each answer alone: no position bias
    assert bias["first_slot_one_order"] == bias["first_slot_both_orders"]
    assert float(res["columns"]["sft"]["val bits/byte"]) > 0
    report = arena.course_report(res)
    assert "Kendall" in report and "lik:sft" in report


# ---------------------------------------------------------------------------------
# The command, through minillm.cli.main (registered here if the lead has not yet)
# ---------------------------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch):
    from minillm import cli as cli_module
    from minillm.commands import arena as arena_cmd

    monkeypatch.setitem(cli_module.COMMANDS, "arena", arena_cmd)
    return cli_module


def test_command_writes_battles_leaderboard_and_plot(cli, tmp_path, capsys, standin_ratings):
    out = tmp_path / "a"
    assert cli.main(["arena", "--models", "sft,pretrained:1shot", "--judge", "exact", "--battles", "12",
                     "--items", "5", "--boot", "5", "--out", str(out)]) == 0
    assert len(arena.read_battles(out / "battles.jsonl")) == 12
    assert "| sft |" in (out / "leaderboard.md").read_text() and (out / "leaderboard.png").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["arena", "--rate", str(out / "battles.jsonl"), "--boot", "5"]) == 0
    assert "pretrained:1shot" in capsys.readouterr().out


def one_error(cli, capsys, argv, match):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and match in err[0], err


def test_command_bad_input_is_one_error_line(cli, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_error(cli, capsys, ["arena", "--models", "sft", "--out", str(tmp_path)], "at least two models")
    one_error(cli, capsys, ["arena", "--rate", str(empty)], "holds no battles")
    one_error(cli, capsys, ["arena", "--models", "sft,nosuchmodel", "--out", str(tmp_path)], "no checkpoint at nosuchmodel")
    one_error(cli, capsys, ["arena", "--judge", "gpt-4", "--out", str(tmp_path)], "unknown judge")
    one_error(cli, capsys, ["arena", "--battles", "many", "--out", str(tmp_path)], "--battles must be")
    arena.append_battle(tmp_path / "b.jsonl", dict(model_a="x", model_b="y", verdict="a"))
    one_error(cli, capsys, ["arena", "--rate", str(tmp_path / "b.jsonl"), "--models", "x,z"], "no battles of z")
    one_error(cli, capsys, ["arena", "serve", "--models", "sft", "--port", "0"], "at least two models")

    def broken(path, margin=0.0):
        def judge(item, a, b):
            raise RuntimeError("the judge crashed")
        return judge

    monkeypatch.setattr(am, "model_judge", broken)
    one_error(cli, capsys, ["arena", "--models", "sft,pretrained", "--judge", "ai:sft", "--battles", "2",
                            "--items", "2", "--out", str(tmp_path / "c")], "judge 'ai:sft' failed on the answers")


def test_serve_prints_the_url_answers_and_stops(cli, tmp_path, capsys, monkeypatch):
    import json
    import threading
    import urllib.request

    from minillm.commands import arena as arena_cmd

    seen = {}

    def one_session(server):                 # instead of serving forever: a real request, then stop
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            req = urllib.request.Request(base + "/api/battle", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
            battle = json.load(urllib.request.urlopen(req, timeout=30))
            seen["a"] = urllib.request.urlopen(f"{base}/api/stream/{battle['id']}/a", timeout=30).read().decode()
            seen["host"] = server.server_address[0]
        finally:
            server.shutdown()
            thread.join(timeout=10)

    monkeypatch.setattr(arena_cmd, "wait", one_session)
    assert cli.main(["arena", "serve", "--models", "sft,pretrained", "--port", "0", "--items", "3",
                     "--battles", str(tmp_path / "votes.jsonl")]) == 0
    assert "http://127.0.0.1:" in capsys.readouterr().out
    assert seen["host"] == "127.0.0.1" and isinstance(seen["a"], str)
