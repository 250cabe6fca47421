"""The RLHF / RLAIF training loop: rollouts, rewards, advantages, one policy update (lesson 11).

What it builds, on `minillm/rlhf.py`'s losses and `minillm/rollout.py`'s rollouts:
- `RLConfig`: the algorithm (GRPO, REINFORCE with a baseline), group size, KL coefficient
  and estimator, clip, whitening, the KL blow-up limit; checked up front (a group of 1 for
  GRPO or a negative KL coefficient is one clear error);
- `rl_train`: the run, through lesson 04's loop `train.fit` (AdamW, schedule, clipping,
  checkpoints with optimizer and step, exact resume, metrics JSONL, progress bar, the
  divergence stop that keeps the last good checkpoint). Each step's micro-batch is a fresh
  rollout of the current policy, seeded by the step (so resume is exact with epochs = 1);
  the reward is checked (a NaN stops the run with the last good checkpoint kept) and the
  mean KL to the reference is watched (`max_kl`: early stop on a blow-up);
- `evaluate_policy`: greedy answers on held-out questions -> judge accuracy, true utility,
  perceived (length-biased) utility, answer length, and KL to the reference on samples.

GRPO (Shao et al. 2024): advantages from groups of G completions of the same prompt, the
clipped surrogate per token, KL(pi || ref) in the loss with the k3 estimator.
REINFORCE: KL (k1, summed over the completion) subtracted from the reward (InstructGPT's
KL in the reward), minus the batch mean as baseline. PPO (InstructGPT's recipe): KL per token
in the reward (`rlhf.kl_penalised_rewards`), a value head on the policy's body
(`PolicyWithValue`), GAE advantages whitened over the batch, the clipped policy loss plus
the clipped value loss. Left out: a separate value model, multi-GPU rollouts.
"""

from __future__ import annotations

import copy
import math
import random
import resource
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from minillm import rlhf
from minillm import rollout as ro
from minillm.sft import entropy, masked_mean, token_logprobs
from minillm.train import TrainConfig, fit
from minillm.utils import MiniLLMError

ALGOS = ("grpo", "reinforce", "ppo")


def _h(text: str) -> dict:
    return {"help": text}


@dataclass
class RLConfig:
    """How to optimise the policy (the model comes from a checkpoint)."""

    algo: str = field(default="grpo", metadata=_h("grpo (group advantages, KL in the loss), reinforce (baseline, KL in "
                                                  "the reward) or ppo (value head, GAE, KL in the reward)"))
    steps: int = field(default=30, metadata=_h("policy updates"))
    prompts: int = field(default=8, metadata=_h("prompts per rollout batch"))
    group_size: int = field(default=4, metadata=_h("completions per prompt (GRPO needs >= 2)"))
    max_new_tokens: int = field(default=10, metadata=_h("longest completion, end token included"))
    temperature: float = field(default=1.0, metadata=_h("sampling temperature of the rollouts"))
    lr: float = field(default=3e-4, metadata=_h("peak learning rate"))
    warmup_steps: int = field(default=3, metadata=_h("linear warmup steps"))
    kl_coef: float = field(default=0.05, metadata=_h("beta: weight of KL(pi || ref) (>= 0)"))
    kl_estimator: str = field(default="k3", metadata=_h("k1 or k3 (GRPO's loss term uses it; REINFORCE's reward uses k1)"))
    clip: float = field(default=0.2, metadata=_h("PPO/GRPO clip epsilon on the probability ratio"))
    epochs: int = field(default=1, metadata=_h("updates per rollout batch (>1: the clip matters)"))
    whiten: bool = field(default=False, metadata=_h("scale advantages to unit variance over the batch (PPO: always)"))
    vf_coef: float = field(default=0.5, metadata=_h("PPO: weight of the value head's loss"))
    lam: float = field(default=0.95, metadata=_h("PPO: GAE lambda (gamma is 1)"))
    aggregation: str = field(default="token", metadata=_h("token (mean over all tokens) or sequence (per sequence, then mean)"))
    max_kl: float = field(default=2.0, metadata=_h("stop when the mean KL per completion exceeds this (nats)"))
    stories: int = field(default=400, metadata=_h("training stories (after the first 2000 that SFT used)"))
    seed: int = field(default=0, metadata=_h("seed of prompts and sampling"))
    device: str = field(default="cpu", metadata=_h("cpu, cuda, mps or auto"))

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise MiniLLMError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.algo == "grpo" and self.group_size < 2:
            raise MiniLLMError(f"GRPO needs a group of at least 2 completions per prompt, got group_size {self.group_size}")
        if not (math.isfinite(self.kl_coef) and self.kl_coef >= 0):
            raise MiniLLMError(f"the KL coefficient must be a finite number >= 0, got {self.kl_coef}")
        if self.kl_estimator not in rlhf.KL_ESTIMATORS or self.aggregation not in rlhf.AGGREGATIONS:
            raise MiniLLMError(f"kl_estimator must be in {rlhf.KL_ESTIMATORS} and aggregation in {rlhf.AGGREGATIONS}")
        for name in ("steps", "prompts", "group_size", "max_new_tokens", "epochs"):
            if getattr(self, name) < 1:
                raise MiniLLMError(f"{name} must be a positive integer, got {getattr(self, name)}")


