"""A training run's state between steps, and its checkpoints (lesson 04).

`TrainState` is everything a resumed run needs, written out explicitly in
`checkpoint_state`: the model's and optimizer's state dicts, the step, the RNG
states, the grad scaler, the history, the run id. `open_run` starts a run (a new
run id, config.json, run.json with the digests of the run's files) or restores one
(checking that the checkpoint, its folder's files and the model belong together).

Divergence never leaves a broken checkpoint: a checkpoint taken during the run is
written as `ckpt.pending.pt` and becomes `ckpt.pt` only once its weights have
given one more finite training step (`commit`). The final checkpoint is written
directly: the loop has just checked its weights.

Under FSDP (lesson 14) the weights and optimizer state are sharded: every rank
gathers them into plain tensors (a collective), rank 0 writes, and a resumed run
gives each rank its shard back; the checkpoint holds plain tensors either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from minillm.checkpoint import CKPT_NAME, check_structure, load_checkpoint, load_weights, save_checkpoint
from minillm.kernels.parallel import full_optimizer_state_dict, full_state_dict, is_sharded, load_full_state_dict
from minillm.runfolder import append_metrics, check_manifest, new_run_id, write_manifest, write_metrics
from minillm.runtime import Runtime
from minillm.trainlog import save_plot
from minillm.utils import MiniLLMError, atomic_write_text

PENDING_NAME = "ckpt.pending.pt"


@dataclass
class TrainState:
    """Where a run stands; `folder` is None where nothing is written (no out dir, or rank > 0)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: Any                               # TrainConfig
    runtime: Runtime
    model_config: Any                      # a dataclass (GPTConfig) or None
    folder: Path | None
    run_id: str
    step: int = 0
    tokens: int = 0
    history: list[dict] = field(default_factory=list)
    pending: bool = False                  # a checkpoint waits for one more finite step
    kept: int | None = None                # step of the ckpt.pt this run wrote or resumed from

    @property
    def ckpt_path(self) -> Path | None:
        return self.folder / CKPT_NAME if self.folder is not None else None

    def checkpoint_state(self) -> dict:
        """The checkpoint: plain tensors and types (`torch.load(weights_only=True)` reads it)."""
        rt = self.runtime
        if is_sharded(self.model):   # FSDP: gather the shards (every rank calls this)
            model, optimizer = full_state_dict(self.model), full_optimizer_state_dict(self.model, self.optimizer)
        else:
            model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        return dict(
            model=model, optimizer=optimizer, step=self.step, config=config_dict(self.model_config),
            train_config=dataclasses.asdict(self.cfg), run_id=self.run_id, tokens_seen=self.tokens,
            rng=dict(torch=torch.get_rng_state(),
                     cuda=torch.cuda.get_rng_state(rt.device) if rt.device.type == "cuda" else None),
            # Batches are a function of (seed, step): the step is the data position.
            data_position=dict(sampler="step-indexed", seed=self.cfg.seed, next_step=self.step),
            scaler=rt.scaler.state_dict() if rt.scaler is not None else None, history=self.history)

    def save(self, pending: bool) -> None:
        if self.folder is None and not is_sharded(self.model):
            return
        ckpt = self.checkpoint_state()    # under FSDP a collective: every rank gathers, rank 0 writes
        if self.folder is None:
            return
        save_checkpoint(self.folder / (PENDING_NAME if pending else CKPT_NAME), ckpt)
        self.pending = pending
        if not pending:
            self.kept = self.step

    def commit(self) -> None:
        """The pending checkpoint's weights gave a finite step: it becomes ckpt.pt."""
        if self.pending:
            os.replace(self.folder / PENDING_NAME, self.ckpt_path)
            self.pending, self.kept = False, self.step

    def discard_pending(self) -> None:
        if self.folder is not None:
            (self.folder / PENDING_NAME).unlink(missing_ok=True)
        self.pending = False

    def record(self, rec: dict) -> None:
        """Add a log record to the history and to metrics.jsonl."""
        self.history.append(rec)
        if self.folder is not None:
            append_metrics(self.folder, rec)

    def plot(self, floor_bits_per_byte: float | None = None) -> None:
        if self.folder is not None and self.history:
            save_plot(self.history, self.folder / "loss.png", floor_bits_per_byte)

    def kept_path(self) -> Path | None:
        return self.ckpt_path if self.folder is not None and self.ckpt_path.exists() else None

    def diverged(self) -> str:
        """What is kept, for the divergence message."""
        if self.kept is not None:
            return f"the last good checkpoint is {self.ckpt_path} (step {self.kept}: finite weights and loss)"
        return "no checkpoint was written"


