"""Lesson 11's side-by-side experiments (`minillm/rlhf_compare.py`): the pieces, a method run in
a fresh process, the tables from hand-made rows. The full runs are the lesson's commands."""

import pytest
import torch

from minillm import preferences as P, rlhf_compare as C, world_tasks as tasks
from minillm.utils import MiniLLMError

TINY = C.CompareConfig(rl_steps=1, rm_steps=1, rm_pairs=20, dpo_steps=1, eval_stories=1, bpb_stories=2)


def test_traced_records_the_true_utility_and_length_of_what_was_rewarded():
    items = tasks.qa_pairs(2, 0, "trace-test")
    right = [it["answer"] for it in items]
    trace = []
    fn = C.traced(lambda its, answers: torch.tensor([3.0, 1.0]), trace)
    assert torch.equal(fn(items, [right[0], "Good question! " + right[1]]), torch.tensor([3.0, 1.0]))
    u = [P.utility(items[0]["story"], items[0]["question"], right[0]),
         P.utility(items[1]["story"], items[1]["question"], "Good question! " + right[1])]
    words = (len(right[0].split()) + 2 + len(right[1].split())) / 2
    assert trace == [dict(learned=2.0, utility=pytest.approx(sum(u) / 2), words=words)]


class Sure:
    """A fake AI labeler: P(first answer better) is fixed."""

    def __init__(self, p):
        self.p = p

    def p_prefers(self, items, a, b):
        return torch.full((len(items),), self.p)


@pytest.mark.parametrize("p, swapped", [(1.0, False), (0.0, True)])
def test_ai_labels_follow_the_labelers_probability(p, swapped):
    pairs = P.preference_pairs(70, seed=1)       # more than one chunk of 64
    out = C.ai_labelled(pairs, Sure(p))
    for x, y in zip(pairs, out):
        assert (y["chosen"], y["rejected"]) == ((x["rejected"], x["chosen"]) if swapped else (x["chosen"], x["rejected"]))
        assert y["p_chosen"] == 1.0


def test_a_method_runs_in_its_own_process_and_an_unknown_one_is_a_clear_error():
    with pytest.raises(MiniLLMError, match="the nope run failed: .*unknown method 'nope'"):
        C.run_isolated("nope", TINY)


def test_the_sft_row_is_the_shipped_model_measured(monkeypatch):
    from minillm import rlhf

    def kl_estimate(logp, ref_logp, estimator="k3"):   # a plain copy: this test needs no lesson-11 exercise
        d = ref_logp - logp
        return -d if estimator == "k1" else torch.exp(d) - 1 - d
    monkeypatch.setattr(rlhf, "kl_estimate", kl_estimate)
    row = C.run_method("SFT", TINY)
    assert row["kl"] == 0.0 and row["models"]["models"] == 1 and row["seconds"] < 60
    assert 0 <= row["accuracy"] <= 1 and row["bits_per_byte"] > 0 and row["peak_rss_mb"] > 0


def row(method, **kw):
    base = dict(method=method, accuracy=0.3, utility=0.6, perceived=0.8, words=1.5, kl=0.1, bits_per_byte=0.9,
                seconds=12.0, models=dict(models=2, param_bytes=4_100_000), peak_rss_mb=700.0)
    return {**base, **kw}


def test_the_tables_are_made_from_the_rows():
    table = C.compare_table(dict(rows=[row("SFT", kl=0.0), row("RLAIF", stopped="KL blow-up")])).splitlines()
    assert table[2] == "| SFT | 0.300 | 0.600 | 0.800 | 1.50 | 0.000 | 0.9000 | 12 | 2 (4.1) | 700 |"
    assert table[3].startswith("| RLAIF (stopped) |")
    trace = [dict(learned=float(i), utility=1.0 - i / 10, words=2.0 + i) for i in range(20)]
    res = dict(start=row("start"), style_seconds=50.0,
               runs=[dict(kl_coef=0.0, trace=trace, stopped=None, seconds=30.0, after=row("after", words=9.0))])
    lines = C.hacking_table(res).splitlines()
    assert lines[3] == ("| 0.0 | 4.50 → 14.50 | 0.55 → -0.45 | 6.50 → 16.50 | 0.300 | 0.600 | 9.00 | 0.100 | 30 |")


@pytest.mark.slow
def test_a_tiny_reward_hacking_run(tmp_path):
    res = C.reward_hacking(C.CompareConfig(**{**TINY.__dict__, "rm_pairs": 80}), kl_coefs=(0.0, 0.5), steps=2, style_steps=2, log=None)
    assert [r["kl_coef"] for r in res["runs"]] == [0.0, 0.5] and all(len(r["trace"]) == 2 for r in res["runs"])
    assert 0.5 <= res["reward_model"]["bayes_accuracy"] <= 1
    C.plot_hacking(res).savefig(tmp_path / "h.png")
