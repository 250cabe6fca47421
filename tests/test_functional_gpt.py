"""Tests of minillm.functional_gpt (lesson 03): the pure-function GPT == the GPT module.

Float64, atol 1e-10 (rounding only). Each exercise's tests need only that exercise:
the from-scratch parts of lessons 02/03 that the functional path calls are replaced by
PyTorch's ops here (`torch_parts`), and the forward-pass test runs the real `Block`
modules in place of `block_forward`. The modules are patched to raise while the
exercise runs (no delegation to the fast path).
"""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

import minillm.functional_gpt as fg
from minillm.attention import CausalSelfAttention
from minillm.layers import MLP, SwiGLUMLP, apply_rotary
from minillm.model import GPT, Block, GPTConfig

TINY = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
CONFIGS = [
    GPTConfig(**TINY),
    GPTConfig(**TINY, bias=False, tie_embeddings=False),
    GPTConfig.llama_style(**TINY),
    GPTConfig.llama_style(**TINY, n_kv_head=2, rope_theta=500.0),
    GPTConfig.llama_style(**TINY, n_kv_head=1, bias=True, tie_embeddings=True),
]
IDS = [f"{c.style}-bias{int(c.bias)}-tie{int(c.tie_embeddings)}-kv{c.kv_heads}" for c in CONFIGS]
ORIGINAL_BLOCK_FORWARD = Block.forward


def model_of(cfg, seed=0):
    torch.manual_seed(seed)
    model = GPT(cfg).double().eval()
    with torch.no_grad():  # norms start at 1 and biases at 0: randomise them so they are checked
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model


def rope_for(model, T):
    if model.rotary is None:
        return None
    cos, sin = model.rotary(torch.arange(T))
    return partial(apply_rotary, cos=cos.unsqueeze(-2), sin=sin.unsqueeze(-2))


def _rope_written_here(x, start_pos=0, theta=10000.0):
    T, hs = x.size(-2), x.size(-1)
    freqs = theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    ang = torch.outer(torch.arange(start_pos, start_pos + T, dtype=torch.float64), freqs)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    a, b = x[..., : hs // 2], x[..., hs // 2:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


@pytest.fixture
def torch_parts(monkeypatch):
    """PyTorch's ops (and tiny test-local helpers) in place of the other exercises."""
    B_T_C = lambda x, nh: x.view(*x.shape[:2], nh, -1).transpose(1, 2)  # noqa: E731
    parts = {
        "layer_norm": lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps),
        "rms_norm": lambda x, w, eps: F.rms_norm(x, x.shape[-1:], w, eps),
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "rope_reference": _rope_written_here,
        "scaled_dot_product_attention": lambda q, k, v, is_causal=False: F.scaled_dot_product_attention(
            q, k, v, is_causal=is_causal),
        "split_heads": B_T_C,
        "merge_heads": lambda x: x.transpose(1, 2).reshape(x.size(0), x.size(2), -1),
    }
    for name, fn in parts.items():
        monkeypatch.setattr(fg, name, fn)


@pytest.mark.exercise("functional_gpt.block")
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_block_forward_equals_the_block_module(cfg, torch_parts, monkeypatch):
    model = model_of(cfg)
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = [model.transformer.h[i](x, rope=rope_for(model, 11)) for i in range(2)]
    params = dict(model.state_dict())
    _forbid_modules(monkeypatch)
    for i in range(2):
        got = fg.block_forward(x, params, f"transformer.h.{i}.", cfg)
        torch.testing.assert_close(got, expected[i], atol=1e-10, rtol=0)


@pytest.mark.exercise("functional_gpt.block")
def test_block_forward_is_causal(torch_parts):
    cfg = CONFIGS[3]
    model = model_of(cfg)
    params = dict(model.state_dict())
    x = torch.randn(1, 9, 32, dtype=torch.float64)
    y = x.clone()
    y[0, 6] += 1.0  # change a later position
    a = fg.block_forward(x, params, "transformer.h.0.", cfg)
    b = fg.block_forward(y, params, "transformer.h.0.", cfg)
    torch.testing.assert_close(a[0, :6], b[0, :6], atol=1e-12, rtol=0)
    assert not torch.allclose(a[0, 6:], b[0, 6:])


def _forbid_modules(monkeypatch, owners=(Block, CausalSelfAttention, MLP, SwiGLUMLP)):
    def refuse(*args, **kwargs):
        raise AssertionError("the functional path must not call the GPT's modules")
    for owner in owners:
        monkeypatch.setattr(owner, "forward", refuse)
    monkeypatch.setattr(GPT, "forward", refuse)
    monkeypatch.setattr(GPT, "hidden_states", refuse)


@pytest.mark.exercise("functional_gpt.forward")
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_gpt_forward_equals_the_gpt_module(cfg, torch_parts, monkeypatch):
    model = model_of(cfg)
    idx = torch.randint(0, 37, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = model(idx)
    rope = rope_for(model, 16)
    blocks = model.transformer.h

    def block_by_module(x, params, prefix, config):  # the real Block stands in for the other exercise
        return ORIGINAL_BLOCK_FORWARD(blocks[int(prefix.split(".")[2])], x, rope=rope)

    monkeypatch.setattr(fg, "block_forward", block_by_module)
    params = dict(model.state_dict())
    _forbid_modules(monkeypatch, owners=(Block,))  # the stand-in calls the saved Block.forward
    with torch.no_grad():
        got = fg.gpt_forward(idx, params, cfg)
    assert got.shape == (3, 16, 37)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


ALL_PARTS = ("functional_gpt.block", "functional_gpt.forward", "layers.layer_norm", "layers.rms_norm",
             "layers.gelu", "layers.rope", "attention.sdpa", "attention.softmax", "attention.causal_mask",
             "attention.split_heads", "attention.merge_heads")


@pytest.mark.exercise(*ALL_PARTS)
def test_whole_functional_path_with_the_reference_parts_equals_gpt():
    # No stand-ins: the from-scratch parts of lessons 02-03 all the way, so every one of them grades it.
    for cfg in (CONFIGS[0], CONFIGS[3]):
        model = model_of(cfg)
        idx = torch.randint(0, 37, (2, 16))
        with torch.no_grad():
            torch.testing.assert_close(fg.gpt_forward(idx, model.state_dict(), cfg), model(idx)[0],
                                       atol=1e-10, rtol=0)
