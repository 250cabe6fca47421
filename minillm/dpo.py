"""Direct Preference Optimization: the loss, its variants, and the implicit reward (lesson 10).

DPO (Rafailov et al. 2023) starts from RLHF's objective — maximise a reward r(x, y)
while staying close to a reference policy, max E[r] - beta KL(pi || pi_ref) — whose
optimum is known in closed form,

    pi*(y | x) = pi_ref(y | x) exp(r(x, y) / beta) / Z(x),

and turns it around: r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x). Put
into the Bradley-Terry likelihood of the preferences, Z(x) cancels, and the reward
model disappears: the policy is fitted directly with a classification loss on
(chosen, rejected) pairs. Everything here works on SEQUENCE log-probabilities
(the sum of the completion's token log-probs; pass the lengths to average per token).

Variants (`LOSSES`), each written out in `dpo_loss`:
- `sigmoid`: the paper's loss, -log sigmoid(beta * margin); with `label_smoothing`
  eps it is conservative DPO (Mitchell 2023): labels flipped with probability eps.
- `robust`: robust DPO (Chowdhury et al. 2024), an unbiased loss under flipped labels.
- `hinge`: SLiC's hinge on the margin (Zhao et al. 2023), relu(1 - beta * margin).
- `ipo`: IPO (Azar et al. 2023), (margin - 1 / (2 beta))^2, a squared loss that does not
  push the margin to infinity.
where margin = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)).
`reference_free` drops the reference (pi_ref uniform). The formulas follow TRL 1.16's
`DPOTrainer._compute_loss` (its IPO divides each sequence's log-ratio by its length,
which passing the lengths reproduces); `tests/test_dpo_trl.py` runs TRL's own code on the
same log-probs and finds the same loss, rewards and gradient.

Training (`dpo_train`): (chosen, rejected) pairs rendered through the chat template,
one micro-batch of pairs per step through `train.fit`, sequence log-probs from
`logprobs.completion_logprobs` (THE one), the reference's log-probs computed once
before training when asked (`precompute_reference`: the reference need not stay in
memory) or on the fly (equal: test). Pairs whose chosen and rejected answers are the
same text carry no signal; they are counted and skipped. The lesson's experiment
(`experiment`: DPO at several beta vs SFT on the chosen answers, scored by the oracle)
closes the file.

Left out: on-policy pair sampling during training (online DPO), KTO, ORPO/SimPO.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import preferences as prefs, world, world_tasks
from minillm.evaluate import score_text
from minillm.generation import generate_batch
from minillm.instruct import load_shipped
from minillm.logprobs import completion_logprobs, pad_completions
from minillm.reward import answer_text, pair_batch, pair_prompt, render_pairs
from minillm.sft import pad_batch, render_chat, sft_loss_mean
from minillm.train import TrainConfig, fit
from minillm.utils import MiniLLMError

LOSSES = ("sigmoid", "robust", "hinge", "ipo")


def implicit_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward beta * log(pi(y|x) / pi_ref(y|x)) of each completion."""
    return beta * (policy_logps - ref_logps)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor | None, ref_rejected: torch.Tensor | None, beta: float = 0.1,
             loss: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_lengths: torch.Tensor | None = None, rejected_lengths: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss of a batch of pairs, (B,) sequence log-probs each, and its statistics.

    ref_chosen / ref_rejected: the frozen reference's log-probs, or None for reference-free.
    chosen_lengths / rejected_lengths: completion token counts; when given, every
        log-ratio is divided by its length (per-token averaging, as TRL's IPO does).
    Returns (mean loss, stats) where stats holds the per-pair losses, the implicit
    rewards of chosen and rejected, and whether each pair is ranked right (reward accuracy).

    >>> z = torch.zeros(3)
    >>> round(dpo_loss(z, z, z, z)[0].item(), 4)    # policy == reference: log 2
    0.6931
    """
    if not beta > 0:
        raise MiniLLMError(f"beta must be positive, got {beta}")
    if loss not in LOSSES:
        raise MiniLLMError(f"unknown DPO loss {loss!r}; choose from {LOSSES}")
    if not 0.0 <= label_smoothing < 0.5:
        raise MiniLLMError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if (ref_chosen is None) != (ref_rejected is None):
        raise MiniLLMError("give both reference log-probs, or neither (reference-free)")
    if ref_chosen is None:
        ref_chosen, ref_rejected = torch.zeros_like(policy_chosen), torch.zeros_like(policy_rejected)
    chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    if chosen_lengths is not None and rejected_lengths is not None:
        chosen_ratio = chosen_ratio / chosen_lengths.clamp(min=1)
        rejected_ratio = rejected_ratio / rejected_lengths.clamp(min=1)
    ### BEGIN SOLUTION name=dpo.loss points=3
    ### HINT: the margin is how much more the policy raised the chosen answer than the rejected one, relative to the reference. Which function of beta x margin is a Bradley-Terry negative log-likelihood?
    margin = chosen_ratio - rejected_ratio                                   # (B,)
    eps = label_smoothing
    if loss == "sigmoid":
        per_pair = -(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)
    elif loss == "robust":
        per_pair = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps)
    elif loss == "hinge":
        per_pair = torch.relu(1 - beta * margin)
    else:  # ipo
        per_pair = (margin - 1 / (2 * beta)) ** 2
    ### END SOLUTION
    chosen_reward = (beta * chosen_ratio).detach()
    rejected_reward = (beta * rejected_ratio).detach()
    stats = dict(losses=per_pair.detach(), chosen_reward=chosen_reward, rejected_reward=rejected_reward,
                 reward_accuracy=(chosen_reward > rejected_reward).float())
    return per_pair.mean(), stats


def optimal_policy(ref_probs: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """The KL-regularised optimum pi* ∝ pi_ref exp(reward / beta) over a finite set of answers."""
    if not beta > 0:
        raise MiniLLMError(f"beta must be positive, got {beta}")
    return torch.softmax(torch.log(ref_probs) + reward / beta, dim=-1)


# ---------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------

@dataclass
class DPOConfig:
    """How to run DPO (the policy and the reference come from checkpoints)."""

    steps: int = field(default=80, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "pairs per step"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta: the strength of the pull back to the reference"})
    loss: str = field(default="sigmoid", metadata={"help": "sigmoid (DPO), robust, hinge or ipo"})
    label_smoothing: float = field(default=0.0, metadata={"help": "conservative / robust DPO's label-flip rate"})
    average: bool = field(default=False, metadata={"help": "average log-probs per token instead of summing them"})
    precompute_reference: bool = field(default=True, metadata={
        "help": "score every pair under the reference once before training (one model in memory while training)"})
    pairs: int = field(default=1500, metadata={"help": "offline oracle pairs to draw (those that fit the context are used)"})
    seed: int = field(default=0, metadata={"help": "seed of the pairs and the batches"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, mps or auto"})


@dataclass
class DPOResult:
    model: nn.Module
    history: list[dict]
    pairs_used: int
    identical_skipped: int      # pairs whose chosen == rejected (no signal; never trained on)
    too_long_skipped: int       # pairs that do not fit the context
    seconds: float


def drop_identical(pairs: list[dict]) -> tuple[list[dict], int]:
    """(pairs whose chosen and rejected texts differ, how many were identical)."""
    kept = [p for p in pairs if answer_text(p["chosen"]).strip() != answer_text(p["rejected"]).strip()]
    return kept, len(pairs) - len(kept)


def check_models(policy: nn.Module, reference: nn.Module | None, tokenizer) -> None:
    """One clear error when the reference or the tokenizer does not match the policy's vocabulary."""
    V = policy.config.vocab_size
    if reference is not None and reference.config.vocab_size != V:
        raise MiniLLMError(f"the reference has a vocabulary of {reference.config.vocab_size} tokens, the policy "
                           f"{V}: DPO compares log-probs of the same tokens; start both from one checkpoint")
    if tokenizer.vocab_size > V:
        raise MiniLLMError(f"the tokenizer has {tokenizer.vocab_size} tokens, the policy only {V}")


@torch.no_grad()
def reference_logprobs(reference: nn.Module, rendered: list[tuple], average: bool = False,
                       batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) sequence log-probs (N,) of every rendered pair under the frozen reference."""
    was = reference.training
    reference.eval()
    out = []
    for k in range(0, len(rendered), batch_size):
        b = pair_batch(rendered[k:k + batch_size])
        lp = completion_logprobs(reference, b["ids"], b["completion_mask"], average=average).float().cpu()
        out.append(lp.view(2, -1))
    reference.train(was)
    both = torch.cat(out, dim=1)                                        # (2, N)
    return both[0], both[1]


def dpo_batches(rendered: list[tuple], cfg: DPOConfig, ref: tuple | None):
    """batches(step) -> [one micro-batch of cfg.batch_size pairs] (+ their reference log-probs), pure in step."""
    if len(rendered) < cfg.batch_size:
        raise MiniLLMError(f"only {len(rendered)} usable pairs; a batch needs {cfg.batch_size}")

    def batches(step: int) -> list[dict]:
        idx = random.Random(f"dpo/{cfg.seed}/{step}").sample(range(len(rendered)), cfg.batch_size)
        b = pair_batch([rendered[i] for i in idx])
        if ref is not None:
            b["ref_chosen"], b["ref_rejected"] = ref[0][idx], ref[1][idx]
        return [b]
    return batches


def dpo_batch_loss(policy: nn.Module, reference: nn.Module | None, b: dict, cfg: DPOConfig):
    """(loss, stats) of one pair micro-batch: chosen rows first, rejected after."""
    lp = completion_logprobs(policy, b["ids"], b["completion_mask"], average=cfg.average)   # (2B,)
    B = lp.size(0) // 2
    if "ref_chosen" in b:
        rc, rr = b["ref_chosen"].to(lp.device), b["ref_rejected"].to(lp.device)
    else:
        with torch.no_grad():
            ref = completion_logprobs(reference, b["ids"], b["completion_mask"], average=cfg.average).float()
        rc, rr = ref[:B], ref[B:]
    return dpo_loss(lp[:B], lp[B:], rc, rr, beta=cfg.beta, loss=cfg.loss, label_smoothing=cfg.label_smoothing)


def dpo_train(policy: nn.Module, reference: nn.Module, tokenizer, pairs: list[dict], cfg: DPOConfig = DPOConfig(),
              *, out_dir=None, resume: bool = False, log=print) -> DPOResult:
    """Fit `policy` (trained in place) to preference pairs {story, question, chosen, rejected} with DPO."""
    if not cfg.beta > 0:
        raise MiniLLMError(f"beta must be positive, got {cfg.beta}")
    if cfg.loss not in LOSSES:
        raise MiniLLMError(f"unknown DPO loss {cfg.loss!r}; choose from {LOSSES}")
    check_models(policy, reference, tokenizer)
    kept, identical = drop_identical(pairs)
    if identical and log:
        log(f"skipped {identical} pair(s) whose chosen and rejected answers are identical")
    rendered, fit_idx = render_pairs(tokenizer, kept, policy.config.block_size)
    reference.eval()            # frozen: only ever called under no_grad (its flags are left alone)
    ref = reference_logprobs(reference, rendered, cfg.average) if cfg.precompute_reference else None
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=min(10, cfg.steps),
                       weight_decay=0.0, eval_every=0, log_every=max(1, cfg.steps // 6), seed=cfg.seed,
                       device=cfg.device)
    t = time.time()
    result = fit(policy, tcfg, dpo_batches(rendered, cfg, ref),
                 lambda m, b: dpo_batch_loss(m, reference, b, cfg)[0], out_dir=out_dir, resume=resume,
                 run_files={"tokenizer.json": tokenizer} if out_dir else None, log=log)
    return DPOResult(result.model.eval(), result.history, len(rendered), identical, len(kept) - len(fit_idx),
                     time.time() - t)


def transfer_check(policy: nn.Module, reference: nn.Module, tokenizer, pairs: list[dict], cfg: DPOConfig,
                   steps: int = 30, n_train: int = 64, every: int = 5) -> list[dict]:
    """Lesson 10's diagnostic: train `policy` (in place) on ONE fixed batch of `n_train` pairs
    and watch the DPO loss on it and on the other pairs (held out) -> rows {step, train, heldout}.

    Train falling while held-out rises means the gradient is right and what is learnt from
    one set of pairs does not transfer to the next.
    """
    kept, _ = drop_identical(pairs)
    rendered, _ = render_pairs(tokenizer, kept, policy.config.block_size)
    if len(rendered) < n_train + 1:
        raise MiniLLMError(f"only {len(rendered)} usable pairs; the check needs more than {n_train}")
    train_b, held_b = pair_batch(rendered[:n_train]), pair_batch(rendered[n_train:])
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    def losses(step: int) -> dict:
        with torch.no_grad():
            return dict(step=step, train=dpo_batch_loss(policy, reference, train_b, cfg)[0].item(),
                        heldout=dpo_batch_loss(policy, reference, held_b, cfg)[0].item())
    reference.eval()
    rows = [losses(0)]
    for step in range(1, steps + 1):
        loss = dpo_batch_loss(policy, reference, train_b, cfg)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            rows.append(losses(step))
    return rows


# ---------------------------------------------------------------------------------
# The experiment: DPO at several beta vs SFT on the chosen answers (lesson 10's table)
# ---------------------------------------------------------------------------------

def sft_on_chosen(model: nn.Module, tokenizer, pairs: list[dict], cfg: DPOConfig, log=None):
    """The baseline: plain SFT (lesson 08's loss) on the chosen answers only, same pairs and steps."""
    rendered, _ = render_pairs(tokenizer, drop_identical(pairs)[0], model.config.block_size)
    chosen = [c for c, _ in rendered]

    def batches(step: int) -> list[dict]:
        idx = random.Random(f"dpo/{cfg.seed}/{step}").sample(range(len(chosen)), cfg.batch_size)
        return [pad_batch([chosen[i] for i in idx])]
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=min(10, cfg.steps),
                       weight_decay=0.0, eval_every=0, log_every=max(1, cfg.steps // 6), seed=cfg.seed,
                       device=cfg.device)
    t = time.time()
    return fit(model, tcfg, batches, sft_loss_mean, log=log).model.eval(), time.time() - t


@torch.no_grad()
def sampled_kl(policy: nn.Module, reference: nn.Module, prompts: list[list[int]], stop_id: int,
               max_new_tokens: int = 24, seed: int = 0) -> float:
    """KL(policy || reference) per answer (nats): answers SAMPLED from the policy, and at each
    of their tokens the exact KL of the two next-token distributions, summed over the answer."""
    new = generate_batch(policy, prompts, max_new_tokens, temperature=1.0, stop_ids=[stop_id], seed=seed)
    rows = [(p + n + [stop_id], [0] * len(p) + [1] * (len(n) + 1)) for p, n in zip(prompts, new)]
    b = pad_completions([(ids[:len(p) + max_new_tokens], m[:len(p) + max_new_tokens]) for (ids, m), p in zip(rows, prompts)])
    lp = torch.log_softmax(policy(b["ids"][:, :-1])[0].float(), -1)          # (B, T-1, V)
    lq = torch.log_softmax(reference(b["ids"][:, :-1])[0].float(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1) * b["completion_mask"][:, 1:]       # (B, T-1): at answer tokens
    return float(kl.sum(-1).mean())


@torch.no_grad()
def policy_metrics(model: nn.Module, reference: nn.Module, tokenizer, items: list[dict], val_text: str,
                   max_new_tokens: int = 24) -> dict:
    """Oracle utility and judge accuracy of greedy answers, sampled KL to the reference, bits/byte."""
    stop = tokenizer.special_tokens["<|end|>"]
    prompts = [render_chat(pair_prompt(it), tokenizer, add_generation_prompt=True)[0] for it in items]
    answers = [tokenizer.decode(n).strip() for n in
               generate_batch(model, prompts, max_new_tokens, temperature=0, stop_ids=[stop])]
    utils = [prefs.utility(it["story"], it["question"], a) for it, a in zip(items, answers)]
    styles = [prefs.read_answer(it["story"], it["question"], a).style for it, a in zip(items, answers)]
    mean = sum(utils) / len(utils)
    se = (sum((u - mean) ** 2 for u in utils) / max(len(utils) - 1, 1) / len(utils)) ** 0.5
    return dict(utility=mean, utility_se=se,
                judge_accuracy=sum(world_tasks.judge(it["story"], it["question"], a)
                                   for it, a in zip(items, answers)) / len(items),
                sentence_share=sum(s in ("sentence", "padded") for s in styles) / len(styles),
                kl=sampled_kl(model, reference, prompts, stop, max_new_tokens),
                bits_per_byte=score_text(model, tokenizer, val_text).bits_per_byte,
                example=answers[0])


def experiment(betas=(0.1, 0.5, 2.0), steps: int = 80, n_pairs: int = 1500, n_eval: int = 150, lr: float = 5e-4,
               val_stories: int = 100, checkpoint: str = "sft", log=None) -> dict:
    """From the shipped SFT model: DPO at each beta and SFT-on-chosen, on the same oracle pairs.

    Returns {rows: [...], bayes_accuracy, pairs, eval_items}: one row per model with the oracle's
    utility of greedy answers on held-out questions, judge accuracy, KL to the SFT model
    (on samples), validation bits/byte, training seconds and models held while training.
    """
    sft_model, tok = load_shipped(checkpoint)
    sft_model.eval()
    pairs = prefs.preference_pairs(n_pairs, seed=0, split="dpo_train")
    T = sft_model.config.block_size
    items = [it for it in world_tasks.qa_pairs(n_eval, 0, "dpo_eval")   # held-out questions whose answer fits
             if len(render_chat(pair_prompt(it), tok, add_generation_prompt=True)[0]) + 24 <= T]
    val = "".join(s + "\n" for s in world.load_split("val").splitlines()[:val_stories])
    rows = [dict(method="SFT (start)", beta=None, seconds=0.0, models=1,
                 **policy_metrics(sft_model, sft_model, tok, items, val))]
    for beta in betas:
        cfg = DPOConfig(steps=steps, lr=lr, beta=beta)
        res = dpo_train(copy.deepcopy(sft_model), sft_model, tok, pairs, cfg, log=log)
        rows.append(dict(method="DPO", beta=beta, seconds=res.seconds, models=1,
                         final_loss=res.history[-1]["train_loss"],
                         **policy_metrics(res.model, sft_model, tok, items, val)))
    base, seconds = sft_on_chosen(copy.deepcopy(sft_model), tok, pairs, DPOConfig(steps=steps, lr=lr), log=log)
    rows.append(dict(method="SFT on chosen", beta=None, seconds=seconds, models=1,
                     **policy_metrics(base, sft_model, tok, items, val)))
    kept, _ = render_pairs(tok, pairs, T)
    return dict(rows=rows, pairs=len(kept), eval_items=len(items), steps=steps,
                mean_chosen_utility=sum(prefs.utility(p["story"], p["question"], p["chosen"]) for p in pairs) / len(pairs))


def experiment_table(res: dict) -> str:
    """`experiment`'s rows as a markdown table."""
    lines = ["| model | beta | utility (oracle) ± s.e. | judge accuracy | full-sentence answers | KL to SFT (nats/answer) "
             "| val bits/byte | train s | models while training |", "| --- " * 9 + "|"]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['beta'] if r['beta'] is not None else '-'} | {r['utility']:.3f} ± {r['utility_se']:.3f} | "
                     f"{r['judge_accuracy']:.3f} | {r['sentence_share']:.2f} | {r['kl']:.3f} | {r['bits_per_byte']:.4f} | "
                     f"{r['seconds']:.0f} | {r['models']} |")
    return "\n".join(lines)


def plot_utility_vs_kl(res: dict):
    """Utility against KL to the SFT model: one point per model (DPO labelled by beta)."""
    import matplotlib.pyplot as plt  # deferred: plotting is optional for the library

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in res["rows"]:
        label = f"DPO beta={r['beta']}" if r["method"] == "DPO" else r["method"]
        ax.scatter(r["kl"], r["utility"], marker="o" if r["method"] == "DPO" else "s")
        ax.annotate(label, (r["kl"], r["utility"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("symlog", linthresh=0.01)          # 0 (the SFT model itself) and large KLs on one axis
    ax.set_xlabel("KL(policy || SFT) per answer, nats (sampled answers; symlog)")
    ax.set_ylabel("true expected utility (oracle)")
    ax.set_title("DPO: utility vs distance from the SFT model")
    return fig
