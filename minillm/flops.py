"""What a model needs: parameters, FLOPs per token and memory, from its config (lesson 07).

What it builds, one testable step at a time:

1. `params_count(config)`: the exact number of parameters of our GPT, from its
   config alone, for both block styles (GPT-2 and LLaMA) -- the one closed form.
   `count_parameters` gets the same number from the real model, built on the
   `meta` device (no memory).
2. `forward_flops_per_token(config, seq_len)`: the matmul FLOPs of one forward
   pass per token, attention included; `training_flops_per_token` = 3x that
   (backward = 2x forward). `model_flops_per_token` counts the same from the real
   model's Linear layers (the fast path a training loop uses for MFU), and
   `measure_flops` runs PyTorch's `torch.utils.flop_counter.FlopCounterMode` on the
   real model; tests prove all three equal. The 6N rule is `minillm.cost.training_flops`.
3. Inference and memory: FLOPs per generated token, weights + KV-cache bytes, and
   training memory (weights, gradients, AdamW states, saved activations).

What a FLOP costs on real hardware (peaks, MFU, GPU-hours, dollars, CO2) is
`minillm.cost`. Conventions follow Kaplan et al. 2020 ("Scaling Laws for Neural
Language Models", C = 6ND), Hoffmann et al. 2022 (Chinchilla, appendix F: attention
counted over the whole T x T score matrix, no causal saving) and Chowdhery et al.
2022 (PaLM, appendix B: model FLOPs only, never recomputation).
Left out: mixture-of-experts, sparsity, the FLOPs of norms, softmax and activations.
"""

from __future__ import annotations

import torch

# Re-exported: the training loop and older notebooks import these from here.
from minillm.cost import (DTYPES, PEAK_TFLOPS, detect_device, mfu,  # noqa: F401
                          normalize_device_name, peak_flops, training_flops)
from minillm.model import GPT

# ---------------------------------------------------------------------------------
# 1. Parameters
# ---------------------------------------------------------------------------------


def params_count(config) -> int:
    """The exact number of trainable parameters of `GPT(config)`, from the config alone.

    Per block: attention (fused q/k/v projection C -> (nh + 2 nkv) hs, output
    projection C -> C), MLP (gpt2: C -> H -> C; llama SwiGLU: gate and up C -> H,
    down H -> C), two norms (LayerNorm: weight and bias; RMSNorm: weight only).
    Plus the token embedding V x C, learned positions block_size x C (gpt2 only),
    a final norm, and an output head V x C unless tied to the embedding.
    Biases exist where `config.bias` is True (Linear and LayerNorm). The widths
    are `config.mlp_hidden_size` (H) and `config.kv_heads` (nkv).

    >>> from minillm.model import GPTConfig
    >>> params_count(GPTConfig(vocab_size=512, block_size=256, n_layer=4, n_head=4, n_embd=128))
    891648
    """
    ### BEGIN SOLUTION name=flops.params_count points=3
    ### HINT: which tensors does each nn.Linear and each norm own (a weight, maybe a bias), and how many of each does one block have?
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    hs = C // config.n_head
    H, nkv, bias = config.mlp_hidden_size, config.kv_heads, int(config.bias)
    qkv_out = (config.n_head + 2 * nkv) * hs
    attn = C * qkv_out + bias * qkv_out + C * C + bias * C
    if config.style == "llama":
        mlp = 3 * C * H + bias * (2 * H + C)        # gate, up (C -> H) and down (H -> C)
        norm = C                                    # RMSNorm: a gain, no bias
    else:
        mlp = 2 * C * H + bias * (H + C)            # fc (C -> H) and proj (H -> C)
        norm = C + bias * C                         # LayerNorm: gain and bias
    block = attn + mlp + 2 * norm
    embeddings = V * C + (config.block_size * C if config.style == "gpt2" else 0)
    head = 0 if config.tie_embeddings else V * C
    return L * block + embeddings + norm + head
    ### END SOLUTION


def _meta_model(config) -> GPT:
    """`GPT(config)` on the meta device: the real modules, shapes only, no memory."""
    with torch.device("meta"):
        return GPT(config)


