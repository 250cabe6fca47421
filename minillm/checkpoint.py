"""Checkpoints: written atomically, read without executing code (lesson 04).

A checkpoint is a dict of plain tensors and plain types, {"model": state_dict,
"config": dataclasses.asdict(GPTConfig), "optimizer": ..., "step": ..., ...},
saved with `torch.save` through `minillm.utils.atomic_write` (a killed save leaves
the previous file intact) and loaded with `torch.load(weights_only=True)`.
The run folder keeps it as `ckpt.pt`, with `tokenizer.json` beside it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from minillm.utils import MiniLLMError, atomic_write



def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """`torch.save(state)` atomically: a killed save leaves the previous file as it was."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing code (`weights_only=True`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ckpt.pt"
    if not path.exists():
        raise MiniLLMError(f"checkpoint {str(path)!r} not found (train one with `minillm train`)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise MiniLLMError(f"cannot read checkpoint {path}: {e}") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """The GPT stored in a checkpoint (a file or a run folder), in eval mode."""
    from minillm.model import GPT, GPTConfig

    ckpt = load_checkpoint(path, device)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise MiniLLMError(f"{str(path)!r} is not a minillm checkpoint (needs 'model' and 'config')")
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    model = GPT(GPTConfig(**{k: v for k, v in ckpt["config"].items() if k in known}))
    # torch.compile and DDP wrap the model: their state dicts prefix every key.
    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.to(device).eval()
