"""Lesson 07: parameter and FLOP counts against the real model and PyTorch's FLOP counter,
MFU, the cost card's worked example, inference and training memory."""

import itertools
import json
import subprocess
import sys
import warnings

import pytest
import torch

from minillm import flops
from minillm.model import GPT, GPTConfig
from minillm.utils import MiniLLMError

SMALL = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=24)
VARIANTS = [dict(style=s, bias=b, tie_embeddings=t, n_kv_head=k)
            for s, b, t, k in itertools.product(["gpt2", "llama"], [True, False], [True, False], [None, 2])]


def ids(v):
    return "-".join(f"{k}={x}" for k, x in v.items())


# --- parameters --------------------------------------------------------------------

@pytest.mark.exercise("flops.params_count")
@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_params_count_equals_the_model(variant):
    # Independent truth: the parameters the real module allocates (exact, every variant).
    config = GPTConfig(**SMALL, **variant)
    assert flops.params_count(config) == GPT(config).num_parameters()


@pytest.mark.exercise("flops.params_count")
def test_params_count_published_models():
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


def test_count_parameters_fast_path_uses_no_memory():
    config = GPTConfig(**SMALL)
    assert flops.count_parameters(config) == GPT(config).num_parameters()


# --- FLOPs -------------------------------------------------------------------------

@pytest.mark.exercise("flops.forward_flops_per_token")
def test_forward_flops_hand_example():
    # C=4, one head, one layer, V=10, T=8, no bias:
    # 2 * (qkv 4*12 + proj 4*4 + mlp 2*4*16 + head 10*4) + 2 * (2 * 8 * 4) = 592.
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=4, bias=False)
    assert flops.forward_flops_per_token(config, seq_len=8) == 592


@pytest.mark.exercise("flops.forward_flops_per_token")
@pytest.mark.parametrize("variant", VARIANTS[::3], ids=ids)
@pytest.mark.parametrize("seq_len", [1, 5, 16])
def test_forward_flops_equal_pytorch_counter(variant, seq_len):
    # Independent truth: torch.utils.flop_counter.FlopCounterMode on the real forward pass.
    # Exact equality (tolerance 0): every matmul FLOP is accounted for.
    model = GPT(GPTConfig(**SMALL, **variant))
    measured = flops.measure_flops(model, batch_size=3, seq_len=seq_len)
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


@pytest.mark.exercise("flops.params_count")
@pytest.mark.exercise("flops.forward_flops_per_token")
def test_six_n_rule_for_a_large_model():
    # Kaplan et al. 2020: for d_model >> n_ctx the detailed count tends to 6 N (N without
    # embeddings). GPT-3 175B shape, T = 2048: 4 T C L / 2N = 2.8% for the full T x T attention,
    # V C / N = 0.35% for the head: 1.031, so within (1, 1.04).
    gpt3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)
    n = flops.params_count(gpt3) - 50257 * 12288 - 2048 * 12288
    ratio = flops.training_flops_per_token(gpt3, 2048) / (6 * n)
    assert 1.025 < ratio < 1.04


def test_training_flops_rule():
    assert flops.training_flops(405e9, 15.6e12) == pytest.approx(3.79e25, rel=1e-3)
    with pytest.raises(MiniLLMError):
        flops.training_flops(-1, 10)


# --- MFU -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("H100", "H100 SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"), ("NVIDIA H200", "H200"), ("NVIDIA A10G", "A10"), ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 3090", "RTX 3090"), ("Quadro Mystery 9000", None),
])
def test_device_names(name, key):
    assert flops.normalize_device_name(name) == key


def test_mfu_hand_example_and_bounds():
    peak = flops.peak_flops("H100", "bf16")
    assert peak == pytest.approx(989.4e12)
    # 1000 tokens/s of a model at 6e9 FLOPs/token on one H100: 6e12 / 989.4e12.
    assert flops.mfu(1000, 6e9, peak) == pytest.approx(6e12 / 989.4e12, rel=1e-12)
    assert flops.mfu(1000, 6e9, peak, n_devices=8) == pytest.approx(6e12 / 989.4e12 / 8, rel=1e-12)
    with pytest.warns(UserWarning, match="peak must be wrong"):
        assert flops.mfu(1e6, 6e9, peak) is None  # 6e15 FLOP/s > the peak: impossible
    with pytest.raises(MiniLLMError):
        flops.peak_flops("V100", "bf16")  # V100 has no bf16 tensor cores


def test_unknown_device_warns_and_mfu_is_none():
    with pytest.warns(UserWarning, match="unknown device"):
        peak = flops.peak_flops("my laptop", "fp32")
    assert peak is None and flops.mfu(100, 1e6, peak) is None