def advantages(cfg: RLConfig, rewards: torch.Tensor, r: ro.Rollout) -> torch.Tensor:
    """(N,) one advantage per completion (broadcast over its tokens)."""
    if cfg.algo == "grpo":
        adv = rlhf.group_advantages(rewards.view(-1, cfg.group_size))
        adv = adv.flatten()
    else:  # REINFORCE: KL in the reward, the batch mean as baseline
        kl = (rlhf.kl_estimate(r.logp, r.ref_logp, "k1") * r.mask).sum(-1)      # (N,)
        total = rewards - cfg.kl_coef * kl
        adv = total - total.mean()
    if cfg.whiten:
        adv = rlhf.whiten(adv, torch.ones_like(adv))
    return adv


class PolicyWithValue(nn.Module):
    """PPO's policy and value model in one: a linear value head on the policy's final hidden
    state (shared body, as in TRL's value-head models). forward -> (logits, values)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy, self.config = policy, policy.config
        self.value_head = nn.Linear(policy.config.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.policy.hidden_states(idx)                                  # (N, T, C)
        return self.policy.lm_head(h), self.value_head(h).squeeze(-1)       # (N, T, V), (N, T)


def ppo_targets(cfg: RLConfig, value_model: PolicyWithValue, rewards: torch.Tensor, r: ro.Rollout) -> dict:
    """PPO's per-token advantages (whitened) and returns: KL in the reward, then GAE on the value head."""
    with torch.no_grad():
        device = next(value_model.parameters()).device
        _, values = value_model(r.ids[:, :-1].to(device))
    values = values.cpu() * r.mask                                          # (N, L-1)
    per_token = rlhf.kl_penalised_rewards(rewards, r.logp, r.ref_logp, r.mask, cfg.kl_coef, "k1")
    adv, returns = rlhf.gae(per_token, values, r.mask, gamma=1.0, lam=cfg.lam)
    return dict(adv=rlhf.whiten(adv, r.mask), returns=returns, old_values=values)


def rl_loss(cfg: RLConfig, stats: dict):
    """loss_fn(model, batch) for `train.fit`: the clipped surrogate (+ beta KL for GRPO)."""
    def loss_fn(model: nn.Module, b: dict) -> torch.Tensor:
        device = next(model.parameters()).device
        logits, values = model(b["ids"][:, :-1].to(device))                    # (N, L-1, V); PPO: values (N, L-1)
        labels, mask = b["labels"].to(device), b["mask"].to(device)
        logp = token_logprobs(logits, labels)                                   # (N, L-1)
        adv = b["adv"].to(device)
        adv = adv if adv.dim() == 2 else adv[:, None].expand_as(logp)           # per token, or one per completion
        loss, clip_frac = rlhf.ppo_policy_loss(logp, b["old_logp"].to(device), adv, mask, cfg.clip, cfg.aggregation)
        if cfg.algo == "ppo":
            v_loss = rlhf.value_loss(values, b["old_values"].to(device), b["returns"].to(device), mask, cfg.clip)
            loss = loss + cfg.vf_coef * v_loss
            stats["value_loss"] = float(v_loss.detach())
        kl = masked_mean(rlhf.kl_estimate(logp, b["ref_logp"].to(device), cfg.kl_estimator), mask)
        if cfg.algo == "grpo":
            loss = loss + cfg.kl_coef * kl
        with torch.no_grad():
            stats.update(clip_frac=float(clip_frac), kl_token=float(kl),
                         entropy=float(masked_mean(entropy(logits), mask)))
        return loss
    return loss_fn


