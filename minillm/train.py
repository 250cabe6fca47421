"""Pretraining a GPT, readable top to bottom (lesson 04).

What it builds (the from-scratch loss, AdamW, clipping and schedule are in
`minillm/optim.py`, checkpoint files in `minillm/checkpoint.py`):
- `train`: the loop. Random windows of the token stream, gradient accumulation,
  evaluation every N steps, mixed precision through `minillm.device.autocast`
  (bf16; fp16 with a grad scaler where bf16 is missing), optional `torch.compile`,
  several processes with `torchrun` (DistributedDataParallel), tokens/s in the log;
- checkpoints that resume *exactly* (model, optimizer, step, RNG states, data
  position; written atomically, loadable with `torch.load(weights_only=True)`),
  a metrics log (JSONL), the config and loss plots in the run folder.

The training path uses PyTorch's fused pieces (`torch.optim.AdamW`,
`F.cross_entropy` inside the model, `clip_grad_norm_`); `TrainConfig.optimizer =
"minillm"` swaps in our AdamW. Left out: ZeRO/FSDP sharding, data loading in
worker processes, learning-rate finders, early stopping. Layout after nanoGPT's
`train.py`, written anew.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.data import batch_offsets, check_enough_tokens, get_batch, load_tokens
from minillm.optim import lr_at, make_optimizer
from minillm.device import autocast, bf16_supported, pick_device
from minillm.utils import MiniLLMError, atomic_write_text, set_seed


@dataclass
class TrainConfig:
    """How to train (the model's shape is GPTConfig). It travels inside every checkpoint."""

    steps: int = field(default=1000, metadata={"help": "optimizer steps in total (the schedule's length)"})
    batch_size: int = field(default=32, metadata={"help": "sequences per optimizer step, over all micro-batches and processes"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per step (gradient accumulation)"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "the cosine decays to lr * min_lr_ratio"})
    warmup_steps: int = field(default=50, metadata={"help": "steps of linear warmup from 0 to lr"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW decoupled weight decay (matrices only)"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the global gradient norm to this (0: off)"})
    eval_every: int = field(default=100, metadata={"help": "estimate the validation loss every N steps (0: only at the end)"})
    eval_batches: int = field(default=8, metadata={"help": "micro-batches of validation windows per estimate"})
    log_every: int = field(default=10, metadata={"help": "log the training loss and tokens/s every N steps"})
    checkpoint_every: int = field(default=0, metadata={"help": "save a checkpoint every N steps (0: only at the end); needs an out dir"})
    seed: int = field(default=0, metadata={"help": "seed for initialization, batches and dropout"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA -> MPS -> CPU), cpu, cuda, cuda:1, mps"})
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on CUDA, fp16 where bf16 is missing, fp32 on CPU), float32, bfloat16, float16"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (faster on GPUs, slow start)"})
    optimizer: str = field(default="torch", metadata={"help": "torch (torch.optim.AdamW) or minillm (our AdamW)"})


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """'auto' -> bfloat16 on CUDA GPUs that have it, float16 on older GPUs, float32 elsewhere.

    On a CPU, bf16 autocast works (ask for it) but is usually slower for small
    models than float32 and makes resume bit-exactness depend on the kernels.
    """
    if dtype != "auto":
        if dtype not in ("float32", "bfloat16", "float16"):
            raise MiniLLMError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        return dtype
    if device.type == "cuda":
        return "bfloat16" if bf16_supported(device) else "float16"
    return "float32"


# ---------------------------------------------------------------------------------
# Evaluation during training
# ---------------------------------------------------------------------------------

@torch.no_grad()
def estimate_loss(model: nn.Module, tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int,
                  device: torch.device, ctx=None) -> float:
    """Mean loss (nats/token) over `n_batches * batch_size` windows spread evenly over `tokens`.

    The windows are fixed (not random), so estimates at different steps are comparable
    and taking them does not touch any random generator (resume stays exact).
    """
    check_enough_tokens(tokens, block_size, "validation data")
    n_windows = max(1, n_batches * batch_size)
    offsets = np.unique(np.linspace(0, len(tokens) - block_size - 1, n_windows).astype(np.int64))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(offsets), batch_size):
        x, y = get_batch(tokens, offsets[i:i + batch_size], block_size, device)
        with ctx or contextlib.nullcontext():
            _, loss = model(x, y)
        total += loss.float().item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


