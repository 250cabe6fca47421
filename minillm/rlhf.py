"""The pieces of RLHF: KL estimators, advantages, and the policy-gradient losses (lesson 11).

A policy pi samples a completion y for a prompt x; a reward r(x, y) scores it; the
policy is pushed towards high reward while a KL penalty keeps it near the reference
(SFT) policy. Each piece is a small function over tensors, tested alone:

- KL per token from samples of pi (Schulman 2020, *Approximating KL divergence*):
  k1 = log pi - log ref (unbiased, can be negative, high variance) and
  k3 = (ref / pi) - 1 - log(ref / pi) (unbiased, never negative, low variance).
- `kl_penalised_rewards`: InstructGPT's per-token reward, -kl_coef * KL at every token and
  the reward model's score added at the last one (KL in the reward).
- `gae`: generalised advantage estimation (Schulman et al. 2016) from per-token rewards
  and a value head's estimates.
- `group_advantages`: GRPO's group-relative advantages (Shao et al. 2024, DeepSeekMath):
  each completion's reward minus its group's mean, optionally over the group's std.
- `reinforce_loss`: the policy gradient with a baseline (Williams 1992), the clearest form.
- `ppo_policy_loss`: PPO's clipped surrogate (Schulman et al. 2017), aggregated per token
  over the batch or per sequence then averaged — public implementations differ here.
- `value_loss`: the value head's (optionally clipped) squared error.

Left out here: the rollout loop and the training run (they reuse lesson 08's batched
generation and lesson 04's `train_step`).
"""

from __future__ import annotations

import torch

from minillm.sft import masked_mean
from minillm.utils import MiniLLMError

KL_ESTIMATORS = ("k1", "k3")
AGGREGATIONS = ("token", "sequence")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from log-probs of tokens SAMPLED FROM pi.

    >>> kl_estimate(torch.tensor([-1.0]), torch.tensor([-1.0])).item()   # same policy: 0
    0.0
    """
    if estimator not in KL_ESTIMATORS:
        raise MiniLLMError(f"unknown KL estimator {estimator!r}; choose from {KL_ESTIMATORS}")
    ### BEGIN SOLUTION name=rlhf.kl_estimators points=2
    ### HINT: with ratio = ref / pi at the sampled token, E_pi[ratio] = 1. k1 is the plain log-ratio; k3 adds the zero-mean term (ratio - 1) to make every sample non-negative.
    log_ratio = ref_logp - logp                              # log(ref / pi)
    if estimator == "k1":
        return -log_ratio
    return torch.expm1(log_ratio) - log_ratio                # k3
    ### END SOLUTION


def kl_penalised_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float, estimator: str = "k1") -> torch.Tensor:
    """Per-token rewards (B, T): -kl_coef * KL at each completion token, plus the sequence's
    score (B,) at its last completion token. Zero outside the mask."""
    if kl_coef < 0:
        raise MiniLLMError(f"the KL coefficient must be >= 0, got {kl_coef}")
    check_finite(score, "reward")
    mask = mask.to(logp.dtype)
    rewards = -kl_coef * kl_estimate(logp, ref_logp, estimator) * mask
    last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & (mask > 0)   # (B, T) the last true position
    return rewards + last.to(logp.dtype) * score[:, None]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), each (B, T), from per-token rewards and values (B, T).

    delta_t = r_t + gamma V_{t+1} - V_t (V = 0 after the last masked-in token) and
    A_t = delta_t + gamma lam A_{t+1}; returns = A + V. Computed backwards over time.
    """
    ### BEGIN SOLUTION name=rlhf.gae points=3
    ### HINT: walk backwards from the last token; a position outside the mask contributes no reward and no future value.
    mask = mask.to(values.dtype)
    B, T = rewards.shape
    advantages = torch.zeros_like(values)
    next_value = torch.zeros(B, dtype=values.dtype, device=values.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = adv
        next_value = torch.where(mask[:, t] > 0, values[:, t], next_value)
        next_adv = torch.where(mask[:, t] > 0, adv, next_adv)
    ### END SOLUTION
    return advantages, (advantages + values) * mask


def group_advantages(rewards: torch.Tensor, normalise: bool = True, unbiased: bool = False,
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO: rewards (n_groups, group_size) of completions of the same prompt -> advantages.

    (r - group mean), divided by (group std + eps) when `normalise` (biased std by default,
    as in the DeepSeekMath paper; `unbiased` for n - 1).
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise MiniLLMError(f"GRPO needs groups of at least 2 completions per prompt, got shape {tuple(rewards.shape)}")
    check_finite(rewards, "reward")
    ### BEGIN SOLUTION name=rlhf.group_advantages points=2
    ### HINT: compare each completion with the others for the same prompt, not with the whole batch.
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalise:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, correction=1 if unbiased else 0) + eps)
    ### END SOLUTION


def reinforce_loss(seq_logp: torch.Tensor, rewards: torch.Tensor, baseline: float | torch.Tensor = 0.0) -> torch.Tensor:
    """-(r - b) log pi(y), averaged over the batch: its gradient is the policy gradient."""
    check_finite(rewards, "reward")
    return -((rewards - baseline).detach() * seq_logp).mean()


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2, aggregation: str = "token") -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, negated to minimise: (loss, fraction of tokens clipped).

    ratio = exp(logp - old_logp); per token -min(ratio A, clip(ratio, 1 - clip, 1 + clip) A).
    aggregation 'token': mean over every completion token of the batch; 'sequence': mean
    per sequence, then over sequences (shorter answers weigh more per token).
    """
    if aggregation not in AGGREGATIONS:
        raise MiniLLMError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    ### BEGIN SOLUTION name=rlhf.ppo_clip points=3
    ### HINT: the clip takes away the incentive to move the ratio beyond 1 +- clip in the direction the advantage favours; take the pessimistic (smaller) of the two objectives.
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    ### END SOLUTION
    mask = mask.to(logp.dtype)
    if aggregation == "token":
        loss = masked_mean(per_token, mask)
    else:
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1)
        loss = per_seq.mean()
    clip_frac = masked_mean(((ratio - 1).abs() > clip).to(logp.dtype), mask)
    return loss, clip_frac.detach()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None = 0.2) -> torch.Tensor:
    """Half the squared error of the value head, the larger of clipped and unclipped (PPO)."""
    err = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        err = torch.maximum(err, (clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale x to unit variance over the masked entries (and zero mean when `shift_mean`)."""
    m = mask.to(x.dtype)
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    out = (x - mean) / torch.sqrt(var + eps)
    return (out if shift_mean else out + mean) * m


def check_finite(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        bad = x[~torch.isfinite(x)][0].item()
        raise MiniLLMError(f"a {what} is {bad}: rewards must be finite numbers (check the reward function)")


def exact_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """KL(p || q) of two categorical distributions given by logits, summed exactly."""
    lp, lq = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    return float((lp.exp() * (lp - lq)).sum())