def rl_batches(policy: nn.Module, reference: nn.Module, tokenizer, items: list[dict], reward: ro.RewardFn,
               cfg: RLConfig, stats: dict, value_model: "PolicyWithValue | None" = None):
    """batches(step) -> [one rollout micro-batch], fresh every `epochs` steps, seeded by the step.
    Prompts without room for `max_new_tokens` in the context are left out."""
    stop, T = ro.stop_id(tokenizer), policy.config.block_size
    fits = [(it, p) for it, p in zip(items, ro.chat_prompts(items, tokenizer)) if len(p) + cfg.max_new_tokens <= T]
    if not fits:
        raise MiniLLMError(f"no prompt leaves room for {cfg.max_new_tokens} new tokens in the context of {T}")
    items, prompts = [it for it, _ in fits], [p for _, p in fits]
    cache: dict = {}

    def batches(step: int) -> list[dict]:
        k = step // cfg.epochs
        if cache.get("k") != k:
            rng = random.Random(f"rl-prompts/{cfg.seed}/{k}")
            pick = rng.sample(range(len(items)), min(cfg.prompts, len(items)))
            r = ro.rollout(policy, reference, [prompts[i] for i in pick], cfg.max_new_tokens, stop=stop,
                           group_size=cfg.group_size, temperature=cfg.temperature, seed=cfg.seed * 1_000_003 + k)
            rows = [items[i] for i in pick for _ in range(cfg.group_size)]
            answers = ro.answer_texts(tokenizer, r.completions, stop)
            try:
                rewards = ro.checked_rewards(reward, rows, answers)
            except MiniLLMError as e:
                raise MiniLLMError(f"step {step}: {e}; the run stops, the last good checkpoint is kept") from None
            kl_seq = float(r.kl("k3").sum(-1).mean())
            if kl_seq > cfg.max_kl:
                raise KLBlowUp(f"step {step}: the mean KL to the reference is {kl_seq:.3f} nats per completion, over "
                               f"max_kl {cfg.max_kl}: stopped early (lower lr or raise kl_coef); last good checkpoint kept")
            stats.update(reward=float(rewards.mean()), reward_std=float(rewards.std()), kl_seq=kl_seq,
                         length=float(r.lengths().float().mean()), finished=sum(r.finished) / len(r.finished))
            batch = dict(ids=r.ids, labels=r.labels, mask=r.mask, old_logp=r.logp, ref_logp=r.ref_logp)
            if cfg.algo == "ppo":
                batch.update(ppo_targets(cfg, value_model, rewards, r))
            else:
                batch["adv"] = advantages(cfg, rewards, r)
            cache.update(k=k, batch=batch)
        return [cache["batch"]]
    return batches


class KLBlowUp(MiniLLMError):
    """The policy ran too far from the reference: the run stops early."""


def models_held(*models: nn.Module | None) -> dict:
    """How many distinct models a run keeps in memory and their parameter bytes (the 'three models' cost)."""
    held = list({id(m): m for m in models if isinstance(m, nn.Module)}.values())
    return dict(models=len(held), param_bytes=sum(p.numel() * p.element_size() for m in held for p in m.parameters()))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rl_train(policy: nn.Module, tokenizer, items: list[dict], reward: ro.RewardFn, cfg: RLConfig, *,
             reference: nn.Module | None = None, out_dir=None, resume=False, checkpoint_every: int = 0,
             progress: bool = False, log=print) -> dict:
    """Optimise `policy` (in place) against `reward` on the prompts of `items`.

    -> {model, history (one record of rollout statistics per step), seconds, steps, stopped
    (None, or why the KL early stop fired: `policy` then holds the weights that overshot, the
    run folder the last good checkpoint), checkpoint, reference}. A bad reward raises."""
    if not any(p.requires_grad for p in policy.parameters()):
        raise MiniLLMError("the policy has no trainable parameter (is it a frozen reference, or a copy of one?)")
    reference = reference if reference is not None else copy.deepcopy(policy)
    if reference is policy:
        raise MiniLLMError("the reference must be a separate copy of the policy (rl_train freezes it)")
    reference.eval().requires_grad_(False)
    stats, trace = {}, []

    def record(_model: nn.Module) -> dict:   # fit's per-step "evaluation": this step's rollout statistics
        trace.append(dict(stats))
        return dict(stats)
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.prompts * cfg.group_size, lr=cfg.lr,
                       warmup_steps=min(cfg.warmup_steps, cfg.steps), weight_decay=0.0, eval_every=1, log_every=1,
                       checkpoint_every=checkpoint_every, seed=cfg.seed, device=cfg.device)
    live = (lambda s: log(s if not s.startswith("step") else s + f" | reward {stats.get('reward', float('nan')):.3f} | KL {stats.get('kl_seq', 0):.3f}"
                          f" | clip {stats.get('clip_frac', 0):.2f}")) if log else None
    t, stopped = time.time(), None
    net = PolicyWithValue(policy) if cfg.algo == "ppo" else policy   # PPO trains the value head alongside
    try:
        res = fit(net, tcfg, rl_batches(policy, reference, tokenizer, items, reward, cfg, stats,
                                        net if cfg.algo == "ppo" else None),
                  rl_loss(cfg, stats), evaluate=record, out_dir=out_dir, resume=resume,
                  run_files={"tokenizer.json": tokenizer}, progress=progress, log=live)
        steps, ckpt = res.step, res.checkpoint
    except KLBlowUp as e:
        stopped, steps, ckpt = str(e), len(trace), None
        if log:
            log(str(e))
    return dict(model=policy.eval(), value_model=net if net is not policy else None, history=trace, seconds=time.time() - t, steps=steps, stopped=stopped,
                checkpoint=ckpt, reference=reference)


