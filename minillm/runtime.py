"""Where and how a training run executes: device, precision, processes (lesson 04).

`setup_runtime` picks the device, the precision (bf16 autocast on GPUs that have
it, fp16 with lesson 14's dynamic loss scaler on older ones, fp32 on CPUs) and,
under `torchrun` (WORLD_SIZE > 1), joins the process group; `wrap_model` adds
FSDP (lesson 14's `shard_gpt`, when asked) or DistributedDataParallel, and
`torch.compile`. The training loop (`minillm.train.fit`) and lessons that write
their own loop take a `Runtime` and never look at the environment.

Left out: tensor and pipeline parallelism, hybrid sharding, multi-node set-up
beyond what torchrun's environment variables give.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from minillm.device import autocast, bf16_supported, pick_device
from minillm.kernels.parallel import shard_gpt
from minillm.kernels.scaler import LossScaler, require_fp16
from minillm.utils import MiniLLMError


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """'auto' -> bfloat16 on CUDA GPUs that have it, float16 on older GPUs, float32 elsewhere.

    On a CPU, bf16 autocast works (ask for it) but is usually slower for small
    models than float32 and makes resume bit-exactness depend on the kernels.

    >>> resolve_dtype("auto", torch.device("cpu"))
    'float32'
    """
    if dtype != "auto":
        if dtype not in ("float32", "bfloat16", "float16"):
            raise MiniLLMError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        return dtype
    if device.type == "cuda":
        return "bfloat16" if bf16_supported(device) else "float16"
    return "float32"


@dataclass
class Runtime:
    """The execution context of one process of a run."""

    device: torch.device
    dtype: str                                # float32, bfloat16 or float16
    autocast: Any                             # a reusable `with` context for forward passes
    scaler: LossScaler | torch.amp.GradScaler | None   # only for float16 (ours; GradScaler also works)
    rank: int = 0                             # this process, 0..world-1 (rank 0 logs and writes)
    world: int = 1                            # processes in the run
    local_rank: int = 0                       # GPU index on this machine
    owns_group: bool = False                  # we created the process group: we destroy it

    def close(self) -> None:
        """Leave the process group if `setup_runtime` joined it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when alone."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def setup_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """Device, precision and processes of this run (joins torchrun's process group)."""
    rank, world, local_rank = distributed_env()
    owns = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if (torch.cuda.is_available() and device != "cpu") else "gloo"
        torch.distributed.init_process_group(backend)
        owns = True
    dev = pick_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    dt = resolve_dtype(dtype, dev)
    scaler = None
    if dt == "float16":
        require_fp16(dev)         # one clear error on a device (or PyTorch build) without fp16 autocast
        # Our from-scratch scaler, equal to torch.amp.GradScaler bit for bit (tests/test_kernels_precision.py,
        # tests/test_train_gpu_path.py), which also ORs the skip flag over FSDP's gradient shards.
        scaler = LossScaler()
    return Runtime(device=dev, dtype=dt, autocast=autocast(dev, dt), scaler=scaler, rank=rank, world=world,
                   local_rank=local_rank, owns_group=owns)


def check_fsdp(runtime: Runtime) -> None:
    """FSDP shards over processes: alone, it is an error (not a silent fallback to one process)."""
    if runtime.world < 2 or not torch.distributed.is_initialized():
        raise MiniLLMError("fsdp needs several processes: launch with `torchrun --nproc_per_node=N ...` "
                           f"(this run has {runtime.world} process and no process group)")


def shard_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    """FSDP (ZeRO-3) in place: every block, then the root; 16-bit compute with fp32 master shards.

    Call it before building the optimizer (it must see the sharded parameters)."""
    check_fsdp(runtime)
    param_dtype = getattr(torch, runtime.dtype) if runtime.dtype != "float32" else None
    return shard_gpt(model, param_dtype=param_dtype)


def wrap_model(model: nn.Module, runtime: Runtime, compile: bool = False, sharded: bool = False) -> nn.Module:
    """The module the loop calls: `model` inside DDP when there are processes (unless FSDP has
    sharded it already: `sharded`), compiled if asked."""
    if sharded:
        return torch.compile(model) if compile else model      # compile after sharding
    if compile:
        model = torch.compile(model)
    if runtime.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None)
    return model


def no_sync(model: nn.Module, runtime: Runtime, last: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) except on a step's last micro-batch."""
    if runtime.world == 1:
        return contextlib.nullcontext()
    fsdp = getattr(model, "_orig_mod", model)
    if hasattr(fsdp, "set_requires_gradient_sync"):          # FSDP2: a switch, not a context
        fsdp.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    return model.no_sync() if not last else contextlib.nullcontext()
