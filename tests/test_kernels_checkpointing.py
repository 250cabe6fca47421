"""Lesson 14: activation checkpointing per block — same gradients, less memory, more FLOPs."""

import copy

import pytest
import torch

from minillm.kernels.checkpointing import checkpoint_blocks, is_checkpointed, measure_tradeoff, uncheckpoint_blocks
from minillm.model import GPT, GPTConfig
from minillm.utils import MiniLLMError


def _grads(model, idx, tgt, seed=0):
    torch.manual_seed(seed)  # the same dropout masks for both runs
    model.zero_grad(set_to_none=True)
    _, loss = model(idx, tgt)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("style,dropout", [("gpt2", 0.0), ("gpt2", 0.1), ("llama", 0.0)])
def test_checkpointed_gradients_equal_plain_gradients(style, dropout):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=16, dropout=dropout, style=style)
    model = GPT(cfg).train()
    idx, tgt = torch.randint(0, 50, (2, 16)), torch.randint(0, 50, (2, 16))
    loss_a, ga = _grads(model, idx, tgt)
    names_before = list(model.state_dict())
    checkpoint_blocks(model)
    assert is_checkpointed(model) == [True, True, True] and list(model.state_dict()) == names_before
    loss_b, gb = _grads(model, idx, tgt)
    assert torch.equal(loss_a, loss_b)   # the recompute reuses the saved RNG state: same dropout masks
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], atol=1e-6, rtol=1e-5, msg=n)


def test_eval_generation_deepcopy_and_undo():
    torch.manual_seed(0)
    model = checkpoint_blocks(GPT(GPTConfig(vocab_size=20, block_size=12, n_layer=2, n_head=2, n_embd=8)), every=2)
    assert is_checkpointed(model) == [True, False]
    twin = copy.deepcopy(model)
    assert is_checkpointed(twin) == [True, False]
    model.eval()
    out = model.generate(torch.zeros(1, 2, dtype=torch.long), max_new_tokens=4, temperature=0)
    assert out.shape == (1, 6)
    assert is_checkpointed(uncheckpoint_blocks(model)) == [False, False]
    with pytest.raises(MiniLLMError, match="transformer.h"):
        checkpoint_blocks(torch.nn.Linear(2, 2))
    with pytest.raises(MiniLLMError, match="every"):
        checkpoint_blocks(model, every=0)


def test_checkpointing_trades_memory_for_one_more_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=64, n_layer=4, n_head=2, n_embd=32))
    r = measure_tradeoff(model, batch_size=4, repeats=1)
    plain, ckpt = r["plain"], r["checkpointed"]
    assert ckpt["peak_bytes"] < 0.7 * plain["peak_bytes"]
    # FLOPs: the blocks' forward runs twice, so a step costs up to 4/3 of 3 forwards
    assert 1.1 < ckpt["flops"] / plain["flops"] <= 4 / 3 + 1e-9
    assert is_checkpointed(model) == [False] * 4  # left as found