@torch.no_grad()
def evaluate_policy(model: nn.Module, tokenizer, items: list[dict], reference: nn.Module | None = None,
                    max_new_tokens: int = 10, samples: int = 2, seed: int = 0, bpb_text: str | None = None) -> dict:
    """Greedy answers on `items` -> judge accuracy, true utility, length-biased perceived utility,
    answer words; with `reference`: the mean KL(pi || ref) per completion on `samples` samples per
    prompt; with `bpb_text`: the model's bits/byte on it (forgetting)."""
    from minillm.preferences import LENGTH_BIASED   # (the oracle, only for measuring)
    stop = ro.stop_id(tokenizer)
    prompts = ro.chat_prompts(items, tokenizer)
    keep = [i for i, p in enumerate(prompts) if len(p) + max_new_tokens <= model.config.block_size]
    items, prompts = [items[i] for i in keep], [prompts[i] for i in keep]
    r = ro.rollout(model, reference if reference is not None else model, prompts, max_new_tokens, stop=stop,
                   temperature=0.0)
    answers = ro.answer_texts(tokenizer, r.completions, stop)
    out = dict(n=len(items), accuracy=float(ro.judge_reward(items, answers).mean()),
               utility=float(ro.utility_reward()(items, answers).mean()),
               perceived=float(ro.utility_reward(LENGTH_BIASED)(items, answers).mean()),
               words=sum(len(a.split()) for a in answers) / len(answers), answers=answers)
    if reference is not None:
        s = ro.rollout(model, reference, prompts, max_new_tokens, stop=stop, group_size=samples, seed=seed)
        out["kl"] = float(s.kl("k1").sum(-1).mean())
    if bpb_text is not None:
        from minillm.evaluate import score_text    # (deferred: only measurements of forgetting need it)
        out["bits_per_byte"] = score_text(model, tokenizer, bpb_text).bits_per_byte
    return out


REWARDS = ("oracle", "utility", "length", "ai", "rm:PATH")


def make_reward(spec: str, reference: nn.Module, tokenizer) -> ro.RewardFn:
    """A reward by name: oracle (judge correctness, 0/1), utility (the oracle's true utility),
    length (the length-biased labeler's perceived utility), ai (the SFT model as labeler,
    `rollout.AILabeler`), rm:PATH (lesson 10's reward model saved in PATH)."""
    from minillm.preferences import LENGTH_BIASED
    if spec.startswith("rm:"):
        return rm_reward(spec[3:])
    named = {"oracle": lambda: ro.judge_reward, "utility": ro.utility_reward,
             "length": lambda: ro.utility_reward(LENGTH_BIASED), "ai": lambda: ro.AILabeler(reference, tokenizer)}
    if spec not in named:
        raise MiniLLMError(f"reward must be one of {REWARDS}, got {spec!r}")
    return named[spec]()


