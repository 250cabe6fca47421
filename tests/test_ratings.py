"""Ratings from battles (lesson 12): Elo by hand, Bradley-Terry against known strengths and scikit-learn."""

import itertools
import math
import random
import warnings

import numpy as np
import pytest

from minillm import ratings as R
from minillm.utils import MiniLLMError

TRUE = {"a": 1200.0, "b": 1100.0, "c": 1000.0, "d": 900.0, "e": 800.0}


def mm_fit(battles, anchor=None, anchor_rating=1000.0, **_):
    """An independent Bradley-Terry fit: Zermelo's / Hunter's (2004) MM iteration on strengths
    p_i = exp(theta_i), p_i <- wins_i / sum_j N_ij / (p_i + p_j). Stands in for
    fit_bradley_terry where a test grades something else (the bootstrap)."""
    names = sorted({m for a, b, _ in battles for m in (a, b)})
    W = R.win_matrix(battles, names)
    N = W + W.T
    p = np.ones(len(names))
    for _ in range(2000):
        new = W.sum(1) / (N / (p[:, None] + p[None, :])).sum(1)
        new /= np.exp(np.log(new).mean())
        if np.abs(new - p).max() < 1e-13:
            break
        p = new
    r = np.log(p) / R.ALPHA
    r += anchor_rating - (r[names.index(anchor)] if anchor else r.mean())
    return R.Ratings(names, r, False)


def loglik(ratings: dict, battles) -> float:
    """The Bradley-Terry log-likelihood summed battle by battle (independent of the exercise)."""
    total = 0.0
    for a, b, y in battles:
        p = 1 / (1 + 10 ** ((ratings[b] - ratings[a]) / 400))
        total += y * math.log(p) + (1 - y) * math.log(1 - p)
    return total


def centred(d: dict) -> dict:
    m = sum(d.values()) / len(d)
    return {k: v - m for k, v in d.items()}


@pytest.mark.exercise("ratings.elo_update")
def test_elo_update_by_hand():
    # Equal ratings: expected 0.5 each, K = 32 -> +-16.
    assert R.elo_update(1000, 1000, 1.0, k=32) == pytest.approx((1016.0, 984.0))
    # 1400 vs 1000 expects 10/11; a loss costs 32 * 10/11 = 29.09.
    a, b = R.elo_update(1400, 1000, 0.0, k=32)
    assert a == pytest.approx(1400 - 320 / 11) and b == pytest.approx(1000 + 320 / 11)
    # A tie between equals changes nothing; points are conserved.
    assert R.elo_update(1000, 1000, 0.5) == pytest.approx((1000.0, 1000.0))
    a, b = R.elo_update(1234.0, 987.0, 0.5, k=10)
    assert a + b == pytest.approx(1234.0 + 987.0)


@pytest.mark.exercise("ratings.elo_update")
def test_online_elo_depends_on_the_order():
    battles = R.simulate_battles(TRUE, 300, seed=1)
    shuffled = battles[:]
    random.Random(0).shuffle(shuffled)
    one, two = R.online_elo(battles, k=16), R.online_elo(shuffled, k=16)
    assert max(abs(one[m] - two[m]) for m in TRUE) > 1.0


@pytest.mark.exercise("ratings.bt_log_likelihood")
def test_bt_log_likelihood_by_hand():
    W = np.array([[0.0, 3.0], [1.0, 0.0]])
    r = np.array([1400.0, 1000.0])
    p = 1 / (1 + 10 ** (-1))   # P(first beats second) = 10/11
    assert R.bt_log_likelihood(r, W) == pytest.approx(3 * math.log(p) + math.log(1 - p), rel=1e-12)
    # Shifting every rating changes nothing; huge gaps do not overflow.
    assert R.bt_log_likelihood(r + 500, W) == pytest.approx(R.bt_log_likelihood(r, W))
    assert math.isfinite(R.bt_log_likelihood(np.array([1e6, 0.0]), W))


