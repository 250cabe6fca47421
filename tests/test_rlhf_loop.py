"""The RLHF loop (lesson 11): bad settings, the NaN-reward stop that keeps the last good checkpoint,
exact resume, the KL early stop, the metrics log, and a GRPO step that favours the rewarded answers."""

import copy
import json

import pytest
import torch

from minillm import rlhf, rlhf_loop as L
from minillm import rollout as ro
from minillm import world
from minillm.instruct import instruction_items, load_shipped
from minillm.utils import MiniLLMError

@pytest.fixture(autouse=True)
def reference_pieces(monkeypatch):
    """The loop's tests need none of lesson 11's exercises: rlhf's exercise functions are
    replaced by these plain copies (a stubbed exercise then fails only its own tests)."""
    def kl_estimate(logp, ref_logp, estimator="k3"):
        d = ref_logp - logp
        return -d if estimator == "k1" else torch.exp(d) - 1 - d

    def group_advantages(rewards, normalise=True, unbiased=False, eps=1e-4):
        c = rewards - rewards.mean(1, keepdim=True)
        return c / (rewards.std(1, keepdim=True, correction=int(unbiased)) + eps) if normalise else c

    def ppo_policy_loss(logp, old_logp, adv, mask, clip=0.2, aggregation="token"):
        ratio, m = torch.exp(logp - old_logp), mask.to(logp.dtype)
        per = -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
        loss = (per * m).sum() / m.sum().clamp_min(1) if aggregation == "token" else \
            ((per * m).sum(-1) / m.sum(-1).clamp_min(1)).mean()
        return loss, (((ratio - 1).abs() > clip) * m).sum() / m.sum().clamp_min(1)
    def gae(rewards, values, mask, gamma=1.0, lam=0.95):
        m, adv = mask.to(values.dtype), torch.zeros_like(values)
        next_v, next_a = torch.zeros(values.shape[0]), torch.zeros(values.shape[0])
        for t in reversed(range(values.shape[1])):
            a = (rewards[:, t] + gamma * next_v - values[:, t] + gamma * lam * next_a) * m[:, t]
            adv[:, t] = a
            next_v, next_a = torch.where(m[:, t] > 0, values[:, t], next_v), torch.where(m[:, t] > 0, a, next_a)
        return adv, (adv + values) * m
    for name, fn in [("kl_estimate", kl_estimate), ("group_advantages", group_advantages),
                     ("ppo_policy_loss", ppo_policy_loss), ("gae", gae)]:
        monkeypatch.setattr(rlhf, name, fn)


SMALL = dict(steps=2, prompts=2, group_size=2, max_new_tokens=4, warmup_steps=0, lr=1e-3)


@pytest.fixture(scope="module")
def sft():
    model, tok = load_shipped("sft")
    items = instruction_items(world.load_split("train").splitlines()[2000:2004], "seen", seed=2)
    return model, tok, items


def first_word_reward(items, answers):   # a cheap reward the tests can reason about
    return torch.tensor([float(a.split()[:1] == ["two"]) for a in answers])


@pytest.mark.parametrize("kw, message", [
    (dict(algo="grpo", group_size=1), "GRPO needs a group of at least 2"),
    (dict(kl_coef=-0.1), "KL coefficient must be a finite number >= 0"),
    (dict(algo="dqn"), "algo must be one of"),
])
def test_bad_settings_are_one_clear_error(kw, message):
    with pytest.raises(MiniLLMError, match=message):
        L.RLConfig(**kw)


def test_a_nan_reward_stops_the_run_and_keeps_the_last_good_checkpoint(sft, tmp_path):
    model, tok, items = sft
    calls = []

    def flaky(it, answers):
        calls.append(1)
        return torch.full((len(answers),), float("nan") if len(calls) == 3 else 1.0)
    with pytest.raises(MiniLLMError, match=r"step 2: a reward is nan.*last good checkpoint is kept"):
        L.rl_train(copy.deepcopy(model), tok, items, flaky, L.RLConfig(**dict(SMALL, steps=4)),
                   out_dir=tmp_path, checkpoint_every=1, log=None)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert ckpt["step"] == 1 and "optimizer" in ckpt      # the pending step-2 weights never gave a step


def test_resume_is_exact_and_metrics_are_logged(sft, tmp_path):
    model, tok, items = sft
    cfg = L.RLConfig(**dict(SMALL, steps=3))
    straight = L.rl_train(copy.deepcopy(model), tok, items, first_word_reward, cfg, out_dir=tmp_path / "a", log=None)
    part = L.RLConfig(**dict(SMALL, steps=3))
    first = copy.deepcopy(model)
    # stop after 2 steps (a checkpoint), then resume in a fresh process-like state
    L.rl_train(first, tok, items, first_word_reward, L.RLConfig(**dict(SMALL, steps=2)), out_dir=tmp_path / "c", log=None)
    fresh = copy.deepcopy(model)
    resumed = L.rl_train(fresh, tok, items, first_word_reward, part, out_dir=tmp_path / "c", resume=True, log=None)
    for a, b in zip(straight["model"].parameters(), resumed["model"].parameters()):
        assert torch.equal(a, b)
    recs = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "reward" in r]
    assert len(recs) == 3 and all({"reward", "kl_seq", "clip_frac", "entropy", "length"} <= r.keys() for r in recs)
    assert recs[0]["kl_seq"] == 0.0        # step 0 samples the reference itself


def test_kl_blow_up_stops_early(sft):
    model, tok, items = sft
    cfg = L.RLConfig(**dict(SMALL, steps=4, lr=0.05, max_kl=1e-6))
    length = lambda it, answers: torch.tensor([float(len(a)) for a in answers])   # noqa: E731 (rewards differ)
    res = L.rl_train(copy.deepcopy(model), tok, items, length, cfg, log=None)
    assert res["stopped"] is not None and "KL" in res["stopped"] and res["steps"] < 4


