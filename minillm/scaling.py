"""Scaling laws: fit how loss falls with parameters, data and compute (lesson 06).

What it builds, one testable step at a time:

1. `PowerLaw` L(x) = E + A / x^alpha and `fit_power_law(x, loss)`: x is the number
   of parameters N, of tokens D, or the compute C. E is the irreducible loss.
2. `ChinchillaLaw` L(N, D) = E + A / N^alpha + B / D^beta and `fit_chinchilla`,
   fitted as Hoffmann et al. 2022 (Approach 3) do: predict log L as a log-sum-exp
   of (a - alpha log N, b - beta log D, e), with A = exp(a), B = exp(b), E = exp(e);
   minimise the Huber loss (delta = 1e-3) of the log-residuals with L-BFGS, started
   from a grid of initialisations, keep the best. The objective is written out
   (`chinchilla_objective_reference`) beside the fast one the fitter uses.
3. The compute-optimal split of a budget C = 6 N D: `chinchilla_optimal` in closed
   form (Hoffmann et al. eq. 4), `ChinchillaLaw.compute_optimal` numerically
   along the iso-FLOP line (equal by test), and the 20-tokens-per-parameter rule.
4. `isoflop_fit` (Approach 2): for each compute budget a parabola of loss against
   log N, its vertex N*(C), and the vertices fitted as a power law N* = k C^a.
5. `bootstrap`: confidence intervals by refitting on resampled runs.

Built in: Chinchilla's published fit `CHINCHILLA` (Hoffmann et al. 2022,
"Training Compute-Optimal Large Language Models", eq. 10: E = 1.69, A = 406.4,
B = 410.7, alpha = 0.34, beta = 0.28). Besiroglu et al. 2024 ("Chinchilla
Scaling: A Replication Attempt") showed these rounded numbers do not reproduce
the paper's 70B / 1.4T allocation; the lesson works through it.
Training the small models whose losses are fitted here is `minillm.sweep`.
Left out: learning-rate and batch-size scaling, data-constrained (repeated
epochs) laws, Kaplan et al.'s L(N, D) form. Needs numpy and torch only.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from minillm.utils import MiniLLMError


# ---------------------------------------------------------------------------------
# Laws
# ---------------------------------------------------------------------------------


def power_law(x, E: float, A: float, alpha: float):
    """L(x) = E + A / x^alpha, elementwise. `power_law(1e6, 2.0, 100.0, 0.5)` -> 2.1."""
    return E + A * np.asarray(x, dtype=np.float64) ** (-alpha)


@dataclass
class PowerLaw:
    """L(x) = E + A / x^alpha: E the irreducible loss, alpha the exponent."""

    E: float
    A: float
    alpha: float

    def __call__(self, x):
        return power_law(x, self.E, self.A, self.alpha)


@dataclass
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, N, D):
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)

    def compute_optimal(self, C: float) -> tuple[float, float]:
        """(N*, D*) minimising L on the iso-FLOP line 6 N D = C, found numerically.

        The fast path: golden-section search of L(N, C / 6N) over log N (the loss is
        convex in log N there); `chinchilla_optimal` is the closed form.
        """
        if not C > 0:
            raise MiniLLMError(f"compute must be positive, got {C}")
        f = lambda u: float(self(math.exp(u), C / 6 / math.exp(u)))  # noqa: E731
        lo, hi = math.log(1.0), math.log(C / 6)
        g = (math.sqrt(5) - 1) / 2
        for _ in range(200):
            a, b = hi - g * (hi - lo), lo + g * (hi - lo)
            if f(a) < f(b):
                hi = b
            else:
                lo = a
        n = math.exp((lo + hi) / 2)
        return n, C / 6 / n

    def tokens_per_param(self, C: float) -> float:
        n, d = self.compute_optimal(C)
        return d / n


CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
CHINCHILLA_COMPUTE = 5.76e23  # FLOPs of the Chinchilla run (70B parameters, 1.4T tokens)


def chinchilla_optimal(C: float, law: ChinchillaLaw = CHINCHILLA) -> tuple[float, float]:
    """Closed-form compute-optimal (N*, D*) for 6 N D = C (Hoffmann et al. 2022, eq. 4).

    Derive it: put D = C / 6N into L(N, D) and set dL/dN = 0. Both N* and D* are
    power laws of C. Check: the published fit at Chinchilla's budget (5.76e23 FLOPs)
    gives N* = 3.22e10 parameters and D* = 2.98e12 tokens (not the paper's 70B / 1.4T).
    """
    ### BEGIN SOLUTION name=scaling.chinchilla_optimal points=2
    ### HINT: on the line D = C / 6N the loss depends on N alone; where is its derivative zero, and how does N there scale with C?
    s = law.alpha + law.beta
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / s)
    n = G * (C / 6) ** (law.beta / s)
    d = (C / 6) ** (law.alpha / s) / G
    return n, d
    ### END SOLUTION


def tokens_per_param_rule(C: float, ratio: float = 20.0) -> tuple[float, float]:
    """(N, D) with 6 N D = C and D = ratio x N: the rule of thumb from Hoffmann et al.'s
    Approaches 1 and 2 (N* and D* both grow as C^0.5; ~20 tokens per parameter).
    `tokens_per_param_rule(5.76e23)` -> (6.93e10, 1.39e12): Chinchilla's 70B / 1.4T."""
    if not (C > 0 and ratio > 0):
        raise MiniLLMError(f"compute and ratio must be positive, got {C} and {ratio}")
    n = math.sqrt(C / (6 * ratio))
    return n, ratio * n


# ---------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------


def chinchilla_objective_reference(theta: torch.Tensor, log_N: torch.Tensor, log_D: torch.Tensor,
                                   log_L: torch.Tensor, delta: float = 1e-3) -> torch.Tensor:
    """Approach 3's objective for K candidate laws at once (Hoffmann et al. 2022, eq. 9).

    theta: (K, 5) rows (e, a, b, alpha, beta); log_N, log_D, log_L: (n,) logs of the
    runs' parameters, tokens and losses. Returns (K,): for each row the sum over runs
    of Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L), where LSE is
    log-sum-exp, so the prediction is log(E + A / N^alpha + B / D^beta) with
    E = e^e, A = e^a, B = e^b, and Huber_delta(r) = r^2 / 2 for |r| <= delta, else
    delta (|r| - delta / 2): quadratic near 0, linear in the tails, so a few bad runs
    pull the fit less than squared error would.

    >>> t = torch.tensor([[0.0, math.log(2), math.log(3), 1.0, 1.0]], dtype=torch.float64)
    >>> one = torch.zeros(1, dtype=torch.float64)     # N = D = 1: prediction log(1 + 2 + 3)
    >>> round(float(chinchilla_objective_reference(t, one, one, one + math.log(6) + 0.5, delta=0.1)), 9)
    0.045
    """
    ### BEGIN SOLUTION name=scaling.fit_objective points=3
    ### HINT: exp of a large exponent overflows: what can you subtract from the three terms before exponentiating, and add back after the log?
    e, a, b, alpha, beta = (theta[:, i:i + 1] for i in range(5))          # each (K, 1)
    terms = torch.stack([a - alpha * log_N, b - beta * log_D,
                         e.expand(-1, log_N.numel())])                     # (3, K, n)
    top = terms.max(dim=0).values                                          # (K, n)
    pred = top + torch.log(torch.exp(terms - top).sum(dim=0))              # (K, n): the log-sum-exp
    r = (pred - log_L).abs()                                               # (K, n) residuals
    return torch.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).sum(dim=-1)
    ### END SOLUTION