def count_parameters(config) -> int:
    """Fast path: build `GPT(config)` on the meta device (no memory) and sum `numel()`.

    Shared tensors (a tied head) are counted once, as `model.parameters()` does.
    """
    return sum(p.numel() for p in _meta_model(config).parameters())


def linear_weights(model_or_config) -> int:
    """The weights of every `nn.Linear` of a model (or of `GPT(config)` on the meta
    device): what multiplies each token. The head counts even when tied to the embedding."""
    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else _meta_model(model_or_config)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


# ---------------------------------------------------------------------------------
# 2. FLOPs
# ---------------------------------------------------------------------------------


def forward_flops_per_token(config, seq_len: int | None = None) -> int:
    """Matmul FLOPs of one forward pass, per token, for sequences of `seq_len` tokens.

    A matmul (m x k) @ (k x n) costs 2 m k n FLOPs (one multiply and one add per
    term). Per token that makes 2 x (weights of every Linear layer) -- the q/k/v
    and output projections, the MLP and the output head -- plus, in each layer,
    the two attention products q k^T and (weights) v: 2 * T * C each, counted
    over the whole T x T matrix as Hoffmann et al. 2022 (appendix F) and
    PyTorch's counter do (a causal kernel could skip half). Embedding lookups,
    norms, softmax and activations are not matmuls and are left out.

    >>> from minillm.model import GPTConfig
    >>> forward_flops_per_token(GPTConfig(n_layer=1, n_head=1, n_embd=4, vocab_size=10,
    ...     block_size=8, bias=False), seq_len=8)   # 2 * (4*12 + 4*4 + 2*4*16 + 10*4) + 2 * (2*8*4)
    592
    """
    T = config.block_size if seq_len is None else seq_len
    ### BEGIN SOLUTION name=flops.forward_flops_per_token points=3
    ### HINT: a token meets each Linear weight once (a multiply and an add); which products in attention grow with the sequence length?
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    hs = C // config.n_head
    H, nkv = config.mlp_hidden_size, config.kv_heads
    qkv = C * (config.n_head + 2 * nkv) * hs
    mlp = (3 if config.style == "llama" else 2) * C * H
    linear_weights = L * (qkv + C * C + mlp) + V * C   # the head multiplies even when tied
    attention = L * 2 * (2 * T * C)                     # q k^T and att v, full T x T
    return 2 * linear_weights + attention
    ### END SOLUTION


def training_flops_per_token(config, seq_len: int | None = None) -> int:
    """Forward + backward: the backward pass costs twice the forward (gradients with
    respect to the inputs and to the weights), so 3x forward in all."""
    return 3 * forward_flops_per_token(config, seq_len)


def model_flops_per_token(model_or_config, seq_len: int | None = None) -> int:
    """Fast path for training loops: training model FLOPs per token, 6 W + 12 L T C
    (Chowdhery et al. 2022, PaLM, appendix B), W = `linear_weights` of the model in
    hand (or of `GPT(config)` on the meta device), so a custom or wrapped model counts
    what it really multiplies.

    Equal to `training_flops_per_token` for our GPT (test); use this one in code that
    must not depend on the lesson's exercise (the trainer's MFU).
    """
    is_model = isinstance(model_or_config, torch.nn.Module)
    config = model_or_config.config if is_model else model_or_config
    T = config.block_size if seq_len is None else seq_len
    return 6 * linear_weights(model_or_config) + 12 * config.n_layer * T * config.n_embd


def _flop_counter(**kwargs):
    """`FlopCounterMode` that also counts the CPU flash-attention kernel.

    PyTorch's counter knows the CUDA attention kernels but not
    `_scaled_dot_product_flash_attention_for_cpu`; we give it the same formulas it
    uses for CUDA (torch.utils.flop_counter.sdpa_flop_count and its backward).
    """
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = (
            lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v))
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda g, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(g, q, k, v))
    return fc.FlopCounterMode(display=False, custom_mapping=mapping, **kwargs)