def test_models_held():
    a, b = torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)
    assert L.models_held(a, b, None) == dict(models=2, param_bytes=(9 + 4) * 4)


@pytest.mark.parametrize("algo", ["grpo", "reinforce"])
def test_one_update_raises_the_logprob_of_rewarded_completions(sft, algo):
    model, tok, items = sft
    policy, reference = copy.deepcopy(model), copy.deepcopy(model)
    cfg = L.RLConfig(**dict(SMALL, algo=algo, group_size=4, prompts=4, max_new_tokens=4, temperature=1.5))
    stats: dict = {}
    batch = L.rl_batches(policy, reference, tok, items, ro.judge_reward, cfg, stats)(0)[0]
    if (batch["adv"] == 0).all():
        pytest.skip("every completion got the same reward in this draw")
    opt = torch.optim.SGD(policy.parameters(), lr=0.05)
    L.rl_loss(cfg, stats)(policy, batch).backward()
    opt.step()
    with torch.no_grad():
        new = ro.completion_logprobs(policy, batch["ids"], batch["labels"]).sum(-1)
    gain = new - batch["old_logp"].sum(-1)
    assert (gain * batch["adv"]).sum() > 0        # up where the advantage is positive, down where negative


def test_the_command_runs_and_resumes(tmp_path, capsys):
    import argparse

    from minillm.commands import rlhf as command
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    flags = ["--steps", "1", "--prompts", "2", "--group-size", "2", "--max-new-tokens", "4", "--stories", "2",
             "--eval-stories", "1", "--out", str(tmp_path), "--checkpoint-every", "1"]
    assert command.run(parser.parse_args(flags)) == 0
    assert command.run(parser.parse_args([*flags[:1], "2", *flags[2:], "--resume", "--eval-stories", "0"])) == 0
    out = capsys.readouterr().out
    assert "before: judge accuracy" in out and "models held 2" in out
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 2
    with pytest.raises(MiniLLMError, match="reward must be one of"):
        command.run(parser.parse_args(flags + ["--reward", "nope"]))


def test_ppo_runs_and_its_value_head_learns_the_returns(sft):
    model, tok, items = sft
    cfg = L.RLConfig(**dict(SMALL, algo="ppo", steps=2))
    res = L.rl_train(copy.deepcopy(model), tok, items, ro.judge_reward, cfg, log=None)
    assert all("value_loss" in h for h in res["history"]) and res["value_model"] is not None
    net = L.PolicyWithValue(copy.deepcopy(model))
    batch = L.rl_batches(net.policy, copy.deepcopy(model), tok, items, lambda it, a: torch.arange(len(a)) / 4.0,
                         cfg, {}, net)(0)[0]
    assert batch["adv"].shape == batch["mask"].shape and (batch["adv"][~batch["mask"]] == 0).all()
    opt = torch.optim.Adam(net.value_head.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        _, v = net(batch["ids"][:, :-1])
        loss = rlhf.value_loss(v, batch["old_values"], batch["returns"], batch["mask"], clip=None)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_a_learned_reward_model_plugs_in_as_rm_path(sft, tmp_path):
    rm_lib = pytest.importorskip("minillm.reward")     # lesson 10's module
    model, tok, items = sft
    rm = rm_lib.RewardModel(copy.deepcopy(model))
    with torch.no_grad():
        rm.head.bias.fill_(0.25)                      # a known score: the zero-initialised head plus this bias
    rm_lib.save_reward_model(tmp_path, rm, tok)
    reward = L.make_reward(f"rm:{tmp_path}", model, tok)
    short = [it for it, p in zip(items, ro.chat_prompts(items, tok)) if len(p) + 8 <= model.config.block_size][:3]
    r = reward(short, ["four", "near the lake", "a hen"][:len(short)])
    assert len(short) == 3 and torch.allclose(r, torch.full((3,), 0.25)) and L.models_held(model, reward.model)["models"] == 2


def test_a_reward_model_scores_an_empty_answer_as_its_batchs_worst(sft):
    rm_lib = pytest.importorskip("minillm.reward")
    model, tok, items = sft
    torch.manual_seed(0)
    rm = rm_lib.RewardModel(copy.deepcopy(model))
    torch.nn.init.normal_(rm.head.weight, std=0.5)            # scores that differ between answers
    reward = L.model_reward(rm, tok)
    short = [it for it, p in zip(items, ro.chat_prompts(items, tok)) if len(p) + 8 <= model.config.block_size][:3]
    said = reward(short, ["four", "near the lake", "a hen"])
    mixed = reward(short, ["four", "", "a hen"])
    assert said[0] != said[2] and mixed[0] == said[0] and mixed[2] == said[2]   # each answer scored alone
    assert mixed[1] == min(said[0], said[2])
    assert torch.equal(reward(short[:1], [""]), torch.zeros(1))


def test_a_frozen_policy_or_the_policy_as_its_own_reference_is_one_clear_error(sft):
    model, tok, items = sft
    frozen = copy.deepcopy(model).requires_grad_(False)    # e.g. a copy of a reference rl_train froze
    with pytest.raises(MiniLLMError, match="no trainable parameter"):
        L.rl_train(frozen, tok, items, first_word_reward, L.RLConfig(**SMALL), log=None)
    policy = copy.deepcopy(model)
    with pytest.raises(MiniLLMError, match="separate copy"):
        L.rl_train(policy, tok, items, first_word_reward, L.RLConfig(**SMALL), reference=policy, log=None)
