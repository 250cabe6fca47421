"""More GPUs: FSDP for a GPT, and the memory each kind of parallelism saves (lesson 14).

Data parallelism (DDP, in `minillm.train`) keeps a full copy of the weights, gradients
and AdamW state on every GPU and averages the gradients: memory per GPU does not
shrink. **FSDP** (ZeRO stage 3; Rajbhandari et al., 2020; Zhao et al., 2023) shards
all three across the N GPUs: each holds 1/N of every tensor, all-gathers a block's
weights just before using them (forward and again in backward) and reduce-scatters
its gradients afterwards, so every rank ends the step owning the averaged gradient
of its shard — the same update as one process on the whole batch, for 1.5x DDP's
communication.

What it builds:

* `shard_gpt(model)`: PyTorch's `fully_shard` (FSDP2) on each transformer block, then
  on the root (embeddings, final norm, tied head); a clear MiniLLMError without a
  process group (launch with torchrun);
* `full_state_dict(model)`: gathers the shards into plain tensors, for checkpoints
  (`full_optimizer_state_dict` and `load_full_state_dict` do the same for the optimizer
  and load both back: `minillm.train`'s `fsdp` option saves and resumes with them);
* `memory_per_gpu(config, ...)`: lesson 07's training-memory estimate divided the way
  DDP, ZeRO-1/2, FSDP, tensor and pipeline parallelism divide it.

Multi-node (2 machines x 8 GPUs), the same script on each node:

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=$RANK --rdzv_backend=c10d \\
             --rdzv_endpoint=$HEAD_NODE:29500 -m minillm train ...

Left out: hybrid sharding (HSDP), CPU offload, tensor/pipeline parallel code (only
their memory arithmetic is here), activation sharding (sequence parallelism).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from minillm.utils import MiniLLMError


def require_process_group() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise MiniLLMError("FSDP needs a process group: launch with `torchrun --nproc_per_node=N ...` "
                           "(or call torch.distributed.init_process_group first)")


def shard_gpt(model: nn.Module, reshard_after_forward: bool = True,
              param_dtype: torch.dtype | None = None) -> nn.Module:
    """Shard a `minillm.model.GPT` over all ranks of the default process group, in place.

    reshard_after_forward: free the gathered weights after each block's forward (ZeRO-3;
    False keeps them until backward: ZeRO-2's memory, less communication).
    param_dtype: compute in this dtype (e.g. torch.bfloat16) with fp32 master shards.
    """
    require_process_group()
    from torch.distributed.device_mesh import init_device_mesh  # distributed-only imports
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    try:
        blocks = model.transformer.h
    except AttributeError:
        raise MiniLLMError("shard_gpt needs a minillm GPT (model.transformer.h holds its blocks)") from None
    device_type = next(model.parameters()).device.type
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    kw = dict(mesh=mesh, reshard_after_forward=reshard_after_forward)
    if param_dtype is not None:
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, **kw)
    fully_shard(model, **kw)  # the rest: embeddings, final norm, (tied) head
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as a full, plain tensor (gathers FSDP shards: a collective,
    call it on every rank)."""
    out = {}
    for name, t in model.state_dict().items():
        out[name] = (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()
    return out


def is_sharded(model: nn.Module) -> bool:
    """Whether `fully_shard` has sharded `model` (its parameters are DTensors)."""
    return any(hasattr(p, "full_tensor") for p in model.parameters())


def full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state gathered into plain tensors, keyed by parameter name (a collective:
    call it on every rank; rank 0 gets the state, the others an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_state: dict,
                         optimizer_state: dict | None) -> None:
    """Load full (gathered) state dicts into a sharded model and its optimizer: each rank keeps
    its shard (every rank passes the full dicts, e.g. each read the same checkpoint file)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def memory_per_gpu(config, batch_size: int, n_gpus: int, strategy: str = "fsdp", seq_len: int | None = None,
                   tp: int = 1, pp: int = 1) -> dict[str, float]:
    """Bytes per GPU of a training step (AdamW, fp32) under a parallelism `strategy`.

    Lesson 07's `training_memory(config, batch_size)` is the one-GPU count of the
    per-GPU micro-batch `batch_size`. Then:
    ddp: nothing shrinks; zero1: optimizer / N; zero2: + gradients / N; fsdp (zero3):
    + weights / N; tp: weights, gradients, optimizer and the activations inside the
    blocks / tp (Megatron's split of the matmuls); pp: everything / pp (a stage holds
    L / pp layers; the in-flight micro-batches of 1F1B are left out).
    """
    from minillm import flops  # lesson 07's estimator; function-local keeps this module's import light
    strategies = ("ddp", "zero1", "zero2", "fsdp", "tp", "pp")
    if strategy not in strategies:
        raise MiniLLMError(f"strategy must be one of {', '.join(strategies)}, got {strategy!r}")
    if n_gpus < 1 or tp < 1 or pp < 1:
        raise MiniLLMError("n_gpus, tp and pp must be >= 1")
    m = dict(flops.training_memory(config, batch_size, seq_len))
    m.pop("total")
    if strategy in ("zero1", "zero2", "fsdp"):
        m["optimizer"] /= n_gpus
        if strategy in ("zero2", "fsdp"):
            m["gradients"] /= n_gpus
        if strategy == "fsdp":
            m["weights"] /= n_gpus
    elif strategy == "tp":
        for k in m:
            m[k] /= tp
    elif strategy == "pp":
        for k in m:
            m[k] /= pp
    m["total"] = sum(m.values())
    return m
