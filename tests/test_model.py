"""Tests of minillm.layers and minillm.model (lesson 03).

Tolerances: float64 comparisons atol 1e-10 (rounding only), float32 atol 1e-5.
"""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from minillm import MiniLLMError
from minillm.layers import (
    RMSNorm,
    Rotary,
    embedding,
    gelu_tanh,
    layer_norm,
    linear,
    rms_norm,
    rope_reference,
    silu,
    swiglu,
)
from minillm.checkpoint import load_model
from minillm.model import GPT, GPTConfig, sample_next

TINY = dict(vocab_size=37, block_size=32, n_layer=2, n_head=4, n_embd=32)


def tiny(style="gpt2", **kw):
    if style == "llama":
        return GPTConfig.llama_style(**{**TINY, **kw})
    return GPTConfig(**{**TINY, **kw})


# --- parts: from scratch == PyTorch / an independent formula -----------------------

def test_linear_and_embedding_match_torch():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(3, 4, 5, generator=g), torch.randn(6, 5, generator=g), torch.randn(6, generator=g)
    torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), atol=1e-6, rtol=1e-6)
    idx = torch.tensor([[0, 5, 5], [2, 1, 0]])
    table = torch.randn(6, 4, generator=g)
    assert torch.equal(embedding(idx, table), F.embedding(idx, table))
    # embedding == one-hot matmul
    torch.testing.assert_close(embedding(idx, table), F.one_hot(idx, 6).float() @ table)


@pytest.mark.exercise("layers.layer_norm")
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(affine):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, 16, generator=g, dtype=torch.float64) * 3 + 2
    w = torch.randn(16, generator=g, dtype=torch.float64) if affine else None
    b = torch.randn(16, generator=g, dtype=torch.float64) if affine else None
    torch.testing.assert_close(layer_norm(x, w, b, 1e-5), F.layer_norm(x, (16,), w, b, 1e-5),
                               atol=1e-12, rtol=0)


@pytest.mark.exercise("layers.layer_norm")
def test_layer_norm_hand_example():
    # [1, 2, 3]: mean 2, biased variance 2/3 -> [-sqrt(3/2), 0, sqrt(3/2)]
    out = layer_norm(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), None, None, eps=0.0)
    r = math.sqrt(1.5)
    torch.testing.assert_close(out, torch.tensor([-r, 0.0, r], dtype=torch.float64), atol=1e-14, rtol=0)


@pytest.mark.exercise("layers.rms_norm")
def test_rms_norm_hand_example_and_module_equal():
    out = rms_norm(torch.tensor([3.0, 4.0], dtype=torch.float64), None, eps=0.0)
    r = math.sqrt((9 + 16) / 2)
    torch.testing.assert_close(out, torch.tensor([3 / r, 4 / r], dtype=torch.float64), atol=1e-14, rtol=0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 9, 24, generator=g, dtype=torch.float64)
    m = RMSNorm(24, eps=1e-6).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(24, generator=g))
    torch.testing.assert_close(m(x), rms_norm(x, m.weight, 1e-6), atol=1e-12, rtol=0)
    torch.testing.assert_close(m(x), F.rms_norm(x, (24,), m.weight, 1e-6), atol=1e-12, rtol=0)


def test_activations_match_torch():
    x = torch.linspace(-8, 8, 1001, dtype=torch.float64)
    torch.testing.assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-12, rtol=0)
    torch.testing.assert_close(silu(x), F.silu(x), atol=1e-12, rtol=0)
    # the tanh approximation stays within 1e-3 of the exact GELU (Hendrycks & Gimpel, 2016)
    assert (gelu_tanh(x) - F.gelu(x)).abs().max() < 1e-3


def test_swiglu_matches_module():
    from minillm.layers import SwiGLUMLP

    torch.manual_seed(3)
    m = SwiGLUMLP(16, 40).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x), swiglu(x, m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight),
                               atol=1e-12, rtol=0)


@pytest.mark.exercise("layers.rope")
@pytest.mark.parametrize("start", [0, 5])
def test_rope_fast_equals_complex_reference(start):
    x = torch.randn(2, 3, 7, 16, dtype=torch.float64)
    rot = Rotary(16, 32).double()
    rot.cos, rot.sin = rot.cos.double(), rot.sin.double()
    torch.testing.assert_close(rot(x, start), rope_reference(x, start), atol=1e-6, rtol=0)


