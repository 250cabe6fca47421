"""LoRA: fine-tune a few added weights instead of all of them (lesson 09).

Low-rank adaptation (Hu et al. 2021) freezes a pretrained weight W (out x in) and learns
a low-rank update beside it:

    y = x W^T + (alpha / r) * dropout(x) A^T B^T,     A: (r, in), B: (out, r)

A starts random (Kaiming-uniform, as PEFT does) and B at zero, so a wrapped model starts
exactly equal to the base. rsLoRA (Kalajdzievski 2023) scales by alpha / sqrt(r) instead,
so that the update's size does not shrink as the rank grows.

- `LoRALinear`: the wrapper, with `merge()` (fold B A alpha/r into W: no extra cost at
  inference) and `unmerge()`.
- `inject_lora(model, config)`: wrap the Linear layers whose names match the targets,
  freeze everything else, return the wrapped names.
- `count_trainable`, `lora_state_dict`, `save_adapter` / `load_adapter` (a small file with
  only the A and B matrices and the config, refused on a different base model),
  `merge_lora` (a plain model again, saved as an ordinary checkpoint). An adapter may also
  carry the embedding rows of tokens added for fine-tuning (`first_new_token`).

Our attention keeps q, k and v in one fused Linear (`attn.c_attn`, as GPT-2 does), so
"attn" LoRA adapts the three together with one rank-r update. Left out: LoRA on
embeddings, DoRA, and adapters for several tasks merged at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.flops import count_parameters
from minillm.utils import MiniLLMError, atomic_write_text

# target group -> regular expressions over module names (matched at the end of the name)
TARGETS = {
    "attn": [r"attn\.c_attn", r"attn\.c_proj"],
    "mlp": [r"mlp\.c_fc", r"mlp\.c_proj", r"mlp\.gate_proj", r"mlp\.up_proj", r"mlp\.down_proj"],
}
TARGETS["all"] = TARGETS["attn"] + TARGETS["mlp"]
ADAPTER_FILE = "adapter.pt"
ADAPTER_CONFIG = "adapter_config.json"
TOKEN_ROWS = "token_rows"   # adapter key of trained embedding rows of added tokens


@dataclass
class LoRAConfig:
    """Which layers get a low-rank update, and its size."""

    r: int = dataclasses.field(default=8, metadata={"help": "rank of the update B A"})
    alpha: float = dataclasses.field(default=16.0, metadata={"help": "the update is scaled by alpha / r"})
    dropout: float = dataclasses.field(default=0.0, metadata={"help": "dropout on the LoRA branch's input"})
    targets: str = dataclasses.field(default="attn", metadata={
        "help": "attn, mlp, all, or comma-separated regular expressions over module names"})
    rslora: bool = dataclasses.field(default=False, metadata={"help": "scale by alpha / sqrt(r) (rsLoRA)"})

    def target_groups(self) -> dict[str, list[str]]:
        """Each comma-separated target -> its regular expressions ('attn' -> its two layers)."""
        parts = [part.strip() for part in self.targets.split(",") if part.strip()]
        return {part: TARGETS.get(part, [part]) for part in parts}


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        super().__init__()
        if not isinstance(r, int) or r < 1 or r > min(base.in_features, base.out_features):
            raise MiniLLMError(f"LoRA rank must be an integer in 1..{min(base.in_features, base.out_features)} "
                               f"for a {base.out_features} x {base.in_features} layer, got {r!r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))       # nn.Linear's (and PEFT's) init
        self.r, self.alpha = r, alpha
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update (out, in) that merging adds to W: scaling * B @ A."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        ### BEGIN SOLUTION name=lora.forward points=2
        ### HINT: the frozen layer's output, plus the input sent through A then B (never forming the out x in product), scaled. Once merged, the base already holds the update.
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)   # (..., r) then (..., out)
        ### END SOLUTION

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W; forward then costs what the base layer costs."""
        if self.merged:
            return
        if not isinstance(self.base, nn.Linear):
            raise MiniLLMError("cannot merge into a quantised base weight: merge into a full-precision copy")
        ### BEGIN SOLUTION name=lora.merge points=2
        ### HINT: what matrix, added to W, makes x W^T equal to the two-branch output for every x?
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        ### END SOLUTION
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of W (equal to the original W up to rounding: W + D - D)."""
        if not self.merged:
            return
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False


def inject_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Wrap every nn.Linear whose name ends in a target pattern; freeze all other parameters.

    Returns the wrapped module names. A pattern that matches nothing is an error.
    """
    groups = config.target_groups()
    if not groups:
        raise MiniLLMError("no LoRA targets given")
    patterns = [p for group in groups.values() for p in group]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    unused = [part for part, group in groups.items()
              if not any(re.search(rf"(^|\.){p}$", n) for p in group for n in names)]
    if unused:
        raise MiniLLMError(f"LoRA target(s) {unused} match no Linear layer; the layers are: {names}")
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for name in names:
        if any(re.search(rf"(^|\.){p}$", name) for p in patterns):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(getattr(parent, child), config.r, config.alpha, config.dropout,
                                              config.rslora))
            wrapped.append(name)
    return wrapped


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters) of `model`, each counted once."""
    ### BEGIN SOLUTION name=lora.count points=1
    ### HINT: which parameters will the optimizer update? Shared (tied) tensors must be counted once.
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
    ### END SOLUTION


def lora_param_count(in_features: int, out_features: int, r: int) -> int:
    """Parameters of one rank-r update of an out x in layer: r (in + out)."""
    return r * (in_features + out_features)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and put the plain nn.Linear back."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the A and B matrices: {'<module>.lora_A': (r, in), '<module>.lora_B': (out, r)}."""
    return {f"{n}.{k}": getattr(m, k).detach().cpu().clone() for n, m in lora_layers(model).items()
            for k in ("lora_A", "lora_B")}


