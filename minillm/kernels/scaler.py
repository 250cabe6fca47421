"""fp16 training with dynamic loss scaling, from scratch (lesson 14).

fp16 has 10 mantissa bits but only 5 exponent bits: gradients smaller than
2^-24 ~ 6e-8 underflow to zero. Loss scaling multiplies the loss by a large
factor S before backward, so every gradient is S times larger (the chain rule is
linear) and stays representable; the gradients are divided by S again, in fp32,
before the optimizer sees them. *Dynamic* scaling picks S on the fly:

* a step whose unscaled gradients hold an inf or NaN is skipped (the scale was too
  big: something overflowed) and S is multiplied by `backoff_factor` (0.5);
* after `growth_interval` clean steps in a row, S is multiplied by `growth_factor` (2).

`LossScaler` has the interface and defaults of `torch.amp.GradScaler`
(`scale`, `unscale_`, `step`, `update`, `get_scale`, `state_dict`), so a loop can use
either; the tests run both on the same gradient sequence, inf steps included, and
compare scale, skipped steps and weights at every step. `train_steps` is the loop
in its shortest correct form (the order of the calls is the lesson). bf16 needs none
of this: it has fp32's exponent range.

Under a process group the inf flag is OR-ed over all ranks (FSDP: each rank sees only
its shard of the gradients, so without it ranks would skip different steps; PyTorch
has `ShardedGradScaler` for this). Follows Micikevicius et al. (2018), "Mixed
Precision Training", and PyTorch's `GradScaler`. Left out: per-optimizer state for
several optimizers sharing one scaler, sparse gradients.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from minillm.utils import MiniLLMError


def update_scale(scale: float, growth_tracker: int, found_inf: bool, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000) -> tuple[float, int]:
    """The dynamic loss scale's update rule: (scale, clean steps in a row) after one step.

    found_inf: back off (scale * backoff_factor) and restart the count. Otherwise count
    the clean step; when the count reaches growth_interval, grow (scale * growth_factor,
    only if the result is finite) and restart the count.

    >>> update_scale(1024.0, 0, True), update_scale(1024.0, 1, False, growth_interval=2)
    ((512.0, 0), (2048.0, 0))
    """
    ### BEGIN SOLUTION name=scaler.update_scale points=2
    ### HINT: two cases: an inf step halves the scale and resets the count; a clean step counts, and every growth_interval-th clean step doubles the scale (if that stays finite)
    if found_inf:
        return scale * backoff_factor, 0
    successful = growth_tracker + 1
    if successful == growth_interval:
        grown = scale * growth_factor
        return (grown if math.isfinite(grown) else scale), 0
    return scale, successful
    ### END SOLUTION


class LossScaler:
    """Dynamic loss scaling for fp16 (the interface of `torch.amp.GradScaler`).

    >>> scaler = LossScaler(init_scale=2.0 ** 16)
    >>> scaler.get_scale()
    65536.0
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        if init_scale <= 0 or growth_factor <= 1 or not 0 < backoff_factor < 1 or growth_interval < 1:
            raise MiniLLMError("LossScaler needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, "
                               "growth_interval >= 1")
        self.enabled = enabled
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self._scale = float(torch.tensor(init_scale, dtype=torch.float32))  # GradScaler keeps it in fp32
        self._growth_tracker = 0
        self._found_inf: bool | None = None  # None: this step's gradients are not unscaled yet
        self.skipped_steps = 0

    def get_scale(self) -> float:
        return self._scale if self.enabled else 1.0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """loss * S: call `.backward()` on this instead of on the loss."""
        return loss * self._scale if self.enabled else loss

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide every gradient by S, in place and in fp32; return whether any is inf/NaN.

        Call it before gradient clipping (clip the true gradients, not the scaled ones).
        """
        if not self.enabled:
            return False
        if self._found_inf is not None:
            raise MiniLLMError("unscale_ was already called since the last update(); call it once per step")
        inv_scale = float(torch.tensor(self._scale, dtype=torch.float64).reciprocal().float())
        finite = []                                   # one flag per gradient, read once (one GPU sync)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.dtype == torch.float16:
                    raise MiniLLMError("gradients are fp16: keep the master weights in fp32 "
                                       "(autocast computes in fp16, the parameters stay fp32)")
                p.grad.mul_(inv_scale)
                g = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad   # FSDP: this rank's shard
                finite.append(torch.isfinite(g).all())
        found = bool(finite) and not bool(torch.stack(finite).all())
        self._found_inf = _any_rank(found, optimizer)
        return self._found_inf

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale if not done yet, then `optimizer.step()` unless a gradient is inf/NaN.
        Returns whether the step was taken."""
        if not self.enabled:
            optimizer.step()
            return True
        if self._found_inf is None:
            self.unscale_(optimizer)
        if self._found_inf:
            self.skipped_steps += 1
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Move the scale by the rule of `update_scale`; call once per step, after `step`."""
        if not self.enabled:
            return
        if self._found_inf is None:
            raise MiniLLMError("update() before step(): call scaler.step(optimizer) first")
        scale, self._growth_tracker = update_scale(
            self._scale, self._growth_tracker, self._found_inf,
            self.growth_factor, self.backoff_factor, self.growth_interval)
        scale32 = float(torch.tensor(scale, dtype=torch.float32))  # the scale lives in fp32, as in GradScaler
        self._scale = scale32 if math.isfinite(scale32) else self._scale
        self._found_inf = None

    def state_dict(self) -> dict:
        return {"scale": self._scale, "growth_tracker": self._growth_tracker, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval}

    def load_state_dict(self, state: dict) -> None:
        # (GradScaler's state dict names the count "_growth_tracker": its checkpoints load too)
        tracker = state["growth_tracker"] if "growth_tracker" in state else state["_growth_tracker"]
        self._scale, self._growth_tracker = float(state["scale"]), int(tracker)
        self.growth_factor, self.backoff_factor = state["growth_factor"], state["backoff_factor"]
        self.growth_interval = state["growth_interval"]


def _any_rank(found: bool, optimizer: torch.optim.Optimizer) -> bool:
    """OR the inf flag over all processes: under FSDP each rank sees only its gradient shard,
    and every rank must skip (or take) the same steps. Alone (no process group): `found`."""
    import torch.distributed as dist  # only for the multi-process case
    if not (dist.is_available() and dist.is_initialized()):
        return found
    params = [p for g in optimizer.param_groups for p in g["params"]]
    device = params[0].device if params and dist.get_backend() != "gloo" else torch.device("cpu")
    flag = torch.tensor(float(found), device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def fp16_supported(device: torch.device | str) -> bool:
    """Whether fp16 autocast runs on `device`: CUDA from compute capability 5.3 (native
    fp16 arithmetic; tensor cores from 7.0), else whatever this PyTorch build's autocast offers."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (5, 3)
    return torch.amp.is_autocast_available(device.type)


def require_fp16(device: torch.device | str) -> None:
    """Raise a clear MiniLLMError when fp16 is asked for on a device without it."""
    if not fp16_supported(device):
        raise MiniLLMError(f"float16 was asked for, but {torch.device(device)} has no fp16 support "
                           "in this PyTorch build; use dtype bfloat16 or float32")


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable,
                loss_fn: Callable, device: torch.device | str = "cpu", dtype: str = "float16",
                scaler: LossScaler | None = None, max_grad_norm: float | None = 1.0) -> list[float]:
    """A minimal mixed-precision loop; returns the loss of every step.

    The order is the point: autocast forward -> scale(loss).backward() -> unscale_ ->
    clip the true gradients -> step (skipped on inf) -> update the scale.
    `dtype`: "float32", "bfloat16" (no scaler needed) or "float16" (scaler used).
    """
    device = torch.device(device)
    if dtype == "float16":
        require_fp16(device)
        scaler = scaler or LossScaler()
    else:
        scaler = LossScaler(enabled=False)
    ctx = (lambda: torch.autocast(device.type, dtype=getattr(torch, dtype))) if dtype != "float32" \
        else (lambda: torch.autocast(device.type, enabled=False))
    losses = []
    for batch in batches:
        with ctx():
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
    return losses
