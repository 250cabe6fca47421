"""Ratings from pairwise battles: online Elo and the Bradley-Terry fit of Chatbot Arena (lesson 12).

A battle is `(model_a, model_b, outcome)` with outcome 1 (a won), 0 (b won) or 0.5
(a tie). Both ratings use the Elo scale: a model rated 400 points above another is
expected to win with odds 10 : 1,

    P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)).

- `elo_update` / `online_elo`: chess's rule, one battle at a time (Elo 1978). The result
  depends on the ORDER of the battles and on the K factor.
- `fit_bradley_terry`: the maximum-likelihood ratings of the Bradley-Terry model
  (Bradley & Terry 1952) over all battles at once, the method Chatbot Arena moved to
  (Chiang et al. 2024): order-free, with ties counted as half a win for each side.
  Solved by Newton's method (the log-likelihood is concave). Anchored so that the
  mean rating is 1000 (or `anchor` is at 1000).
- `bootstrap_ratings`: confidence intervals by resampling battles with replacement.

Left out: the style control and the sampling weights of the live arena, and
rating a model by its win rate against one baseline (see lesson 12's AlpacaEval section).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minillm.utils import MiniLLMError

SCALE = 400.0          # Elo points ...
BASE = 10.0            # ... per factor of BASE in the odds
INIT = 1000.0          # where ratings are anchored
ALPHA = math.log(BASE) / SCALE   # Elo points -> natural log-odds

Battle = tuple[str, str, float]


def expected_score(r_a: float, r_b: float) -> float:
    """P(a beats b) (a tie counts half) under ratings r_a, r_b on the Elo scale.

    >>> round(expected_score(1400, 1000), 4)   # odds 10 : 1
    0.9091
    """
    return 1.0 / (1.0 + BASE ** ((r_b - r_a) / SCALE))


def elo_update(r_a: float, r_b: float, outcome: float, k: float = 32.0) -> tuple[float, float]:
    """Ratings after one battle: each side moves by k x (actual score - expected score).

    >>> elo_update(1000, 1000, 1.0, k=32)
    (1016.0, 984.0)
    """
    ### BEGIN SOLUTION name=ratings.elo_update points=1
    ### HINT: what score did the model expect against this opponent, and what did it get? The points one side gains, the other loses.
    delta = k * (outcome - expected_score(r_a, r_b))
    return r_a + delta, r_b - delta
    ### END SOLUTION


def check_battles(battles: Sequence[Battle]) -> list[str]:
    """The models in `battles` (sorted), after checking every battle is well-formed."""
    if not battles:
        raise MiniLLMError("no battles to rate")
    names = set()
    for i, battle in enumerate(battles):
        if len(battle) != 3:
            raise MiniLLMError(f"battle {i} is {battle!r}, not (model_a, model_b, outcome)")
        a, b, outcome = battle
        if a == b:
            raise MiniLLMError(f"battle {i}: a model cannot battle itself ({a!r})")
        if outcome not in (0, 0.5, 1):
            raise MiniLLMError(f"battle {i}: outcome must be 1 (a won), 0 (b won) or 0.5 (tie), got {outcome!r}")
        names.update((a, b))
    if len(names) < 2:
        raise MiniLLMError("rating needs at least two models")
    return sorted(names)


def online_elo(battles: Sequence[Battle], k: float = 4.0, init: float = INIT) -> dict[str, float]:
    """Ratings after playing `battles` in order through `elo_update` (everyone starts at `init`)."""
    ratings = {name: init for name in check_battles(battles)}
    for a, b, outcome in battles:
        ratings[a], ratings[b] = elo_update(ratings[a], ratings[b], outcome, k)
    return ratings


def win_matrix(battles: Sequence[Battle], names: Sequence[str]) -> np.ndarray:
    """W[i, j] = the wins of names[i] over names[j], a tie adding 0.5 to both sides."""
    index = {name: i for i, name in enumerate(names)}
    W = np.zeros((len(names), len(names)))
    for a, b, outcome in battles:
        W[index[a], index[b]] += outcome
        W[index[b], index[a]] += 1.0 - outcome
    return W


def bt_log_likelihood(ratings: np.ndarray, W: np.ndarray) -> float:
    """The Bradley-Terry log-likelihood (natural log) of Elo-scale `ratings` given win matrix W.

    Each win of i over j adds log P(i beats j) = log sigmoid(ALPHA * (R_i - R_j)).

    >>> round(bt_log_likelihood(np.array([1000.0, 1000.0]), np.array([[0.0, 1.0], [1.0, 0.0]])), 4)
    -1.3863
    """
    ### BEGIN SOLUTION name=ratings.bt_log_likelihood points=2
    ### HINT: turn the rating differences into log-odds first; log sigmoid(x) = -log(1 + e^-x), computed so that it never overflows.
    diff = ALPHA * (ratings[:, None] - ratings[None, :])        # (n, n) log-odds that i beats j
    return float(-(W * np.logaddexp(0.0, -diff)).sum())
    ### END SOLUTION


def _ford_connected(W: np.ndarray) -> bool:
    """True when every model, split from the rest any way, both won and lost across the split:
    the condition (Ford 1957) under which the maximum-likelihood ratings are finite."""
    n = len(W)
    beat = W > 0
    reach = beat.copy() | np.eye(n, dtype=bool)
    for k in range(n):                      # Warshall: who beat someone who beat ... someone
        reach |= reach[:, [k]] & reach[[k], :]
    return bool(reach.all())


@dataclass
class Ratings:
    """A Bradley-Terry fit: Elo-scale ratings and what they predict."""

    names: list[str]
    ratings: np.ndarray              # (n,) Elo scale
    bounded: bool                    # True when a weak prior kept a rating finite (Ford's condition failed)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.ratings.tolist()))

    def win_rates(self) -> np.ndarray:
        """P[i, j] = predicted probability that names[i] beats names[j]."""
        return 1.0 / (1.0 + BASE ** ((self.ratings[None, :] - self.ratings[:, None]) / SCALE))


def fit_bradley_terry(battles: Sequence[Battle], anchor: str | None = None, anchor_rating: float = INIT,
                      prior: float = 1e-3, max_iter: int = 100, tol: float = 1e-10) -> Ratings:
    """Maximum-likelihood Bradley-Terry ratings on the Elo scale, by Newton's method.

    The mean rating is `anchor_rating` (or the model `anchor` is). Where some model never
    lost (or never won) against the rest, the maximum-likelihood rating is infinite: a
    warning says so and a weak Gaussian prior (`prior` x theta^2 / 2 on the log-odds
    scale) keeps the ratings finite, flagged by `Ratings.bounded`.
    """
    names = check_battles(battles)
    if anchor is not None and anchor not in names:
        raise MiniLLMError(f"anchor model {anchor!r} is not among the rated models {names}")
    W = win_matrix(battles, names)
    N = W + W.T                                              # battles between each pair
    bounded = not _ford_connected(W)
    ridge = prior if bounded else 0.0
    if bounded:
        warnings.warn("some model never lost (or never won) against the others: its maximum-likelihood "
                      "rating is infinite; a weak prior keeps it finite, read it as a bound", stacklevel=2)
    ### BEGIN SOLUTION name=ratings.fit_bradley_terry points=3
    ### HINT: the gradient for model i is its wins minus its expected wins; the Hessian is a weighted graph Laplacian. Ratings are only defined up to a shift: fix the mean.
    theta = np.zeros(len(names))                             # log-odds scale, mean 0
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))   # p[i, j] = P(i beats j)
        grad = (W - N * p).sum(axis=1) - ridge * theta
        curv = N * p * p.T                                  # (n, n) information between i and j
        neg_hess = np.diag(curv.sum(axis=1)) - curv + ridge * np.eye(len(names))
        step = np.linalg.lstsq(neg_hess, grad, rcond=None)[0]
        theta = theta + step
        theta -= theta.mean()
        if np.abs(step).max() < tol:
            break
    ### END SOLUTION
    ratings = theta / ALPHA
    shift = anchor_rating - (ratings[names.index(anchor)] if anchor is not None else ratings.mean())
    ratings = ratings + shift
    return Ratings(names, ratings, bounded)


def bootstrap_ratings(battles: Sequence[Battle], n_boot: int = 200, level: float = 0.95, seed: int = 0,
                      **fit_kwargs) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each model's rating over fits to resampled battle lists."""
    names = check_battles(battles)
    if n_boot < 2 or not 0 < level < 1:
        raise MiniLLMError(f"need n_boot >= 2 and 0 < level < 1, got {n_boot} and {level}")
    ### BEGIN SOLUTION name=ratings.bootstrap points=2
    ### HINT: draw as many battles as there are, with replacement, fit, and repeat; a model missing from a draw has no rating in it.
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            draw = [battles[i] for i in rng.integers(0, len(battles), len(battles))]
            if len({m for a, b, _ in draw for m in (a, b)}) < 2:
                continue
            for name, r in fit_bradley_terry(draw, **fit_kwargs).as_dict().items():
                samples[name].append(r)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {name: (float(np.percentile(s, lo)), float(np.percentile(s, hi))) for name, s in samples.items() if s}
    ### END SOLUTION


