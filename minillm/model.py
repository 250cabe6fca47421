"""GPT: a decoder-only transformer language model (lesson 03).

(This file is being written; the config below is the shared contract.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class GPTConfig:
    """Everything that defines a model's shape. It travels inside every checkpoint."""

    vocab_size: int = field(default=512, metadata={"help": "number of token ids (tokenizer's vocab size)"})
    block_size: int = field(default=256, metadata={"help": "context length: the most tokens the model sees at once"})
    n_layer: int = field(default=4, metadata={"help": "number of transformer blocks"})
    n_head: int = field(default=4, metadata={"help": "attention heads per block"})
    n_embd: int = field(default=128, metadata={"help": "width C of the residual stream; n_embd % n_head == 0"})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability (0 for small data)"})
    bias: bool = field(default=True, metadata={"help": "biases in Linear and LayerNorm (GPT-2: yes, LLaMA: no)"})
    tie_embeddings: bool = field(default=True, metadata={"help": "output head shares the token embedding matrix"})
    style: str = field(default="gpt2", metadata={"help": "'gpt2' (learned positions, LayerNorm, GELU) or 'llama' (RoPE, RMSNorm, SwiGLU)"})
    n_kv_head: int | None = field(default=None, metadata={"help": "key/value heads for grouped-query attention (llama; default n_head)"})
    mlp_hidden: int | None = field(default=None, metadata={"help": "MLP hidden width (default 4*n_embd for gpt2; for llama the SwiGLU width rounded up to a multiple of 64 of 8/3*n_embd)"})
    norm_eps: float = field(default=1e-5, metadata={"help": "epsilon of LayerNorm / RMSNorm"})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base frequency (llama)"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