def chinchilla_objective(theta: torch.Tensor, log_N: torch.Tensor, log_D: torch.Tensor,
                         log_L: torch.Tensor, delta: float = 1e-3) -> torch.Tensor:
    """Fast path of `chinchilla_objective_reference` (PyTorch's logsumexp and huber_loss): (K,)."""
    e, a, b, alpha, beta = (theta[:, i:i + 1] for i in range(5))
    pred = torch.logsumexp(torch.stack([a - alpha * log_N, b - beta * log_D,
                                        e.expand(-1, log_N.numel())]), dim=0)   # (K, n)
    return F.huber_loss(pred, log_L.expand_as(pred), delta=delta, reduction="none").sum(-1)


def _check(name: str, *arrays, min_points: int) -> list[np.ndarray]:
    """Arrays of equal length >= min_points, finite and positive, or a clear error."""
    out = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    n = len(out[0])
    if any(len(a) != n for a in out):
        raise MiniLLMError(f"{name}: inputs have different lengths {[len(a) for a in out]}")
    if n < min_points:
        raise MiniLLMError(f"{name} needs at least {min_points} points to fit, got {n}: run more sizes/budgets")
    for a in out:
        if not np.all(np.isfinite(a)):
            raise MiniLLMError(f"{name}: inputs contain NaN or infinity (a diverged run?): drop those points")
        if not np.all(a > 0):
            raise MiniLLMError(f"{name}: sizes, tokens, compute and losses must be positive (logs are taken)")
    return out