def rm_reward(path: str) -> ro.RewardFn:
    """Lesson 10's learned reward model saved in `path` as reward(items, answers) (its own tokenizer)."""
    from minillm import reward as rm_lib    # (deferred: only rm:PATH runs need lesson 10's module)
    from minillm.tokenizer import Tokenizer
    return model_reward(rm_lib.load_reward_model(path), Tokenizer.load(f"{path}/tokenizer.json"))


def model_reward(rm: nn.Module, tok) -> ro.RewardFn:
    """A reward model as reward(items, answers). An empty answer has no tokens to score: it gets
    the lowest score of the batch's other answers (never better than saying something)."""
    from minillm import reward as rm_lib    # (deferred: only learned rewards need lesson 10's module)

    def reward(items: list[dict], answers: list[str]) -> torch.Tensor:
        said = [i for i, a in enumerate(answers) if a.strip()]
        pairs = [dict(items[i], chosen=answers[i], rejected=answers[i]) for i in said]
        out = torch.zeros(len(answers))
        if not said:
            return out
        with torch.no_grad():
            r, _, keep = rm_lib.score_pairs(rm, tok, pairs)
        if len(keep) != len(said):
            raise MiniLLMError(f"{len(said) - len(keep)} answers do not fit the reward model's context")
        out[:] = float(r.min())
        out[torch.tensor(said)] = r.float()
        return out
    reward.model = rm   # counted among the models held
    return reward


def experiment(reward_name: str = "oracle", cfg: RLConfig | None = None, eval_stories: int = 20,
               bpb_stories: int = 100, log=print) -> dict:
    """The lesson's run: the shipped SFT model, RL against a reward, measured before and after
    on held-out (validation) questions -> {before, after, cfg, seconds, peak_rss_mb, models, history}.

    reward_name: "oracle" (judge correctness), "utility" (true utility), "length" (the
    length-biased labeler's perceived utility: the reward to hack), "ai" (the SFT model's score)."""
    from minillm import world                     # (deferred: only the experiment reads the data)
    from minillm.instruct import instruction_items, load_shipped
    cfg = cfg or RLConfig()
    policy, tok = load_shipped("sft")
    reference = copy.deepcopy(policy).eval()
    reward = make_reward(reward_name, reference, tok)
    train = instruction_items(world.load_split("train").splitlines()[2000:2000 + cfg.stories], "seen", seed=2)
    held = instruction_items(world.load_split("val").splitlines()[:eval_stories], "seen", seed=1)
    text = "".join(s + "\n" for s in world.load_split("val").splitlines()[:bpb_stories])

    def measure(m: nn.Module) -> dict:
        return evaluate_policy(m, tok, held, reference, cfg.max_new_tokens, bpb_text=text)
    before = measure(policy)
    res = rl_train(policy, tok, train, reward, cfg, reference=reference, log=log)
    after = measure(policy)
    value = res["value_model"].value_head if res["value_model"] is not None else None   # PPO: a head on the body
    held_models = models_held(policy, reference, getattr(reward, "model", None), value)
    return dict(before=before, after=after, cfg=cfg, seconds=res["seconds"], stopped=res["stopped"],
                peak_rss_mb=peak_rss_mb(), models=held_models, history=res["history"], reward=reward_name)


def experiment_table(runs: list[dict]) -> str:
    """Rows of `experiment` results as a markdown table (SFT first, from the first run's 'before')."""
    head = ("| model | reward | steps | wall time (s) | judge accuracy | true utility | perceived (length-biased) | "
            "answer words | KL to SFT | bits/byte | models held | peak RSS (MB) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]

    def row(name, reward, steps, secs, m, held, rss):
        return (f"| {name} | {reward} | {steps} | {secs} | {m['accuracy']:.3f} | {m['utility']:.3f} | "
                f"{m['perceived']:.3f} | {m['words']:.2f} | {m.get('kl', 0):.3f} | {m['bits_per_byte']:.4f} | {held} | {rss} |")
    b = runs[0]["before"]
    lines.append(row("SFT (shipped)", "-", 0, "-", b, 1, "-"))
    for r in runs:
        c = r["cfg"]
        name = f"{c.algo.upper()} G={c.group_size} beta={c.kl_coef}" + (" (stopped)" if r["stopped"] else "")
        lines.append(row(name, r["reward"], len(r["history"]), f"{r['seconds']:.0f}", r["after"],
                         r["models"]["models"], f"{r['peak_rss_mb']:.0f}"))
    return "\n".join(lines)
