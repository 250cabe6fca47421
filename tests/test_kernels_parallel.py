"""Lesson 14, more GPUs: FSDP (fully_shard) on CPU with 2 gloo processes == one process."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from minillm.kernels import parallel
from minillm.model import GPT, GPTConfig
from minillm.utils import MiniLLMError

# No biases: the key bias's true gradient is 0 (softmax ignores a constant added to a row of scores),
# so AdamW would turn its rounding noise into steps of up to lr and the comparison would test noise.
CFG = dict(vocab_size=40, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=False)
STEPS, BATCH = 3, 4


def _data():
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 40, (BATCH, 8), generator=g), torch.randint(0, 40, (BATCH, 8), generator=g))
            for _ in range(STEPS)]


def _single_process():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for idx, tgt in _data():
        opt.zero_grad()
        model(idx, tgt)[1].backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank, world, port, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = parallel.shard_gpt(GPT(GPTConfig(**CFG)))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        half = BATCH // world
        for idx, tgt in _data():  # each rank trains on its half of the batch
            opt.zero_grad()
            model(idx[rank * half:(rank + 1) * half], tgt[rank * half:(rank + 1) * half])[1].backward()
            opt.step()
        state = parallel.full_state_dict(model)
        if rank == 0:
            torch.save(state, out_path)
        # the loss scaler's inf flag is OR-ed over ranks: only rank 0 saw an inf, both must skip
        from minillm.kernels.scaler import _any_rank
        with open(f"{out_path}.flag{rank}", "w") as f:
            f.write(str(_any_rank(rank == 0, opt)))
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp_on_two_gloo_processes_equals_single_process_training(tmp_path):
    out = tmp_path / "fsdp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    sharded = torch.load(out, weights_only=True)
    assert [open(f"{out}.flag{r}").read() for r in (0, 1)] == ["True", "True"]
    single = _single_process()
    assert sharded.keys() == single.keys()
    for k in single:
        torch.testing.assert_close(sharded[k], single[k], atol=1e-5, rtol=1e-4, msg=k)


def test_fsdp_without_a_process_group_is_a_clear_error():
    with pytest.raises(MiniLLMError, match="torchrun"):
        parallel.shard_gpt(GPT(GPTConfig(**CFG)))


def test_memory_per_gpu_divides_what_each_strategy_shards():
    cfg = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    ddp = parallel.memory_per_gpu(cfg, 8, 8, "ddp")
    z1, z2, fsdp = (parallel.memory_per_gpu(cfg, 8, 8, s) for s in ("zero1", "zero2", "fsdp"))
    n = 124_439_808
    assert ddp["weights"] == ddp["gradients"] == 4 * n and ddp["optimizer"] == 8 * n
    assert z1["optimizer"] == n and z2["gradients"] == n / 2 and fsdp["weights"] == n / 2
    assert fsdp["activations"] == ddp["activations"]          # FSDP does not shard activations
    assert ddp["total"] > z1["total"] > z2["total"] > fsdp["total"]
    tp = parallel.memory_per_gpu(cfg, 8, 8, "tp", tp=4)
    assert tp["total"] == pytest.approx(ddp["total"] / 4)
    with pytest.raises(MiniLLMError, match="strategy"):
        parallel.memory_per_gpu(cfg, 8, 8, "zero4")
