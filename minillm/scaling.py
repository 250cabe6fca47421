"""Scaling laws: fit how loss falls with parameters, data and compute (lesson 06).

What it builds, one testable step at a time:

1. `PowerLaw` L(x) = E + A / x^alpha and `fit_power_law(x, loss)`: x is the number
   of parameters N, of tokens D, or the compute C. E is the irreducible loss.
2. `ChinchillaLaw` L(N, D) = E + A / N^alpha + B / D^beta and `fit_chinchilla`,
   fitted as Hoffmann et al. 2022 (Approach 3) do: predict log L as a log-sum-exp
   of (a - alpha log N, b - beta log D, e), with A = exp(a), B = exp(b), E = exp(e);
   minimise the Huber loss (delta = 1e-3) of the log-residuals with L-BFGS, started
   from a grid of initialisations, keep the best.
3. The compute-optimal split of a budget C = 6 N D: `chinchilla_optimal` in closed
   form (Hoffmann et al. eq. 4), `ChinchillaLaw.compute_optimal` numerically
   along the iso-FLOP line (equal by test), and the 20-tokens-per-parameter rule.
4. `isoflop_fit` (Approach 2): for each compute budget a parabola of loss against
   log N, its vertex N*(C), and the vertices fitted as a power law N* = k C^a.
5. `bootstrap`: confidence intervals by refitting on resampled runs.
6. `sweep`: train small GPTs of several sizes for several token budgets on
   TinyWorld (CPU, minutes), record (N, D, C, loss), fit both forms, and compare
   the fitted E with TinyWorld's known entropy floor.

Built in: Chinchilla's published fit `CHINCHILLA` (Hoffmann et al. 2022,
"Training Compute-Optimal Large Language Models", eq. 10: E = 1.69, A = 406.4,
B = 410.7, alpha = 0.34, beta = 0.28). Besiroglu et al. 2024 ("Chinchilla
Scaling: A Replication Attempt") showed these rounded numbers do not reproduce
the paper's 70B / 1.4T allocation; the lesson works through it.
Left out: learning-rate and batch-size scaling, data-constrained (repeated
epochs) laws, Kaplan et al.'s L(N, D) form. Needs numpy and torch only.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
from dataclasses import dataclass

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

    N*(C) = G (C/6)^a, D*(C) = G^-1 (C/6)^b with a = beta / (alpha + beta),
    b = alpha / (alpha + beta), G = (alpha A / (beta B))^(1 / (alpha + beta)).
    Derivation: put D = C / 6N into L and set dL/dN = 0:
    alpha A N^-alpha = beta B D^-beta.
    """
    ### BEGIN SOLUTION name=scaling.chinchilla_optimal points=2
    ### HINT: G = (alpha*A / (beta*B)) ** (1/(alpha+beta)); N = G * (C/6)**(beta/(alpha+beta)); D = C/(6N).
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


def huber(r: torch.Tensor, delta: float = 1e-3) -> torch.Tensor:
    """Huber loss, elementwise: r^2 / 2 where |r| <= delta, else delta (|r| - delta / 2).

    Quadratic near 0, linear in the tails, so a few bad runs (outliers) pull the
    fit less than squared error would. `huber(torch.tensor([0.5, 3.0]), 1.0)` -> [0.125, 2.5].
    """
    ### BEGIN SOLUTION name=scaling.huber points=1
    ### HINT: torch.where(r.abs() <= delta, 0.5 * r**2, delta * (r.abs() - 0.5 * delta))
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    ### END SOLUTION


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


