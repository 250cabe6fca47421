"""The from-scratch arithmetic of one training step (lesson 04).

What it builds, each tested equal to PyTorch's fused version: `cross_entropy`
(the loss), the `AdamW` optimizer (Loshchilov & Hutter 2019, "Decoupled Weight
Decay Regularization"), `clip_grad_norm` (Pascanu et al. 2013), and `lr_at`:
linear warmup then cosine decay to a floor (Loshchilov & Hutter 2017, "SGDR"; the
warmup + cosine recipe of GPT-3, Brown et al. 2020, App. B). `make_optimizer`
builds PyTorch's AdamW (the fast path the loop uses) or ours.

Left out: other optimizers (Lion, Muon), per-layer learning rates, ZeRO sharding.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Protocol

import torch
import torch.nn as nn

from minillm.utils import MiniLLMError


class OptimConfig(Protocol):
    """The fields of `minillm.train.TrainConfig` that the schedule and the optimizer read."""

    steps: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    optimizer: str


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-likelihood of `targets` under softmax(`logits`), in nats.

    logits: (N, V) or (B, T, V); targets: (N,) or (B, T) ids, `ignore_index` rows skipped.
    Written with the log-sum-exp trick: -log softmax(z)_y = logsumexp(z) - z_y.
    Example: logits [[0, 0]] and target [1] -> log 2 = 0.6931.
    """
    ### BEGIN SOLUTION name=optim.cross_entropy points=2
    ### HINT: flatten to (N, V); subtract the row max, loss = logsumexp - logit of the target; average over kept rows.
    z = logits.reshape(-1, logits.size(-1)).float()  # (N, V)
    y = targets.reshape(-1)                           # (N,)
    keep = y != ignore_index
    z, y = z[keep], y[keep]
    m = z.max(dim=-1, keepdim=True).values           # (N, 1): subtract for stability
    logsumexp = (z - m).exp().sum(dim=-1).log() + m.squeeze(-1)  # (N,)
    picked = z.gather(1, y[:, None]).squeeze(1)      # (N,): the target's logit
    return (logsumexp - picked).mean()
    ### END SOLUTION


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay, written out (same results as torch.optim.AdamW).

    For each parameter p with gradient g, at step t (1, 2, ...):
        p <- p - lr * wd * p                       (decay, not part of the gradient)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                self._update(p, p.grad, state, group["lr"], b1, b2, group["eps"], group["weight_decay"])
        return loss

    @staticmethod
    def _update(p: torch.Tensor, g: torch.Tensor, state: dict, lr: float, b1: float, b2: float,
                eps: float, weight_decay: float) -> None:
        """One AdamW update of parameter `p` in place; `state` holds step, exp_avg, exp_avg_sq."""
        ### BEGIN SOLUTION name=optim.adamw points=3
        ### HINT: decay p by (1 - lr*wd); update m and v; divide by the bias corrections 1 - b^t.
        state["step"] += 1
        t = state["step"].item()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        p.mul_(1 - lr * weight_decay)                # decoupled weight decay
        m.lerp_(g, 1 - b1)                           # m = b1 m + (1 - b1) g
        v.mul_(b2).addcmul_(g, g, value=1 - b2)      # v = b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)
        ### END SOLUTION


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global L2 norm is at most `max_norm`.

    Returns the norm before clipping. The scale is max_norm / (norm + 1e-6),
    applied only when it is below 1 (PyTorch's convention).
    Example: one gradient [3, 4] and max_norm 1 -> returns 5, gradient becomes [0.6, 0.8].
    """
    ### BEGIN SOLUTION name=optim.clip_grad points=2
    ### HINT: norm = sqrt(sum of every gradient's squared entries); multiply each grad by min(1, max_norm / (norm + 1e-6)).
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum().sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.detach().mul_(scale.to(g.dtype))
    return norm
    ### END SOLUTION


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate of step `step` (0-based): linear warmup, then cosine down to lr * min_lr_ratio.

    Example (lr=1, warmup=10, steps=110, min_lr_ratio=0.1): step 0 -> 0.1, step 9 -> 1.0,
    step 60 -> 0.55 (half way down the cosine), step 110 -> 0.1.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / decay_steps, 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))  # 1 -> 0
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + (cfg.lr - lo) * cosine


def make_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices (Linear, Embedding) but not on biases and norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [dict(params=[p for p in params if p.dim() >= 2], weight_decay=cfg.weight_decay),
              dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0)]
    kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    if cfg.optimizer == "torch":
        return torch.optim.AdamW(groups, fused=device.type == "cuda" or None, **kw)
    if cfg.optimizer == "minillm":
        return AdamW(groups, **kw)
    raise MiniLLMError(f"optimizer must be 'torch' or 'minillm', got {cfg.optimizer!r}")
