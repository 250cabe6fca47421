"""Rollouts and rewards (lesson 11): sampled log-probs vs a fresh forward pass, the context limit, rewards."""

import copy

import pytest
import torch

from minillm import preferences, world, world_tasks as tasks
from minillm import rollout as ro
from minillm.generation import generate_batch
from minillm.instruct import instruction_items, load_shipped
from minillm.utils import MiniLLMError


@pytest.fixture(scope="module")
def sft():
    torch.manual_seed(0)
    model, tok = load_shipped("sft")
    items = instruction_items(world.load_split("val").splitlines()[:3], "seen", seed=1)
    prompts = ro.chat_prompts(items, tok)
    keep = [i for i, p in enumerate(prompts) if len(p) + 6 <= model.config.block_size][:3]
    return model, tok, [items[i] for i in keep], [prompts[i] for i in keep]


def test_completion_batch_by_hand():
    ids, labels = ro.completion_batch([[1, 2], [3]], [[4, 5], [6]], pad_id=0)
    assert ids.tolist() == [[1, 2, 4, 5], [3, 6, 0, 0]]
    assert labels.tolist() == [[-100, 4, 5], [6, -100, -100]]   # position t predicts token t + 1


def test_rollout_logprobs_equal_a_fresh_forward_pass(sft):
    model, tok, _, prompts = sft
    reference = copy.deepcopy(model)
    with torch.no_grad():                      # a different reference: its log-probs must differ
        reference.lm_head.weight.mul_(0.5)
    stop = ro.stop_id(tok)
    r = ro.rollout(model, reference, prompts, 6, stop=stop, group_size=2, seed=3)
    # the completions are lesson 08's generation, same seeds
    plain = generate_batch(model, [p for p in prompts for _ in range(2)], 6, stop_ids=[stop], seed=3)
    assert [[t for t in c if t != stop] for c in r.completions] == plain
    for i, (p, c) in enumerate(zip([p for p in prompts for _ in range(2)], r.completions)):
        for m, got in ((model, r.logp[i]), (reference, r.ref_logp[i])):
            with torch.no_grad():
                logits, _ = m(torch.tensor([p + c]))                  # this row alone, no padding
            want = torch.log_softmax(logits[0].double(), -1)[torch.arange(len(p) - 1, len(p) + len(c) - 1),
                                                                 torch.tensor(c)]
            assert torch.allclose(got[r.mask[i]].double(), want, atol=1e-5)
    assert r.mask.sum().item() == sum(len(c) for c in r.completions)
    assert (r.logp - r.ref_logp)[r.mask].abs().sum() > 0           # the two models differ
    assert all(f == (c[-1] == stop) for f, c in zip(r.finished, r.completions))


def test_rollout_longer_than_the_context_is_one_clear_error(sft):
    model, tok, _, prompts = sft
    with pytest.raises(MiniLLMError, match="longer than the context"):
        ro.rollout(model, model, prompts, model.config.block_size, stop=ro.stop_id(tok))


def test_oracle_rewards():
    s = world.generate(1, seed=0)[0]
    q, a, _ = tasks.question(s, "colour")
    items = [dict(story=s.text, question=q)] * 3
    sentence = preferences.answer_in_style(s.text, q, "sentence")
    assert ro.judge_reward(items, [a, "purple elephants", a.upper()]).tolist() == [1.0, 0.0, 1.0]
    true = ro.utility_reward()(items, [a, sentence, "zzz"])
    assert true.tolist() == [2.0, 2.5, -1.0]
    biased = ro.utility_reward(preferences.LENGTH_BIASED)(items, [a, sentence, "zzz"])
    words = torch.tensor([len(x.split()) for x in (a, sentence, "zzz")], dtype=torch.float32)
    assert torch.allclose(biased - true, 0.15 * words)


def test_a_bad_reward_is_one_clear_error():
    items = [dict(story="", question="")] * 2
    with pytest.raises(MiniLLMError, match="finite"):
        ro.checked_rewards(lambda it, ans: torch.tensor([1.0, float("nan")]), items, ["a", "b"])
    with pytest.raises(MiniLLMError, match="1 scores for 2 answers"):
        ro.checked_rewards(lambda it, ans: torch.tensor([1.0]), items, ["a", "b"])


@pytest.mark.parametrize("mode", ["score", "compare"])
def test_ai_labeler_is_a_probability_and_order_consistent(sft, mode):
    model, tok, items, _ = sft
    lab = ro.AILabeler(model, tok, mode=mode)
    a = [it["answer"] for it in items]
    b = ["seven hundred"] * len(items)
    p, q = lab.p_prefers(items, a, b), lab.p_prefers(items, b, a)
    assert ((p > 0) & (p < 1)).all()
    assert torch.allclose(p + q, torch.ones_like(p), atol=1e-5)   # both orders averaged: no position bias left
    assert lab(items, a).shape == (len(items),)
    pairs = preferences.preference_pairs(6, seed=0, split="prefs-heldout")
    agree = ro.labeler_agreement(lab, pairs)
    assert 0 <= agree["agreement"] <= 1 and agree["n"] <= 6


def test_on_policy_pairs_are_the_models_samples_labelled_by_the_oracle(sft):
    model, tok, _, _ = sft
    items = tasks.qa_pairs(12, 0, "onpolicy-test")
    pairs, skipped = ro.on_policy_pairs(model, tok, items, max_new_tokens=8, seed=4)
    assert len(pairs) + sum(skipped.values()) == len(items) and pairs
    again, _ = ro.on_policy_pairs(model, tok, items, max_new_tokens=8, seed=4)
    assert again == pairs                                        # seeded
    prompts = ro.chat_prompts(items, tok)
    fit = [i for i, p in enumerate(prompts) if len(p) + 8 <= model.config.block_size]
    r = ro.rollout(model, model, [prompts[i] for i in fit], 8, stop=ro.stop_id(tok), group_size=2, seed=4)
    samples = ro.answer_texts(tok, r.completions, ro.stop_id(tok))   # the same draws, made directly
    by_question = {items[i]["question"] + items[i]["story"]: {samples[2 * k], samples[2 * k + 1]}
                   for k, i in enumerate(fit)}
    for p in pairs:
        assert {p["chosen"], p["rejected"]} == by_question[p["question"] + p["story"]]
        assert p["p_chosen"] == pytest.approx(
            preferences.HUMAN.p_prefers(p["story"], p["question"], p["chosen"], p["rejected"]))


def test_on_policy_pairs_follow_a_consistent_labeler(sft):
    model, tok, _, _ = sft
    sharp = preferences.Labeler(tau=1e-3)                        # always picks the higher utility
    pairs, _ = ro.on_policy_pairs(model, tok, tasks.qa_pairs(12, 0, "onpolicy-test"), sharp, max_new_tokens=8, seed=1)
    for p in pairs:
        assert preferences.utility(p["story"], p["question"], p["chosen"]) >= \
            preferences.utility(p["story"], p["question"], p["rejected"])
