"""Lesson 06: scaling-law fits recover known laws, the compute-optimal split matches closed forms
and the Chinchilla paper, bad data gives clear errors, and the TinyWorld sweep runs."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minillm import scaling
from minillm.scaling import ChinchillaLaw, PowerLaw
from minillm.utils import MiniLLMError

# --- the Huber loss ----------------------------------------------------------------------


@pytest.mark.exercise("scaling.huber")
def test_huber_hand_example():
    out = scaling.huber(torch.tensor([0.5, 3.0, -3.0, 0.0]), delta=1.0)
    assert torch.allclose(out, torch.tensor([0.125, 2.5, 2.5, 0.0]))


@pytest.mark.exercise("scaling.huber")
@pytest.mark.parametrize("delta", [1e-3, 0.1, 2.0])
def test_huber_equals_pytorch(delta):
    # Reference: torch.nn.functional.huber_loss (the fitters' fast path), 1000 random residuals.
    r = torch.randn(1000, dtype=torch.float64) * 3 * delta
    ours = scaling.huber(r, delta)
    ref = F.huber_loss(r, torch.zeros_like(r), delta=delta, reduction="none")
    assert torch.allclose(ours, ref, rtol=1e-12, atol=0)


# --- compute-optimal allocation -------------------------------------------------------------

LAWS = [scaling.CHINCHILLA, ChinchillaLaw(1.8, 482.0, 2085.4, 0.3478, 0.3658),
        ChinchillaLaw(0.5, 50.0, 300.0, 0.5, 0.25)]


@pytest.mark.exercise("scaling.chinchilla_optimal")
@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_closed_form_equals_numeric_minimum(law, C):
    # Independent truth: golden-section search of L along the iso-FLOP line (rel 1e-6).
    n, d = scaling.chinchilla_optimal(C, law)
    n_num, d_num = law.compute_optimal(C)
    assert n == pytest.approx(n_num, rel=1e-6) and d == pytest.approx(d_num, rel=1e-6)
    assert 6 * n * d == pytest.approx(C, rel=1e-9)
    # First-order condition: the marginal gains of N and D balance, alpha A/N^alpha = beta B/D^beta.
    assert law.alpha * law.A * n ** -law.alpha == pytest.approx(law.beta * law.B * d ** -law.beta, rel=1e-9)


def test_chinchilla_allocation():
    # Hoffmann et al. 2022: the Chinchilla budget, 5.76e23 FLOPs, went to 70B parameters and
    # 1.4T tokens -- the ~20 tokens per parameter of their Approaches 1 and 2 (N*, D* ~ C^0.5).
    n, d = scaling.tokens_per_param_rule(scaling.CHINCHILLA_COMPUTE, ratio=20)
    assert n == pytest.approx(70e9, rel=0.02) and d == pytest.approx(1.4e12, rel=0.02)
    # The published Approach-3 fit (E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28) puts the
    # optimum elsewhere: 32.2B parameters and 2.98T tokens (hand: G = (0.34*406.4/(0.28*410.7))^(1/0.62)
    # = 1.345, N = G (9.6e22)^(0.28/0.62)). Besiroglu et al. 2024 point out this inconsistency.
    n3, d3 = scaling.CHINCHILLA.compute_optimal(scaling.CHINCHILLA_COMPUTE)
    assert n3 == pytest.approx(3.22e10, rel=0.01) and d3 == pytest.approx(2.98e12, rel=0.01)
    # Either way the law predicts Chinchilla's own loss, 1.69 + 406.4/70e9^0.34 + 410.7/1.4e12^0.28.
    assert scaling.CHINCHILLA(70e9, 1.4e12) == pytest.approx(1.9368, abs=1e-3)
    assert scaling.CHINCHILLA(n3, d3) < scaling.CHINCHILLA(70e9, 1.4e12)


# --- fitters: recovery of known laws from noisy synthetic data --------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_fit_power_law_recovers_known_law(seed):
    # 12 sizes over 4 decades, multiplicative noise 0.3%. Tolerances: E 3%, alpha 5%, A 25%
    # (A and alpha trade off), and every fitted loss within 1% of the true law.
    rng = np.random.default_rng(seed)
    x = np.logspace(5, 9, 12)
    true = PowerLaw(E=1.5, A=60.0, alpha=0.3)
    y = true(x) * np.exp(rng.normal(0, 0.003, x.size))
    fit = scaling.fit_power_law(x, y)
    assert fit.E == pytest.approx(true.E, rel=0.03)
    assert fit.alpha == pytest.approx(true.alpha, rel=0.05)
    assert fit.A == pytest.approx(true.A, rel=0.25)
    assert np.allclose(fit(x), true(x), rtol=0.01)


def test_fit_chinchilla_recovers_known_law():
    # 6 sizes x 5 budgets, noise 0.3%. Tolerances: E 3%, exponents +-0.03, and the extrapolated
    # loss of a 10x larger model on 10x more data within 2%.
    rng = np.random.default_rng(0)
    true = ChinchillaLaw(E=1.8, A=400.0, B=800.0, alpha=0.35, beta=0.3)
    N = np.repeat(np.logspace(6, 9, 6), 5)
    D = np.tile(np.logspace(8, 11, 5), 6)
    L = true(N, D) * np.exp(rng.normal(0, 0.003, N.size))
    fit = scaling.fit_chinchilla(N, D, L)
    assert fit.E == pytest.approx(true.E, rel=0.03)
    assert fit.alpha == pytest.approx(true.alpha, abs=0.03)
    assert fit.beta == pytest.approx(true.beta, abs=0.03)
    assert fit(1e10, 1e12) == pytest.approx(true(1e10, 1e12), rel=0.02)


def test_huber_fit_ignores_an_outlier():
    # One diverged run at 3x its loss: the Huber fit (delta 1e-3 on log L, nearly L1) keeps E
    # within 3% of the truth.
    x = np.logspace(5, 9, 12)
    true = PowerLaw(E=1.5, A=60.0, alpha=0.3)
    y = true(x)
    y[5] *= 3
    assert scaling.fit_power_law(x, y).E == pytest.approx(1.5, rel=0.03)


@pytest.mark.parametrize("x, y, message", [
    ([1e6, 1e7, 1e8], [3.0, 2.5, 2.2], "at least 4 points"),
    ([1e6, 1e7, 1e8, 1e9], [3.0, float("nan"), 2.2, 2.1], "NaN"),
    ([1e6, 1e7, 1e8, 1e9], [3.0, -2.5, 2.2, 2.1], "positive"),
    ([0, 1e7, 1e8, 1e9], [3.0, 2.5, 2.2, 2.1], "positive"),
    ([1e6, 1e7, 1e8, 1e9], [3.0, 2.5, 2.2], "different lengths"),
])
def test_fit_power_law_bad_input(x, y, message):
    with pytest.raises(MiniLLMError, match=message):
        scaling.fit_power_law(x, y)


def test_fit_chinchilla_too_few_points():
    with pytest.raises(MiniLLMError, match="at least 6 points"):
        scaling.fit_chinchilla([1e6] * 5, [1e9] * 5, [3.0] * 5)


# --- IsoFLOP (Approach 2) -----------------------------------------------------------------

@pytest.mark.exercise("scaling.parabola_vertex")
def test_parabola_vertex_hand_and_polyfit():
    v, c = scaling.parabola_vertex([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 2.0, 1.0, 2.0, 5.0])  # (x-2)^2 + 1
    assert v == pytest.approx(2.0) and np.allclose(c, [1.0, -4.0, 5.0])
    rng = np.random.default_rng(0)
    for _ in range(20):  # reference: numpy.polyfit on random noisy parabolas
        x = rng.uniform(-3, 3, 9)
        y = 2 * (x - 0.7) ** 2 + rng.normal(0, 0.3, 9)
        coef = np.polyfit(x, y, 2)
        v, c = scaling.parabola_vertex(x, y)
        assert np.allclose(c, coef, rtol=1e-9, atol=1e-9) and v == pytest.approx(-coef[1] / (2 * coef[0]))
    with pytest.raises(MiniLLMError, match="curve upwards"):
        scaling.parabola_vertex([0, 1, 2], [0, 1, 0])


def test_isoflop_recovers_the_optimal_exponent():
    # Noise-free losses from a known law on 9 sizes spanning 1/10..10x the optimum of each of
    # 4 budgets: the fitted exponent a equals beta / (alpha + beta) within 0.01, and N*(C) the
    # numeric optimum within 10% (the loss is only nearly a parabola in log N).
    law = ChinchillaLaw(E=1.8, A=400.0, B=800.0, alpha=0.35, beta=0.3)
    N, C, L = [], [], []
    for budget in [1e17, 1e18, 1e19, 1e20]:
        n_opt, _ = law.compute_optimal(budget)
        for n in n_opt * np.logspace(-1, 1, 9):
            N.append(n), C.append(budget), L.append(law(n, budget / (6 * n)))
    fit = scaling.isoflop_fit(N, C, L)
    assert fit.a == pytest.approx(0.3 / 0.65, abs=0.01)
    for budget in [1e17, 1e21]:  # 1e21: extrapolated
        assert fit.n_star(budget) == pytest.approx(law.compute_optimal(budget)[0], rel=0.1)
    assert fit.d_star(1e20) * fit.n_star(1e20) * 6 == pytest.approx(1e20)


def test_isoflop_needs_budgets():
    with pytest.raises(MiniLLMError, match="2 compute budgets"):
        scaling.isoflop_fit([1e6, 1e7, 1e8, 1e6, 1e7, 1e8], [1e17] * 6, [3, 2.8, 2.9, 3, 2.8, 2.9])


# --- bootstrap ---------------------------------------------------------------------------

def test_bootstrap_interval_covers_the_truth():
    # 95% intervals of (E, A, alpha) from 40 resamples of noisy synthetic data contain the
    # true E and alpha, and are narrower for data with less noise.
    x = np.logspace(5, 9, 16)
    true = PowerLaw(E=1.5, A=60.0, alpha=0.3)
    widths = []
    for sigma in (0.01, 0.002):
        y = true(x) * np.exp(np.random.default_rng(3).normal(0, sigma, x.size))
        ci = scaling.bootstrap(scaling.fit_power_law, x, y, n_boot=40, seed=0)
        widths.append(ci["alpha"][1] - ci["alpha"][0])
        assert ci["E"][0] <= true.E <= ci["E"][1] and ci["alpha"][0] <= true.alpha <= ci["alpha"][1]
    assert widths[1] < widths[0]


# --- the TinyWorld sweep -------------------------------------------------------------------

def test_floor_conversion():
    # 0.169 bits/byte x ln 2 = 0.1171 nats/byte; with 3 bytes per token: 0.3514 nats/token.
    assert scaling.floor_nats_per_token(0.169, 1.0) == pytest.approx(0.169 * math.log(2))
    assert scaling.floor_nats_per_token(0.169, 3.0) == pytest.approx(0.35143, rel=1e-4)


def test_tiny_sweep_rows():
    cfg = scaling.SweepConfig(sizes="16x1,32x1", steps="4,8", batch_size=4, block_size=32, eval_batches=2)
    rows = scaling.sweep(cfg, log=None)
    assert len(rows) == 4
    for r in rows:
        assert r["D"] in (4 * 4 * 32, 8 * 4 * 32)                    # steps x batch x block
        assert r["C"] == pytest.approx(6 * r["N"] * r["D"])
        assert r["N"] == r["params"] - cfg.vocab_size * r["n_embd"] - 32 * r["n_embd"]  # no wte, wpe
        assert r["bits_per_byte"] == pytest.approx(r["loss"] / math.log(2) / r["bytes_per_token"])
        assert 2.5 < r["bytes_per_token"] < 4.0 and 0 < r["loss"] < math.log(cfg.vocab_size) + 1


def test_analyse_sweep_on_synthetic_rows():
    # Rows from a known law whose E is the floor (0.169 bits/byte at 1 byte/token): the analysis
    # recovers E within 3% of the floor and predicts the held-out (largest) run within 1%.
    floor = scaling.floor_nats_per_token(0.169)
    law = ChinchillaLaw(E=floor, A=30.0, B=60.0, alpha=0.4, beta=0.35)
    rows = [dict(n_embd=c, n_layer=1, N=n, D=d, C=6 * n * d, loss=float(law(n, d)), bytes_per_token=1.0)
            for c, n in enumerate(np.logspace(3, 5, 5)) for d in np.logspace(5, 7, 4)]
    a = scaling.analyse_sweep(rows, floor_bits_per_byte=0.169)
    assert a.floor == pytest.approx(floor) and a.chinchilla.E == pytest.approx(floor, rel=0.03)
    assert a.predicted == pytest.approx(a.held_out["loss"], rel=0.01)
    assert "E - floor" in scaling.report(a)
    assert scaling.plot_sweep(rows, a) is not None


def test_cli_sweep_too_few_runs_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "minillm", "sweep", "--sizes", "16x1", "--steps", "3",
                        "--batch-size", "4", "--block-size", "16"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and "at least 6 points" in r.stderr
    r = subprocess.run([sys.executable, "-m", "minillm", "sweep", "--sizes", "16by1"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 2 and "16x1,32x2" in r.stderr


def test_reference_sweep_meets_the_floor():
    # The committed output of `minillm sweep --full` (scaling.REFERENCE_SWEEP). Stated margins,
    # from that run: the fitted irreducible loss E lies within 20% of TinyWorld's entropy floor
    # (0.1689 bits/byte = 0.355 nats/token at 3.03 bytes/token), every run lies above the floor,
    # and the held-out largest run is predicted within 20%.
    rows = scaling.REFERENCE_SWEEP
    a = scaling.analyse_sweep(rows)
    assert a.floor == pytest.approx(0.16889 * math.log(2) * rows[0]["bytes_per_token"], rel=1e-3)
    assert all(r["loss"] > a.floor for r in rows)
    assert abs(a.chinchilla.E - a.floor) < 0.2 * a.floor
    assert a.predicted == pytest.approx(a.held_out["loss"], rel=0.2)


@pytest.mark.slow
def test_reference_sweep_reproduces():
    # Two runs of the reference sweep, trained again here: the same losses within 5% (thread
    # counts change float rounding, not the result).
    ref = {(r["n_embd"], r["n_layer"], r["D"]): r["loss"] for r in scaling.REFERENCE_SWEEP}
    rows = scaling.sweep(scaling.SweepConfig(sizes="16x1", steps="100,200"), log=None)
    for r in rows:
        assert r["loss"] == pytest.approx(ref[(16, 1, r["D"])], rel=0.05)
