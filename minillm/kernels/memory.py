"""Peak memory of a piece of PyTorch code, measured the same way on CPU and GPU (lesson 14).

`torch.cuda.max_memory_allocated` has no CPU twin, so `PeakMemory` watches every
tensor that PyTorch's operators create while the block runs (a `TorchDispatchMode`
sees each op's outputs, forward and backward) and adds up the bytes of the storages
still alive, freeing them when Python's last reference to the storage goes
(`weakref.finalize`). `peak` is the high-water mark in bytes, `live` what is
still held at exit (for a training step: saved activations freed, gradients kept).

What it counts: storages allocated by ATen operators inside the block (views add
nothing; tensors that existed before the block are not counted). Not counted:
allocator slack and fragmentation, kernel workspaces that never become tensors,
memory held by other libraries. That is what the lesson compares (the bytes an
algorithm keeps), and it is deterministic, unlike the process's resident size.

>>> x = torch.randn(256, 256)
>>> with PeakMemory() as m:
...     y = (x @ x).exp()
>>> m.peak >= 2 * 256 * 256 * 4   # x @ x and its exp are alive together
True
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakMemory(TorchDispatchMode):
    """Context manager: `peak` and `live` bytes of the tensors created inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive: set[tuple[str, int]] = set()

    def _free(self, key: tuple[str, int], nbytes: int) -> None:
        self._alive.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key, nbytes = (str(t.device), storage.data_ptr()), storage.nbytes()
            if nbytes == 0 or key in self._alive:
                continue  # a view of a storage we already count
            self._alive.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, nbytes)
        return out


def peak_bytes(fn, *args, **kwargs) -> tuple[int, object]:
    """(peak bytes while `fn(*args, **kwargs)` runs, its result)."""
    with PeakMemory() as m:
        result = fn(*args, **kwargs)
    return m.peak, result
