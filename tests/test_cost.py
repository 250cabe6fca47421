"""Lesson 07, the hardware and money side: peak FLOP/s, MFU, the cost card's worked example,
compute thresholds, and `minillm cost` (one `error:` line for every bad input)."""

import json
import warnings

import pytest

from minillm import cost
from minillm.cli import main
from minillm.model import GPT, GPTConfig
from minillm.utils import MiniLLMError

SMALL = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=24)


def test_training_flops_rule():
    assert cost.training_flops(405e9, 15.6e12) == pytest.approx(3.79e25, rel=1e-3)
    with pytest.raises(MiniLLMError):
        cost.training_flops(-1, 10)


# --- MFU -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("H100", "H100 SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"), ("NVIDIA H200", "H200"), ("NVIDIA A10G", "A10"), ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 3090", "RTX 3090"), ("Quadro Mystery 9000", None),
])
def test_device_names(name, key):
    assert cost.normalize_device_name(name) == key


def test_mfu_hand_example_and_bounds():
    peak = cost.peak_flops("H100", "bf16")
    assert peak == pytest.approx(989.4e12)
    # 1000 tokens/s of a model at 6e9 FLOPs/token on one H100: 6e12 / 989.4e12 = 0.60643%.
    assert cost.mfu(1000, 6e9, peak) == pytest.approx(0.0060643, abs=1e-7)
    assert cost.mfu(1000, 6e9, peak, n_devices=8) == pytest.approx(0.0060643 / 8, abs=1e-8)
    with pytest.warns(UserWarning, match="peak must be wrong"):
        assert cost.mfu(1e6, 6e9, peak) is None  # 6e15 FLOP/s > the peak: impossible
    with pytest.raises(MiniLLMError):
        cost.peak_flops("V100", "bf16")  # V100 has no bf16 tensor cores


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_no_gpu_means_no_peak():
    assert cost.detect_device() is None  # a CPU has no datasheet peak: MFU is not reported
    with pytest.warns(UserWarning, match="unknown device"):
        assert cost.peak_flops(None, "fp32") is None


def test_unknown_device_warns_and_mfu_is_none():
    with pytest.warns(UserWarning, match="unknown device"):
        peak = cost.peak_flops("my laptop", "fp32")
    assert peak is None and cost.mfu(100, 1e6, peak) is None


def test_peak_table_is_complete():
    for name, row in cost.PEAK_TFLOPS.items():
        assert set(cost.DTYPES) <= set(row) and row["tdp_w"] > 0, name
        assert row["source"].strip(), f"{name}: every number needs its source"
        # Tensor-core half precision is never slower than fp32 on these devices.
        assert row["fp16"] >= row["fp32"], name
        assert cost.normalize_device_name(name) == name  # every key is reachable by its own name


def test_gpu_table_damaged_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "peaks.json"
    bad.write_text('{"devices": ')
    with pytest.raises(MiniLLMError, match="cannot read the GPU table"):
        cost.load_gpu_peaks(bad)


# --- cost card: the worked example -----------------------------------------------------------

@pytest.fixture
def llama405():
    # Assumptions stated: 400 TFLOP/s effective per H100, 16,000 GPUs, $2/GPU-hour, 50 staff at
    # $500k for a year; 700 W per GPU (H100 SXM TDP), PUE 1.2, grid at 0.2 kg CO2eq/kWh.
    return cost.cost_card(405e9, 15.6e12, effective_tflops=400, n_gpus=16_000, usd_per_gpu_hour=2.0,
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
    text = cost.cost_card(1e9, 2e10, gpu="RTX 4090", n_gpus=1).table()
    assert "GPU-hours             504" in text and "21.0 days on 1 GPUs" in text and "$1,009" in text


def test_cost_card_from_peak_and_mfu():
    # Without effective_tflops: peak x mfu. 1e21 FLOPs at 989.4e12 x 0.5 -> 561.5 GPU-hours.
    c = cost.cost_card(1e9, 1e21 / 6e9, gpu="H100", dtype="bf16", mfu=0.5)
    assert c.gpu_hours == pytest.approx(561.50, abs=0.01)
    assert c.energy_kwh == pytest.approx(432.36, abs=0.01)  # x 0.7 kW (TDP) x 1.1 (PUE)
    assert cost.compute_flags(2e26) and len(cost.compute_flags(2e26)) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(mfu=1.5), "fraction"), (dict(gpu="abacus"), "unknown GPU"), (dict(n_gpus=0), "positive"),
])
def test_cost_card_bad_input(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MiniLLMError, match=message):
            cost.cost_card(1e9, 1e10, **kwargs)


def run_cli(capsys, *args):
    code = main(["cost", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_worked_example(capsys):
    code, out, err = run_cli(capsys, "--params", "405e9", "--tokens", "15.6e12", "--gpu", "H100",
                             "--effective-tflops", "400", "--n-gpus", "16000", "--staff", "50", "--model-card")
    assert code == 0, err
    assert "26.32 M" in out and "$77.65 M" in out and "co2_eq_emissions:" in out


def test_cli_config(tmp_path, capsys):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(GPTConfig(**SMALL).to_dict()))
    code, out, err = run_cli(capsys, "--config", str(path), "--gpu", "A100")
    assert code == 0, err
    assert f"{GPT(GPTConfig(**SMALL)).num_parameters():.3g}" in out and "KV cache" in out


DAMAGED = {
    "truncated.json": b'{"n_embd": 7, "n_head": 4',
    "list.json": b"[1, 2]",
    "bad_value.json": b'{"n_embd": 30, "n_head": 4}',
    "bad_type.json": b'{"n_embd": "wide"}',
    "binary.json": bytes(range(256)),
    "random.pt": bytes(range(200)) * 3,
    "empty.pt": b"",
}


@pytest.mark.parametrize("name", [*DAMAGED, "missing.json", None])
def test_cli_bad_input_is_one_error_line(tmp_path, capsys, name):
    if name is None:
        args = ["--gpu", "H100"]  # neither --params nor --config
    else:
        if name in DAMAGED:
            (tmp_path / name).write_bytes(DAMAGED[name])
        args = ["--config", str(tmp_path / name)]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, err