def leaderboard(fit: Ratings, intervals: dict[str, tuple[float, float]] | None = None,
                extra: dict[str, dict[str, object]] | None = None) -> str:
    """A markdown table, best first: rank, model, rating, its interval, any extra columns."""
    extra = extra or {}
    columns = sorted({c for row in extra.values() for c in row})
    lines = ["| rank | model | rating | 95% interval |" + "".join(f" {c} |" for c in columns),
             "| --- | --- | --- | --- |" + " --- |" * len(columns)]
    order = np.argsort(-fit.ratings)
    for rank, i in enumerate(order, 1):
        name = fit.names[i]
        ci = intervals.get(name) if intervals else None
        cells = [str(rank), name, f"{fit.ratings[i]:.0f}", f"{ci[0]:.0f} to {ci[1]:.0f}" if ci else ""]
        cells += [str(extra.get(name, {}).get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def simulate_battles(strengths: dict[str, float], n: int, tie_rate: float = 0.0, seed: int = 0) -> list[Battle]:
    """Battles between random pairs of players whose true Elo-scale ratings are `strengths`.

    A battle is a tie with probability `tie_rate`, else won by a with P = expected_score.
    """
    rng = np.random.default_rng(seed)
    names = list(strengths)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(names), size=2, replace=False)
        if rng.random() < tie_rate:
            out.append((names[a], names[b], 0.5))
        else:
            win = rng.random() < expected_score(strengths[names[a]], strengths[names[b]])
            out.append((names[a], names[b], 1.0 if win else 0.0))
    return out