@pytest.mark.exercise("layers.rope")
def test_rope_preserves_norms_and_makes_scores_relative():
    g = torch.Generator().manual_seed(4)
    q = torch.randn(1, 1, 1, 8, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 8, generator=g, dtype=torch.float64)
    # rotation: norms unchanged
    torch.testing.assert_close(rope_reference(q, 9).norm(), q.norm(), atol=1e-12, rtol=0)
    # <rope(q, m), rope(k, n)> depends only on m - n
    s1 = (rope_reference(q, 7) * rope_reference(k, 3)).sum()
    s2 = (rope_reference(q, 24) * rope_reference(k, 20)).sum()
    torch.testing.assert_close(s1, s2, atol=1e-12, rtol=0)
    # position 0 is the identity
    torch.testing.assert_close(rope_reference(q, 0), q, atol=0, rtol=0)


# --- config ---------------------------------------------------------------------

def test_config_properties_and_validation():
    assert GPTConfig(n_embd=128).mlp_hidden_size == 512
    assert GPTConfig(n_embd=128, style="llama").mlp_hidden_size == 384  # 8*128/3 = 341 -> 384
    # 8*4096/3 = 10922.7 -> 10944 (LLaMA-7B rounds to a multiple of 256 instead: 11008)
    assert GPTConfig(n_embd=4096, style="llama").mlp_hidden_size == 10944
    assert GPTConfig(mlp_hidden=100).mlp_hidden_size == 100
    assert GPTConfig(n_head=8).kv_heads == 8 and GPTConfig(n_head=8, n_kv_head=2).kv_heads == 2
    with pytest.raises(MiniLLMError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(MiniLLMError, match="n_kv_head"):
        GPTConfig(n_head=4, n_kv_head=3)
    with pytest.raises(MiniLLMError, match="style"):
        GPTConfig(style="bert")


# --- parameter counts -------------------------------------------------------------

def closed_form_count(c: GPTConfig) -> int:
    """Count written from the architecture on paper, not from the module."""
    C, V, L, H, b = c.n_embd, c.vocab_size, c.n_layer, c.mlp_hidden_size, int(c.bias)
    hs = C // c.n_head
    qkv_out = (c.n_head + 2 * c.kv_heads) * hs
    attn = C * qkv_out + b * qkv_out + C * C + b * C
    if c.style == "gpt2":
        norm = C + b * C  # LayerNorm: scale (+ shift)
        mlp = C * H + b * H + H * C + b * C
        emb = V * C + c.block_size * C
    else:
        norm = C  # RMSNorm: scale only
        mlp = 3 * C * H + b * (2 * H + C)
        emb = V * C
    head = 0 if c.tie_embeddings else V * C
    return emb + L * (2 * norm + attn + mlp) + norm + head


@pytest.mark.parametrize("cfg", [
    tiny("gpt2"),
    tiny("gpt2", bias=False, tie_embeddings=False),
    tiny("llama"),
    tiny("llama", n_kv_head=2),
    tiny("llama", n_kv_head=1, bias=True, tie_embeddings=True, mlp_hidden=50),
])
def test_num_parameters_equals_closed_form(cfg):
    model = GPT(cfg)
    assert model.num_parameters() == closed_form_count(cfg)
    emb = cfg.vocab_size * cfg.n_embd + (cfg.block_size * cfg.n_embd if cfg.style == "gpt2" else 0)
    assert model.num_parameters(non_embedding=True) == closed_form_count(cfg) - emb


def test_gpt2_small_has_124m_parameters():
    # GPT-2 small: 124,439,808 parameters (tied head), the figure the HF checkpoint has.
    cfg = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    assert closed_form_count(cfg) == 124_439_808


# --- forward ----------------------------------------------------------------------

@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_forward_shapes_and_initial_loss_near_uniform(style):
    torch.manual_seed(0)
    model = GPT(tiny(style))
    idx = torch.randint(0, 37, (4, 32))
    tgt = torch.randint(0, 37, (4, 32))
    logits, loss = model(idx, tgt)
    assert logits.shape == (4, 32, 37)
    # small init: the model starts close to uniform, loss ~ ln V
    assert abs(loss.item() - math.log(37)) < 0.1
    assert model(idx)[1] is None


def test_loss_ignores_minus_100_targets():
    torch.manual_seed(1)
    model = GPT(tiny())
    idx = torch.randint(0, 37, (2, 10))
    tgt = torch.randint(0, 37, (2, 10))
    tgt[0, :4] = -100
    tgt[1, 7:] = -100
    logits, loss = model(idx, tgt)
    keep = tgt != -100
    manual = -torch.log_softmax(logits, -1)[keep].gather(-1, tgt[keep][:, None]).mean()
    torch.testing.assert_close(loss, manual, atol=1e-6, rtol=0)


def test_forward_is_causal():
    # changing a later token leaves the logits of earlier positions unchanged
    for style in ("gpt2", "llama"):
        torch.manual_seed(2)
        model = GPT(tiny(style)).double()
        idx = torch.randint(0, 37, (1, 12))
        idx2 = idx.clone()
        idx2[0, 8] = (idx[0, 8] + 1) % 37
        a, b = model(idx)[0], model(idx2)[0]
        torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-12, rtol=0)
        assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_clear_errors_for_too_long_and_out_of_range():
    model = GPT(tiny())
    with pytest.raises(MiniLLMError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(MiniLLMError, match="token ids"):
        model(torch.tensor([[1, 37]]))
    with pytest.raises(MiniLLMError, match="token ids"):
        model(torch.tensor([[-1, 2]]))


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=8, n_head=4, n_embd=256))
    std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 5e-4
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 5e-4
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


