"""The training loop, readable top to bottom (lesson 04), and pretraining with it.

What it builds:
- `train_step`: one optimizer step: gradient accumulation over micro-batches (DDP
  all-reduces only on the last), the fp16 grad scaler, clipping; returns the loss;
- `fit`: THE loop every lesson reuses (pretraining, SFT, reward model, DPO, LoRA):
  the schedule, `train_step`, evaluation every N steps, a log record, checkpoints
  that resume *exactly* (model, optimizer, step, RNG states; batches are a pure
  function of the step), a stop on divergence that keeps the last finite
  checkpoint, the run folder (`minillm/runfolder.py`) and a progress bar;
- `train`: pretraining = `fit` with random windows of a token stream.

Where the rest lives: device/precision/processes in `runtime.py`, the loss,
AdamW, clipping and schedule from scratch in `optim.py`, checkpoint files in
`checkpoint.py`, log lines and plots in `trainlog.py`. Lesson 14's GPU-path
options plug in here: fp16 with our dynamic loss scaler (`dtype float16`),
activation checkpointing per block and FSDP sharding (`minillm/kernels/`).
Left out: data loading in worker processes, learning-rate finders, early stopping.
Layout after nanoGPT's `train.py`, written anew.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from minillm.lm import as_tokens, check_lm_data, estimate_loss, lm_batches, lm_loss, model_flops_per_token  # noqa: F401
from minillm.model import GPT
from minillm.optim import lr_at, make_optimizer
from minillm.runfolder import locked
from minillm.kernels.checkpointing import checkpointed
from minillm.kernels.parallel import is_sharded
from minillm.runtime import Runtime, check_fsdp, no_sync, resolve_dtype, setup_runtime, shard_model, wrap_model  # noqa: F401
from minillm.trainlog import Meter, Progress, format_record, plot_history  # noqa: F401 (plot_history: re-exported)
from minillm.trainrun import open_run
from minillm.utils import MiniLLMError, set_seed


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class TrainConfig:
    """How to train (the model's shape is GPTConfig). It travels inside every checkpoint."""

    steps: int = field(default=1000, metadata=_help("optimizer steps in total (the schedule's length)"))
    batch_size: int = field(default=32, metadata=_help("sequences per optimizer step, over all micro-batches and processes"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per step (gradient accumulation)"))
    lr: float = field(default=3e-3, metadata=_help("peak learning rate"))
    min_lr_ratio: float = field(default=0.1, metadata=_help("the cosine decays to lr * min_lr_ratio"))
    warmup_steps: int = field(default=50, metadata=_help("steps of linear warmup: step s uses lr * (s + 1) / warmup_steps"))
    weight_decay: float = field(default=0.1, metadata=_help("AdamW decoupled weight decay (matrices only)"))
    beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    beta2: float = field(default=0.95, metadata=_help("AdamW beta2"))
    eps: float = field(default=1e-8, metadata=_help("AdamW epsilon"))
    grad_clip: float = field(default=1.0, metadata=_help("clip the global gradient norm to this (0: off)"))
    eval_every: int = field(default=100, metadata=_help("evaluate every N steps (0: only at the end)"))
    eval_batches: int = field(default=8, metadata=_help("micro-batches of validation windows per estimate"))
    log_every: int = field(default=10, metadata=_help("log the training loss and tokens/s every N steps (0: only at evaluations)"))
    checkpoint_every: int = field(default=0, metadata=_help("save a checkpoint every N steps (0: only at the end); needs an out dir"))
    seed: int = field(default=0, metadata=_help("seed for initialization, batches and dropout"))
    device: str = field(default="auto", metadata=_help("auto (CUDA -> MPS -> CPU), cpu, cuda, cuda:1, mps"))
    dtype: str = field(default="auto", metadata=_help("auto (bf16 on CUDA, fp16 where bf16 is missing, fp32 on CPU), float32, bfloat16, float16"))
    compile: bool = field(default=False, metadata=_help("torch.compile the model (faster on GPUs, slow start)"))
    optimizer: str = field(default="torch", metadata=_help("torch (torch.optim.AdamW) or minillm (our AdamW)"))
    activation_checkpointing: bool = field(default=False, metadata=_help(
        "recompute each transformer block's activations in backward (less memory, ~1/3 more forward compute)"))
    fsdp: bool = field(default=False, metadata=_help(
        "shard weights, gradients and optimizer state over the processes (FSDP / ZeRO-3; needs torchrun)"))

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise MiniLLMError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_every", "log_every", "checkpoint_every", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise MiniLLMError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MiniLLMError(f"lr must be a positive finite number, got {self.lr}")
        for name, lo, hi in (("min_lr_ratio", 0, 1), ("beta1", 0, 1), ("beta2", 0, 1), ("weight_decay", 0, math.inf),
                             ("eps", 0, math.inf), ("grad_clip", 0, math.inf)):
            v = getattr(self, name)
            if not (math.isfinite(v) and lo <= v <= hi) or (name in ("beta1", "beta2") and v == 1):
                raise MiniLLMError(f"{name} must be in [{lo}, {hi}{']' if name == 'min_lr_ratio' else ')'}, got {v}")
        if self.optimizer not in ("torch", "minillm"):
            raise MiniLLMError(f"optimizer must be 'torch' or 'minillm', got {self.optimizer!r}")


# ---------------------------------------------------------------------------------
# One optimizer step
# ---------------------------------------------------------------------------------

@dataclass
class StepResult:
    loss: float                  # the step's loss (mean over its items; all processes)
    grad_norm: float | None      # global gradient norm before clipping (None when clipping is off)
    count: int | None = None     # supervised items in the step, all processes (with count_fn)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: list, loss_fn: Callable,
               runtime: Runtime, *, count_fn: Callable | None = None, grad_clip: float = 1.0) -> StepResult:
    """Accumulate gradients over `micro_batches`, then clip and take one optimizer step.

    Without `count_fn`, `loss_fn(model, mb)` is a mean and each micro-batch weighs 1/n.
    With it, `loss_fn` returns a SUM over `count_fn(mb)` items and the step minimises
    (sum of sums) / (sum of counts) over all micro-batches and processes. A step whose
    loss is not finite is not taken (the gradients are dropped), nor one whose
    gradient norm is not finite (outside fp16, where the scaler skips such steps).
    """
    rt, n = runtime, len(micro_batches)
    scale = [1.0 / n] * n
    count = None
    if count_fn is not None:
        counts = torch.tensor([float(count_fn(mb)) for mb in micro_batches], device=rt.device)  # (n,)
        total = counts.sum()
        if rt.world > 1:
            torch.distributed.all_reduce(total)
        count = int(total.item())
        # Each sum is divided by the global count; DDP averages gradients over processes,
        # so multiply by world to get the global sum's gradient.
        scale = [rt.world / max(count, 1) if c > 0 else 0.0 for c in counts.tolist()]
    loss_sum = torch.zeros((), device=rt.device)
    for k, mb in enumerate(micro_batches):
        if scale[k] == 0 and not (rt.world > 1 and k == n - 1):
            continue  # no supervised items: adds nothing (and never a NaN)
        with no_sync(model, rt, last=k == n - 1):
            with rt.autocast:
                loss = loss_fn(model, mb)
            loss = loss.float() / n if count_fn is None else loss.float() * scale[k]
            (rt.scaler.scale(loss) if rt.scaler is not None else loss).backward()
        loss_sum += loss.detach()
    if rt.world > 1:
        torch.distributed.all_reduce(loss_sum)
        loss_sum /= rt.world
    result = StepResult(loss=loss_sum.item(), grad_norm=None, count=count)
    if math.isfinite(result.loss):
        if rt.scaler is not None:
            rt.scaler.unscale_(optimizer)
        if grad_clip > 0:
            # (in the model's parameter order: the norm's float sum depends on the order)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            result.grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a DTensor
        if rt.scaler is not None:
            rt.scaler.step(optimizer)
            rt.scaler.update()
        elif result.grad_norm is None or math.isfinite(result.grad_norm):
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return result


class TrainingDiverged(MiniLLMError):
    """The loss, the gradients or the weights became NaN or infinite; the last finite checkpoint is kept."""


def divergence(result: StepResult, model: nn.Module, runtime: Runtime) -> str | None:
    """What went non-finite in this step (None when everything is finite)."""
    if not math.isfinite(result.loss):
        return f"the training loss became {result.loss}"
    if runtime.scaler is None and result.grad_norm is not None and not math.isfinite(result.grad_norm):
        return f"the gradient norm became {result.grad_norm}"
    finite = torch.stack([torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()
                          for p in model.parameters()]).all()
    if runtime.world > 1 and is_sharded(model):   # FSDP: each rank checks its shard; all must agree
        finite = finite.float()
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if not finite.item():  # one sync
        return "the weights became non-finite"
    return None


# ---------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What `fit` and `train` hand back. Losses are in nats per token."""

    model: nn.Module                 # the trained model (unwrapped: no DDP, no compile)
    final_val_loss: float | None     # the last evaluation's val_loss (None without evaluation)
    history: list[dict]              # one dict per logged step: step, lr, train_loss, [val_loss, val_bpb], ...
    tokens_seen: int                 # training tokens consumed, all processes together
    seconds: float                   # wall time of this call
    step: int                        # steps completed (== config.steps unless stopped early)
    checkpoint: Path | None = None   # where the final checkpoint is, if an out dir was given


def fit(model: nn.Module, cfg: TrainConfig, batches: Callable[[int], list], loss_fn: Callable, *,
        count_fn: Callable | None = None, evaluate: Callable[[nn.Module], dict] | None = None,
        out_dir: str | os.PathLike | None = None, resume: bool | str | os.PathLike = False,
        until_step: int | None = None, run_files: dict[str, Any] | None = None, progress: bool = False,
        log: Callable[[str], None] | None = print, runtime: Runtime | None = None,
        tokens_per_step: int | None = None, flops_per_token: float | None = None,
        floor_bits_per_byte: float | None = None, model_config: Any = None) -> TrainResult:
    """Train `model` for `cfg.steps` optimizer steps (or up to `until_step`); read it top to bottom.

    batches(step) -> this process's micro-batches of step `step` (a pure function of the
    step: resume is exact). loss_fn(model, micro_batch) -> loss tensor; count_fn: see
    `train_step`. evaluate(model) -> metrics added to the log record at eval steps.
    out_dir: ckpt.pt, config.json, metrics.jsonl, loss.png, run.json and the `run_files`
    ({name: an object with .save(path), or a file's path}); one run at a time (a lock).
    resume: True (out_dir/ckpt.pt) or a checkpoint path. Under torchrun every process
    runs this; rank 0 logs and writes.
    """
    t_start, rt = time.time(), runtime or setup_runtime(cfg.device, cfg.dtype)
    log = log if (log is not None and rt.rank == 0) else (lambda s: None)
    folder = Path(out_dir) if out_dir is not None else None
    with contextlib.ExitStack() as stack:
        raw, optimizer = prepare_model(model, cfg, rt, stack)  # raw: the module we save (no DDP, no compile)
        if folder is not None and rt.rank == 0:
            stack.enter_context(locked(folder))
        state = open_run(folder, raw, optimizer, cfg, rt, resume, run_files or {},
                         model_config if model_config is not None else getattr(raw, "config", None), log)
        net = wrap_model(raw, rt, compile=cfg.compile, sharded=cfg.fsdp)   # the module we call
        stop = cfg.steps if until_step is None else min(until_step, cfg.steps)
        log(f"training {sum(p.numel() for p in raw.parameters()):,} parameters on {rt.device} ({rt.dtype}, "
            f"{rt.world} process(es)): steps {state.step}->{stop}" + (f", {tokens_per_step:,} tokens/step"
                                                                     if tokens_per_step else ""))
        meter, evaluated = Meter(rt, flops_per_token), ({}, None)   # (metrics, at step) of the last evaluation
        bar = Progress(state.step, stop, progress and rt.rank == 0, log)
        net.train()
        try:
            for step in range(state.step, stop):
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                result = train_step(net, optimizer, batches(step), loss_fn, rt, count_fn=count_fn,
                                    grad_clip=cfg.grad_clip)
                if (what := divergence(result, raw, rt)) is not None:
                    raise TrainingDiverged(f"{what} at step {step}; {state.diverged()}. Lower the learning "
                                           f"rate (now {lr:.3g}) or clip gradients harder")
                state.commit()        # the pending checkpoint's weights have just given a finite step
                state.step, n_tokens = step + 1, tokens_per_step or result.count or 0
                state.tokens += n_tokens
                meter.add(n_tokens)
                do_eval = evaluate is not None and is_due(state.step, cfg.eval_every, stop)
                rec = None
                if do_eval or is_due(state.step, cfg.log_every, stop):
                    rec = dict(meter.record(state, lr, result, t_start), **scaler_record(rt))
                    if do_eval:
                        evaluated = evaluate(raw), state.step
                        rec.update(evaluated[0])
                    state.record(rec)
                    bar.log(format_record(rec, floor_bits_per_byte))
                bar.step(meter.last_rate if n_tokens else None, rec)   # no token count (RL): no tok/s
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step != stop:
                    state.save(pending=True)
        finally:
            bar.close()
            state.discard_pending()
        state.save(pending=False)
        if evaluate is not None and evaluated[1] != state.step:
            evaluated = evaluate(raw), state.step                # no step was run: evaluate once
        final = evaluated[0].get("val_loss")
        state.plot(floor_bits_per_byte)
    return TrainResult(model=raw, final_val_loss=final, history=state.history, tokens_seen=state.tokens,
                       seconds=time.time() - t_start, step=state.step, checkpoint=state.kept_path())


def prepare_model(model: nn.Module, cfg: TrainConfig, rt: Runtime, stack: contextlib.ExitStack):
    """(the model on the device, its optimizer), with lesson 14's options applied in their order:
    activation checkpointing before any wrapping (undone when `stack` closes), FSDP sharding in
    place, then the optimizer (it must see the shards)."""
    if cfg.fsdp:
        check_fsdp(rt)                                         # one clear error when alone
    raw = model.to(rt.device)
    if cfg.activation_checkpointing:                           # state-dict keys do not change
        stack.enter_context(checkpointed(raw))
    if cfg.fsdp:
        shard_model(raw, rt)
    return raw, make_optimizer(raw, cfg, rt.device)


def scaler_record(rt: Runtime) -> dict:
    """fp16: the loss scale and the steps it skipped, for the log record (nothing otherwise)."""
    if rt.scaler is None:
        return {}
    return dict(loss_scale=rt.scaler.get_scale(), skipped_steps=getattr(rt.scaler, "skipped_steps", None))


def is_due(done: int, every: int, stop: int) -> bool:
    """Whether after step `done` (1-based) it is time: every `every` steps and at the end (0: only there)."""
    return done == stop or (every > 0 and done % every == 0)


# ---------------------------------------------------------------------------------
# Pretraining: fit on random windows of a token stream
# ---------------------------------------------------------------------------------

def train(model_config, train_config: TrainConfig, train_data, val_data=None, *,
          out_dir: str | os.PathLike | None = None, resume: bool | str | os.PathLike = False,
          until_step: int | None = None, tokenizer=None, bytes_per_token: float | None = None,
          floor_bits_per_byte: float | None = None, model: nn.Module | None = None,
          progress: bool = False, log: Callable[[str], None] | None = print,
          run_files: dict[str, Any] | None = None) -> TrainResult:
    """Pretrain a GPT(`model_config`) on `train_data` (token ids) as `train_config` says.

    train_data / val_data: 1-D token arrays, tensors or token-file paths.
    tokenizer: saved as out_dir/tokenizer.json (it belongs to the run).
    until_step: stop after this many steps (saving a checkpoint) without changing the
        schedule, which always spans `train_config.steps`.
    bytes_per_token: of the validation text; adds validation bits per byte to the log.
    model: train this module instead of a fresh GPT(model_config) (`logits, loss = model(idx, targets)`).
    The other keywords are `fit`'s.
    """
    cfg, T = train_config, model_config.block_size
    train_tokens, val_tokens = as_tokens(train_data), as_tokens(val_data)
    check_lm_data(model_config, train_tokens, val_tokens, tokenizer)
    rt = setup_runtime(cfg.device, cfg.dtype)
    try:
        if cfg.batch_size % (cfg.grad_accum * rt.world):
            raise MiniLLMError(f"batch_size {cfg.batch_size} must be divisible by grad_accum x processes "
                               f"= {cfg.grad_accum} x {rt.world}")
        set_seed(cfg.seed)
        model = model if model is not None else GPT(model_config)
        micro = cfg.batch_size // (cfg.grad_accum * rt.world)

        def evaluate(m: nn.Module) -> dict:
            val_loss = estimate_loss(m, val_tokens, T, micro, cfg.eval_batches, rt.device, rt.autocast)
            return dict(val_loss=val_loss, **({"val_bpb": val_loss / math.log(2) / bytes_per_token}
                                              if bytes_per_token else {}))

        files = dict(run_files or {})
        if tokenizer is not None:
            files.setdefault("tokenizer.json", tokenizer)
        return fit(model, cfg, lm_batches(train_tokens, cfg, T, rt), lm_loss,
                   evaluate=evaluate if val_tokens is not None else None, out_dir=out_dir, resume=resume,
                   until_step=until_step, run_files=files, progress=progress, log=log, runtime=rt,
                   tokens_per_step=cfg.batch_size * T, flops_per_token=model_flops_per_token(model, T),
                   floor_bits_per_byte=floor_bits_per_byte, model_config=model_config)
    finally:
        rt.close()