def _lbfgs_fit(objective, inits: torch.Tensor, top_k: int, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """Minimise `objective(theta) -> (K,)` from each of the `top_k` best rows of `inits`.

    The whole grid is scored at once (vectorised); L-BFGS with a strong-Wolfe line
    search then refines the best starts one at a time, and the best end point wins.
    """
    with torch.no_grad():
        scores = objective(inits)
    order = torch.argsort(torch.nan_to_num(scores, nan=float("inf")))[:top_k]
    best, best_val = None, float("inf")
    for i in order.tolist():
        theta = inits[i:i + 1].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-11, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = objective(theta).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            val = float(objective(theta)[0])
        if math.isfinite(val) and val < best_val:
            best, best_val = theta.detach()[0].numpy().copy(), val
    if best is None:
        raise MiniLLMError("the fit did not converge from any start: check the data")
    return best, best_val


def _grid(*axes) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*axes)), dtype=torch.float64)


def fit_power_law(x, loss, delta: float = 1e-3, top_k: int = 4, init: PowerLaw | None = None) -> PowerLaw:
    """Fit L(x) = E + A / x^alpha to (x, loss) pairs: Huber on log L, L-BFGS from a grid.

    log L_hat = logsumexp(a - alpha log x, e) with A = exp(a), E = exp(e), so E and A
    stay positive without constraints. Needs >= 4 points (3 parameters + 1).
    `init`: start there only (used by `bootstrap` for speed).
    """
    x, loss = _check("fit_power_law", x, loss, min_points=4)
    lx = torch.tensor(np.log(x))
    ly = torch.tensor(np.log(loss))

    def objective(theta: torch.Tensor) -> torch.Tensor:  # theta (K, 3): e, a, alpha
        e, a, alpha = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        pred = torch.logsumexp(torch.stack([a - alpha * lx, e.expand(-1, len(lx))]), dim=0)  # (K, n)
        return F.huber_loss(pred, ly.expand_as(pred), delta=delta, reduction="none").sum(-1)

    if init is not None:
        inits = torch.tensor([[math.log(init.E), math.log(init.A), init.alpha]], dtype=torch.float64)
    else:
        span = float(lx.max())  # a = alpha * log x keeps A / x^alpha O(1) at the data
        inits = _grid(np.log(loss.min()) + np.linspace(-2.0, 0.0, 5),
                      np.linspace(0.0, 1.2 * span, 7), [0.1, 0.25, 0.5, 1.0, 1.5, 2.0])
    (e, a, alpha), _ = _lbfgs_fit(objective, inits, top_k)
    return PowerLaw(E=math.exp(e), A=math.exp(a), alpha=float(alpha))