def base_fingerprint(model: nn.Module) -> str:
    """A hash of the frozen base weights (not the LoRA matrices): which model an adapter is for.

    Computed on an unmerged model (a merged one holds W + BA, not the base).
    """
    if any(layer.merged for layer in lora_layers(model).values()):
        raise MiniLLMError("unmerge the LoRA layers before taking the base model's fingerprint")
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if ".lora_" not in name:
            h.update(name.replace(".base.", ".").encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _embedding(model: nn.Module) -> nn.Module:
    """The token embedding: ours (`transformer.wte`) or a Hugging Face model's."""
    return model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else model.transformer.wte


def save_adapter(folder: str | os.PathLike, model: nn.Module, config: LoRAConfig, base: str | None = None,
                 first_new_token: int | None = None, extra: dict | None = None) -> Path:
    """Write the adapter (A and B matrices) and its config with the base model's fingerprint.

    base: the fingerprint to record (default: this model's now). first_new_token: also save
    the embedding rows from this id on (tokens added for fine-tuning, trained beside LoRA).
    extra: more JSON-able facts for the config file (e.g. which checkpoint the base is).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MiniLLMError(f"{folder} is a file; give a folder for the adapter")
    if not lora_layers(model):
        raise MiniLLMError("the model has no LoRA layers to save")
    folder.mkdir(parents=True, exist_ok=True)
    state = lora_state_dict(model)
    if first_new_token is not None:
        state[TOKEN_ROWS] = _embedding(model).weight[first_new_token:].detach().cpu().clone()
    save_checkpoint(folder / ADAPTER_FILE, state)
    meta = dict(dataclasses.asdict(config), modules=sorted(lora_layers(model)), base=base or base_fingerprint(model),
                first_new_token=first_new_token, **(extra or {}))
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(meta, indent=2) + "\n")
    return folder


def load_adapter(folder: str | os.PathLike, model: nn.Module) -> LoRAConfig:
    """Wrap `model` as the adapter's config says and load its A and B; refuse another base."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        config = LoRAConfig(**{f.name: meta[f.name] for f in dataclasses.fields(LoRAConfig)})
    except FileNotFoundError:
        raise MiniLLMError(f"{folder} holds no {ADAPTER_CONFIG}: not an adapter folder") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise MiniLLMError(f"{folder / ADAPTER_CONFIG} is damaged: {e}") from None
    if not lora_layers(model):
        inject_lora(model, config)
    if base_fingerprint(model) != meta.get("base"):
        raise MiniLLMError(f"the adapter in {folder} was trained on another base model "
                           f"(fingerprint {meta.get('base')}, this model's {base_fingerprint(model)})")
    state = load_checkpoint(folder / ADAPTER_FILE)
    layers = lora_layers(model)
    expected = {f"{n}.{k}" for n in layers for k in ("lora_A", "lora_B")}
    first = meta.get("first_new_token")
    expected |= {TOKEN_ROWS} if first is not None else set()
    if not isinstance(state, dict) or set(state) != expected:
        raise MiniLLMError(f"{folder / ADAPTER_FILE} does not match the adapter config's layers")
    with torch.no_grad():
        if first is not None:
            rows = state.pop(TOKEN_ROWS)                                  # (n_new, C)
            emb = _embedding(model).weight
            if emb.shape[0] != first + rows.shape[0]:
                raise MiniLLMError(f"the adapter trained tokens {first}..{first + rows.shape[0] - 1}; "
                                   f"the model has {emb.shape[0]} (add the chat tokens first)")
            emb[first:] = rows.to(emb.dtype)
        for key, t in state.items():
            name, _, which = key.rpartition(".")
            getattr(layers[name], which).copy_(t)
    return config


# --- Hugging Face PEFT's adapter layout (adapter_config.json + adapter_model.safetensors) ---

PEFT_WEIGHTS = "adapter_model.safetensors"


def _peft_key(name: str, which: str) -> str:
    return f"base_model.model.{name}.{which}.weight"


def save_peft_adapter(folder: str | os.PathLike, model: nn.Module, config: LoRAConfig) -> Path:
    """Write the adapter as PEFT does, so `PeftModel.from_pretrained` can load it (needs safetensors)."""
    from safetensors.torch import save_file   # deferred: optional interop dependency

    layers = lora_layers(model)
    if not layers:
        raise MiniLLMError("the model has no LoRA layers to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {_peft_key(n, k): getattr(m, k).detach().cpu().contiguous() for n, m in layers.items()
               for k in ("lora_A", "lora_B")}
    save_file(tensors, str(folder / PEFT_WEIGHTS))
    meta = dict(peft_type="LORA", r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                target_modules=sorted({n.rpartition(".")[2] for n in layers}), use_rslora=config.rslora,
                bias="none", fan_in_fan_out=False, task_type=None, inference_mode=True,
                base_model_name_or_path=None)
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(meta, indent=2) + "\n")
    return folder