def measure_flops(model, batch_size: int = 2, seq_len: int = 16, backward: bool = False) -> dict[str, int]:
    """Count FLOPs with PyTorch's own counter: run the model once on random tokens.

    Returns {"total": ..., "linear": ..., "attention": ...} where "linear" sums
    mm/addmm/bmm (the Linear layers) and "attention" the fused attention kernels.
    With `backward=True` the loss is back-propagated inside the counter too.
    """
    cfg = model.config
    idx = torch.randint(0, cfg.vocab_size, (batch_size, seq_len))
    with _flop_counter() as counter:
        out = model(idx)
        logits = out[0] if isinstance(out, tuple) else out
        if backward:
            logits.float().pow(2).mean().backward()
    counts = counter.get_flop_counts()["Global"]
    linear = sum(v for k, v in counts.items() if str(k).split(".")[-1] in ("mm", "addmm", "bmm"))
    return {"total": counter.get_total_flops(), "linear": linear,
            "attention": counter.get_total_flops() - linear}



# ---------------------------------------------------------------------------------
# 3. Inference and memory
# ---------------------------------------------------------------------------------

BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def inference_flops_per_token(config, context: int) -> int:
    """FLOPs to generate one token with a KV cache holding `context` tokens (the new one
    included): 2 x `linear_weights` + per layer 4 x context x C for q k^T and att v
    (the one new query against every cached key)."""
    return 2 * linear_weights(config) + config.n_layer * 4 * context * config.n_embd


def kv_cache_bytes(config, batch_size: int, context: int, dtype: str = "bf16") -> float:
    """Bytes of the KV cache: keys and values (2) x layers x kv heads x head size x
    tokens x batch x bytes per number. Grouped-query attention divides it by nh / nkv."""
    return 2 * config.n_layer * config.kv_heads * config.head_size * context * batch_size * BYTES[dtype]


def inference_memory(config, batch_size: int = 1, context: int | None = None, dtype: str = "bf16") -> dict:
    """Weights + KV cache in bytes for serving `batch_size` sequences of `context` tokens."""
    context = config.block_size if context is None else context
    weights = count_parameters(config) * BYTES[dtype]
    kv = kv_cache_bytes(config, batch_size, context, dtype)
    return {"weights": weights, "kv_cache": kv, "total": weights + kv}


def training_memory(config, batch_size: int, seq_len: int | None = None, param_bytes: int = 4,
                    act_bytes: int = 4) -> dict:
    """Estimated bytes of a training step with AdamW in full precision.

    weights + gradients (param_bytes each) + AdamW's two moments (4 bytes each),
    i.e. 16 bytes per parameter in fp32; plus the activations autograd saves for
    backward, counted per layer and token from what our blocks keep:

    * gpt2: LayerNorm inputs and outputs (4C), the fused q/k/v output (3C), the
      attention output and its copy before `c_proj` (2C), the MLP's hidden
      before and after GELU (2H), plus per-row statistics and log-sum-exp;
    * llama: RMSNorm keeps input, normalised and scaled tensors (3C per norm),
      q/k/v (3C) and the rotated q and k (2C), attention output and copy (2C),
      SwiGLU's gate, SiLU, up and product (4H);
    * after the blocks: the final norm, the logits and their log-softmax (2V).

    An estimate: kernels' workspaces, allocator slack and temporaries come on top;
    the test holds it against the bytes autograd really saves within a stated band.
    """
    T = config.block_size if seq_len is None else seq_len
    C, L, V, nh = config.n_embd, config.n_layer, config.vocab_size, config.n_head
    H, nkv, hs = config.mlp_hidden_size, config.kv_heads, config.head_size
    n = count_parameters(config)
    qkv = (nh + 2 * nkv) * hs + (2 * C if nkv < nh else 0)  # GQA: k and v are repeated to nh heads
    if config.style == "llama":
        per_token_layer = 6 * C + qkv + 2 * C + 2 * C + 4 * H + nh + 2
        final = 3 * C
    else:
        per_token_layer = 4 * C + qkv + 2 * C + 2 * H + nh + 4
        final = 2 * C
    acts = batch_size * T * (L * per_token_layer + final + 2 * V + 2) * act_bytes
    out = {"weights": n * param_bytes, "gradients": n * param_bytes, "optimizer": n * 8,
           "activations": acts}
    out["total"] = sum(out.values())
    return out