def fit_chinchilla(N, D, loss, delta: float = 1e-3, top_k: int = 4,
                   init: ChinchillaLaw | None = None) -> ChinchillaLaw:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta as Hoffmann et al. 2022 (Approach 3).

    Objective: sum of Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L);
    the grid of starts follows the paper (alpha, beta in 0..2 by 0.5, e in -1..1 by
    0.5, a and b in 0..25 by 5), scored at once; L-BFGS refines the `top_k` best.
    Needs >= 6 points (5 parameters + 1).
    """
    N, D, loss = _check("fit_chinchilla", N, D, loss, min_points=6)
    lN, lD, ly = (torch.tensor(np.log(v)) for v in (N, D, loss))

    def objective(theta: torch.Tensor) -> torch.Tensor:  # theta (K, 5): e, a, b, alpha, beta
        e, a, b, alpha, beta = (theta[:, i:i + 1] for i in range(5))
        terms = torch.stack([a - alpha * lN, b - beta * lD, e.expand(-1, len(lN))])  # (3, K, n)
        pred = torch.logsumexp(terms, dim=0)  # (K, n): log of E + A/N^alpha + B/D^beta
        return F.huber_loss(pred, ly.expand_as(pred), delta=delta, reduction="none").sum(-1)

    if init is not None:
        inits = torch.tensor([[math.log(init.E), math.log(init.A), math.log(init.B), init.alpha, init.beta]],
                             dtype=torch.float64)
    else:
        inits = _grid(np.arange(-1.0, 1.01, 0.5), np.arange(0.0, 25.1, 5.0), np.arange(0.0, 25.1, 5.0),
                      np.arange(0.0, 2.01, 0.5), np.arange(0.0, 2.01, 0.5))
    (e, a, b, alpha, beta), _ = _lbfgs_fit(objective, inits, top_k)
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
    ### HINT: V = np.stack([x**2, x, ones]); c = solve(V.T @ V, V.T @ y); vertex at -c1 / (2 c0).
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


# ---------------------------------------------------------------------------------
# The TinyWorld sweep: train small GPTs, fit, compare E with the entropy floor
# ---------------------------------------------------------------------------------

FAST_SIZES = "16x1,32x1,48x2"               # n_embd x n_layer
FAST_STEPS = "30,60,120"
FULL_SIZES = "16x1,24x1,32x2,48x2,64x3"
FULL_STEPS = "100,200,400,800,1600"


# The output of `minillm sweep --full` (SweepConfig defaults: block_size 64, batch 16, lr 1e-2,
# BPE 512, seed 0) on a shared 2-core CPU, so that notebooks can analyse a real sweep in seconds.
# Columns: n_embd, n_layer, N (non-embedding), params, D (tokens), validation loss (nats/token).
_REFERENCE_BYTES_PER_TOKEN = 3.0288
_REFERENCE_ROWS = [
    (16, 1, 3312, 12528, 102400, 2.7139),
    (16, 1, 3312, 12528, 204800, 1.8324),
    (16, 1, 3312, 12528, 409600, 1.4102),
    (16, 1, 3312, 12528, 819200, 0.9997),
    (16, 1, 3312, 12528, 1638400, 0.9042),
    (24, 1, 7272, 21096, 102400, 2.2152),
    (24, 1, 7272, 21096, 204800, 1.4031),
    (24, 1, 7272, 21096, 409600, 1.0174),
    (24, 1, 7272, 21096, 819200, 0.8025),
    (24, 1, 7272, 21096, 1638400, 0.6860),
    (32, 2, 25472, 43904, 102400, 1.9139),
    (32, 2, 25472, 43904, 204800, 1.1746),
    (32, 2, 25472, 43904, 409600, 0.8559),
    (32, 2, 25472, 43904, 819200, 0.6324),
    (32, 2, 25472, 43904, 1638400, 0.5751),
    (48, 2, 56640, 84288, 102400, 1.6233),
    (48, 2, 56640, 84288, 204800, 1.0342),
    (48, 2, 56640, 84288, 409600, 0.7972),
    (48, 2, 56640, 84288, 819200, 0.5871),
    (48, 2, 56640, 84288, 1638400, 0.5513),
    (64, 3, 150080, 186944, 102400, 1.4680),
    (64, 3, 150080, 186944, 204800, 0.9230),
    (64, 3, 150080, 186944, 409600, 0.7721),
    (64, 3, 150080, 186944, 819200, 0.5700),
    (64, 3, 150080, 186944, 1638400, 0.5506),
]
REFERENCE_SWEEP = [dict(n_embd=c, n_layer=l, N=n, params=p, D=d, C=6.0 * n * d, loss=loss,
                        bits_per_byte=loss / math.log(2) / _REFERENCE_BYTES_PER_TOKEN,
                        bytes_per_token=_REFERENCE_BYTES_PER_TOKEN)
                   for c, l, n, p, d, loss in _REFERENCE_ROWS]


@dataclass
class SweepConfig:
    """What `sweep` trains: every size for every budget (steps x batch x block tokens)."""

    sizes: str = dataclasses.field(default=FAST_SIZES, metadata={"help": "comma-separated n_embd x n_layer, e.g. 16x1,32x2"})
    steps: str = dataclasses.field(default=FAST_STEPS, metadata={"help": "comma-separated step counts (token budgets)"})
    n_head: int = dataclasses.field(default=4, metadata={"help": "attention heads (must divide every n_embd)"})
    block_size: int = dataclasses.field(default=64, metadata={"help": "context length in tokens"})
    batch_size: int = dataclasses.field(default=16, metadata={"help": "sequences per step"})
    lr: float = dataclasses.field(default=1e-2, metadata={"help": "peak learning rate (warmup 10%, cosine)"})
    eval_batches: int = dataclasses.field(default=16, metadata={"help": "validation batches per final estimate"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of every run"})
    vocab_size: int = dataclasses.field(default=512, metadata={"help": "BPE vocabulary (256: raw bytes, no merges)"})


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise MiniLLMError(f"sizes must look like '16x1,32x2' (n_embd x n_layer), got {text!r}")
    return sizes


def tinyworld_tokens(vocab_size: int = 512, tokenizer_chars: int = 200_000) -> tuple[np.ndarray, np.ndarray, float]:
    """TinyWorld's train and val splits as token ids, and the val text's bytes per token.

    A byte-level BPE (`minillm.tokenizer`) with `vocab_size` ids is trained on the first
    `tokenizer_chars` characters of train; vocab_size 256 means raw bytes (1 byte per token).
    """
    from minillm import world

    train_text, val_text = world.load_split("train"), world.load_split("val")
    if vocab_size == 256:
        tr = np.frombuffer(train_text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        va = np.frombuffer(val_text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        return tr, va, 1.0
    if vocab_size < 256:
        raise MiniLLMError(f"vocab_size must be >= 256 (the bytes), got {vocab_size}")
    from minillm.tokenizer import Tokenizer

    tok = Tokenizer.train(train_text[:tokenizer_chars], vocab_size)
    tr = np.asarray(tok.encode(train_text), dtype=np.int64)
    va = np.asarray(tok.encode(val_text), dtype=np.int64)
    return tr, va, len(val_text.encode("utf-8")) / len(va)


def floor_nats_per_token(bits_per_byte: float, bytes_per_token: float = 1.0) -> float:
    """Convert the floor from bits per byte to the training loss's unit, nats per token:
    x ln 2 (bits -> nats) x bytes per token. `floor_nats_per_token(0.169, 3.5)` -> 0.41."""
    return bits_per_byte * math.log(2) * bytes_per_token


def sweep(config: SweepConfig | None = None, log=print) -> list[dict]:
    """Train every (size, steps) pair of `config`; one row per run.

    Rows: n_embd, n_layer, N (non-embedding parameters, as Kaplan et al. count),
    params (all), D (training tokens), C = 6 N D, loss (validation, nats/token),
    bits_per_byte, bytes_per_token, seconds. Data: TinyWorld through a BPE of
    `config.vocab_size` ids (`tinyworld_tokens`).
    """
    from minillm.model import GPT, GPTConfig
    from minillm.train import TrainConfig, train

    cfg = config or SweepConfig()
    sizes = _parse_sizes(cfg.sizes)
    try:
        budgets = sorted({int(s) for s in cfg.steps.split(",") if s.strip()})
    except ValueError:
        budgets = []
    if not budgets or budgets[0] < 1:
        raise MiniLLMError(f"steps must be comma-separated positive integers, got {cfg.steps!r}")
    train_data, val_data, bytes_per_token = tinyworld_tokens(cfg.vocab_size)
    rows = []
    for (C, L), steps in itertools.product(sizes, budgets):
        if C % cfg.n_head:
            raise MiniLLMError(f"n_embd {C} is not divisible by n_head {cfg.n_head}")
        mc = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=L, n_head=cfg.n_head, n_embd=C)
        tc = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=max(1, steps // 10),
                         eval_every=0, eval_batches=cfg.eval_batches, log_every=0, seed=cfg.seed,
                         device="cpu", dtype="float32")
        r = train(mc, tc, train_data, val_data, log=None)
        model = r.model if r.model is not None else GPT(mc)
        n = model.num_parameters(non_embedding=True)
        row = dict(n_embd=C, n_layer=L, N=n, params=model.num_parameters(), D=r.tokens_seen,
                   C=6.0 * n * r.tokens_seen, loss=float(r.final_val_loss),
                   bits_per_byte=float(r.final_val_loss) / math.log(2) / bytes_per_token,
                   bytes_per_token=bytes_per_token, seconds=r.seconds)
        rows.append(row)
        if log:
            log(f"n_embd {C:3d} x {L} layers  N {n:8,d}  D {row['D']:9,d}  C {row['C']:.2e}  "
                f"loss {row['loss']:.4f} nats/token ({row['bits_per_byte']:.4f} bits/byte)  {r.seconds:.1f}s")
    return rows


@dataclass
class SweepAnalysis:
    """Fits of a sweep, and how the fitted E compares with the entropy floor."""

    chinchilla: ChinchillaLaw
    frontier: PowerLaw | None         # E + A / C^alpha through the runs no cheaper run beats
    floor: float                      # entropy floor in nats/token
    held_out: dict | None             # the run left out of the fit
    predicted: float | None           # the fit's prediction for it

    @property
    def e_minus_floor(self) -> float:
        return self.chinchilla.E - self.floor


def analyse_sweep(rows: list[dict], floor_bits_per_byte: float | None = None,
                  hold_out_largest: bool = True) -> SweepAnalysis:
    """Fit L(N, D) to the sweep (leaving the largest-compute run out to predict it), fit the
    compute frontier (runs that beat every cheaper run) as E + A / C^alpha, and convert the
    floor from bits per byte to nats per token."""
    from minillm import world

    if floor_bits_per_byte is None:
        import json

        floor_bits_per_byte = json.loads((world.default_data_dir() / "floor.json").read_text())["val"]["bits_per_byte"]
    rows = list(rows)
    held = max(rows, key=lambda r: r["C"]) if hold_out_largest and len(rows) > 6 else None
    fit_rows = [r for r in rows if r is not held]
    law = fit_chinchilla([r["N"] for r in fit_rows], [r["D"] for r in fit_rows], [r["loss"] for r in fit_rows])
    # The compute frontier (Pareto): the runs that beat every run of smaller compute.
    best: dict[float, float] = {}
    for r in sorted(fit_rows, key=lambda r: r["C"]):
        if not best or r["loss"] < min(best.values()):
            best[r["C"]] = r["loss"]
    frontier = None
    if len(best) >= 4:
        try:
            frontier = fit_power_law(list(best), list(best.values()))
        except MiniLLMError:
            frontier = None
    bytes_per_token = rows[0].get("bytes_per_token", 1.0)
    return SweepAnalysis(law, frontier, floor_nats_per_token(floor_bits_per_byte, bytes_per_token), held,
                         float(law(held["N"], held["D"])) if held else None)


def plot_sweep(rows: list[dict], analysis: SweepAnalysis):
    """Loss vs compute (each size a line), the fitted law, the floor, and the held-out
    prediction. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = sorted({(r["n_embd"], r["n_layer"]) for r in rows})
    for (c, l) in sizes:
        rs = sorted((r for r in rows if (r["n_embd"], r["n_layer"]) == (c, l)), key=lambda r: r["C"])
        line, = ax.plot([r["C"] for r in rs], [r["loss"] for r in rs], "o", label=f"N={rs[0]['N']:,} ({c}x{l})")
        d = np.logspace(np.log10(rs[0]["D"] / 2), np.log10(rs[-1]["D"] * 4), 50)
        ax.plot(6 * rs[0]["N"] * d, analysis.chinchilla(rs[0]["N"], d), "-", color=line.get_color(), alpha=0.6)
    if analysis.frontier:
        cs = np.logspace(np.log10(min(r["C"] for r in rows)), np.log10(max(r["C"] for r in rows) * 4), 50)
        ax.plot(cs, analysis.frontier(cs), "k-", lw=2, alpha=0.4, label="compute frontier fit")
    ax.axhline(analysis.floor, color="k", ls=":", label=f"entropy floor {analysis.floor:.3f}")
    ax.axhline(analysis.chinchilla.E, color="gray", ls="--", label=f"fitted E {analysis.chinchilla.E:.3f}")
    if analysis.held_out:
        h = analysis.held_out
        ax.plot([h["C"]], [h["loss"]], "k*", ms=14, label="held-out run (measured)")
        ax.plot([h["C"]], [analysis.predicted], "rx", ms=12, mew=3, label="held-out run (predicted)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.legend(fontsize=7)
    ax.set_title("TinyWorld sweep: L(N, D) = E + A/N^a + B/D^b")
    return fig


def report(analysis: SweepAnalysis) -> str:
    """A few lines that summarise the fit."""
    law = analysis.chinchilla
    lines = [f"fit: L(N, D) = {law.E:.3f} + {law.A:.3g}/N^{law.alpha:.3f} + {law.B:.3g}/D^{law.beta:.3f}",
             f"fitted E = {law.E:.4f} nats/token vs entropy floor {analysis.floor:.4f}: "
             f"E - floor = {analysis.e_minus_floor:+.4f}"]
    if analysis.held_out:
        h = analysis.held_out
        err = analysis.predicted / h["loss"] - 1
        lines.append(f"held-out run N={h['N']:,} D={h['D']:,}: measured {h['loss']:.4f}, "
                     f"predicted {analysis.predicted:.4f} ({err:+.1%})")
    if analysis.frontier:
        f = analysis.frontier
        lines.append(f"compute frontier: L(C) = {f.E:.3f} + {f.A:.3g}/C^{f.alpha:.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# CLI: minillm sweep
# ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.config import add_dataclass_arguments

    parser.add_argument("--full", action="store_true",
                        help=f"the longer sweep (sizes {FULL_SIZES}, steps {FULL_STEPS}): tens of minutes on a CPU")
    parser.add_argument("--out", default=None, help="write the rows (JSON) and the plot (PNG) to this folder")
    add_dataclass_arguments(parser, SweepConfig)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from minillm.config import dataclass_from_args

    cfg = dataclass_from_args(SweepConfig, args)
    if args.full:
        cfg = dataclasses.replace(cfg, sizes=FULL_SIZES, steps=FULL_STEPS)
    n_runs = len(_parse_sizes(cfg.sizes)) * len({s for s in cfg.steps.split(",") if s.strip()})
    if n_runs < 7:  # checked before any training: 5 parameters + 1, plus the held-out run
        raise MiniLLMError(f"{n_runs} runs are too few: fitting L(N, D) needs at least 6 points "
                           "(plus one held out); give more --sizes or --steps")
    rows = sweep(cfg)
    analysis = analyse_sweep(rows)
    print(report(analysis))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from minillm.utils import atomic_write_text

        atomic_write_text(out / "sweep.json", json.dumps(rows, indent=1) + "\n")
        fig = plot_sweep(rows, analysis)
        fig.savefig(out / "sweep.png", dpi=110, bbox_inches="tight")
        print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0