@pytest.mark.exercise("ratings.bt_log_likelihood")
def test_bt_log_likelihood_equals_a_sum_over_battles():
    battles = R.simulate_battles(TRUE, 50, tie_rate=0.2, seed=3)
    names = sorted(TRUE)
    r = np.array([TRUE[n] for n in names])
    by_hand = 0.0
    for a, b, y in battles:
        p = R.expected_score(TRUE[a], TRUE[b])
        by_hand += y * math.log(p) + (1 - y) * math.log(1 - p)
    assert R.bt_log_likelihood(r, R.win_matrix(battles, names)) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.exercise("ratings.fit_bradley_terry")
def test_fit_recovers_known_strengths():
    battles = R.simulate_battles(TRUE, 4000, seed=0)
    fit = R.fit_bradley_terry(battles)
    got = fit.as_dict()
    assert sorted(got, key=got.get, reverse=True) == ["a", "b", "c", "d", "e"]
    assert np.mean(list(got.values())) == pytest.approx(1000.0)
    for m in TRUE:
        assert got[m] - 1000 == pytest.approx(TRUE[m] - 1000, abs=25)
    assert not fit.bounded
    ref = mm_fit(battles).as_dict()
    for m in TRUE:
        assert got[m] == pytest.approx(ref[m], abs=1e-6)


@pytest.mark.exercise("ratings.fit_bradley_terry")
def test_fit_is_the_maximum_and_order_free():
    battles = R.simulate_battles(TRUE, 500, tie_rate=0.1, seed=2)
    fit = R.fit_bradley_terry(battles)
    best = loglik(fit.as_dict(), battles)
    for m in fit.names:                      # any move away lowers the likelihood
        for h in (-1.0, 1.0):
            moved = dict(fit.as_dict(), **{m: fit.as_dict()[m] + h})
            assert loglik(moved, battles) < best
    shuffled = battles[::-1]
    again = R.fit_bradley_terry(shuffled, anchor="c")
    assert again.as_dict()["c"] == pytest.approx(1000.0)
    for m in TRUE:
        assert centred(again.as_dict())[m] == pytest.approx(centred(fit.as_dict())[m], abs=1e-8)


@pytest.mark.exercise("ratings.fit_bradley_terry")
def test_ties_count_half_each_way():
    battles = [("x", "y", 0.5)] * 10 + [("x", "z", 1.0), ("z", "x", 1.0), ("y", "z", 1.0), ("z", "y", 1.0)]
    got = R.fit_bradley_terry(battles).as_dict()
    assert got["x"] == pytest.approx(got["y"], abs=1e-9) == pytest.approx(got["z"], abs=1e-9)
    # One tie is worth one win plus one loss.
    half = R.fit_bradley_terry([("p", "q", 0.5), ("p", "q", 1.0), ("q", "r", 1.0), ("r", "p", 1.0)]).as_dict()
    whole = R.fit_bradley_terry([("p", "q", 1.0), ("q", "p", 1.0), ("p", "q", 1.0), ("p", "q", 1.0),
                                 ("q", "r", 1.0), ("q", "r", 1.0), ("r", "p", 1.0), ("r", "p", 1.0)]).as_dict()
    for m in "pqr":
        assert half[m] == pytest.approx(whole[m], abs=1e-8)


@pytest.mark.exercise("ratings.fit_bradley_terry")
def test_a_player_who_never_loses_is_warned_and_finite():
    battles = [("champ", "x", 1.0)] * 5 + [("champ", "y", 1.0)] * 5 + [("x", "y", 1.0), ("y", "x", 1.0)]
    with pytest.warns(UserWarning, match="never lost"):
        fit = R.fit_bradley_terry(battles)
    assert fit.bounded and all(math.isfinite(v) for v in fit.ratings)
    assert fit.as_dict()["champ"] > fit.as_dict()["x"] + 200


