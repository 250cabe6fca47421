"""Lesson 06: scaling-law fits recover known laws, the compute-optimal split matches closed forms
and the Chinchilla paper, the fit objective, bad data gives clear errors (the sweep: test_sweep.py)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minillm import scaling
from minillm.scaling import ChinchillaLaw, PowerLaw
from minillm.utils import MiniLLMError

# --- the fit objective (Approach 3) ----------------------------------------------------------


@pytest.fixture
def no_library_objective(monkeypatch):
    """No delegation: PyTorch's logsumexp and huber_loss (and our fast objective) raise."""
    def refuse(*args, **kwargs):
        raise AssertionError("write the log-sum-exp and the Huber loss yourself")

    monkeypatch.setattr(torch, "logsumexp", refuse)
    monkeypatch.setattr(torch.Tensor, "logsumexp", refuse)
    monkeypatch.setattr(F, "huber_loss", refuse)
    monkeypatch.setattr(F, "smooth_l1_loss", refuse)
    monkeypatch.setattr(scaling, "chinchilla_objective", refuse)


def logs(*columns):
    return [torch.log(torch.as_tensor(np.asarray(c, dtype=np.float64))) for c in columns]


@pytest.mark.exercise("scaling.fit_objective")
def test_fit_objective_hand_example(no_library_objective):
    # Law E=1, A=2, B=3 (e=0, a=ln 2, b=ln 3), alpha = beta = 1. Run 1: N = D = 1, so the law says
    # 6 and the loss is 6 e^0.5: residual 0.5 > delta = 0.1 -> 0.1 (0.5 - 0.05) = 0.045. Run 2:
    # N = 2, D = 3 -> 1 + 1 + 1 = 3, loss 3 e^-0.05: residual 0.05 <= delta -> 0.05^2 / 2 = 0.00125.
    theta = torch.tensor([[0.0, math.log(2), math.log(3), 1.0, 1.0]], dtype=torch.float64)
    lN, lD, lL = logs([1, 2], [1, 3], [6 * math.exp(0.5), 3 * math.exp(-0.05)])
    out = scaling.chinchilla_objective_reference(theta, lN, lD, lL, delta=0.1)
    assert out.shape == (1,) and float(out[0]) == pytest.approx(0.045 + 0.00125, rel=1e-12)


@pytest.mark.exercise("scaling.fit_objective")
def test_fit_objective_equals_the_fast_path_and_is_stable():
    # Reference: torch.logsumexp + F.huber_loss (the fitter's objective) on 64 random candidate laws,
    # tolerance 1e-12; then exponents of 800 (exp overflows float64): the objective stays finite.
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(64, 5, generator=g, dtype=torch.float64) * torch.tensor([2.0, 20, 20, 1.5, 1.5])
    lN, lD, lL = logs(np.logspace(5, 9, 9), np.logspace(7, 11, 9), np.linspace(2.0, 4.0, 9))
    fast = scaling.chinchilla_objective(theta, lN, lD, lL, 1e-3)
    ours = scaling.chinchilla_objective_reference(theta, lN, lD, lL, 1e-3)
    assert torch.allclose(ours, fast, rtol=1e-12, atol=0)
    huge = torch.tensor([[800.0, 0.0, 0.0, 0.5, 0.5]], dtype=torch.float64)
    val = scaling.chinchilla_objective_reference(huge, lN, lD, lL, 1e-3)
    assert torch.isfinite(val).all() and float(val[0]) == pytest.approx(float(
        scaling.chinchilla_objective(huge, lN, lD, lL, 1e-3)[0]), rel=1e-12)


@pytest.mark.exercise("scaling.fit_objective")
def test_minimising_your_objective_recovers_a_known_law(no_library_objective):
    # The fitter (grid + L-BFGS) run on the written-out objective recovers a known law from
    # noise-free losses: E within 1%, exponents within 0.01. Autograd must flow through it.
    true = ChinchillaLaw(E=1.8, A=400.0, B=800.0, alpha=0.35, beta=0.3)
    N = np.repeat(np.logspace(6, 9, 4), 4)
    D = np.tile(np.logspace(8, 11, 4), 4)
    fit = scaling.fit_chinchilla(N, D, true(N, D), top_k=2, objective=scaling.chinchilla_objective_reference)
    assert fit.E == pytest.approx(true.E, rel=0.01)
    assert fit.alpha == pytest.approx(true.alpha, abs=0.01) and fit.beta == pytest.approx(true.beta, abs=0.01)


# --- compute-optimal allocation -------------------------------------------------------------

LAWS = [scaling.CHINCHILLA, ChinchillaLaw(1.8, 482.0, 2085.4, 0.3478, 0.3658),
        ChinchillaLaw(0.5, 50.0, 300.0, 0.5, 0.25)]


@pytest.mark.exercise("scaling.chinchilla_optimal")
@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_closed_form_equals_numeric_minimum(law, C, monkeypatch):
    # Independent truth: golden-section search of L along the iso-FLOP line (rel 1e-6), computed
    # first; then the numeric search is made to raise (no delegation) while the closed form runs.
    n_num, d_num = law.compute_optimal(C)
    monkeypatch.setattr(ChinchillaLaw, "compute_optimal", lambda *a: pytest.fail("closed form, please"))
    n, d = scaling.chinchilla_optimal(C, law)
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
    assert scaling.CHINCHILLA.tokens_per_param(scaling.CHINCHILLA_COMPUTE) == pytest.approx(92.5, rel=0.01)
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
def test_parabola_vertex_hand_and_polyfit(monkeypatch):
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(20):  # reference: numpy.polyfit on random noisy parabolas
        x = rng.uniform(-3, 3, 9)
        y = 2 * (x - 0.7) ** 2 + rng.normal(0, 0.3, 9)
        cases.append((x, y, np.polyfit(x, y, 2)))
    for name in ("polyfit", "lstsq"):  # no delegation to numpy's fitters
        monkeypatch.setattr(np if name == "polyfit" else np.linalg, name, lambda *a, **k: pytest.fail("by hand"))
    monkeypatch.setattr(np.polynomial.polynomial, "polyfit", lambda *a, **k: pytest.fail("by hand"))
    v, c = scaling.parabola_vertex([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 2.0, 1.0, 2.0, 5.0])  # (x-2)^2 + 1
    assert v == pytest.approx(2.0) and np.allclose(c, [1.0, -4.0, 5.0])
    for x, y, coef in cases:
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
