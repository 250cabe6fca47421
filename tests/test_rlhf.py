"""RLHF's pieces (lesson 11): KL estimators vs the exact KL, GAE by hand, PPO/GRPO/REINFORCE on a bandit."""

import math

import pytest
import torch

from minillm import rlhf
from minillm.utils import MiniLLMError


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.exercise("rlhf.kl_estimators")
def test_kl_estimators_are_unbiased_and_k3_is_never_negative():
    g = torch.Generator().manual_seed(0)
    p_logits, q_logits = torch.randn(6, generator=g), torch.randn(6, generator=g)
    exact = rlhf.exact_kl(p_logits, q_logits)
    lp, lq = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    samples = torch.multinomial(lp.exp(), 200_000, replacement=True, generator=g)
    for est in ("k1", "k3"):
        k = rlhf.kl_estimate(lp[samples], lq[samples], est)
        se = k.std().item() / math.sqrt(len(k))
        assert abs(k.mean().item() - exact) < 4 * se, est
    k1, k3 = rlhf.kl_estimate(lp[samples], lq[samples], "k1"), rlhf.kl_estimate(lp[samples], lq[samples], "k3")
    assert (k3 >= 0).all() and (k1 < 0).any()
    assert k3.var() < k1.var()
    # By hand: pi = 0.5, ref = 0.25 at the sampled token -> k1 = log 2, k3 = 0.5 - 1 + log 2.
    assert rlhf.kl_estimate(torch.tensor([math.log(.5)]), torch.tensor([math.log(.25)]), "k1").item() == pytest.approx(math.log(2))
    assert rlhf.kl_estimate(torch.tensor([math.log(.5)]), torch.tensor([math.log(.25)]), "k3").item() == pytest.approx(math.log(2) - 0.5)


@pytest.mark.exercise("rlhf.gae")
def test_gae_by_hand():
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    m = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    d2 = 1.0 - 0.7                       # last token: no future value
    d1 = 0.0 + gamma * 0.7 - 0.6
    d0 = 0.0 + gamma * 0.6 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    adv, ret = rlhf.gae(r, v, m, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(ret, adv + v)


@pytest.mark.exercise("rlhf.gae")
def test_gae_limits_and_padding():
    g = torch.Generator().manual_seed(1)
    r, v = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    m = torch.ones(3, 5)
    adv1, _ = rlhf.gae(r, v, m, gamma=1.0, lam=1.0)           # Monte Carlo: sum of future rewards - V
    torch.testing.assert_close(adv1, r.flip(-1).cumsum(-1).flip(-1) - v)
    adv0, _ = rlhf.gae(r, v, m, gamma=0.9, lam=0.0)           # one-step TD error
    nxt = torch.cat([v[:, 1:], torch.zeros(3, 1)], 1)
    torch.testing.assert_close(adv0, r + 0.9 * nxt - v)
    # Padding after the completion changes nothing for the real tokens.
    pad_r, pad_v = torch.cat([r, torch.randn(3, 2, generator=g)], 1), torch.cat([v, torch.randn(3, 2, generator=g)], 1)
    pad_m = torch.cat([m, torch.zeros(3, 2)], 1)
    adv_p, _ = rlhf.gae(pad_r, pad_v, pad_m, 0.95, 0.9)
    torch.testing.assert_close(adv_p[:, :5], rlhf.gae(r, v, m, 0.95, 0.9)[0])
    assert (adv_p[:, 5:] == 0).all()


@pytest.mark.exercise("rlhf.ppo_clip")
def test_ppo_equals_the_policy_gradient_when_the_ratio_is_one():
    g = torch.Generator().manual_seed(2)
    logp = torch.randn(4, 3, generator=g).requires_grad_(True)
    adv, mask = torch.randn(4, 3, generator=g), torch.ones(4, 3)
    loss, clip_frac = rlhf.ppo_policy_loss(logp, logp.detach(), adv, mask)
    loss.backward()
    assert loss.item() == pytest.approx(-adv.mean().item())
    torch.testing.assert_close(logp.grad, -adv / adv.numel())     # d/dlogp of -ratio*A at ratio 1
    assert clip_frac.item() == 0.0


@pytest.mark.exercise("rlhf.ppo_clip")
def test_ppo_clip_removes_the_gradient_past_the_trust_region():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]])).requires_grad_(True)   # ratios 1.5, 1.5, .5, .5
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, clip_frac = rlhf.ppo_policy_loss(logp, old, adv, torch.ones(1, 4), clip=0.2)
    loss.backward()
    # ratio 1.5 with A > 0 and ratio 0.5 with A < 0 are clipped: no gradient. The other two still pull.
    assert logp.grad[0, 0] == 0 and logp.grad[0, 3] == 0
    assert logp.grad[0, 1] != 0 and logp.grad[0, 2] != 0
    assert clip_frac.item() == 1.0
    expected = -(1.2 * 1.0 + 1.5 * -1.0 + 0.5 * 1.0 + 0.8 * -1.0) / 4
    assert loss.item() == pytest.approx(expected)


