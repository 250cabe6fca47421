"""Checkpoints: written atomically, read without executing code, checked before use (lesson 04).

A checkpoint is a dict of plain tensors and plain types, {"model": state_dict,
"config": dataclasses.asdict(GPTConfig), "optimizer": ..., "step": ..., "run_id": ...,
...}, saved with `torch.save` through `minillm.utils.atomic_write` (a killed save
leaves the previous file intact) and loaded with `torch.load(weights_only=True)`.
The run folder keeps it as `ckpt.pt`, with `tokenizer.json` beside it;
`load_run` is the one loader of "a checkpoint with its tokenizer".

Every way a file can be wrong (not a checkpoint, a list, a config of the wrong
types, weights that disagree with the config, no optimizer state to resume from)
is a one-line `MiniLLMError`, never a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from minillm.model import GPT, GPTConfig
from minillm.runfolder import read_run_id
from minillm.tokenizer import Tokenizer
from minillm.utils import MiniLLMError, atomic_write

CKPT_NAME = "ckpt.pt"
TOKENIZER_NAME = "tokenizer.json"


def save_checkpoint(path: str | os.PathLike | IO[bytes], state: dict[str, Any]) -> Path | None:
    """`torch.save(state)`: to a path atomically (a killed save leaves the previous file),
    or into an open binary file object (returns None then)."""
    if hasattr(path, "write"):
        torch.save(state, path)
        return None

    def write(tmp: str) -> None:
        try:
            torch.save(state, tmp)
        except RuntimeError as e:  # torch's writer reports a failed write (full disk, size limit) this way
            raise OSError(f"the write failed (is the disk full?): {str(e).strip()}") from None

    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike | IO[bytes], map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint (a path, a run folder or a binary file object) without executing code."""
    if not hasattr(path, "read"):
        path = Path(path)
        if path.is_dir():
            path = path / CKPT_NAME
        if not path.exists():
            raise MiniLLMError(f"checkpoint {str(path)!r} not found (train one with `minillm train`)")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before failing on them
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file, or one that needs code to unpickle
        raise MiniLLMError(f"cannot read checkpoint {path}: {_why_unreadable(e)}") from None


def _why_unreadable(e: Exception) -> str:
    """torch.load's failure in one short line (its own messages run over many lines)."""
    if isinstance(e, EOFError):
        return "the file is empty or cut short"
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
        return ("not a PyTorch checkpoint, or one that holds more than tensors and plain types "
                "(minillm never runs code from a file)")
    if "zip archive" in str(e) or "central directory" in str(e):
        return "truncated or damaged (not a complete zip archive)"
    first = " ".join(str(e).split()).split(". ")[0][:160]
    return f"truncated, or not a checkpoint file ({first or type(e).__name__})"


def check_structure(ckpt: Any, where: str, *, for_resume: bool = False) -> None:
    """Check that a loaded checkpoint has the parts (and types) a minillm checkpoint has."""
    if not isinstance(ckpt, dict):
        raise MiniLLMError(f"{where} is not a minillm checkpoint (it holds a {type(ckpt).__name__}, "
                           "not a dict with 'model' and 'config')")
    missing = [k for k in ("model", "config") if k not in ckpt]
    if missing:
        raise MiniLLMError(f"{where} is not a minillm checkpoint (no {' or '.join(map(repr, missing))})")
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise MiniLLMError(f"{where}: 'model' must be a dict of tensors")
    step = ckpt.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise MiniLLMError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
    if for_resume:
        if not isinstance(ckpt.get("optimizer"), dict):
            raise MiniLLMError(f"{where} has no optimizer state, so training cannot resume from it "
                               "(it still works with generate and evaluate)")
        rng = ckpt.get("rng")
        if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor):
            raise MiniLLMError(f"{where} has no random-generator state, so training cannot resume exactly")
        if not isinstance(ckpt.get("history", []), list):
            raise MiniLLMError(f"{where}: 'history' must be a list")


def check_checkpoint(ckpt: Any, where: str, *, for_resume: bool = False) -> GPTConfig:
    """The GPTConfig of a loaded checkpoint, after checking its structure and types."""
    check_structure(ckpt, where, for_resume=for_resume)
    return config_from_dict(ckpt["config"], where)


def config_from_dict(d: Any, where: str) -> GPTConfig:
    """GPTConfig from a checkpoint's config dict; wrong types and unknown sizes are errors."""
    if not isinstance(d, dict):
        raise MiniLLMError(f"{where}: 'config' must be a dict, got {type(d).__name__}")
    values = {}
    for f in dataclasses.fields(GPTConfig):
        if f.name not in d:
            continue
        v, default = d[f.name], f.default
        ok = (isinstance(v, type(default)) and not (isinstance(v, bool) and not isinstance(default, bool))
              ) or (isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool)) \
            or (default is None and (v is None or isinstance(v, int)))
        if not ok:
            raise MiniLLMError(f"{where}: config field {f.name!r} should be a {type(default).__name__}, "
                               f"got {v!r}")
        values[f.name] = v
    try:
        return GPTConfig(**values)
    except (TypeError, ValueError) as e:
        raise MiniLLMError(f"{where}: bad config: {e}") from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """`model.load_state_dict(state)`, with a one-line error when they disagree."""
    # torch.compile and DDP wrap the model: their state dicts prefix every key.
    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise MiniLLMError(f"the weights in {where} do not match its config: {detail}") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> GPT:
    """The GPT stored in a checkpoint (a file or a run folder), in eval mode."""
    ckpt = load_checkpoint(path, "cpu")
    config = check_checkpoint(ckpt, str(path))
    model = GPT(config)
    load_weights(model, ckpt["model"], str(path))
    return model.to(device).eval()


@dataclass
class Run:
    """A trained model with what it needs to be used: what `load_run` returns."""

    model: GPT                   # in eval mode, on the device asked for
    tokenizer: Tokenizer | None  # tokenizer.json beside the checkpoint (None if there is none)
    config: GPTConfig
    meta: dict                   # step, train_config, run_id, history, path: the rest of the checkpoint


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    """Load a run folder (or a checkpoint file) with the tokenizer beside it.

    Refuses a folder whose checkpoint belongs to another run than its files
    (`run.json`'s run id differs from the checkpoint's).
    """
    path = Path(path)
    ckpt_path = path / CKPT_NAME if path.is_dir() else path
    ckpt = load_checkpoint(ckpt_path, "cpu")
    config = check_checkpoint(ckpt, str(ckpt_path))
    folder_id = read_run_id(ckpt_path.parent)
    if folder_id is not None and ckpt.get("run_id") not in (None, folder_id):
        raise MiniLLMError(f"{ckpt_path} belongs to run {ckpt['run_id']} but the folder's files to run "
                           f"{folder_id}: the folder mixes two runs")
    model = GPT(config)
    load_weights(model, ckpt["model"], str(ckpt_path))
    tok_path = ckpt_path.parent / TOKENIZER_NAME
    tokenizer = Tokenizer.load(tok_path) if tok_path.exists() else None
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise MiniLLMError(f"{tok_path} has {tokenizer.vocab_size} ids but the model only {config.vocab_size}")
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "rng", "scaler")}
    meta["path"] = ckpt_path
    return Run(model=model.to(device).eval(), tokenizer=tokenizer, config=config, meta=meta)