def test_peak_table_is_complete():
    for name, row in flops.PEAK_TFLOPS.items():
        assert set(flops.DTYPES) <= set(row) and row["tdp_w"] > 0, name
        # Tensor-core half precision is never slower than fp32 on these devices.
        assert row["fp16"] >= row["fp32"], name


# --- cost card: the worked example -----------------------------------------------------------

@pytest.fixture
def llama405():
    # Assumptions stated: 400 TFLOP/s effective per H100, 16,000 GPUs, $2/GPU-hour, 50 staff at
    # $500k for a year; 700 W per GPU (H100 SXM TDP), PUE 1.2, grid at 0.2 kg CO2eq/kWh.
    return flops.cost_card(405e9, 15.6e12, effective_tflops=400, n_gpus=16_000, usd_per_gpu_hour=2.0,
                           staff=50, usd_per_staff_year=500e3, staff_years=1, pue=1.2,
                           kg_co2_per_kwh=0.2)


def test_worked_example_405b(llama405):
    c = llama405
    assert c.flops == pytest.approx(3.8e25, rel=0.01)            # 6 * 405e9 * 15.6e12 = 3.79e25
    assert c.gpu_hours == pytest.approx(26e6, rel=0.02)          # 3.79e25 / 4e14 / 3600 = 26.3M
    assert c.days == pytest.approx(70, rel=0.03)                 # 26.3M / 16,000 / 24 = 68.6
    assert c.compute_usd == pytest.approx(52e6, rel=0.02)        # $52.6M
    assert c.staff_usd == pytest.approx(25e6, rel=1e-12)
    assert c.total_usd == pytest.approx(75e6, rel=0.04)          # $77.7M
    assert c.co2_tonnes == pytest.approx(4400, rel=0.02)         # 18.4 GWh x 1.2 x 0.2 = 4,423 t
    assert c.tokens_per_param == pytest.approx(40, rel=0.05)     # 38.5, Chinchilla ~20
    assert len(c.flags) == 1 and "EU AI Act" in c.flags[0]       # > 1e25, < 1e26


def test_cost_card_table_and_model_card(llama405):
    text = llama405.table()
    for label in ("GPU-hours", "26.32 M", "68.6 days", "$52.65 M", "4,423 t CO2eq", "EU AI Act"):
        assert label in text
    block = llama405.co2_eq_emissions(location="US")
    assert block["emissions"] == pytest.approx(llama405.co2_tonnes * 1e6)  # grams, as the Hub wants
    assert set(block) == {"emissions", "source", "training_type", "geographical_location", "hardware_used"}
    assert llama405.model_card_yaml().startswith("co2_eq_emissions:\n  emissions: ")


def test_cost_card_small_run_is_readable():
    # A 1B model on 20B tokens on one RTX 4090 at 40% MFU: 1.2e20 / (165.2e12 x 0.4) / 3600 = 504 h.
    text = flops.cost_card(1e9, 2e10, gpu="RTX 4090", n_gpus=1).table()
    assert "GPU-hours             504" in text and "21.0 days on 1 GPUs" in text and "$1,009" in text


def test_cost_card_from_peak_and_mfu():
    # Without effective_tflops: peak x mfu. 1e21 FLOPs at 989.4e12 x 0.5 -> 561.5 GPU-hours.
    c = flops.cost_card(1e9, 1e21 / 6e9, gpu="H100", dtype="bf16", mfu=0.5)
    assert c.gpu_hours == pytest.approx(1e21 / (989.4e12 * 0.5) / 3600, rel=1e-12)
    assert c.energy_kwh == pytest.approx(c.gpu_hours * 0.7 * 1.1, rel=1e-12)  # TDP 700 W, PUE 1.1
    assert flops.compute_flags(2e26) and len(flops.compute_flags(2e26)) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(mfu=1.5), "fraction"), (dict(gpu="abacus"), "unknown GPU"), (dict(n_gpus=0), "positive"),
])
def test_cost_card_bad_input(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MiniLLMError, match=message):
            flops.cost_card(1e9, 1e10, **kwargs)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minillm", "cost", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_worked_example():
    r = run_cli("--params", "405e9", "--tokens", "15.6e12", "--gpu", "H100", "--effective-tflops", "400",
                "--n-gpus", "16000", "--staff", "50", "--model-card")
    assert r.returncode == 0, r.stderr
    assert "26.32 M" in r.stdout and "$77.65 M" in r.stdout and "co2_eq_emissions:" in r.stdout


def test_cli_config_and_errors(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(GPTConfig(**SMALL).to_dict()))
    r = run_cli("--config", str(path), "--gpu", "A100")
    assert r.returncode == 0, r.stderr
    assert f"{GPT(GPTConfig(**SMALL)).num_parameters():.3g}" in r.stdout and "KV cache" in r.stdout
    r = run_cli("--gpu", "H100")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


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
