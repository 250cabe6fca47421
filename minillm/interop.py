"""Load Hugging Face GPT-2 and LLaMA weights into our GPT (lesson 03, "the real thing").

Because our module names mirror GPT-2's checkpoint, loading GPT-2 is a key copy
plus one transpose (GPT-2 stores its projections as `Conv1D` with weight
(in, out), ours are `nn.Linear` with (out, in)). LLaMA's separate q/k/v
projections are stacked into our fused `c_attn`; its RoPE uses the same
rotate-half pairing as `minillm.layers.Rotary`, so no permutation is needed.

Needs nothing from `transformers` to load a state dict; `from_pretrained`
imports it lazily (the `interop` extra) and needs the network or a local copy.
Left out: exporting back to Hugging Face, RoPE scaling variants (LLaMA 3.1's
"llama3" rope_type), biased LLaMA variants beyond attention/mlp bias flags.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from minillm.model import GPT, GPTConfig
from minillm.utils import MiniLLMError


def _get(hf_config: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(hf_config, n, None)
        if v is not None:
            return v
    return default


def config_from_hf(hf_config: Any) -> GPTConfig:
    """Our GPTConfig for a Hugging Face GPT2Config or LlamaConfig."""
    kind = getattr(hf_config, "model_type", None)
    if kind == "gpt2":
        act = getattr(hf_config, "activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise MiniLLMError(f"GPT-2 with activation {act!r} is not supported (we use GELU, tanh approximation)")
        return GPTConfig(
            vocab_size=hf_config.vocab_size, block_size=hf_config.n_positions, n_layer=hf_config.n_layer,
            n_head=hf_config.n_head, n_embd=hf_config.n_embd, dropout=0.0, bias=True,
            tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", True)), style="gpt2",
            mlp_hidden=_get(hf_config, "n_inner", default=4 * hf_config.n_embd),
            norm_eps=hf_config.layer_norm_epsilon,
        )
    if kind == "llama":
        C, nh = hf_config.hidden_size, hf_config.num_attention_heads
        head_dim = _get(hf_config, "head_dim", default=C // nh)
        if head_dim * nh != C:
            raise MiniLLMError(f"head_dim {head_dim} * heads {nh} != hidden_size {C}: not supported")
        if bool(getattr(hf_config, "attention_bias", False)) != bool(getattr(hf_config, "mlp_bias", False)):
            raise MiniLLMError("LLaMA with bias in attention but not in the MLP (or the reverse) is not supported")
        rope = getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {}
        if rope.get("rope_type", "default") not in ("default", None):
            raise MiniLLMError(f"RoPE scaling {rope.get('rope_type')!r} is not supported")
        theta = rope.get("rope_theta") or _get(hf_config, "rope_theta", default=10000.0)
        return GPTConfig(
            vocab_size=hf_config.vocab_size, block_size=hf_config.max_position_embeddings,
            n_layer=hf_config.num_hidden_layers, n_head=nh,
            n_kv_head=_get(hf_config, "num_key_value_heads", default=nh), n_embd=C, dropout=0.0,
            bias=bool(getattr(hf_config, "attention_bias", False)),
            tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)), style="llama",
            mlp_hidden=hf_config.intermediate_size, norm_eps=hf_config.rms_norm_eps, rope_theta=float(theta),
        )
    raise MiniLLMError(f"model type {kind!r} is not supported (gpt2 and llama are)")


def _copy(ours: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
    if name not in ours:
        raise MiniLLMError(f"our model has no parameter {name!r}: is the config right?")
    if ours[name].shape != value.shape:
        raise MiniLLMError(f"shape mismatch for {name}: ours {tuple(ours[name].shape)}, "
                           f"checkpoint {tuple(value.shape)}")
    with torch.no_grad():
        ours[name].copy_(value)


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys without `prefix` (checkpoints of the bare model lack it)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def load_hf_gpt2_state_dict(model: GPT, hf_state_dict: Mapping[str, torch.Tensor]) -> GPT:
    """Copy a Hugging Face GPT2LMHeadModel (or GPT2Model) state dict into `model`, in place.

    Conv1D weights (in, out) are transposed to Linear's (out, in).
    """
    if model.config.style != "gpt2":
        raise MiniLLMError("GPT-2 weights need a style='gpt2' model")
    sd = _strip(hf_state_dict, "transformer.")
    ours = dict(model.named_parameters(remove_duplicate=False))
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    done = set()
    for key, value in sd.items():
        if key.endswith(("attn.bias", "attn.masked_bias")) and value.dim() != 1:
            continue  # old checkpoints store the causal mask as a buffer
        if key == "lm_head.weight":
            if model.config.tie_embeddings:
                continue  # the same matrix as wte
            name = "lm_head.weight"
        else:
            name = "transformer." + key
        value = value.t() if key.endswith(conv1d) else value
        _copy(ours, name, value)
        done.add(name)
    if not model.config.tie_embeddings and "lm_head.weight" not in done and "transformer.wte.weight" in done:
        _copy(ours, "lm_head.weight", sd["wte.weight"])  # a bare GPT2Model: the head is the embedding
        done.add("lm_head.weight")
    missing = [n for n in ours if n not in done and not (model.config.tie_embeddings and n == "lm_head.weight")]
    if missing:
        raise MiniLLMError(f"the GPT-2 state dict lacks {missing[:4]}{'...' if len(missing) > 4 else ''}")
    return model


def load_hf_llama_state_dict(model: GPT, hf_state_dict: Mapping[str, torch.Tensor]) -> GPT:
    """Copy a Hugging Face LlamaForCausalLM state dict into a style='llama' `model`, in place.

    q_proj, k_proj, v_proj are stacked (rows) into our fused c_attn.
    """
    if model.config.style != "llama":
        raise MiniLLMError("LLaMA weights need a style='llama' model")
    sd = dict(hf_state_dict)
    ours = dict(model.named_parameters(remove_duplicate=False))
    done = set()

    def put(name: str, value: torch.Tensor) -> None:
        _copy(ours, name, value)
        done.add(name)

    put("transformer.wte.weight", sd["model.embed_tokens.weight"])
    put("transformer.ln_f.weight", sd["model.norm.weight"])
    if not model.config.tie_embeddings:
        put("lm_head.weight", sd.get("lm_head.weight", sd["model.embed_tokens.weight"]))
    for i in range(model.config.n_layer):
        src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
        put(dst + "ln_1.weight", sd[src + "input_layernorm.weight"])
        put(dst + "ln_2.weight", sd[src + "post_attention_layernorm.weight"])
        a = src + "self_attn."
        put(dst + "attn.c_attn.weight",
            torch.cat([sd[a + "q_proj.weight"], sd[a + "k_proj.weight"], sd[a + "v_proj.weight"]], dim=0))
        put(dst + "attn.c_proj.weight", sd[a + "o_proj.weight"])
        for ours_name, theirs in (("gate_proj", "gate_proj"), ("up_proj", "up_proj"), ("down_proj", "down_proj")):
            put(dst + f"mlp.{ours_name}.weight", sd[src + f"mlp.{theirs}.weight"])
        if model.config.bias:
            put(dst + "attn.c_attn.bias",
                torch.cat([sd[a + "q_proj.bias"], sd[a + "k_proj.bias"], sd[a + "v_proj.bias"]], dim=0))
            put(dst + "attn.c_proj.bias", sd[a + "o_proj.bias"])
            for n in ("gate_proj", "up_proj", "down_proj"):
                put(dst + f"mlp.{n}.bias", sd[src + f"mlp.{n}.bias"])
    missing = [n for n in ours if n not in done and not (model.config.tie_embeddings and n == "lm_head.weight")]
    if missing:
        raise MiniLLMError(f"not loaded from the LLaMA state dict: {missing[:4]}")
    return model


def from_hf_model(hf_model: Any) -> GPT:
    """Our GPT with the weights of a Hugging Face GPT2LMHeadModel / LlamaForCausalLM object."""
    config = config_from_hf(hf_model.config)
    model = GPT(config)
    sd = {k: v.detach().float() for k, v in hf_model.state_dict().items()}
    if config.style == "gpt2":
        load_hf_gpt2_state_dict(model, sd)
    else:
        load_hf_llama_state_dict(model, sd)
    return model.eval()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (HF_HUB_OFFLINE=1: never)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hf_cache(name: str) -> bool:
    """Whether the model's config is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id, say: let from_pretrained report it
        return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def from_pretrained(name: str = "gpt2") -> GPT:
    """Download (or read from the local cache or a local folder) a Hugging Face model and convert it.

    Raises one MiniLLMError when `transformers` is missing, the weights cannot be
    fetched, the folder is damaged (unreadable config or weights) or the model type is
    neither GPT-2 nor LLaMA (checked from the config, before any weights are read).
    """
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise MiniLLMError("GPT.from_pretrained needs the interop extra: pip install -e '.[interop]'") from None
    from pathlib import Path

    local = Path(name).is_dir()
    if not local and not _in_hf_cache(name) and not _hub_reachable():
        # Fail in seconds, not after the hub client's minute of retries.
        raise MiniLLMError(
            f"could not load {name!r}: it is not in the local Hugging Face cache and huggingface.co "
            f"cannot be reached (are you offline?). Download it once with network access, or pass "
            f"a local folder.")
    try:
        config_from_hf(AutoConfig.from_pretrained(name))  # an unsupported type fails here, cheaply
        hf_model = AutoModelForCausalLM.from_pretrained(name)
    except MiniLLMError:
        raise
    except Exception as e:  # noqa: BLE001 - the hub client and safetensors raise many kinds
        if local:
            raise MiniLLMError(f"cannot load the Hugging Face model folder {name!r}: it is damaged or "
                               f"incomplete (needs config.json and the weights). {_first_line(e)}") from None
        raise MiniLLMError(
            f"could not load {name!r} from Hugging Face ({type(e).__name__}): are you offline? "
            f"Download it once with network access, or pass a local folder. "
            f"Details: {_first_line(e)}") from None
    return from_hf_model(hf_model)


class HFTokenizer:
    """A Hugging Face tokenizer behind our `Tokenizer`'s encode/decode/eot_id interface.

    `encode(text, allowed_special="none")` keeps special-token strings in `text` as
    plain text (as our Tokenizer does); `allowed_special="all"` turns them into their ids.
    """

    def __init__(self, hf_tokenizer: Any):
        self.hf = hf_tokenizer
        self.vocab_size = len(hf_tokenizer)
        self.eot_id = hf_tokenizer.eos_token_id

    def encode(self, text: str, allowed_special: Any = "none", disallowed_special: Any = ()) -> list[int]:
        special = allowed_special == "all"
        return self.hf(text, add_special_tokens=False, split_special_tokens=not special)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids)


def hf_tokenizer(name: str) -> HFTokenizer:
    """The tokenizer of a Hugging Face model (hub name or local folder), as an `HFTokenizer`."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MiniLLMError("Hugging Face tokenizers need the interop extra: pip install -e '.[interop]'") from None
    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(name))
    except Exception as e:  # noqa: BLE001
        raise MiniLLMError(f"cannot load the tokenizer of {name!r}: {_first_line(e)}") from None
