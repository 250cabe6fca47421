"""Battles, judges and their biases (lesson 12), on hand-made judges whose biases are known."""

import json
import math
import multiprocessing as mp
import random

import numpy as np
import pytest

from minillm import arena, ratings
from minillm.utils import MiniLLMError

ITEM = {"question": "q"}


def first_slot_judge(item, a, b):
    return "a"


def longer_judge(item, a, b):
    return "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"


def content_judge(item, a, b):   # prefers the answer containing "right"
    ra, rb = "right" in a, "right" in b
    return "a" if ra > rb else "b" if rb > ra else "tie"


def test_position_bias_of_known_judges():
    triples = [(ITEM, "right", "wrong"), (ITEM, "wrong", "right")] * 5
    assert arena.position_bias(first_slot_judge, triples) == 1.0
    assert math.isnan(arena.position_bias(content_judge, triples))   # never changes with the order


def test_judging_both_orders_removes_position_bias():
    assert arena.judge_both_orders(first_slot_judge, ITEM, "x", "y") == "tie"
    assert arena.judge_both_orders(content_judge, ITEM, "right", "wrong") == "a"
    assert arena.judge_both_orders(content_judge, ITEM, "wrong", "right") == "b"


def test_length_bias_of_known_judges():
    triples = [(ITEM, "right", "wrong answer")] * 4
    pad = lambda s: s + " and some more words to make it long"  # noqa: E731
    assert arena.length_bias(content_judge, triples, pad) == 0.0
    assert arena.length_bias(longer_judge, triples, pad) == 1.0


def test_length_controlled_win_rate_recovers_the_equal_length_rate():
    """Simulated: P(win) = sigmoid(0.4 + 1.5 * d / 50); at d = 0 the true rate is sigmoid(0.4) = 0.599."""
    rng = np.random.default_rng(0)
    d = rng.normal(40, 50, 20000)            # our model writes longer answers
    p = 1 / (1 + np.exp(-(0.4 + 1.5 * d / 50)))
    y = (rng.random(len(d)) < p).astype(float)
    raw, lc = arena.length_controlled_win_rate(y, d)
    assert raw > 0.7
    assert lc == pytest.approx(1 / (1 + math.exp(-0.4)), abs=0.02)


def test_battles_file_round_trip_and_damage(tmp_path):
    path = tmp_path / "battles.jsonl"
    assert arena.read_battles(path) == []
    rec = dict(model_a="x", model_b="y", verdict="a", prompt="q")
    arena.append_battle(path, rec)
    arena.append_battle(path, dict(rec, verdict="both_bad"))
    got = arena.read_battles(path)
    assert got == [rec, dict(rec, verdict="both_bad")]
    assert arena.outcomes(got) == [("x", "y", 1.0), ("x", "y", 0.5)]
    with open(path, "a") as f:
        f.write("{not json\n")
    with pytest.raises(MiniLLMError, match="line 3"):
        arena.read_battles(path)
    with pytest.raises(MiniLLMError, match="folder"):
        arena.read_battles(tmp_path)


@pytest.mark.parametrize("record, message", [
    (dict(model_a="x", verdict="a"), "lacks model_b"),
    (dict(model_a="x", model_b="x", verdict="a"), "two different"),
    (dict(model_a="x", model_b="y", verdict="maybe"), "verdict"),
    (["x", "y", "a"], "JSON object"),
])
def test_bad_records_are_refused(tmp_path, record, message):
    with pytest.raises(MiniLLMError, match=message):
        arena.append_battle(tmp_path / "b.jsonl", record)
    assert not (tmp_path / "b.jsonl").exists()


def _writer(path, k):
    for i in range(50):
        arena.append_battle(path, dict(model_a=f"m{k}", model_b="base", verdict="a", prompt="x" * 2000, i=i))


def test_concurrent_writers_lose_and_mix_nothing(tmp_path):
    path = tmp_path / "battles.jsonl"
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    got = arena.read_battles(path)
    assert len(got) == 200
    assert sorted((r["model_a"], r["i"]) for r in got) == sorted((f"m{k}", i) for k in range(4) for i in range(50))


def test_schedule_and_run_battles(standin_ratings):
    sched = arena.pair_schedule(["a", "b", "c"], 300, seed=1)
    counts = {}
    for x, y in sched:
        assert x != y
        counts[frozenset((x, y))] = counts.get(frozenset((x, y)), 0) + 1
    assert set(counts.values()) == {100}
    answers = {"good": "right", "bad": "wrong", "long": "wrong but long"}
    records = arena.run_battles(lambda m, item: answers[m], list(answers), [ITEM], content_judge, 90)
    fit = ratings.fit_bradley_terry(arena.outcomes(records))   # the stand-in ("never lost": tests/test_ratings.py)
    assert max(fit.as_dict(), key=fit.as_dict().get) == "good"
    with pytest.raises(MiniLLMError, match="two different"):
        arena.pair_schedule(["a"], 3)
    with pytest.raises(MiniLLMError, match="returned"):
        arena.run_battles(lambda m, item: "x", ["a", "b"], [ITEM], lambda i, a, b: "A", 2, debias=False)


def test_tinyworld_judges():
    from minillm import preferences, world, world_tasks

    story = world.generate(1, seed=0)[0]
    q, right, _ = world_tasks.question(story, "colour")
    item = dict(story=story.text, question=q)
    wrong = preferences.answer_in_style(story.text, q, "bare", correct=False)
    exact = arena.exact_match_judge()
    assert exact(item, right, wrong) == "a" and exact(item, wrong, right) == "b"
    assert exact(item, right, right) == "tie" and exact(item, wrong, wrong) == "both_bad"
    oracle = arena.oracle_judge(seed=0)
    wins = sum(oracle(item, right, wrong) == "a" for _ in range(400)) / 400
    p = preferences.HUMAN.p_prefers(story.text, q, right, wrong)
    assert wins == pytest.approx(p, abs=0.05)