def open_run(folder: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: Any, rt: Runtime,
             resume: bool | str | os.PathLike, run_files: dict[str, Any], model_config: Any,
             log: Callable[[str], None]) -> TrainState:
    """A new run's state (step 0), or the restored state of a resumed one; writes the run's files."""
    writer = folder if rt.rank == 0 else None
    state = TrainState(model, optimizer, cfg, rt, model_config, writer, run_id=new_run_id())
    if writer is not None:
        (writer / PENDING_NAME).unlink(missing_ok=True)   # a run killed before committing it
    checked = False
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else (folder / CKPT_NAME if folder else None)
        if path is None:
            raise MiniLLMError("resume=True needs an out_dir (or pass the checkpoint's path)")
        restore(state, path, model_config)
        if writer is not None and path.resolve().parent == writer.resolve():
            check_manifest(writer, state.run_id, stage_run_files(writer, run_files, keep=True))
            checked = True
        log(f"resumed from {path} at step {state.step}")
    if writer is not None:
        if not checked:
            write_manifest(writer, state.run_id, stage_run_files(writer, run_files, keep=False))
        atomic_write_text(writer / "config.json", json.dumps(dict(
            run_id=state.run_id, model=config_dict(model_config), train=dataclasses.asdict(cfg),
            processes=rt.world, device=str(rt.device), dtype=rt.dtype), indent=2) + "\n")
        write_metrics(writer, state.history)
    return state


def config_dict(model_config: Any) -> dict | None:
    """The model config as plain types (None for a model without a dataclass config)."""
    return dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config) else None


def stage_run_files(folder: Path, run_files: dict[str, Any], keep: bool) -> dict[str, Path]:
    """Paths of the run's files; objects (a tokenizer) are saved as folder/name.

    keep=True (resume): an object is saved beside the existing file, so that
    `check_manifest` compares it with what the run was trained with.
    """
    paths = {}
    for name, obj in run_files.items():
        if isinstance(obj, (str, os.PathLike)):
            paths[name] = Path(obj)
            continue
        target = folder / name
        if keep and target.exists():
            probe = folder / f".{name}.resume-check"
            obj.save(probe)
            try:
                same = probe.read_bytes() == target.read_bytes()
            finally:
                probe.unlink(missing_ok=True)
            if not same:
                raise MiniLLMError(f"{name} is not the one this run was trained with: resume with the run's "
                                   f"own {name}, or start a new run")
        else:
            obj.save(target)
        paths[name] = target
    return paths


def restore(state: TrainState, path: Path, model_config: Any) -> None:
    """Load a checkpoint into the state (model, optimizer, scaler, RNG, step, history)."""
    ckpt = load_checkpoint(path, "cpu")
    check_structure(ckpt, str(path), for_resume=True)
    if dataclasses.is_dataclass(model_config) and ckpt["config"] != dataclasses.asdict(model_config):
        raise MiniLLMError(f"the checkpoint {path} is for a different model config: {ckpt['config']}")
    sharded = is_sharded(state.model)
    if not sharded:
        load_weights(state.model, ckpt["model"], str(path))
    try:
        if sharded:   # every rank read the file; each keeps its shard
            load_full_state_dict(state.model, state.optimizer, ckpt["model"], ckpt["optimizer"])
        else:
            state.optimizer.load_state_dict(ckpt["optimizer"])
        if state.runtime.scaler is not None and ckpt.get("scaler"):
            state.runtime.scaler.load_state_dict(ckpt["scaler"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise MiniLLMError(f"the optimizer state in {path} does not match the model: {e}") from None
    state.step = state.kept = ckpt["step"]
    state.run_id = ckpt.get("run_id") or state.run_id
    state.history = [h for h in ckpt.get("history", []) if h["step"] <= state.step]
    state.tokens = int(ckpt.get("tokens_seen", 0))
    torch.set_rng_state(ckpt["rng"]["torch"])
    if state.runtime.device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], state.runtime.device)
