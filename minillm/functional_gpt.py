"""The whole GPT as one pure function: weights in, logits out (lesson 03, the reference path).

`GPT` (minillm.model) is the fast path: modules, fused kernels, a KV cache. Here the
same forward pass is written with the from-scratch parts of lessons 02 and 03 only
(`minillm.layers`' `layer_norm`, `rms_norm`, `gelu_tanh`, `silu`, `rope_reference`,
`minillm.attention`'s `scaled_dot_product_attention`, `split_heads`, `merge_heads`),
reading every weight from a plain dict: the state dict of a `GPT`, whose key names
mirror GPT-2's checkpoint. Tests prove `gpt_forward(idx, model.state_dict(), config)`
equal to `model(idx)` for both styles in float64.

    x = wte[idx] (+ wpe[0..T-1])                      (B, T, C)
    for each block:  x = x + attn(norm_1(x));  x = x + mlp(norm_2(x))
    logits = norm_f(x) @ head^T                       (B, T, V)

Left out (the fast path has them): dropout, padding/packing masks, position ids,
the KV cache. Follows Radford et al. 2019 (GPT-2) and Touvron et al. 2023 (LLaMA).
"""

from __future__ import annotations

from typing import Mapping

import torch

from minillm.attention import merge_heads, repeat_kv, scaled_dot_product_attention, split_heads
from minillm.layers import embedding, gelu_tanh, layer_norm, linear, rms_norm, rope_reference, silu
from minillm.model import GPTConfig

Params = Mapping[str, torch.Tensor]


def norm(x: torch.Tensor, params: Params, name: str, config: GPTConfig) -> torch.Tensor:
    """The block style's normalisation: LayerNorm (gpt2) or RMSNorm (llama), weights `name.*`."""
    if config.style == "gpt2":
        return layer_norm(x, params[name + ".weight"], params.get(name + ".bias"), config.norm_eps)
    return rms_norm(x, params[name + ".weight"], config.norm_eps)


def block_forward(x: torch.Tensor, params: Params, prefix: str, config: GPTConfig) -> torch.Tensor:
    """One pre-norm transformer block. x (B, T, C) -> (B, T, C).

    Weights are `params[prefix + name]` with the names of `minillm.model.Block`:
    ln_1, attn.c_attn (the fused q/k/v projection: nh query heads, then nkv key
    heads, then nkv value heads), attn.c_proj, ln_2, and the MLP (gpt2: mlp.c_fc,
    mlp.c_proj; llama: mlp.gate_proj, mlp.up_proj, mlp.down_proj). Biases are
    absent from `params` when `config.bias` is False (`params.get` gives None).
    """
    w = lambda name: params.get(prefix + name)  # noqa: E731 - a weight, or None if absent
    nh, nkv, hs = config.n_head, config.kv_heads, config.head_size
    ### BEGIN SOLUTION name=functional_gpt.block points=3
    ### HINT: two residual updates, each reading a normalised copy of x; the attention works per head (GQA: fewer k/v heads, shared by groups of query heads) and LLaMA rotates q and k before the scores.
    h = norm(x, params, prefix + "ln_1", config)  # (B, T, C)
    q, k, v = linear(h, w("attn.c_attn.weight"), w("attn.c_attn.bias")).split([nh * hs, nkv * hs, nkv * hs], dim=-1)
    q, k, v = split_heads(q, nh), split_heads(k, nkv), split_heads(v, nkv)  # (B, nh | nkv, T, hs)
    if config.style == "llama":
        q, k = rope_reference(q, 0, config.rope_theta), rope_reference(k, 0, config.rope_theta)
    k, v = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)  # (B, nh, T, hs)
    a = scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
    x = x + linear(merge_heads(a), w("attn.c_proj.weight"), w("attn.c_proj.bias"))  # (B, T, C)
    h = norm(x, params, prefix + "ln_2", config)
    if config.style == "gpt2":
        m = gelu_tanh(linear(h, w("mlp.c_fc.weight"), w("mlp.c_fc.bias")))  # (B, T, H)
        return x + linear(m, w("mlp.c_proj.weight"), w("mlp.c_proj.bias"))
    gate = silu(linear(h, w("mlp.gate_proj.weight"), w("mlp.gate_proj.bias")))  # (B, T, H)
    m = gate * linear(h, w("mlp.up_proj.weight"), w("mlp.up_proj.bias"))
    return x + linear(m, w("mlp.down_proj.weight"), w("mlp.down_proj.bias"))
    ### END SOLUTION


def gpt_forward(idx: torch.Tensor, params: Params, config: GPTConfig) -> torch.Tensor:
    """Logits of a GPT from its weights alone: idx (B, T) ids -> (B, T, V).

    `params` is `GPT(config).state_dict()` (or any dict with those names): the token
    embedding `transformer.wte.weight` (V, C), GPT-2's positions `transformer.wpe.weight`
    (block_size, C), the blocks `transformer.h.{i}.`, the final norm `transformer.ln_f`
    and the head `lm_head.weight` (V, C) -- the token embedding itself when
    `config.tie_embeddings`.
    """
    ### BEGIN SOLUTION name=functional_gpt.forward points=2
    ### HINT: look tokens (and, for GPT-2, positions 0..T-1) up in their tables, run the blocks in order, normalise once more, then score every vocabulary entry against the result.
    T = idx.size(1)
    x = embedding(idx, params["transformer.wte.weight"])  # (B, T, C)
    if config.style == "gpt2":
        x = x + embedding(torch.arange(T, device=idx.device), params["transformer.wpe.weight"])  # + (T, C)
    for i in range(config.n_layer):
        x = block_forward(x, params, f"transformer.h.{i}.", config)
    x = norm(x, params, "transformer.ln_f", config)
    head = params["transformer.wte.weight" if config.tie_embeddings else "lm_head.weight"]  # (V, C)
    return linear(x, head)  # (B, T, V)
    ### END SOLUTION