@pytest.mark.exercise("ratings.fit_bradley_terry")
def test_sklearn_logistic_regression_gives_the_same_ratings():
    """Chatbot Arena's original recipe: unpenalised logistic regression, no intercept, on rows
    with +ln(10) for model a and -ln(10) for model b; a tie is one win and one loss at weight 1/2."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    battles = R.simulate_battles(TRUE, 1500, tie_rate=0.15, seed=4)
    names = sorted(TRUE)
    rows, ys, weights = [], [], []
    for a, b, y in battles:
        x = np.zeros(len(names))
        x[names.index(a)], x[names.index(b)] = math.log(10), -math.log(10)
        for label, w in ((1, y), (0, 1 - y)):
            if w > 0:
                rows.append(x)
                ys.append(label)
                weights.append(w)
    try:   # scikit-learn >= 1.8 spells "no penalty" C=inf
        lr = linear_model.LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10000)
    except TypeError:
        lr = linear_model.LogisticRegression(penalty=None, fit_intercept=False, tol=1e-10, max_iter=10000)
    lr.fit(np.array(rows), np.array(ys), sample_weight=np.array(weights))
    ref = dict(zip(names, (R.SCALE * lr.coef_[0]).tolist()))
    ours = R.fit_bradley_terry(battles).as_dict()
    for m in names:
        assert centred(ours)[m] == pytest.approx(centred(ref)[m], abs=0.05)


@pytest.mark.exercise("ratings.bootstrap")
def test_bootstrap_intervals_cover_the_truth_about_95_percent(monkeypatch):
    monkeypatch.setattr(R, "fit_bradley_terry", mm_fit)   # grade the bootstrap alone
    hits = total = 0
    for trial in range(30):
        battles = R.simulate_battles(TRUE, 400, seed=100 + trial)
        ci = R.bootstrap_ratings(battles, n_boot=60, seed=trial, anchor="c", anchor_rating=TRUE["c"])
        for m in ("a", "b", "d", "e"):
            total += 1
            hits += ci[m][0] <= TRUE[m] <= ci[m][1]
    assert 0.83 <= hits / total <= 1.0, hits / total


@pytest.mark.exercise("ratings.bootstrap")
def test_bootstrap_is_seeded_and_narrows_with_more_battles(monkeypatch):
    monkeypatch.setattr(R, "fit_bradley_terry", mm_fit)
    few = R.simulate_battles(TRUE, 100, seed=5)
    many = R.simulate_battles(TRUE, 1600, seed=5)
    assert R.bootstrap_ratings(few, n_boot=30, seed=1) == R.bootstrap_ratings(few, n_boot=30, seed=1)
    w_few = np.mean([hi - lo for lo, hi in R.bootstrap_ratings(few, n_boot=40).values()])
    w_many = np.mean([hi - lo for lo, hi in R.bootstrap_ratings(many, n_boot=40).values()])
    assert w_many < w_few / 2   # about 1/sqrt(16) as wide


def test_win_rates_and_leaderboard():
    names = sorted(TRUE)
    fit = R.Ratings(names, np.array([TRUE[n] for n in names]), False)
    P = fit.win_rates()
    assert P[0, 1] == pytest.approx(R.expected_score(TRUE["a"], TRUE["b"]))
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(P), 0.5)
    table = R.leaderboard(fit, extra={"a": {"perplexity": 1.5}})
    assert table.splitlines()[2].startswith("| 1 | a |") and "perplexity" in table


@pytest.mark.parametrize("battles, message", [
    ([], "no battles"),
    ([("a", "a", 1.0)], "itself"),
    ([("a", "b", 2.0)], "outcome"),
    ([("a", "b")], "not \\(model_a"),
])
def test_bad_battles_are_one_clear_error(battles, message):
    with pytest.raises(MiniLLMError, match=message):
        R.fit_bradley_terry(battles)


def test_unknown_anchor_is_an_error():
    with pytest.raises(MiniLLMError, match="anchor"):
        R.fit_bradley_terry([("a", "b", 1.0), ("b", "a", 1.0)], anchor="zzz")
