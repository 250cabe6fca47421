"""Rollouts and rewards for RLHF (lesson 11): sample completions, score them, log-prob them.

What it builds:
- `rollout`: G completions per chat prompt sampled from the policy by lesson 08's batched
  generation (`generation.generate_rows`: left padding, KV cache), stopped at the chat
  template's end token (kept in the completion: stopping is an action the policy learns),
  then the per-token log-probs of the sampled tokens under the policy and the frozen
  reference, ONE forward pass each (`completion_logprobs` over right-padded rows and a
  completion mask, `sft.token_logprobs`), and the KL per token (`rlhf.kl_estimate`);
- rewards, any callable `reward(items, answers) -> (N,) tensor` with the score given at the
  END of each completion: the oracle as a verifiable reward (`judge_reward`: correct or not;
  `utility_reward`: `preferences.utility` or a labeler's perceived utility, e.g. the
  length-biased one to hack) and an AI labeler for RLAIF (`AILabeler`: the SFT model asked
  which of two answers is right, or scoring one by its own likelihood), with
  `labeler_agreement` against the oracle on held-out pairs;
- `on_policy_pairs`: preference data from the model itself — two sampled answers per
  question, labelled by the simulated labeler (lesson 10's on-policy pairs).

Left out: the optimisation loop (`minillm/rlhf_loop.py`), learned reward models (lesson
10's `minillm/reward.py` plugs in as a callable).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from minillm import preferences, rlhf, world_tasks as tasks
from minillm.generation import generate_rows
from minillm.instruct import qa_conversation
from minillm.sft import IGNORE, ChatTemplate, check_template, render_chat, token_logprobs
from minillm.utils import MiniLLMError

RewardFn = Callable[[list[dict], list[str]], torch.Tensor]


@dataclass
class Rollout:
    """N = prompts x group_size sampled completions, row r from prompt r // group_size."""

    ids: torch.Tensor         # (N, L) prompt + completion, right-padded with pad_id
    labels: torch.Tensor      # (N, L-1) the next token where it is a completion token, else -100
    mask: torch.Tensor        # (N, L-1) True on completion tokens (labels != -100)
    logp: torch.Tensor        # (N, L-1) log pi(token) at sampling time (0 off the mask)
    ref_logp: torch.Tensor    # (N, L-1) log pi_ref(token)
    completions: list[list[int]]  # each row's new tokens, the end token included when hit
    finished: list[bool]      # whether the row stopped at the end token (not at max_new_tokens)
    group_size: int

    def kl(self, estimator: str = "k3") -> torch.Tensor:
        """Per-token KL(pi || ref) estimates (N, L-1), 0 off the mask."""
        return rlhf.kl_estimate(self.logp, self.ref_logp, estimator) * self.mask

    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)   # (N,) completion tokens per row


def chat_prompts(items: list[dict], tokenizer, template: ChatTemplate = ChatTemplate()) -> list[list[int]]:
    """QA items -> chat prompt ids ending with the open assistant turn (`sft.render_chat`)."""
    return [render_chat(qa_conversation(it, with_answer=False), tokenizer, template, add_generation_prompt=True)[0]
            for it in items]


def stop_id(tokenizer, template: ChatTemplate = ChatTemplate()) -> int:
    return check_template(tokenizer, template)[template.end]


def completion_batch(prompts: list[list[int]], completions: list[list[int]],
                     pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, L), labels (N, L-1)): rows prompt + completion, right-padded; labels keep only
    the completion's tokens (a causal model never looks right, so right padding is harmless)."""
    rows = [p + c for p, c in zip(prompts, completions)]
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), L - 1), IGNORE, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        if c:
            labels[i, len(p) - 1:len(p) - 1 + len(c)] = torch.tensor(c)   # position t predicts token t + 1
    return ids, labels


