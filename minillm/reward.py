"""A Bradley-Terry reward model: the GPT body with a scalar head (lesson 10; lesson 11 uses it).

What it builds:
- `RewardModel`: a GPT body (copied from the SFT checkpoint) whose final hidden state
  at the LAST REAL token of each row goes through a linear head to one number,
  r(prompt, answer). The row's length is read from its attention mask, so right
  padding changes nothing (test).
- `bt_loss`: the Bradley-Terry negative log-likelihood -log sigma(r_chosen - r_rejected
  - margin) (the exercise; margin 0 is the plain model, a margin asks for a gap).
- `train_reward_model`: pairs -> micro-batches (chosen and rejected rows stacked) ->
  `train.fit`; `make_reward_model(labeler=...)` trains one on the labels of any
  `preferences.Labeler` (`LENGTH_BIASED` gives the reward lesson 11 hacks).
- `evaluate_reward_model`: held-out accuracy against the labels drawn by the oracle,
  beside the Bayes-optimal accuracy of the same pairs (`preferences.bayes_accuracy`),
  and calibration: predicted sigma(r_c - r_r) against the oracle's probability, binned
  (`reliability`, `plot_reliability`).

Follows: Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT's reward model: the SFT
body, a scalar head, the pairwise loss). Left out: ensembles, reward normalisation,
more than two answers per prompt (K-wise comparisons).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import preferences as prefs
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.logprobs import fits, pad_completions, render_completions
from minillm.model import GPT, GPTConfig
from minillm.train import TrainConfig, fit
from minillm.utils import MiniLLMError


class RewardModel(nn.Module):
    """r(x, y): the GPT body's final hidden state at the last real token -> a linear head -> (B,)."""

    def __init__(self, body: GPT):
        super().__init__()
        self.body = body
        self.config = body.config
        self.head = nn.Linear(body.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)     # every answer starts at reward 0 (loss ln 2)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """ids (B, T), attention_mask (B, T) 1 on real tokens (right padding) -> rewards (B,)."""
        h = self.body.hidden_states(ids)                           # (B, T, C): causal, pads come after
        last = attention_mask.sum(-1).long() - 1                   # (B,) index of the last real token
        h_last = h[torch.arange(ids.size(0), device=ids.device), last]   # (B, C)
        return self.head(h_last).squeeze(-1)


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Mean Bradley-Terry loss -log sigma(r_chosen - r_rejected - margin) over (B,) rewards."""
    ### BEGIN SOLUTION name=reward.bt_loss points=2
    ### HINT: log sigma(z) = -log(1 + exp(-z)); which torch function computes that without overflow for large |z|?
    z = r_chosen - r_rejected - margin          # (B,)
    return -F.logsigmoid(z).mean()
    ### END SOLUTION


# ---------------------------------------------------------------------------------
# Data: pairs -> padded (chosen ; rejected) rows
# ---------------------------------------------------------------------------------

def pair_prompt(pair: dict) -> list[dict]:
    """The chat prompt of a preference pair (lesson 08's QA format: the story, then the question)."""
    return [dict(role="user", content=f"{pair['story']}\n{pair.get('prompt') or pair['question']}")]


def answer_text(answer: str) -> str:
    """An answer as the assistant's content: a leading space, as `instruct.qa_conversation` writes it."""
    return answer if answer.startswith(" ") else " " + answer


def render_pairs(tokenizer, pairs: list[dict], block_size: int) -> tuple[list[tuple], list[int]]:
    """[(chosen (ids, mask), rejected (ids, mask)), ...] of the pairs that fit the context, and their indices.

    A language model reads ids[:-1] (block_size + 1 tokens fit); a reward model reads
    every token: pass its block_size - 1."""
    prompts = [pair_prompt(p) for p in pairs]
    ch = render_completions(tokenizer, prompts, [answer_text(p["chosen"]) for p in pairs])
    rj = render_completions(tokenizer, prompts, [answer_text(p["rejected"]) for p in pairs])
    ok = [a and b for a, b in zip(fits(ch, block_size), fits(rj, block_size))]
    keep = [i for i, good in enumerate(ok) if good]
    return [(ch[i], rj[i]) for i in keep], keep


def pair_batch(rendered: list[tuple], pad_id: int = 0) -> dict:
    """B rendered pairs -> {ids, completion_mask, attention_mask} (2B, T): the B chosen rows, then the B rejected."""
    return pad_completions([c for c, _ in rendered] + [r for _, r in rendered], pad_id)


def pair_batches(rendered: list[tuple], batch_size: int, seed: int = 0, pad_id: int = 0):
    """batches(step) -> [one micro-batch of `batch_size` pairs], a pure function of (seed, step)."""
    if len(rendered) < batch_size:
        raise MiniLLMError(f"only {len(rendered)} pairs fit the context; a batch needs {batch_size}")

    def batches(step: int) -> list[dict]:
        rng = random.Random(f"pairs/{seed}/{step}")
        return [pair_batch([rendered[i] for i in rng.sample(range(len(rendered)), batch_size)], pad_id)]
    return batches


def pair_rewards(rm: RewardModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_chosen, r_rejected), (B,) each, of a `pair_batch`."""
    device = next(rm.parameters()).device
    r = rm(batch["ids"].to(device), batch["attention_mask"].to(device))    # (2B,)
    B = r.size(0) // 2
    return r[:B], r[B:]


# ---------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------

@dataclass
class RMConfig:
    """How to train a reward model (the body comes from a checkpoint)."""

    steps: int = field(default=300, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "pairs per step"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    margin: float = field(default=0.0, metadata={"help": "Bradley-Terry margin: ask r_chosen - r_rejected to exceed it"})
    pairs: int = field(default=3000, metadata={"help": "offline oracle pairs to draw (those that fit the context are used)"})
    seed: int = field(default=0, metadata={"help": "seed of the pairs and the batches"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, mps or auto"})


def train_reward_model(body: GPT, tokenizer, pairs: list[dict], cfg: RMConfig = RMConfig(), out_dir=None,
                       resume: bool = False, log=print) -> tuple[RewardModel, dict]:
    """Fit a reward model on preference pairs ({story, question, chosen, rejected}) -> (model, info)."""
    rm = RewardModel(copy.deepcopy(body))
    rendered, keep = render_pairs(tokenizer, pairs, body.config.block_size - 1)   # it reads every token
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=min(20, cfg.steps),
                       weight_decay=0.0, eval_every=0, log_every=max(1, cfg.steps // 6), seed=cfg.seed,
                       device=cfg.device)

    def loss_fn(model, batch):
        return bt_loss(*pair_rewards(model, batch), margin=cfg.margin)
    t = time.time()
    result = fit(rm, tcfg, pair_batches(rendered, cfg.batch_size, cfg.seed), loss_fn, out_dir=out_dir,
                 resume=resume, run_files={"tokenizer.json": tokenizer} if out_dir else None, log=log)
    return result.model.eval(), dict(pairs_used=len(keep), pairs_given=len(pairs), seconds=time.time() - t,
                                     history=result.history)


def make_reward_model(body: GPT, tokenizer, labeler: prefs.Labeler = prefs.HUMAN, cfg: RMConfig = RMConfig(),
                      log=print) -> tuple[RewardModel, dict]:
    """A reward model trained on `cfg.pairs` offline pairs labelled by `labeler` (LENGTH_BIASED: lesson 11's)."""
    pairs = prefs.preference_pairs(cfg.pairs, seed=cfg.seed, split="rm_train", labeler=labeler)
    return train_reward_model(body, tokenizer, pairs, cfg, log=log)


@torch.no_grad()
def score_pairs(rm: RewardModel, tokenizer, pairs: list[dict], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(r_chosen, r_rejected, kept indices) of the pairs that fit the context."""
    rendered, keep = render_pairs(tokenizer, pairs, rm.config.block_size - 1)     # it reads every token
    if not rendered:
        raise MiniLLMError("no pair fits the reward model's context")
    rc, rr = [], []
    for k in range(0, len(rendered), batch_size):
        c, r = pair_rewards(rm, pair_batch(rendered[k:k + batch_size]))
        rc.append(c.float().cpu())
        rr.append(r.float().cpu())
    return torch.cat(rc), torch.cat(rr), keep


def reliability(predicted: list[float], truth: list[float], bins: int = 10) -> list[dict]:
    """Calibration table: per bin of predicted probability, its mean and the mean oracle probability."""
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(predicted) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            rows.append(dict(lo=lo, hi=hi, n=len(idx), predicted=sum(predicted[i] for i in idx) / len(idx),
                             oracle=sum(truth[i] for i in idx) / len(idx)))
    return rows


def evaluate_reward_model(rm: RewardModel, tokenizer, pairs: list[dict],
                          labeler: prefs.Labeler = prefs.HUMAN) -> dict:
    """Held-out accuracy vs the Bayes-optimal accuracy, and calibration, on the pairs that fit."""
    rc, rr, keep = score_pairs(rm, tokenizer, pairs)
    kept = [pairs[i] for i in keep]
    p_model = torch.sigmoid(rc - rr).tolist()                        # predicted P(chosen > rejected)
    p_oracle = [labeler.p_prefers(x["story"], x["question"], x["chosen"], x["rejected"]) for x in kept]
    bayes = prefs.bayes_accuracy([dict(story=x["story"], question=x["question"], a=x["chosen"], b=x["rejected"])
                                  for x in kept], labeler)
    # agreement with the oracle's better answer (what an infinitely-labelled RM would reach: 1.0)
    agree = sum((pm > 0.5) == (po > 0.5) for pm, po in zip(p_model, p_oracle) if po != 0.5)
    n_decided = sum(po != 0.5 for po in p_oracle)
    return dict(n=len(kept), accuracy=float((rc > rr).float().mean()), bayes_accuracy=bayes,
                oracle_agreement=agree / max(n_decided, 1),
                calibration_error=sum(abs(a - b) for a, b in zip(p_model, p_oracle)) / len(kept),
                reliability=reliability(p_model, p_oracle))


def plot_reliability(rows: list[dict], title: str = "reward model calibration"):
    """The reliability diagram: predicted vs oracle preference probability, one point per bin."""
    import matplotlib.pyplot as plt  # deferred: plotting is optional for the library

    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="perfectly calibrated")
    ax.scatter([r["predicted"] for r in rows], [r["oracle"] for r in rows], s=[10 + r["n"] for r in rows],
               label="bins (size: pairs)")
    ax.set_xlabel("predicted P(chosen preferred)")
    ax.set_ylabel("oracle P(chosen preferred)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return fig


# ---------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------

def save_reward_model(folder, rm: RewardModel, tokenizer, meta: dict | None = None):
    """folder/reward.pt (body config + all weights) and tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in rm.state_dict().items()}
    save_checkpoint(folder / "reward.pt", dict(model=state, config=rm.config.to_dict(), meta=meta or {}))
    tokenizer.save(folder / "tokenizer.json")
    return folder


def load_reward_model(folder, device: str = "cpu") -> RewardModel:
    """The reward model `save_reward_model` wrote."""
    path = Path(folder) / "reward.pt"
    if not path.exists():
        raise MiniLLMError(f"no reward model at {path} (train one: minillm rm train --out {folder})")
    ckpt = load_checkpoint(path, map_location=device)
    rm = RewardModel(GPT(GPTConfig(**ckpt["config"])))
    rm.load_state_dict(ckpt["model"])
    return rm.to(device).eval()
