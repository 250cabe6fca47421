"""Lesson 14, fewer bits: number formats from the bit layout, fp16 dynamic loss scaling."""

import math

import pytest
import torch

from minillm.kernels import formats, scaler
from minillm.kernels.formats import FORMATS, decode
from minillm.kernels.scaler import LossScaler, update_scale
from minillm.utils import MiniLLMError


# --- number formats ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16", "fp8_e5m2", "fp8_e4m3"])
def test_format_constants_equal_torch_finfo(name):
    f = FORMATS[name]
    fi = torch.finfo(getattr(torch, f.torch_dtype))
    assert fi.bits == f.bits
    # exact: every constant is a power of two or (2 - 2^-k) times one
    assert (f.max, f.smallest_normal, f.eps) == (fi.max, fi.smallest_normal, fi.eps)
    # finfo has no subnormal: the smallest one survives the cast, half of it rounds to 0
    dt = getattr(torch, f.torch_dtype)
    assert float(torch.tensor(f.smallest_subnormal, dtype=torch.float64).to(dt).double()) == f.smallest_subnormal
    assert float(torch.tensor(f.smallest_subnormal / 2, dtype=torch.float64).to(dt).double()) == 0.0


def test_hand_values_fp16_e4m3_tf32():
    assert FORMATS["fp16"].max == 65504.0 and FORMATS["fp16"].smallest_subnormal == 2.0 ** -24
    assert FORMATS["fp8_e4m3"].max == 448.0 and FORMATS["fp8_e5m2"].max == 57344.0
    tf32, fp32 = FORMATS["tf32"], FORMATS["fp32"]  # fp32's range, fp16's precision
    assert tf32.smallest_normal == fp32.smallest_normal and tf32.eps == FORMATS["fp16"].eps == 2.0 ** -10
    assert tf32.max == pytest.approx(fp32.max, rel=2 ** -10)


@pytest.mark.parametrize("name,int_dtype", [("fp16", torch.int16), ("bf16", torch.int16),
                                            ("fp8_e5m2", torch.uint8), ("fp8_e4m3", torch.uint8)])
def test_decode_equals_torch_on_every_bit_pattern(name, int_dtype):
    f = FORMATS[name]
    n = 2 ** f.bits
    patterns = torch.arange(n, dtype=torch.int32)
    raw = (patterns.to(torch.int16) if int_dtype == torch.int16 else patterns.to(torch.uint8))
    theirs = raw.view(getattr(torch, f.torch_dtype)).double().tolist()
    ours = [decode(b, f) for b in range(n)]
    for b, (a, t) in enumerate(zip(ours, theirs)):
        assert (math.isnan(a) and math.isnan(t)) or a == t, (name, bin(b), a, t)


def test_round_to_tf32_keeps_10_mantissa_bits_ties_to_even():
    x = torch.tensor([1.0, 1 + 2 ** -10, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20,
                      -1 - 2 ** -12, float("inf"), 3.0e38])
    expected = [1.0, 1 + 2 ** -10, 1.0, 1 + 2 ** -9, 1 + 2 ** -10, -1.0, float("inf"), None]
    out = formats.round_to_tf32(x).tolist()
    for o, e in zip(out[:-1], expected[:-1]):
        assert o == e
    # a tensor core's TF32 input keeps fp32's range: 3e38 stays finite, within 2^-11 relative
    assert out[-1] == pytest.approx(3.0e38, rel=2 ** -11)


def test_where_formats_fail():
    assert formats.fp16_overflow(70000.0) == {"fp32": 70000.0, "bf16": 70144.0, "fp16": math.inf}
    assert formats.swamping(1000, torch.bfloat16) == 256.0      # 2^(7+1): the next 1 rounds away
    assert formats.swamping(3000, torch.float16) == 2048.0      # 2^(10+1)
    assert formats.swamping(1000, torch.float32) == 1000.0
    lost = formats.lost_update(1.0, 1e-4)
    assert lost["bf16"] == 1.0 and lost["fp16"] == 1.0 and lost["fp32"] == pytest.approx(1.0001, abs=1e-7)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(MiniLLMError, match="fp8_e4m3"):
        formats.get_format("fp7")
    with pytest.raises(MiniLLMError, match="float32"):
        formats.round_to_tf32(torch.ones(2, dtype=torch.float16))


# --- the loss scaler's update rule (exercise) --------------------------------------

@pytest.fixture
def no_torch_update(monkeypatch):
    """No delegation: PyTorch's fused update kernel raises while the test runs."""
    def boom(*a, **k):
        raise AssertionError("write the update rule yourself, do not call torch._amp_update_scale_")
    monkeypatch.setattr(torch, "_amp_update_scale_", boom)


@pytest.mark.exercise("scaler.update_scale")
def test_update_scale_hand_sequence(no_torch_update):
    s, t = 8.0, 0
    trace = []
    for inf in [False, False, True, False, False, False]:  # growth every 2 clean steps
        s, t = update_scale(s, t, inf, 2.0, 0.5, 2)
        trace.append((s, t))
    assert trace == [(8.0, 1), (16.0, 0), (8.0, 0), (8.0, 1), (16.0, 0), (16.0, 1)]