@pytest.mark.exercise("rlhf.ppo_clip")   # (the per-token loss it averages is the exercise's)
def test_ppo_aggregations_differ_only_with_uneven_lengths():
    logp = torch.zeros(2, 4)
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    tok, _ = rlhf.ppo_policy_loss(logp, logp, adv, mask, aggregation="token")
    seq, _ = rlhf.ppo_policy_loss(logp, logp, adv, mask, aggregation="sequence")
    assert tok.item() == pytest.approx(-(4 + 3) / 5) and seq.item() == pytest.approx(-(1 + 3) / 2)


@pytest.mark.exercise("rlhf.group_advantages")
def test_group_advantages_zero_mean_per_group():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [5.0, 5.0, 5.0, 6.0]])
    a = rlhf.group_advantages(r)
    torch.testing.assert_close(a.mean(1), torch.zeros(2))
    h = 0.5 / (0.5 + 1e-4)              # centred +-0.5 over the biased std 0.5 (+ eps)
    assert a[0].tolist() == pytest.approx([h, -h, -h, h])
    torch.testing.assert_close(rlhf.group_advantages(r, normalise=False), r - r.mean(1, keepdim=True))
    std_n1 = r.std(1, correction=1, keepdim=True)
    torch.testing.assert_close(rlhf.group_advantages(r, unbiased=True), (r - r.mean(1, keepdim=True)) / (std_n1 + 1e-4))
    same = rlhf.group_advantages(torch.ones(1, 4))
    assert torch.equal(same, torch.zeros(1, 4))     # all equal: no signal, no NaN


@pytest.mark.exercise("rlhf.kl_estimators")
def test_kl_penalised_rewards_put_the_score_on_the_last_token():
    logp, ref = torch.log(torch.tensor([[0.5, 0.5, 0.5, 1.0]])), torch.log(torch.tensor([[0.25, 0.5, 0.5, 1.0]]))
    mask = torch.tensor([[1, 1, 1, 0]])
    r = rlhf.kl_penalised_rewards(torch.tensor([2.0]), logp, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(r, torch.tensor([[-0.1 * math.log(2), 0.0, 2.0, 0.0]]))


def test_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    w = rlhf.whiten(x, m)
    assert w[0, :3].mean().item() == pytest.approx(0, abs=1e-12)
    assert (w[0, :3] ** 2).mean().item() == pytest.approx(1, rel=1e-6) and w[0, 3] == 0


@pytest.mark.parametrize("algo", ["reinforce", pytest.param("ppo", marks=pytest.mark.exercise("rlhf.ppo_clip")),
                                  pytest.param("grpo", marks=pytest.mark.exercise("rlhf.group_advantages"))])
def test_each_algorithm_moves_a_bandit_towards_the_best_answer(algo):
    """Four answers with rewards 0, 0.2, 1, 0.1; a softmax policy starting uniform. A few
    hundred updates of each algorithm put most probability on answer 2."""
    reward = torch.tensor([0.0, 0.2, 1.0, 0.1])
    logits = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        probs = torch.softmax(logits, -1)
        y = torch.multinomial(probs.detach(), 8, replacement=True, generator=g)     # one group of 8
        r = reward[y]
        logp = torch.log_softmax(logits, -1)[y]
        if algo == "reinforce":
            loss = rlhf.reinforce_loss(logp, r, baseline=r.mean())
        elif algo == "grpo":
            # One update per group: the ratio is 1, where the clipped loss has the gradient of -A log pi.
            adv = rlhf.group_advantages(r[None, :])[0]
            loss = -(adv.detach() * logp).mean()
        else:
            old = logp.detach()
            loss = 0
            for _ in range(2):   # two epochs on the same samples: the clip matters on the second
                logp = torch.log_softmax(logits, -1)[y]
                step_loss, _ = rlhf.ppo_policy_loss(logp[None, :], old[None, :], (r - r.mean())[None, :],
                                                    torch.ones(1, 8))
                opt.zero_grad()
                step_loss.backward()
                opt.step()
            continue
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.softmax(logits, -1)[2].item() > 0.8


@pytest.mark.parametrize("call, message", [
    (lambda: rlhf.group_advantages(torch.ones(3, 1)), "at least 2"),
    (lambda: rlhf.group_advantages(torch.tensor([[1.0, math.nan]])), "finite"),
    (lambda: rlhf.reinforce_loss(torch.zeros(2), torch.tensor([1.0, math.inf])), "finite"),
    (lambda: rlhf.kl_penalised_rewards(torch.ones(1), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), -0.1), ">= 0"),
    (lambda: rlhf.kl_estimate(torch.zeros(1), torch.zeros(1), "k2"), "unknown KL"),
    (lambda: rlhf.ppo_policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1),
                                  aggregation="batch"), "aggregation"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(MiniLLMError, match=message):
        call()
