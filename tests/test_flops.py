"""Lesson 07: parameter and FLOP counts against the real model and PyTorch's FLOP counter,
inference FLOPs and memory (the hardware and money side is tests/test_cost.py)."""

import itertools

import pytest
import torch

import minillm.model
from minillm import flops
from minillm.model import GPT, GPTConfig

SMALL = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=24)
VARIANTS = [dict(style=s, bias=b, tie_embeddings=t, n_kv_head=k)
            for s, b, t, k in itertools.product(["gpt2", "llama"], [True, False], [True, False], [None, 2])]


def ids(v):
    return "-".join(f"{k}={x}" for k, x in v.items())


@pytest.fixture
def no_model(monkeypatch):
    """No delegation: while an exercise runs, building a GPT or calling a fast counter raises,
    so a count must come from the config (build the truths before asking for this fixture)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the exercise must count from the config, not build or measure a model")

    monkeypatch.setattr(minillm.model.GPT, "__init__", refuse)
    for name in ("count_parameters", "linear_weights", "model_flops_per_token", "measure_flops", "_meta_model"):
        monkeypatch.setattr(flops, name, refuse)
    for name in ("num_parameters", "parameter_breakdown"):
        if hasattr(minillm.model.GPT, name):
            monkeypatch.setattr(minillm.model.GPT, name, refuse)


# --- parameters --------------------------------------------------------------------

@pytest.mark.exercise("flops.params_count")
@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_params_count_equals_the_model(variant, request):
    # Independent truth: the parameters the real module allocates (exact, every variant).
    config = GPTConfig(**SMALL, **variant)
    real = GPT(config).num_parameters()
    request.getfixturevalue("no_model")
    assert flops.params_count(config) == real


@pytest.mark.exercise("flops.params_count")
def test_params_count_published_models(no_model):
    # GPT-2 small: 124,439,808 parameters (Hugging Face `gpt2`, tied head).
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    assert flops.params_count(gpt2) == 124_439_808
    # LLaMA-2 7B: 6,738,415,616; Llama 3.1 405B (GQA, 8 kv heads): 405,853,388,800.
    llama2 = GPTConfig.llama_style(vocab_size=32000, block_size=4096, n_layer=32, n_head=32,
                                   n_embd=4096, mlp_hidden=11008)
    assert flops.params_count(llama2) == 6_738_415_616
    llama3 = GPTConfig.llama_style(vocab_size=128256, block_size=8192, n_layer=126, n_head=128,
                                   n_kv_head=8, n_embd=16384, mlp_hidden=53248)
    assert flops.params_count(llama3) == 405_853_388_800


def test_count_parameters_fast_path_equals_the_model():
    # The meta-device model allocates no memory, yet has the real model's parameters.
    config = GPTConfig(**SMALL, style="llama", n_kv_head=2)
    assert flops.count_parameters(config) == GPT(config).num_parameters()
    assert flops.count_parameters(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12,
                                            n_embd=768)) == 124_439_808  # GPT-2 small (Hugging Face `gpt2`)


# --- FLOPs -------------------------------------------------------------------------

@pytest.mark.exercise("flops.forward_flops_per_token")
def test_forward_flops_hand_example(no_model):
    # C=4, one head, one layer, V=10, T=8, no bias:
    # 2 * (qkv 4*12 + proj 4*4 + mlp 2*4*16 + head 10*4) + 2 * (2 * 8 * 4) = 592.
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=4, bias=False)
    assert flops.forward_flops_per_token(config, seq_len=8) == 592


@pytest.mark.exercise("flops.forward_flops_per_token")
@pytest.mark.parametrize("variant", VARIANTS[::3], ids=ids)
@pytest.mark.parametrize("seq_len", [1, 5, 16])
def test_forward_flops_equal_pytorch_counter(variant, seq_len, request):
    # Independent truth: torch.utils.flop_counter.FlopCounterMode on the real forward pass.
    # Exact equality (tolerance 0): every matmul FLOP is accounted for.
    model = GPT(GPTConfig(**SMALL, **variant))
    measured = flops.measure_flops(model, batch_size=3, seq_len=seq_len)
    request.getfixturevalue("no_model")
    assert measured["total"] == 3 * seq_len * flops.forward_flops_per_token(model.config, seq_len)


@pytest.mark.exercise("flops.forward_flops_per_token")
@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_backward_is_twice_forward(style):
    # PyTorch's counter, forward + backward: the Linear layers cost exactly 3x their forward
    # (our training_flops_per_token). Its fused attention backward also recomputes q k^T
    # (2.5x forward, torch's sdpa_backward_flop_count), which MFU does not count as model FLOPs.
    model = GPT(GPTConfig(**SMALL, style=style))
    B, T = 2, 12
    fwd = flops.measure_flops(model, B, T)
    both = flops.measure_flops(model, B, T, backward=True)
    att_fwd = fwd["attention"]
    assert att_fwd == model.config.n_layer * 4 * T * model.config.n_embd * B * T
    assert both["linear"] == 3 * fwd["linear"]
    assert both["total"] - att_fwd // 2 == B * T * flops.training_flops_per_token(model.config, T)


@pytest.mark.parametrize("variant", VARIANTS[::5], ids=ids)
def test_model_flops_fast_path_equals_the_counter(variant):
    # The trainer's MFU numerator: 3 x the counter's forward FLOPs, exactly.
    model = GPT(GPTConfig(**SMALL, **variant))
    fwd = flops.measure_flops(model, batch_size=2, seq_len=10)["total"]
    assert 3 * fwd == 2 * 10 * flops.model_flops_per_token(model.config, 10)


@pytest.mark.exercise("flops.forward_flops_per_token")
@pytest.mark.parametrize("variant", VARIANTS[::5], ids=ids)
def test_forward_flops_reference_equals_fast_path(variant):
    config = GPTConfig(**SMALL, **variant)
    assert flops.training_flops_per_token(config, 7) == flops.model_flops_per_token(config, 7)


@pytest.mark.exercise("flops.forward_flops_per_token")
def test_six_n_rule_for_a_large_model(request):
    # Kaplan et al. 2020: for d_model >> n_ctx the detailed count tends to 6 N (N without
    # embeddings). GPT-3 175B shape, T = 2048: 4 T C L / 2N = 2.8% for the full T x T attention,
    # V C / N = 0.35% for the head: 1.031, so within (1, 1.04). N from the real model (meta device).
    gpt3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)
    with torch.device("meta"):
        n = GPT(gpt3).num_parameters(non_embedding=True)
    request.getfixturevalue("no_model")
    ratio = flops.training_flops_per_token(gpt3, 2048) / (6 * n)
    assert 1.025 < ratio < 1.04


def test_model_flops_count_the_model_in_hand():
    # A model with an extra Linear layer (a custom head, an adapter): the trainer's MFU numerator
    # counts what the model in hand multiplies -- 6 more FLOPs per weight of the extra layer.
    model = GPT(GPTConfig(**SMALL))
    base = flops.model_flops_per_token(model, 10)
    assert base == flops.model_flops_per_token(model.config, 10)
    model.extra = torch.nn.Linear(24, 5, bias=False)
    assert flops.model_flops_per_token(model, 10) == base + 6 * 24 * 5


# --- inference and memory ----------------------------------------------------------------

@pytest.mark.parametrize("style, nkv", [("gpt2", None), ("llama", 2)])
def test_kv_cache_bytes_equal_the_real_cache(style, nkv):
    # Independent truth: the tensors of the model's own KVCache.
    model = GPT(GPTConfig(**SMALL, style=style, n_kv_head=nkv))
    cache = model.new_cache(batch_size=3, max_len=16)
    real = sum(t.numel() * t.element_size() for t in vars(cache).values() if isinstance(t, torch.Tensor))
    real += sum(t.numel() * t.element_size() for v in vars(cache).values() if isinstance(v, list)
                for t in v if isinstance(t, torch.Tensor))
    assert flops.kv_cache_bytes(model.config, batch_size=3, context=16, dtype="fp32") == real


def test_inference_flops_equal_pytorch_counter():
    # One new token with 9 cached: FlopCounterMode on the cached step, attention against 10 keys.
    model = GPT(GPTConfig(**SMALL))
    cache = model.new_cache(batch_size=1)
    with torch.no_grad():
        model(torch.randint(0, 37, (1, 9)), cache=cache)
        with flops._flop_counter() as counter:
            model(torch.randint(0, 37, (1, 1)), cache=cache)
    assert counter.get_total_flops() == flops.inference_flops_per_token(model.config, context=10)


def test_inference_memory_hand_example():
    # GPT-2 small in bf16: 124,439,808 x 2 bytes of weights; its KV cache at 1024 tokens:
    # 2 (k, v) x 12 layers x 768 x 1024 tokens x 2 bytes = 37,748,736 bytes (36 MiB).
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    mem = flops.inference_memory(gpt2)
    assert mem == {"weights": 248_879_616, "kv_cache": 37_748_736, "total": 248_879_616 + 37_748_736}


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_training_memory_estimate_matches_measurement(style):
    # Measured: weights, gradients and AdamW states after a real step, plus every tensor autograd
    # saves for backward (unique storages, parameters excluded) and the logits. Tolerance: the
    # states must be exact (16 bytes/parameter); activations within 20% (kernel details).
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64, style=style)
    model = GPT(config)
    opt = torch.optim.AdamW(model.parameters())
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    idx = torch.randint(0, 256, (4, 64))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, loss = model(idx, idx)
    saved[logits.untyped_storage().data_ptr()] = logits.untyped_storage().nbytes()
    loss.backward()
    opt.step()
    states = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
    est = flops.training_memory(config, batch_size=4, seq_len=64)
    n = model.num_parameters()
    assert est["weights"] == n * 4 == sum(p.numel() * 4 for p in model.parameters())
    assert est["gradients"] == sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    assert est["optimizer"] == states
    assert est["activations"] == pytest.approx(sum(saved.values()), rel=0.2)