def load_peft_adapter(folder: str | os.PathLike, model: nn.Module) -> LoRAConfig:
    """Load an adapter PEFT saved for this model's layer names into our LoRA layers."""
    from safetensors.torch import load_file   # deferred: optional interop dependency

    folder = Path(folder)
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / PEFT_WEIGHTS))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise MiniLLMError(f"{folder} is not a PEFT adapter folder: {e}") from None
    if meta.get("peft_type") != "LORA":
        raise MiniLLMError(f"{folder} holds a {meta.get('peft_type')} adapter, not LoRA")
    targets = ",".join(re.escape(t) for t in meta["target_modules"])
    config = LoRAConfig(r=meta["r"], alpha=meta["lora_alpha"], dropout=meta.get("lora_dropout", 0.0),
                        targets=targets, rslora=bool(meta.get("use_rslora", False)))
    if not lora_layers(model):
        inject_lora(model, config)
    layers = lora_layers(model)
    with torch.no_grad():
        for name, layer in layers.items():
            for which in ("lora_A", "lora_B"):
                key = _peft_key(name, which)
                if key not in tensors:
                    raise MiniLLMError(f"the PEFT adapter has no {key}: it was made for another model")
                getattr(layer, which).copy_(tensors[key])
    return config


# --- memory: full fine-tuning vs LoRA -------------------------------------------------

def _layer_shapes(config) -> dict[str, tuple[int, int]]:
    """(in, out) of each Linear of one block, by the name LoRA targets match."""
    C, H = config.n_embd, config.mlp_hidden_size
    qkv = (config.n_head + 2 * config.kv_heads) * config.head_size
    shapes = {"attn.c_attn": (C, qkv), "attn.c_proj": (C, C)}
    if config.style == "llama":
        shapes.update({"mlp.gate_proj": (C, H), "mlp.up_proj": (C, H), "mlp.down_proj": (H, C)})
    else:
        shapes.update({"mlp.c_fc": (C, H), "mlp.c_proj": (H, C)})
    return shapes


def finetune_memory(config, lora_config: LoRAConfig | None = None, param_bytes: int = 4) -> dict[str, int]:
    """Bytes of weights, gradients and AdamW state (two fp32 moments) for full fine-tuning
    (lora_config None) or LoRA: gradients and optimizer state only for what is trained."""
    n = count_parameters(config)
    if lora_config is None:
        trainable, extra = n, 0
    else:
        groups = lora_config.target_groups()
        patterns = [p for g in groups.values() for p in g]
        per_block = sum(lora_param_count(i, o, lora_config.r) for name, (i, o) in _layer_shapes(config).items()
                        if any(re.fullmatch(p, name) for p in patterns))
        trainable = extra = config.n_layer * per_block
    return dict(weights=(n + extra) * param_bytes, gradients=trainable * param_bytes, optimizer=trainable * 8,
                trainable=trainable)


def measured_memory(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """The same bytes, read off the real tensors (after a backward pass and an optimizer step)."""
    params = {id(p): p for p in model.parameters()}.values()
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0]
    return dict(weights=sum(p.numel() * p.element_size() for p in params),
                gradients=sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
                optimizer=sum(t.numel() * t.element_size() for t in state),
                trainable=sum(p.numel() for p in params if p.requires_grad))


# --- QLoRA's idea: the frozen base stored in 8 bits -------------------------------------

class Int8Linear(nn.Module):
    """A frozen Linear whose weight is stored as int8 with one absmax scale per output row
    (Dettmers et al. 2022's vector-wise quantisation; QLoRA goes to 4 bits), dequantised
    in the forward pass. Its weight is a (out, in) property, so LoRA can wrap it."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        w = base.weight.detach()
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0      # (out, 1)
        self.register_buffer("q", torch.round(w / scale).to(torch.int8))        # (out, in)
        self.register_buffer("scale", scale.to(w.dtype))
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = base.in_features, base.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.q.to(self.scale.dtype) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight, self.bias)


def quantize_base(model: nn.Module) -> dict[str, float]:
    """Store the base weight of every LoRA layer in int8; returns each layer's largest
    absolute weight error (at most half a quantisation step, scale / 2, per row)."""
    errors = {}
    for name, layer in lora_layers(model).items():
        if layer.merged:
            raise MiniLLMError("unmerge the LoRA layers before quantising their base")
        if isinstance(layer.base, Int8Linear):
            continue
        q = Int8Linear(layer.base)
        errors[name] = (q.weight - layer.base.weight).abs().max().item()
        layer.base = q
    return errors