@pytest.mark.exercise("scaler.update_scale")
def test_update_scale_does_not_grow_past_inf(no_torch_update):
    big = 1.5e308  # doubling overflows a Python float: keep the scale
    assert update_scale(big, 0, False, 2.0, 0.5, 1) == (big, 0)
    assert update_scale(1.0, 5, True, 2.0, 0.25, 100) == (0.25, 0)


@pytest.mark.exercise("scaler.update_scale")
def test_update_scale_matches_torch_kernel_on_random_sequence():
    g = torch.Generator().manual_seed(0)
    infs = (torch.rand(200, generator=g) < 0.2).tolist()
    scale_t, tracker_t = torch.tensor(4.0), torch.tensor(0, dtype=torch.int32)
    s, t = 4.0, 0
    for inf in infs:
        torch._amp_update_scale_(scale_t, tracker_t, torch.tensor(float(inf)), 2.0, 0.5, 3)
        s, t = update_scale(s, t, inf, 2.0, 0.5, 3)
        assert (s, t) == (float(scale_t), int(tracker_t))


# --- the whole scaler against torch.amp.GradScaler ---------------------------------

def _run(make_scaler, grads):
    """One parameter, SGD, the loss (p * g).sum() so that the raw gradient is g * scale."""
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.1)
    sc = make_scaler()
    rows = []
    for g in grads:
        opt.zero_grad()
        sc.scale((p * g).sum()).backward()
        sc.unscale_(opt)
        true_grad = p.grad.clone()
        sc.step(opt)
        sc.update()
        rows.append((sc.get_scale(), p.detach().clone(), true_grad))
    return rows


@pytest.mark.exercise("scaler.update_scale")
def test_loss_scaler_equals_grad_scaler_step_by_step_with_inf_steps():
    torch.manual_seed(0)
    grads = [torch.randn(4) for _ in range(12)]
    for i in (2, 3, 7):
        grads[i] = grads[i].clone()
        grads[i][1] = float("inf") if i != 3 else float("nan")
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    ours = _run(lambda: LossScaler(**kw), grads)
    theirs = _run(lambda: torch.amp.GradScaler("cpu", **kw), grads)
    for step, ((s1, p1, g1), (s2, p2, g2)) in enumerate(zip(ours, theirs)):
        assert s1 == s2, step
        torch.testing.assert_close(p1, p2, atol=0, rtol=0)      # same bits: same skips, same updates
        torch.testing.assert_close(g1, g2, atol=0, rtol=0, equal_nan=True)
    scales = [r[0] for r in ours]
    assert scales[:4] == [1024.0, 1024.0, 512.0, 256.0]  # clean, clean, inf (back off), NaN (back off)
    assert scales[6] == 512.0  # 3 clean steps (4, 5, 6): grow


def test_scaler_recovers_gradients_that_underflow_in_fp16():
    # d/dx of x * 1e-8 is 1e-8: below fp16's smallest subnormal (6e-8), it is 0 unscaled.
    tiny = torch.tensor(1e-8)
    assert float(tiny.half()) == 0.0
    sc = LossScaler(init_scale=2.0 ** 16)
    scaled = (sc.scale(tiny)).half()            # what an fp16 backward would carry
    assert float(scaled.float() / sc.get_scale()) == pytest.approx(1e-8, rel=1e-3)


def test_scaler_misuse_and_fp16_device_errors(monkeypatch):
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    sc = LossScaler()
    with pytest.raises(MiniLLMError, match="step"):
        sc.update()
    sc.scale(p.sum()).backward()
    sc.unscale_(opt)
    with pytest.raises(MiniLLMError, match="once per step"):
        sc.unscale_(opt)
    with pytest.raises(MiniLLMError, match="growth_factor"):
        LossScaler(growth_factor=1.0)
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(MiniLLMError, match="bfloat16"):
        scaler.require_fp16("cpu")


@pytest.mark.exercise("scaler.update_scale")  # the fp16 run updates the scale every step
def test_train_steps_fp32_bf16_fp16_all_learn():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    curves = {}
    for dtype in ("float32", "bfloat16", "float16"):
        torch.manual_seed(1)
        model = torch.nn.Linear(8, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        curves[dtype] = scaler.train_steps(model, opt, [(x, y)] * 30,
                                           lambda m, b: torch.nn.functional.mse_loss(m(b[0]).float(), b[1]),
                                           dtype=dtype)
    for dtype, c in curves.items():
        assert c[-1] < 0.05 * c[0], dtype
    # bf16/fp16 compute rounds, so the curves differ from fp32 a little, not a lot
    assert curves["bfloat16"][-1] == pytest.approx(curves["float32"][-1], rel=0.5, abs=1e-2)
