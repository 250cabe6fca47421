"""GPT: a decoder-only transformer language model (lesson 03).

What it builds: `GPTConfig` and `GPT`, in two block styles made of the same parts
(`minillm.layers`, `minillm.attention`):

* ``style="gpt2"`` (Radford et al., 2019): learned position embeddings, LayerNorm,
  GELU (tanh approximation), biases, output head tied to the token embedding;
* ``style="llama"`` (Touvron et al., 2023): rotary positions (RoPE), RMSNorm,
  SwiGLU, optional grouped-query attention; pair it with ``bias=False,
  tie_embeddings=False`` (`GPTConfig.llama_style()` does) for the real LLaMA shape.

Both are pre-norm: x = x + attn(norm(x)); x = x + mlp(norm(x)). GPT-2's
initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)).
`forward` takes a padding or packing mask and per-row positions (left-padded
batches, packed sequences); `hidden_states` is the trunk that classification and
reward heads read. Sampling lives in `minillm.generation` (`GPT.generate` is a
thin wrapper), the same model written as one pure function over a state dict in
`minillm.functional_gpt`, Hugging Face weights in `minillm.interop`.

Left out: mixture of experts, sliding-window attention, weight-decay grouping
(the trainer's job), tensor parallelism.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.attention import CausalSelfAttention, KVCache, attention_mask_for
from minillm.generation import generate_rows, sample_next  # noqa: F401  (sample_next: public here too)
from minillm.layers import MLP, RMSNorm, Rotary, SwiGLUMLP, apply_rotary
from minillm.utils import MiniLLMError


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
    n_kv_head: int | None = field(default=None, metadata={"help": "key/value heads for grouped-query attention (default n_head); must divide n_head"})
    mlp_hidden: int | None = field(default=None, metadata={"help": "MLP hidden width (default 4*n_embd for gpt2; for llama 8/3*n_embd rounded up to a multiple of 64)"})
    norm_eps: float = field(default=1e-5, metadata={"help": "epsilon of LayerNorm / RMSNorm"})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base frequency (llama)"})

    def __post_init__(self) -> None:
        if self.style not in ("gpt2", "llama"):
            raise MiniLLMError(f"style must be 'gpt2' or 'llama', got {self.style!r}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if int(getattr(self, name)) < 1:
                raise MiniLLMError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise MiniLLMError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.kv_heads:
            raise MiniLLMError(f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads})")
        if self.style == "llama" and self.head_size % 2:
            raise MiniLLMError(f"RoPE needs an even head size; n_embd/n_head = {self.head_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise MiniLLMError(f"dropout must be in [0, 1), got {self.dropout}")

    # The derived sizes below are the ONE place these facts live; every other module
    # (flops, interop, the functional GPT) reads them from here.

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads (n_kv_head, or n_head when unset)."""
        return self.n_kv_head or self.n_head

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden_size(self) -> int:
        """The MLP's hidden width: mlp_hidden, else 4C (gpt2) or 8C/3 rounded up to 64 (llama).

        8/3 keeps SwiGLU's three matrices at the parameter count of GPT-2's two
        4C matrices (Shazeer, 2020); LLaMA rounds up to a hardware-friendly multiple.
        """
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.style == "gpt2":
            return 4 * self.n_embd
        return 64 * math.ceil(int(8 * self.n_embd / 3) / 64)

    @classmethod
    def llama_style(cls, **overrides) -> "GPTConfig":
        """A LLaMA-shaped config: style='llama', no biases, untied output head."""
        return cls(**{"style": "llama", "bias": False, "tie_embeddings": False, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Block(nn.Module):
    """One pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.style == "gpt2":
            self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
            self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
            self.mlp = MLP(config.n_embd, config.mlp_hidden_size, config.bias, config.dropout)
        else:
            self.ln_1 = RMSNorm(config.n_embd, eps=config.norm_eps)
            self.ln_2 = RMSNorm(config.n_embd, eps=config.norm_eps)
            self.mlp = SwiGLUMLP(config.n_embd, config.mlp_hidden_size, config.bias, config.dropout)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.kv_heads, config.bias, config.dropout)

    def forward(self, x: torch.Tensor, rope=None, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None, maps: list | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). `maps`, when a list, receives this layer's attention weights."""
        if maps is None:
            a = self.attn(self.ln_1(x), rope=rope, cache=cache, layer=layer, mask=mask)
        else:
            a, w = self.attn(self.ln_1(x), rope=rope, cache=cache, layer=layer, mask=mask, return_weights=True)
            maps.append(w)
        x = x + a
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer. Module names mirror GPT-2's checkpoint
    (transformer.wte / wpe / h.N / ln_f, lm_head).

    >>> model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8))
    >>> logits, loss = model(torch.zeros(2, 5, dtype=torch.long))
    >>> logits.shape, loss
    (torch.Size([2, 5, 10]), None)
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, C),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=(nn.LayerNorm(C, eps=config.norm_eps, bias=config.bias) if config.style == "gpt2"
                  else RMSNorm(C, eps=config.norm_eps)),
        ))
        if config.style == "gpt2":
            self.transformer["wpe"] = nn.Embedding(config.block_size, C)
            self.rotary = None
        else:
            self.rotary = Rotary(config.head_size, config.block_size, config.rope_theta)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix, two uses
        self.apply(self._init_weights)
        # GPT-2: the projections that write into the residual stream get std 0.02/sqrt(2 n_layer),
        # so the stream's variance does not grow with depth (2 writes per block).
        for name, p in self.named_parameters():
            if name.endswith(("attn.c_proj.weight", "mlp.c_proj.weight", "mlp.down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied matrix counts once).

        non_embedding=True leaves out the token and position embeddings (Kaplan et
        al., 2020's N); an untied output head is a matmul per token, so it stays.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()  # tied: the head's matrix goes too
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters by kind, counted from the modules: embeddings (token + position),
        attention, mlp, norms, head (0 when tied: the matrix is counted under embeddings)."""
        groups = dict.fromkeys(("embeddings", "attention", "mlp", "norms", "head"), 0)
        for name, p in self.named_parameters():  # a tied head is listed once, under wte
            kind = ("embeddings" if ".wte." in name or ".wpe." in name else "attention" if ".attn." in name
                    else "mlp" if ".mlp." in name else "head" if name.startswith("lm_head") else "norms")
            groups[kind] += p.numel()
        return groups

    # --- input checks -------------------------------------------------------------

    def _check_ids(self, idx: torch.Tensor, start: int) -> None:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            raise MiniLLMError(f"idx must be a (B, T) tensor of token ids, got {getattr(idx, 'shape', type(idx))}")
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            # A float tensor may hold NaN, inf or 2.7: none is a token id, and casting would truncate.
            raise MiniLLMError(f"token ids must be an integer tensor (torch.long), got {idx.dtype}; "
                               f"NaN, inf and fractional values are not token ids")
        if start + idx.size(1) > self.config.block_size:
            raise MiniLLMError(f"sequence of {start + idx.size(1)} tokens is longer than the context "
                               f"(block_size={self.config.block_size}); crop it or use a bigger block_size")
        if torch.compiler.is_compiling():
            return  # reading values back from the tensor would break the compiled graph
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise MiniLLMError(f"token ids must be in [0, {self.config.vocab_size}), got "
                               f"min {int(idx.min())} max {int(idx.max())}: does the tokenizer match the model?")

    def _positions(self, idx: torch.Tensor, start: int, position_ids: torch.Tensor | None) -> torch.Tensor:
        """(T,) positions start .. start+T-1, or the caller's (B, T) position_ids, checked."""
        B, T = idx.shape
        if position_ids is None:
            return torch.arange(start, start + T, device=idx.device)
        if position_ids.shape != (B, T) or position_ids.is_floating_point() or position_ids.dtype == torch.bool:
            raise MiniLLMError(f"position_ids must be a ({B}, {T}) integer tensor like idx, got "
                               f"{tuple(position_ids.shape)} {position_ids.dtype}")
        if not torch.compiler.is_compiling() and position_ids.numel() and (
                int(position_ids.min()) < 0 or int(position_ids.max()) >= self.config.block_size):
            raise MiniLLMError(f"position_ids must be in [0, block_size={self.config.block_size})")
        return position_ids.to(idx.device)

    # --- the forward pass ---------------------------------------------------------

    def hidden_states(self, idx: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                      maps: list | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> (B, T, C): the residual stream after the final norm.

        attention_mask: (B, Tk) 1/0 "is a real token" (padding; Tk = T, or cache.pos + T
        with a cache), or a boolean (B, T, T) "query i may attend key j" (packing: a
        block-diagonal mask). Either is combined with the causal mask.
        position_ids: (B, T) positions (left padding and packing restart them per
        example); default start .. start+T-1. cache: a `KVCache` whose positions the T
        tokens continue. maps: a list that receives each layer's (B, nh, T, Tk) weights.
        """
        start = cache.pos if cache is not None else 0
        self._check_ids(idx, start)
        B, T = idx.shape
        pos = self._positions(idx, start, position_ids)  # (T,) or (B, T)
        mask = attention_mask_for(attention_mask, B, T, start + T, idx.device)  # None or (B, 1, T, Tk)
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.rotary is None:
            x = x + self.transformer.wpe(pos)  # (B, T, C) + (T, C) or (B, T, C)
        else:
            cos, sin = self.rotary(pos)  # (T, hs) or (B, T, hs), once for every layer
            rope = partial(apply_rotary, cos=cos.unsqueeze(-2), sin=sin.unsqueeze(-2))  # (.., T, 1, hs)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, rope=rope, cache=cache, layer=i, mask=mask, maps=maps)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> (logits (B, T, V), loss or None), always two values.

        loss: mean cross-entropy over the targets (B, T) that are not -100. The other
        arguments are those of `hidden_states`.
        """
        x = self.hidden_states(idx, attention_mask=attention_mask, position_ids=position_ids, cache=cache)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor, **kwargs) -> list[torch.Tensor]:
        """One (B, nh, T, T) attention-weight tensor per layer (the notebooks plot them)."""
        maps: list[torch.Tensor] = []
        self.hidden_states(idx, maps=maps, **kwargs)
        return maps

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for this model (on its device, in its dtype)."""
        p = self.lm_head.weight
        c = self.config
        return KVCache(c.n_layer, batch_size, c.kv_heads, max_len or c.block_size, c.head_size,
                       device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 stop_tokens: Iterable[int] | None = None, seed: int | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Continue idx (B, T) by up to max_new_tokens tokens -> (B, T + new).

        `minillm.generation.generate_batch` does the work (and explains the options); row
        i samples with a generator seeded seed + i. Generation ends once every row has
        produced one of stop_tokens; a finished row repeats its stop token.
        """
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(1) == 0:
            raise MiniLLMError("idx must be a (B, T) tensor with at least one token (a prompt)")
        stops = list(stop_tokens or [])
        rows = generate_rows(self, idx.tolist(), max_new_tokens, temperature=temperature, top_k=top_k,
                             top_p=top_p, stop_ids=stops, seed=seed, use_cache=use_cache)
        # Each row: its new tokens and the stop token it hit (or None); pad with that token.
        rows = [new + ([stop] if stop is not None else []) for new, stop in rows]
        width = max(len(r) for r in rows)
        rows = [r + r[-1:] * (width - len(r)) for r in rows]  # only finished rows are short
        return torch.cat([idx, torch.tensor(rows, dtype=idx.dtype, device=idx.device).view(len(rows), width)], 1)


def resize_token_embeddings(model: GPT, new_vocab_size: int) -> GPT:
    """Grow (or cut) the vocabulary of `model` in place to `new_vocab_size` ids; returns it.

    New rows of the token embedding (and of an untied output head) start at the mean
    of the old rows, so a new token begins as an "average" token instead of a random
    one; a tied head stays tied. `model.config.vocab_size` is updated.
    """
    if not isinstance(new_vocab_size, int) or new_vocab_size < 1:
        raise MiniLLMError(f"new_vocab_size must be a positive integer, got {new_vocab_size!r}")

    def grown(weight: torch.Tensor) -> nn.Parameter:  # (V, C) -> (new V, C)
        old = weight.detach()
        extra = old.mean(dim=0, keepdim=True).expand(max(new_vocab_size - old.size(0), 0), -1)
        return nn.Parameter(torch.cat([old[:new_vocab_size], extra], dim=0).clone(),
                            requires_grad=weight.requires_grad)

    wte = model.transformer.wte
    wte.weight, wte.num_embeddings = grown(wte.weight), new_vocab_size
    head = model.lm_head
    head.weight = wte.weight if model.config.tie_embeddings else grown(head.weight)
    head.out_features = new_vocab_size
    model.config = dataclasses.replace(model.config, vocab_size=new_vocab_size)
    return model