# --- KV cache and generation ---------------------------------------------------------

@pytest.mark.parametrize("style,kw", [("gpt2", {}), ("llama", {}), ("llama", {"n_kv_head": 2})])
def test_cached_logits_equal_full_forward(style, kw):
    torch.manual_seed(3)
    model = GPT(tiny(style, **kw)).double().eval()
    idx = torch.randint(0, 37, (2, 20))
    full, _ = model(idx)
    cache = model.new_cache(2)
    steps = [model(idx[:, :6], cache=cache)[0]]  # prefill 6 tokens
    for t in range(6, 20):
        steps.append(model(idx[:, t:t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_generate_with_and_without_cache_agree(style):
    torch.manual_seed(4)
    model = GPT(tiny(style)).double()
    prompt = torch.randint(0, 37, (2, 5))
    # 40 new tokens: runs past block_size=32, so the sliding window is checked too
    a = model.generate(prompt, 40, temperature=0)
    b = model.generate(prompt, 40, temperature=0, use_cache=False)
    assert a.shape == (2, 45) and torch.equal(a, b)
    assert torch.equal(a[:, :5], prompt)
    c = model.generate(prompt, 40, temperature=1.0, top_k=10, seed=7)
    d = model.generate(prompt, 40, temperature=1.0, top_k=10, seed=7, use_cache=False)
    assert torch.equal(c, d)


def test_generate_greedy_is_argmax_of_forward():
    torch.manual_seed(5)
    model = GPT(tiny()).double()
    idx = torch.randint(0, 37, (1, 4))
    out = model.generate(idx, 3, temperature=0)
    for t in range(4, 7):
        logits, _ = model(out[:, :t])
        assert out[0, t].item() == logits[0, -1].argmax().item()


def test_generate_seed_repeats_and_stop_tokens_end_early():
    torch.manual_seed(6)
    model = GPT(tiny())
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(prompt, 30, seed=123)
    assert torch.equal(a, model.generate(prompt, 30, seed=123))
    stop = a[0, 5].item()
    s = model.generate(prompt, 30, seed=123, stop_tokens=[stop])
    first = (a[0, 1:] == stop).nonzero()[0].item() + 1
    assert torch.equal(s[0], a[0, :first + 1])  # identical up to and including the first stop token


def test_generate_leaves_training_mode_alone():
    model = GPT(tiny(dropout=0.1))
    model.train()
    model.generate(torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training


# --- sampling -------------------------------------------------------------------------

def test_sample_next_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen_k = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(300)}
    assert seen_k == {0, 1}
    # top_p=0.8: 0.5 < 0.8, 0.5+0.3 = 0.8 reaches it -> keep {0, 1}
    seen_p = {sample_next(logits, 1.0, top_p=0.8, generator=g).item() for _ in range(300)}
    assert seen_p == {0, 1}
    seen_p = {sample_next(logits, 1.0, top_p=0.81, generator=g).item() for _ in range(300)}
    assert seen_p == {0, 1, 2}
    assert sample_next(logits, 1.0, top_p=0.1, generator=g).item() == 0  # top token always kept


def test_sample_next_frequencies_follow_temperature():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(20000, 3)
    g = torch.Generator().manual_seed(1)
    freq = torch.bincount(sample_next(logits, 1.0, generator=g), minlength=3) / 20000
    torch.testing.assert_close(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.015, rtol=0)  # ~4 sigma
    # temperature 0.5 squares the probabilities (renormalised)
    p = torch.tensor([0.36, 0.09, 0.01]) / 0.46
    freq = torch.bincount(sample_next(logits, 0.5, generator=g), minlength=3) / 20000
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)
    assert torch.equal(sample_next(logits[:2], 0.0), torch.zeros(2, dtype=torch.long))


# --- checkpoints -------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(7)
    model = GPT(tiny("llama"))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config), "step": 3}, path)
    loaded = load_model(str(path))
    idx = torch.randint(0, 37, (1, 9))
    assert torch.equal(loaded(idx)[0], model(idx)[0])
    with pytest.raises(MiniLLMError, match="not found"):
        load_model(str(tmp_path / "missing.pt"))