def completion_logprobs(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs (N, L-1) of `labels` from ONE forward pass over ids[:, :-1] (with grad)."""
    device = next(model.parameters()).device
    logits, _ = model(ids[:, :-1].to(device))                     # (N, L-1, V)
    return token_logprobs(logits, labels.to(device))


def rollout(policy: nn.Module, reference: nn.Module, prompts: list[list[int]], max_new_tokens: int, *,
            stop: int, group_size: int = 1, temperature: float = 1.0, top_k: int | None = None,
            seed: int | None = None, pad_id: int = 0) -> Rollout:
    """Sample `group_size` completions of every prompt, log-prob them under policy and reference."""
    T = policy.config.block_size
    too_long = [len(p) for p in prompts if len(p) + max_new_tokens > T]
    if too_long:
        raise MiniLLMError(f"a rollout of {max(too_long)} prompt tokens + {max_new_tokens} new tokens is longer than "
                           f"the context of {T}: drop long prompts or lower max_new_tokens")
    rows = [p for p in prompts for _ in range(group_size)]
    out = generate_rows(policy, rows, max_new_tokens, temperature=temperature, top_k=top_k, stop_ids=[stop],
                        seed=seed, pad_id=pad_id)
    completions = [new + ([hit] if hit is not None else []) for new, hit in out]
    ids, labels = completion_batch(rows, completions, pad_id)
    with torch.no_grad():
        logp = completion_logprobs(policy, ids, labels).cpu()
        ref_logp = completion_logprobs(reference, ids, labels).cpu()
    return Rollout(ids, labels, labels != IGNORE, logp, ref_logp, completions,
                   [hit is not None for _, hit in out], group_size)


def on_policy_pairs(model: nn.Module, tokenizer, items: list[dict], labeler: preferences.Labeler = preferences.HUMAN,
                    max_new_tokens: int = 16, temperature: float = 1.0, seed: int = 0) -> tuple[list[dict], dict]:
    """On-policy preference data: two answers sampled from `model` per QA item, labelled by
    the simulated `labeler` -> (pairs as `preferences.preference_pairs` writes them, counts).

    Prompts without room for `max_new_tokens`, items whose two samples are the same text (no
    preference to learn) and those with an empty sample are left out and counted:
    {too_long, identical, empty}."""
    stop, T = stop_id(tokenizer), model.config.block_size
    prompts = chat_prompts(items, tokenizer)
    fit = [i for i, p in enumerate(prompts) if len(p) + max_new_tokens <= T]
    if not fit:
        raise MiniLLMError(f"no prompt leaves room for {max_new_tokens} new tokens in the context of {T}")
    r = rollout(model, model, [prompts[i] for i in fit], max_new_tokens, stop=stop, group_size=2,
                temperature=temperature, seed=seed)
    answers = answer_texts(tokenizer, r.completions, stop)
    rng, pairs, skipped = random.Random(f"on-policy-pairs/{seed}"), [], dict(identical=0, empty=0)
    for k, i in enumerate(fit):
        it, a, b = items[i], answers[2 * k], answers[2 * k + 1]
        if not a or not b or a == b:
            skipped["empty" if not a or not b else "identical"] += 1
            continue
        p = labeler.p_prefers(it["story"], it["question"], a, b)
        chosen, rejected, p_chosen = (a, b, p) if rng.random() < p else (b, a, 1 - p)
        pairs.append(dict(story=it["story"], question=it["question"], kind=it["kind"], chosen=chosen,
                          rejected=rejected, p_chosen=p_chosen))
    return pairs, dict(too_long=len(items) - len(fit), **skipped)


def answer_texts(tokenizer, completions: list[list[int]], stop: int) -> list[str]:
    """Completions -> answer strings as `qa_exact_match` reads them (first line, stripped)."""
    return [tokenizer.decode([t for t in c if t != stop]).split("\n")[0].strip() for c in completions]


# ---------------------------------------------------------------------------------
# Rewards: reward(items, answers) -> (N,) float tensor, one score per completion
# ---------------------------------------------------------------------------------

def judge_reward(items: list[dict], answers: list[str]) -> torch.Tensor:
    """The verifiable reward: 1 for an answer `world_tasks.judge` marks right, else 0."""
    return torch.tensor([float(tasks.judge(it["story"], it["question"], a)) for it, a in zip(items, answers)])


def utility_reward(labeler: preferences.Labeler | None = None) -> RewardFn:
    """The oracle's true utility (labeler None) or what `labeler` perceives (e.g. LENGTH_BIASED)."""
    def reward(items: list[dict], answers: list[str]) -> torch.Tensor:
        score = preferences.utility if labeler is None else labeler.perceived
        return torch.tensor([float(score(it["story"], it["question"], a)) for it, a in zip(items, answers)])
    return reward


def checked_rewards(reward: RewardFn, items: list[dict], answers: list[str]) -> torch.Tensor:
    """Call a reward function and check it: one finite float per answer."""
    r = torch.as_tensor(reward(items, answers), dtype=torch.float32).flatten()
    if r.numel() != len(answers):
        raise MiniLLMError(f"the reward function returned {r.numel()} scores for {len(answers)} answers")
    rlhf.check_finite(r, "reward")
    return r


@dataclass
class AILabeler:
    """RLAIF's labeler: the SFT model itself, never shown the oracle.

    mode "compare": the model reads the story, the question and two answers and is asked
    which is right; P(first) is its probability of ' A' against ' B', averaged over both
    orders (position bias cancels). mode "score": an answer's mean token log-prob as the
    model's own reply (its confidence). As a reward (`__call__`): that score.
    """

    model: nn.Module
    tokenizer: object
    mode: str = "score"
    template: ChatTemplate = ChatTemplate()

    def _answer_logp(self, items: list[dict], answers: list[str]) -> torch.Tensor:
        prompts = chat_prompts(items, self.tokenizer, self.template)
        end = stop_id(self.tokenizer, self.template)
        comps = [self.tokenizer.encode(" " + a, disallowed_special=()) + [end] for a in answers]
        T = self.model.config.block_size
        keep = [(p[-(T + 1 - len(c)):] if len(p) + len(c) > T + 1 else p, c) for p, c in zip(prompts, comps)]
        ids, labels = completion_batch([p for p, _ in keep], [c for _, c in keep])
        with torch.no_grad():
            lp = completion_logprobs(self.model, ids, labels).cpu()
        return lp.sum(-1) / (labels != IGNORE).sum(-1).clamp_min(1)     # (N,) mean log-prob per token

    def _p_first(self, items: list[dict], a: list[str], b: list[str]) -> torch.Tensor:
        def ask(x: list[str], y: list[str]) -> torch.Tensor:
            asks = [dict(it, prompt=f"{it.get('prompt') or it['question']} Answer A:{p} Answer B:{q} Which is right?")
                    for it, p, q in zip(items, x, y)]
            lp_a = self._answer_logp(asks, ["A"] * len(items))
            lp_b = self._answer_logp(asks, ["B"] * len(items))
            return torch.sigmoid(lp_a - lp_b)
        return 0.5 * (ask(a, b) + 1 - ask(b, a))

    def p_prefers(self, items: list[dict], a: list[str], b: list[str]) -> torch.Tensor:
        """(N,) the labeler's probability that answer a is better than answer b."""
        if self.mode == "compare":
            return self._p_first(items, a, b)
        if self.mode == "score":
            return torch.sigmoid(self._answer_logp(items, a) - self._answer_logp(items, b))
        raise MiniLLMError(f"the AI labeler's mode must be 'compare' or 'score', got {self.mode!r}")

    def __call__(self, items: list[dict], answers: list[str]) -> torch.Tensor:
        """As a reward (RLAIF): the answer's mean log-prob under the labeler model, whatever the mode."""
        return self._answer_logp(items, answers)


def labeler_agreement(labeler: AILabeler, pairs: list[dict]) -> dict:
    """How often the AI labeler prefers the answer the oracle's utility ranks higher.

    pairs: `preferences.preference_pairs` rows; ties in true utility are skipped."""
    rows = [p for p in pairs if preferences.utility(p["story"], p["question"], p["chosen"])
            != preferences.utility(p["story"], p["question"], p["rejected"])]
    if not rows:
        raise MiniLLMError("no pair with different true utilities to check the labeler on")
    better = [p["chosen"] if preferences.utility(p["story"], p["question"], p["chosen"])
              > preferences.utility(p["story"], p["question"], p["rejected"]) else p["rejected"] for p in rows]
    worse = [p["rejected"] if b == p["chosen"] else p["chosen"] for p, b in zip(rows, better)]
    p = labeler.p_prefers(rows, better, worse)
    human = [preferences.HUMAN.p_prefers(r["story"], r["question"], b, w) for r, b, w in zip(rows, better, worse)]
    return dict(agreement=float((p > 0.5).float().mean()), n=len(rows),
                human_agreement=sum(human) / len(human))