# ---------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What `train` hands back. Losses are in nats per token."""

    model: nn.Module                 # the trained model (unwrapped: no DDP, no compile)
    final_val_loss: float | None     # estimate on the validation windows (None without val data)
    history: list[dict]              # one dict per logged step: step, lr, train_loss, [val_loss, val_bpb], ...
    tokens_seen: int                 # training tokens consumed, all processes together
    seconds: float                   # wall time of this call
    step: int                        # steps completed (== config.steps unless stopped early)
    checkpoint: Path | None = None   # where the final checkpoint is, if an out dir was given


class TrainingDiverged(MiniLLMError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def as_tokens(data) -> np.ndarray:
    """A token array from an array, a tensor, a list or a token-file path."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return load_tokens(data)
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    return np.asarray(data)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when alone."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def train(model_config, train_config: TrainConfig, train_data, val_data=None, *,
          out_dir: str | os.PathLike | None = None, resume: bool | str | os.PathLike = False,
          until_step: int | None = None, tokenizer=None, bytes_per_token: float | None = None,
          floor_bits_per_byte: float | None = None, model: nn.Module | None = None,
          progress: bool = False, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train a GPT(`model_config`) on `train_data` (token ids) as `train_config` says.

    train_data / val_data: 1-D token arrays, tensors or token-file paths.
    out_dir: where the checkpoint (ckpt.pt), tokenizer.json, metrics.jsonl,
        config.json and loss plots go; nothing is written without it.
    resume: True (out_dir/ckpt.pt) or a checkpoint path: continue exactly where it stopped.
    until_step: stop after this many steps (saving a checkpoint) without changing
        the schedule, which always spans `train_config.steps`.
    bytes_per_token: of the validation text; adds validation bits per byte to the log.
    model: train this module instead of a fresh GPT(model_config) (its forward must be
        `logits, loss = model(idx, targets)`).
    Under torchrun (WORLD_SIZE > 1) every process runs this function; the global
    batch is split across processes, rank 0 logs and writes.
    """
    t_start = time.time()
    cfg = train_config
    rank, world, local_rank = _distributed()
    log = log if (log is not None and rank == 0) else (lambda s: None)
    created_group = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if (torch.cuda.is_available() and cfg.device != "cpu") else "gloo"
        torch.distributed.init_process_group(backend)
        created_group = True
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)

    # --- check the inputs before spending any compute ---
    T = model_config.block_size
    train_tokens, val_tokens = as_tokens(train_data), as_tokens(val_data)
    if train_tokens is None or len(train_tokens) == 0:
        raise MiniLLMError("the training data is empty")
    check_enough_tokens(train_tokens, T, "training data")
    if val_tokens is not None:
        check_enough_tokens(val_tokens, T, "validation data")
    for name, toks in (("training", train_tokens), ("validation", val_tokens)):
        if toks is not None and int(toks.max()) >= model_config.vocab_size:
            raise MiniLLMError(f"the {name} data has token id {int(toks.max())} but the model's vocab_size is "
                               f"{model_config.vocab_size}: use the tokenizer's vocab size for the model")
    if tokenizer is not None and tokenizer.vocab_size > model_config.vocab_size:
        raise MiniLLMError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                           f"{model_config.vocab_size}: set vocab_size to at least {tokenizer.vocab_size}")
    if cfg.batch_size % (cfg.grad_accum * world):
        raise MiniLLMError(f"batch_size {cfg.batch_size} must be divisible by grad_accum x processes "
                           f"= {cfg.grad_accum} x {world}")
    micro = cfg.batch_size // (cfg.grad_accum * world)
    if cfg.steps < 1:
        raise MiniLLMError(f"steps must be at least 1, got {cfg.steps}")

    # --- model, optimizer, precision ---
    set_seed(cfg.seed)
    if model is None:
        from minillm.model import GPT

        model = GPT(model_config)
    raw_model = model.to(device)
    dtype = resolve_dtype(cfg.dtype, device)
    ctx = autocast(device, dtype)
    # Model FLOPs per token (lesson 07) give achieved FLOP/s and, on a known GPU, MFU.
    from minillm import flops as _flops

    flops_per_token = _flops.model_flops_per_token(model_config, T)
    peak = (_flops.peak_flops(None, {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, "tf32"))
            if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type) if dtype == "float16" else None
    optimizer = make_optimizer(raw_model, cfg, device)

    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "ckpt.pt" if out is not None else None
    start_step, history = 0, []
    if resume:
        rpath = Path(resume) if not isinstance(resume, bool) else ckpt_path
        if rpath is None:
            raise MiniLLMError("resume=True needs an out_dir (or pass the checkpoint's path)")
        ckpt = load_checkpoint(rpath, "cpu")
        if ckpt["config"] != dataclasses.asdict(model_config):
            raise MiniLLMError(f"the checkpoint {rpath} is for a different model config: {ckpt['config']}")
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_step = int(ckpt["step"])
        history = [h for h in ckpt.get("history", []) if h["step"] <= start_step]
        if out is not None and rank == 0:  # the metrics log restarts from the checkpoint's history
            atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
        log(f"resumed from {rpath} at step {start_step}")

    model = raw_model
    if cfg.compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)

    def checkpoint(step: int) -> None:
        if out is None or rank != 0:
            return
        state = dict(
            model=raw_model.state_dict(), config=dataclasses.asdict(model_config),
            optimizer=optimizer.state_dict(), step=step, train_config=dataclasses.asdict(cfg),
            rng=dict(torch=torch.get_rng_state(),
                     cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None),
            # Batches are a function of (seed, step): the step is the data position.
            data_position=dict(sampler="random", seed=cfg.seed, next_step=step),
            scaler=scaler.state_dict() if scaler is not None else None,
            history=history)
        save_checkpoint(ckpt_path, state)
        if tokenizer is not None:
            tokenizer.save(out / "tokenizer.json")

    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(
            dict(model=dataclasses.asdict(model_config), train=dataclasses.asdict(cfg), processes=world,
                 device=str(device), dtype=dtype), indent=2) + "\n")

    stop = cfg.steps if until_step is None else min(until_step, cfg.steps)
    tokens_per_step = cfg.batch_size * T
    n_params = sum(p.numel() for p in raw_model.parameters())
    log(f"training {n_params:,} parameters on {device} ({dtype}, {world} process(es)): steps {start_step}->{stop}, "
        f"{tokens_per_step:,} tokens/step, micro-batch {micro} x {cfg.grad_accum} accumulation")

    def evaluate() -> float:
        return estimate_loss(raw_model, val_tokens, T, micro, cfg.eval_batches, device, ctx)

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=stop - start_step, desc="training", unit="step")
    model.train()
    t_last, tok_last = time.time(), 0
    step = start_step
    for step in range(start_step, stop):
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # The global batch of this step, the same in every process; each takes its rows.
        offsets = batch_offsets(len(train_tokens), T, cfg.batch_size, cfg.seed, step)
        loss_sum = torch.zeros((), device=device)
        for k in range(cfg.grad_accum):
            first = (k * world + rank) * micro
            x, y = get_batch(train_tokens, offsets[first:first + micro], T, device)  # (micro, T) each
            # Under DDP, average gradients across processes only on the last micro-batch.
            sync = model.no_sync() if (world > 1 and k < cfg.grad_accum - 1) else contextlib.nullcontext()
            with sync:
                with ctx:
                    _, loss = model(x, y)
                loss = loss.float() / cfg.grad_accum   # the mean over the whole batch, piece by piece
                (scaler.scale(loss) if scaler is not None else loss).backward()
            loss_sum += loss.detach()
        if world > 1:
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= world
        train_loss = loss_sum.item()
        if not math.isfinite(train_loss):
            where = f"the last good checkpoint is {ckpt_path}" if ckpt_path is not None and ckpt_path.exists() \
                else "no checkpoint was written"
            if bar is not None:
                bar.close()
            raise TrainingDiverged(f"the training loss became {train_loss} at step {step}; {where}. "
                                   f"Lower the learning rate (now {lr:.3g}) or clip gradients harder")
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip) \
            if cfg.grad_clip > 0 else None
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        tok_last += tokens_per_step
        is_eval = val_tokens is not None and (
            done == stop if cfg.eval_every <= 0 else (done % cfg.eval_every == 0 or done == stop))
        if (cfg.log_every > 0 and done % cfg.log_every == 0) or is_eval or done == stop:
            now = time.time()
            rec = dict(step=done, lr=lr, train_loss=train_loss, tokens=done * tokens_per_step,
                       tokens_per_s=tok_last / max(now - t_last, 1e-9), elapsed=now - t_start)
            rec["tflops"] = rec["tokens_per_s"] * flops_per_token / 1e12  # achieved model TFLOP/s
            rec["mfu"] = _flops.mfu(rec["tokens_per_s"], flops_per_token, peak, n_devices=world)
            if grad_norm is not None:
                rec["grad_norm"] = float(grad_norm)
            if is_eval:
                rec["val_loss"] = evaluate()
                if bytes_per_token:
                    rec["val_bpb"] = rec["val_loss"] / math.log(2) / bytes_per_token
            history.append(rec)
            msg = (f"step {done:5d} | loss {train_loss:.4f} | lr {lr:.2e} | "
                   f"{rec['tokens_per_s']:,.0f} tok/s" + (f" | MFU {rec['mfu']:.1%}" if rec["mfu"] is not None else ""))
            if "val_loss" in rec:
                msg += f" | val {rec['val_loss']:.4f}"
                if "val_bpb" in rec:
                    msg += f" ({rec['val_bpb']:.4f} bits/byte"
                    msg += f", floor {floor_bits_per_byte:.4f})" if floor_bits_per_byte else ")"
            log(msg)
            if out is not None and rank == 0:
                with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
            t_last, tok_last = time.time(), 0
        if cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done != stop:
            checkpoint(done)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    done = stop if stop > start_step else start_step
    checkpoint(done)
    final_val = next((h["val_loss"] for h in reversed(history) if "val_loss" in h and h["step"] == done), None)
    if final_val is None and val_tokens is not None:
        final_val = evaluate()
    if out is not None and rank == 0 and history:
        fig = plot_history(history, floor_bits_per_byte)
        fig.savefig(out / "loss.png", dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
    if created_group:
        torch.distributed.destroy_process_group()
    return TrainResult(model=raw_model, final_val_loss=final_val, history=history,
                       tokens_seen=done * tokens_per_step, seconds=time.time() - t_start, step=done,
                       checkpoint=ckpt_path if (out is not None and ckpt_path.exists()) else None)


def plot_history(history: list[dict], floor_bits_per_byte: float | None = None):
    """Loss curves: train/validation loss (nats/token) and validation bits/byte vs the floor."""
    import matplotlib.pyplot as plt

    has_bpb = any("val_bpb" in h for h in history)
    fig, axes = plt.subplots(1, 2 if has_bpb else 1, figsize=(11 if has_bpb else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot([h["step"] for h in history], [h["train_loss"] for h in history], label="train")
    val = [h for h in history if "val_loss" in h]
    if val:
        ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", label="validation")
    ax.set(xlabel="step", ylabel="loss (nats/token)", yscale="log", title="training")
    ax.legend()
    if has_bpb:
        ax = axes[0, 1]
        bpb = [h for h in history if "val_bpb" in h]
        ax.plot([h["step"] for h in bpb], [h["val_bpb"] for h in bpb], "o-", label="validation")
        if floor_bits_per_byte:
            ax.axhline(floor_bits_per_byte, color="k", ls="--", label=f"entropy floor {floor_bits_per_byte:.3f}")
        ax.set(xlabel="step", ylabel="bits per byte", yscale="log", title="validation vs the floor")
        ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------
# Command line: minillm train
# ---------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.config import add_dataclass_arguments
    from minillm.model import GPTConfig

    parser.add_argument("--data", default="tinyworld", help="tinyworld, a text file, or a corpus name (tinyshakespeare)")
    parser.add_argument("--val-data", default=None, help="validation text file (default: TinyWorld's val split, "
                        "or the last 10%% of the data)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer.json to use (default: train one on the data)")
    parser.add_argument("--out", default="runs/train", help="run folder: checkpoint, metrics, plots")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    add_dataclass_arguments(parser, GPTConfig)
    add_dataclass_arguments(parser, TrainConfig)


def prepare_data(data: str, val_data: str | None, tokenizer, out: Path, vocab_size: int,
                 progress: bool = True, log: Callable[[str], None] = print):
    """Text -> (tokenizer, train token file, val token file, val bytes per token)."""
    from minillm.data import tokenize_text, write_tokens, load_corpus
    from minillm.tokenizer import Tokenizer

    text = load_corpus(data, "train")
    if val_data is not None:
        val_text = load_corpus(val_data, "val")
    elif data == "tinyworld":
        val_text = load_corpus("tinyworld", "val")
    else:
        cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
        text, val_text = text[:cut], text[cut:]
    if not val_text.strip():
        raise MiniLLMError("the validation text is empty: give more data or --val-data")
    if tokenizer is None:
        log(f"training a tokenizer with {vocab_size} ids on {min(len(text), 1 << 20):,} characters")
        tokenizer = Tokenizer.train(text[:1 << 20], vocab_size)
    else:
        tokenizer = Tokenizer.load(tokenizer)
    paths = {}
    for split, t in (("train", text), ("val", val_text)):
        ids = tokenize_text(t, tokenizer)
        paths[split] = out / f"{split}.bin"
        write_tokens(paths[split], [ids], tokenizer.vocab_size)
    bpt = len(val_text.encode("utf-8")) / len(load_tokens(paths["val"]))
    return tokenizer, paths["train"], paths["val"], bpt


def run(args: argparse.Namespace) -> int:
    from minillm.config import dataclass_from_args
    from minillm.model import GPTConfig

    mcfg = dataclass_from_args(GPTConfig, args)
    tcfg = dataclass_from_args(TrainConfig, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok, train_path, val_path, bpt = prepare_data(args.data, args.val_data, args.tokenizer, out,
                                                  mcfg.vocab_size, args.progress)
    floor = None
    if args.data == "tinyworld" and args.val_data is None:
        from minillm import world

        floor = json.loads((world.default_data_dir() / "floor.json").read_text())["val"]["bits_per_byte"]
    result = train(mcfg, tcfg, train_path, val_path, out_dir=out, resume=args.resume, tokenizer=tok,
                   bytes_per_token=bpt, floor_bits_per_byte=floor, progress=args.progress)
    if result.final_val_loss is not None:
        print(f"final validation loss {result.final_val_loss:.4f} nats/token = "
              f"{result.final_val_loss / math.log(2) / bpt:.4f} bits/byte")
    print(f"checkpoint: {result.checkpoint}")
    return 0