# --- Hugging Face equivalence (interop extra) ------------------------------------------

def _hf_pair(kind, **kw):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(11)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                                      initializer_range=0.2, bos_token_id=0, eos_token_id=0, **kw)
        hf = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=24, initializer_range=0.2,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0, **kw)
        hf = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # HF inits norms to 1 and biases to 0: randomise them so they are checked too
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn_like(p) if "norm" in name or "ln" in name else 0.3 * torch.randn_like(p))
    return hf.double().eval()


@pytest.mark.parametrize("kind,kw", [
    ("gpt2", {}),
    ("llama", {}),
    ("llama", {"num_key_value_heads": 2, "rope_theta": 500.0}),
    ("llama", {"num_key_value_heads": 1, "tie_word_embeddings": True}),
])
def test_hf_logits_equal_ours_float64(kind, kw):
    from minillm.interop import config_from_hf

    hf = _hf_pair(kind, **kw)
    model = GPT(config_from_hf(hf.config)).double()
    sd = hf.state_dict()
    (load_hf_gpt2 if kind == "gpt2" else load_hf_llama)(model, sd)
    idx = torch.randint(0, 61, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = hf(idx).logits
        ours = model(idx)[0]
    assert theirs.abs().max() > 1.0  # large enough that a wrong weight would show
    # GPT-2: pure float64 rounding. LLaMA: Hugging Face builds its RoPE tables in float32 even in a
    # float64 model (and so do we, differently), so agreement is at float32 level there.
    tol = 1e-10 if kind == "gpt2" else 1e-5
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)
    # generation agrees too (greedy; KV cache on our side)
    prompt = idx[:1, :4]
    ours_gen = model.generate(prompt, 10, temperature=0)
    with torch.no_grad():
        theirs_gen = hf.generate(prompt, max_new_tokens=10, do_sample=False, min_new_tokens=10)
    assert torch.equal(ours_gen, theirs_gen)


def load_hf_gpt2(model, sd):
    from minillm.model import load_hf_gpt2_state_dict

    return load_hf_gpt2_state_dict(model, sd)


def load_hf_llama(model, sd):
    from minillm.model import load_hf_llama_state_dict

    return load_hf_llama_state_dict(model, sd)


def test_hf_float32_tolerance_and_num_parameters():
    from minillm.interop import from_hf_model

    hf = _hf_pair("gpt2").float()
    model = from_hf_model(hf)
    assert model.num_parameters() == hf.num_parameters()
    idx = torch.randint(0, 61, (3, 17))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-4, rtol=1e-4)