def fit_chinchilla(N, D, loss, delta: float = 1e-3, top_k: int = 4, init: ChinchillaLaw | None = None,
                   objective: Callable[..., torch.Tensor] = chinchilla_objective) -> ChinchillaLaw:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta as Hoffmann et al. 2022 (Approach 3).

    Minimises `objective` (default `chinchilla_objective`); the grid of starts follows
    the paper (alpha, beta in 0..2 by 0.5, e in -1..1 by 0.5, a and b in 0..25 by 5),
    scored at once; L-BFGS refines the `top_k` best. Needs >= 6 points (5 parameters + 1).
    """
    N, D, loss = _check("fit_chinchilla", N, D, loss, min_points=6)
    lN, lD, ly = (torch.tensor(np.log(v)) for v in (N, D, loss))

    def fit_objective(theta: torch.Tensor) -> torch.Tensor:  # theta (K, 5): e, a, b, alpha, beta
        return objective(theta, lN, lD, ly, delta)

    if init is not None:
        inits = torch.tensor([[math.log(init.E), math.log(init.A), math.log(init.B), init.alpha, init.beta]],
                             dtype=torch.float64)
    else:
        inits = _grid(np.arange(-1.0, 1.01, 0.5), np.arange(0.0, 25.1, 5.0), np.arange(0.0, 25.1, 5.0),
                      np.arange(0.0, 2.01, 0.5), np.arange(0.0, 2.01, 0.5))
    (e, a, b, alpha, beta), _ = _lbfgs_fit(fit_objective, inits, top_k)
    return ChinchillaLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=float(alpha), beta=float(beta))


# ---------------------------------------------------------------------------------
# IsoFLOP curves (Approach 2)
# ---------------------------------------------------------------------------------


def parabola_vertex(x, y) -> tuple[float, np.ndarray]:
    """Least-squares parabola y = c0 x^2 + c1 x + c2 through the points; its vertex x.

    Solves the 3x3 normal equations (V^T V) c = V^T y with V = [x^2, x, 1].
    Returns (x at the minimum, [c0, c1, c2]). A parabola that opens downwards has
    no minimum: an error (the budget's sizes do not bracket the optimum).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        raise MiniLLMError(f"a parabola needs at least 3 points, got {len(x)}")
    ### BEGIN SOLUTION name=scaling.parabola_vertex points=2
    ### HINT: least squares is linear in the three coefficients: set up one row per point and solve the normal equations; where is the slope of a parabola zero?
    V = np.stack([x * x, x, np.ones_like(x)], axis=1)  # (n, 3)
    c = np.linalg.solve(V.T @ V, V.T @ y)
    if c[0] <= 0:
        raise MiniLLMError("the losses of this budget do not curve upwards: add sizes on both sides of the best")
    return float(-c[1] / (2 * c[0])), c
    ### END SOLUTION


@dataclass
class IsoFLOPFit:
    """Approach 2: per budget the loss-minimising N*, and N* = k C^a fitted through them."""

    budgets: np.ndarray       # (K,) compute budgets C
    n_opt: np.ndarray         # (K,) the parabola vertices N*(C)
    parabolas: list           # per budget: coefficients of loss vs log N (np.polyfit order)
    k: float
    a: float                  # N* = k C^a; D* = C / (6 N*) grows as C^(1 - a)

    def n_star(self, C):
        return self.k * np.asarray(C, dtype=np.float64) ** self.a

    def d_star(self, C):
        return np.asarray(C, dtype=np.float64) / (6 * self.n_star(C))


def isoflop_fit(N, C, loss, rtol: float = 0.05) -> IsoFLOPFit:
    """Group runs by compute budget (budgets within `rtol` are one), fit a parabola of
    loss against log N for each (np.polyfit, the fast path of `parabola_vertex`),
    and fit log N* = log k + a log C by least squares. Needs >= 2 budgets of >= 3 runs."""
    N, C, loss = _check("isoflop_fit", N, C, loss, min_points=6)
    order = np.argsort(C)
    groups, current = [], [order[0]]
    for i in order[1:]:
        if C[i] <= C[current[0]] * (1 + rtol):
            current.append(i)
        else:
            groups.append(current)
            current = [i]
    groups.append(current)
    groups = [g for g in groups if len(g) >= 3]
    if len(groups) < 2:
        raise MiniLLMError("isoflop_fit needs at least 2 compute budgets with 3 or more model sizes each")
    budgets, n_opt, parabolas = [], [], []
    for g in groups:
        coef = np.polyfit(np.log(N[g]), loss[g], 2)
        if coef[0] <= 0:
            raise MiniLLMError(f"budget {C[g[0]]:.2g}: losses do not curve upwards; add sizes around the best")
        budgets.append(float(np.exp(np.mean(np.log(C[g])))))
        n_opt.append(float(np.exp(-coef[1] / (2 * coef[0]))))
        parabolas.append(coef)
    a, logk = np.polyfit(np.log(budgets), np.log(n_opt), 1)
    return IsoFLOPFit(np.array(budgets), np.array(n_opt), parabolas, float(np.exp(logk)), float(a))


# ---------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------


def bootstrap(fit, *columns, n_boot: int = 100, level: float = 0.95, seed: int = 0,
              **fit_kwargs) -> dict[str, tuple[float, float]]:
    """Percentile confidence intervals of every field of `fit(*columns)`'s result.

    Each of `n_boot` rounds resamples the runs (rows) with replacement and refits,
    warm-started from the fit on all data. Returns {field: (low, high)}.
    `bootstrap(fit_power_law, N, loss, n_boot=200)["alpha"]` -> (0.31, 0.37).
    """
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    full = fit(*cols, **fit_kwargs)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(cols[0]), len(cols[0]))
        try:
            draws.append(dataclasses.astuple(fit(*(c[idx] for c in cols), init=full, **fit_kwargs)))
        except MiniLLMError:  # a resample with too few distinct points: skip it
            continue
    if len(draws) < max(10, n_boot // 2):
        raise MiniLLMError("bootstrap: too few resamples could be fitted; collect more points")
    draws = np.array(draws)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {f.name: (float(np.percentile(draws[:, i], lo)), float(np.percentile(draws[:, i], hi)))
            for i, f in enumerate(dataclasses.fields(full))}
