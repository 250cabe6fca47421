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
`generate` samples with temperature / top-k / top-p, a seed, stop tokens, and a
KV cache. Loading Hugging Face GPT-2 and LLaMA weights lives in `minillm.interop`.

Left out: mixture of experts, sliding-window attention, weight-decay grouping
(the trainer's job), tensor parallelism.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.attention import CausalSelfAttention, KVCache
from minillm.layers import MLP, RMSNorm, Rotary, SwiGLUMLP
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

    def forward(self, x, rope=None, cache=None, layer=0, return_weights=False):
        a = self.attn(self.ln_1(x), rope=rope, cache=cache, layer=layer, return_weights=return_weights)
        a, w = a if return_weights else (a, None)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return (x, w) if return_weights else x


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

    def _check_input(self, idx: torch.Tensor, start: int) -> None:
        if idx.dim() != 2 or idx.dtype not in (torch.long, torch.int):
            raise MiniLLMError(f"idx must be a (B, T) integer tensor, got {tuple(idx.shape)} {idx.dtype}")
        T = idx.size(1)
        if start + T > self.config.block_size:
            raise MiniLLMError(f"sequence of {start + T} tokens is longer than the context "
                               f"(block_size={self.config.block_size}); crop it or use a bigger block_size")
        if torch.compiler.is_compiling():
            return  # reading values back from the tensor would break the compiled graph
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise MiniLLMError(f"token ids must be in [0, {self.config.vocab_size}), got "
                               f"min {int(idx.min())} max {int(idx.max())}: does the tokenizer match the model?")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None, return_weights: bool = False):
        """idx (B, T) token ids -> (logits (B, T, V), loss or None).

        loss: mean cross-entropy over the targets (B, T) that are not -100.
        cache: a `KVCache`; the T tokens then continue the cached positions.
        return_weights: also return a list of (B, nh, T, Tk) attention maps, one per layer.
        """
        start = cache.pos if cache is not None else 0
        self._check_input(idx, start)
        B, T = idx.shape
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.rotary is None:
            pos = torch.arange(start, start + T, device=idx.device)
            x = x + self.transformer.wpe(pos)  # (B, T, C) + (T, C)
        x = self.transformer.drop(x)
        maps = []
        for i, block in enumerate(self.transformer.h):
            x = block(x, rope=self.rotary, cache=cache, layer=i, return_weights=return_weights)
            if return_weights:
                x, w = x
                maps.append(w)
        if cache is not None:
            cache.advance(T)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-100)
        return (logits, loss, maps) if return_weights else (logits, loss)

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

        temperature=0 is greedy; top_k keeps the k likeliest tokens; top_p keeps the
        smallest set whose probability reaches p (nucleus). seed makes sampling
        repeatable without touching the global RNG. Generation ends early once
        every row has produced one of stop_tokens (finished rows repeat their stop
        token). The rows of a batch share one prompt length (no padding). Past the
        context, the model sees the last block_size tokens: the cache is dropped and
        each step recomputes that window (the same logits as without a cache).
        """
        if max_new_tokens < 0:
            raise MiniLLMError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise MiniLLMError("idx must be a (B, T) tensor with at least one token (a prompt)")
        gen = None
        if seed is not None:
            gen = torch.Generator(device=idx.device).manual_seed(int(seed))
        stops = torch.tensor(sorted(set(stop_tokens or [])), device=idx.device, dtype=torch.long)
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        last = torch.zeros(idx.size(0), dtype=torch.long, device=idx.device)
        was_training = self.training
        self.eval()
        bs = self.config.block_size
        cache = self.new_cache(idx.size(0)) if use_cache else None
        try:
            for _ in range(max_new_tokens):
                if cache is not None and idx.size(1) <= bs:
                    # Feed only what the cache has not seen (all of the prompt at first, then 1 token).
                    logits, _ = self(idx[:, cache.pos:], cache=cache)
                    if cache.pos == bs:  # full: the next step falls back to recomputing
                        cache = None
                else:
                    logits, _ = self(idx[:, -bs:])
                next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, gen)  # (B,)
                next_id = torch.where(done, last, next_id)
                idx = torch.cat([idx, next_id[:, None]], dim=1)
                if stops.numel():
                    hit = torch.isin(next_id, stops) & ~done
                    last = torch.where(hit, next_id, last)
                    done |= hit
                    if bool(done.all()):
                        break
        finally:
            self.train(was_training)
        return idx

    @classmethod
    def from_pretrained(cls, name: str = "gpt2") -> "GPT":
        """Hugging Face weights (gpt2, gpt2-medium, a LLaMA repo, or a local folder); needs
        `transformers` and the network (or the files in the local cache)."""
        from minillm.interop import from_pretrained

        return from_pretrained(name)


def parameter_breakdown(config: GPTConfig) -> dict[str, int]:
    """Parameters by kind, from the config alone (no model is built): a closed form.

    Keys: embeddings (token + position), attention, mlp, norms, head (0 when tied).
    Sums to `GPT(config).num_parameters()` (test).

    >>> parameter_breakdown(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))["mlp"]
    56669184
    """
    c, b = config, int(config.bias)
    C, H, L = c.n_embd, c.mlp_hidden_size, c.n_layer
    qkv = (c.n_head + 2 * c.kv_heads) * c.head_size  # width of the fused q/k/v projection
    norm = C + b * C if c.style == "gpt2" else C  # LayerNorm scale (+ shift); RMSNorm scale only
    mlp = (C * H + b * H + H * C + b * C) if c.style == "gpt2" else (3 * C * H + b * (2 * H + C))
    return {
        "embeddings": c.vocab_size * C + (c.block_size * C if c.style == "gpt2" else 0),
        "attention": L * (C * qkv + b * qkv + C * C + b * C),
        "mlp": L * mlp,
        "norms": (2 * L + 1) * norm,
        "head": 0 if c.tie_embeddings else c.vocab_size * C,
    }


def load_hf_gpt2_state_dict(model: GPT, hf_state_dict) -> GPT:
    """Copy a Hugging Face GPT-2 state dict into `model` (see `minillm.interop`)."""
    from minillm.interop import load_hf_gpt2_state_dict as load

    return load(model, hf_state_dict)


def load_hf_llama_state_dict(model: GPT, hf_state_dict) -> GPT:
    """Copy a Hugging Face LLaMA state dict into `model` (see `minillm.interop`)."""
    from minillm.interop import load_hf_llama_state_dict as load

    return load(model, hf_state_dict)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> (B,) long.

    temperature 0 = argmax. Otherwise the logits are divided by temperature, cut to
    the top_k largest, then to the smallest set whose softmax mass reaches top_p
    (the top token always stays), and one token is drawn.
    """
    if temperature < 0:
        raise MiniLLMError(f"temperature must be >= 0, got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise MiniLLMError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise MiniLLMError(f"top_k must be >= 1, got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass BEFORE it already reaches top_p (so the first always stays).
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


# --- the `minillm generate` command ----------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint .pt (tokenizer.json next to it), or a Hugging Face name such as gpt2")
    parser.add_argument("--prompt", default="Once upon a time", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k likeliest tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable samples")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")


def run(args: argparse.Namespace) -> int:
    import os

    from minillm.device import pick_device

    device = pick_device(args.device)
    if args.checkpoint.endswith(".pt") or os.path.isfile(args.checkpoint):
        from minillm.checkpoint import load_model

        model = load_model(args.checkpoint, device)
        tok_path = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "tokenizer.json")
        if not os.path.exists(tok_path):
            raise MiniLLMError(f"no tokenizer.json next to {args.checkpoint}")
        from minillm.tokenizer import Tokenizer

        tok = Tokenizer.load(tok_path)
        encode, decode = tok.encode, tok.decode
        stop = [tok.eot_id] if tok.eot_id is not None else []
    else:
        try:
            import tiktoken
        except ImportError:
            raise MiniLLMError("GPT-2 needs the interop extra: pip install -e '.[interop]'") from None
        model = GPT.from_pretrained(args.checkpoint).to(device)
        enc = tiktoken.get_encoding("gpt2")
        encode, decode = enc.encode, enc.decode
        stop = [enc.eot_token]
    ids = encode(args.prompt)
    if not ids:
        raise MiniLLMError("the prompt is empty after tokenization")
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, stop_tokens=stop)
    print(decode(out[0].tolist()))
    return 0