def test_hf_wrong_shape_is_a_clear_error():
    hf = _hf_pair("gpt2")
    model = GPT(GPTConfig(vocab_size=61, block_size=24, n_layer=2, n_head=4, n_embd=64))
    with pytest.raises(MiniLLMError, match="shape mismatch"):
        load_hf_gpt2(model, hf.state_dict())


def test_from_pretrained_offline_is_a_clear_error(monkeypatch):
    transformers = pytest.importorskip("transformers")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(MiniLLMError, match="offline"):
        GPT.from_pretrained("gpt2")


@pytest.mark.slow
def test_from_pretrained_really_offline_in_a_fresh_process(tmp_path):
    pytest.importorskip("transformers")
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}  # an empty cache, no network
    code = "from minillm.model import GPT\nGPT.from_pretrained('gpt2')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "MiniLLMError" in r.stderr and "offline" in r.stderr


# --- the `minillm generate` command ---------------------------------------------------

def test_cli_generate_from_checkpoint(tmp_path, capsys):
    from minillm.cli import main
    from minillm.tokenizer import Tokenizer

    tok = Tokenizer.train("the cat sat on the mat. the dog sat on the log. " * 20, vocab_size=280)
    torch.manual_seed(8)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config)}, tmp_path / "model.pt")
    tok.save(tmp_path / "tokenizer.json")
    argv = ["generate", "--checkpoint", str(tmp_path / "model.pt"), "--prompt", "the cat",
            "--max-new-tokens", "12", "--temperature", "0", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out.rstrip("\n")
    # greedy output == our own generate call, decoded
    ids = torch.tensor([tok.encode("the cat")])
    expected = tok.decode(model.generate(ids, 12, temperature=0, stop_tokens=[tok.eot_id])[0].tolist())
    assert text == expected and text.startswith("the cat")


def test_cli_generate_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    from minillm.cli import main

    assert main(["generate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("cfg", [tiny("gpt2"), tiny("llama", n_kv_head=2), tiny("gpt2", bias=False, tie_embeddings=False)])
def test_parameter_breakdown_matches_the_modules(cfg):
    from minillm.model import parameter_breakdown

    model = GPT(cfg)
    groups = {"embeddings": 0, "attention": 0, "mlp": 0, "norms": 0, "head": 0}
    for name, p in model.named_parameters():  # tied head is listed once, under wte
        kind = ("embeddings" if ".wte." in name or ".wpe." in name else "attention" if ".attn." in name
                else "mlp" if ".mlp." in name else "head" if name.startswith("lm_head") else "norms")
        groups[kind] += p.numel()
    assert parameter_breakdown(cfg) == groups
    assert sum(groups.values()) == model.num_parameters() == closed_form_count(cfg)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(9)
    model = GPT(tiny(dropout=0.2))
    idx = torch.randint(0, 37, (2, 16))
    model.train()
    a, b = model(idx)[0], model(idx)[0]
    assert not torch.allclose(a, b)  # different dropout masks
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


def test_generate_under_bfloat16_autocast_runs_and_matches_shape():
    from minillm.device import autocast

    torch.manual_seed(10)
    model = GPT(tiny("llama", n_kv_head=2))
    with autocast("cpu", "bfloat16"):
        out = model.generate(torch.zeros(2, 3, dtype=torch.long), 6, temperature=0)
    assert out.shape == (2, 9) and int(out.max()) < 37


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_from_pretrained_reads_a_local_folder(tmp_path, kind):
    hf = _hf_pair(kind).float()
    hf.save_pretrained(tmp_path)  # what a download leaves on disk; no network involved
    model = GPT.from_pretrained(str(tmp_path))
    assert model.config.style == kind
    idx = torch.randint(0, 61, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-4, rtol=1e-4)


def test_generate_edge_cases_and_bad_arguments():
    model = GPT(tiny())
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(model.generate(prompt, 0), prompt)
    with pytest.raises(MiniLLMError, match="temperature"):
        model.generate(prompt, 2, temperature=-1.0)
    with pytest.raises(MiniLLMError, match="top_p"):
        model.generate(prompt, 2, top_p=1.5)
    with pytest.raises(MiniLLMError, match="top_k"):
        model.generate(prompt, 2, top_k=0)
    with pytest.raises(MiniLLMError, match="prompt"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 2)
