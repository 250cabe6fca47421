"""DPO's loss and its variants (lesson 10): hand-computed values, gradients, and the closed-form optimum."""

import math

import pytest
import torch

from minillm import dpo
from minillm.utils import MiniLLMError



@pytest.fixture(autouse=True)
def float64():
    """These identities are checked in float64; the default is restored for other test files."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def pairs(margin: float, n: int = 1):
    """Log-probs whose DPO margin is `margin`: the policy raised chosen by margin over the reference."""
    pc = torch.full((n,), -3.0 + margin)
    return pc, torch.full((n,), -5.0), torch.full((n,), -3.0), torch.full((n,), -5.0)


def sig(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.exercise("dpo.loss")
@pytest.mark.parametrize("loss, expected", [
    ("sigmoid", math.log(2)), ("robust", math.log(2)), ("hinge", 1.0), ("ipo", (1 / (2 * 0.1)) ** 2)])
def test_policy_equal_to_reference(loss, expected):
    z = torch.randn(4)
    value, stats = dpo.dpo_loss(z, z - 1, z, z - 1, beta=0.1, loss=loss)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    assert torch.equal(stats["chosen_reward"], torch.zeros(4))


@pytest.mark.exercise("dpo.loss")
def test_variants_by_hand():
    beta, m = 0.5, 1.2
    args = pairs(m)
    assert dpo.dpo_loss(*args, beta=beta)[0].item() == pytest.approx(-math.log(sig(beta * m)))
    assert dpo.dpo_loss(*args, beta=beta, loss="hinge")[0].item() == pytest.approx(1 - beta * m)
    assert dpo.dpo_loss(*pairs(3.0), beta=beta, loss="hinge")[0].item() == 0.0
    assert dpo.dpo_loss(*args, beta=beta, loss="ipo")[0].item() == pytest.approx((m - 1 / (2 * beta)) ** 2)
    eps = 0.2
    smooth = -(1 - eps) * math.log(sig(beta * m)) - eps * math.log(sig(-beta * m))
    assert dpo.dpo_loss(*args, beta=beta, label_smoothing=eps)[0].item() == pytest.approx(smooth)
    robust = (-(1 - eps) * math.log(sig(beta * m)) + eps * math.log(sig(-beta * m))) / (1 - 2 * eps)
    assert dpo.dpo_loss(*args, beta=beta, loss="robust", label_smoothing=eps)[0].item() == pytest.approx(robust)


@pytest.mark.exercise("dpo.loss")
def test_robust_loss_is_unbiased_under_flipped_labels():
    """Averaged over a label flipped with probability eps, the robust loss equals the clean DPO loss."""
    beta, eps, m = 0.3, 0.25, 0.7
    clean = dpo.dpo_loss(*pairs(m), beta=beta)[0].item()
    noisy = ((1 - eps) * dpo.dpo_loss(*pairs(m), beta=beta, loss="robust", label_smoothing=eps)[0].item()
             + eps * dpo.dpo_loss(*pairs(-m), beta=beta, loss="robust", label_smoothing=eps)[0].item())
    assert noisy == pytest.approx(clean, rel=1e-12)


@pytest.mark.exercise("dpo.loss")
def test_gradient_of_the_sigmoid_loss():
    """d loss / d log pi(chosen) = -beta sigmoid(-beta margin), and the opposite for rejected."""
    beta = 0.2
    pc = torch.tensor([-2.0, -1.0], requires_grad=True)
    pr = torch.tensor([-1.5, -4.0], requires_grad=True)
    rc, rr = torch.tensor([-2.5, -1.0]), torch.tensor([-1.0, -3.0])
    value, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=beta)
    value.backward()
    margin = (pc - rc) - (pr - rr)
    expected = -beta * torch.sigmoid(-beta * margin.detach()) / 2   # mean over 2 pairs
    torch.testing.assert_close(pc.grad, expected)
    torch.testing.assert_close(pr.grad, -expected)


@pytest.mark.exercise("dpo.loss")
def test_reference_free_and_per_token_averaging():
    pc, pr = torch.tensor([-4.0]), torch.tensor([-9.0])
    free, _ = dpo.dpo_loss(pc, pr, None, None, beta=1.0)
    assert free.item() == pytest.approx(-math.log(sig(5.0)))
    avg, stats = dpo.dpo_loss(pc, pr, None, None, beta=1.0, chosen_lengths=torch.tensor([2]),
                              rejected_lengths=torch.tensor([3]))
    assert avg.item() == pytest.approx(-math.log(sig(-2.0 + 3.0)))
    assert stats["reward_accuracy"].item() == 1.0


def test_implicit_reward_recovers_the_true_reward_up_to_a_prompt_term():
    """On a finite answer set: beta log(pi*/pi_ref) = r - beta log Z, the same shift for every answer."""
    torch.manual_seed(0)
    for beta in (0.1, 1.0, 3.0):
        ref = torch.softmax(torch.randn(7), -1)
        r = torch.randn(7)
        star = dpo.optimal_policy(ref, r, beta)
        shift = r - dpo.implicit_reward(torch.log(star), torch.log(ref), beta)
        torch.testing.assert_close(shift, shift[0].expand(7))
        log_z = torch.logsumexp(torch.log(ref) + r / beta, 0)
        assert shift[0].item() == pytest.approx(beta * log_z.item(), rel=1e-10)


@pytest.mark.exercise("dpo.loss")
def test_dpo_on_every_pair_reaches_the_closed_form_optimum():
    """A tabular policy over 5 answers, trained on all pairs weighted by Bradley-Terry preference
    probabilities, ends at pi* = pi_ref exp(r / beta) / Z."""
    torch.manual_seed(1)
    beta, n = 0.5, 5
    ref = torch.softmax(torch.randn(n), -1)
    r = torch.randn(n)
    i, j = torch.triu_indices(n, n, 1)
    p = torch.sigmoid(r[i] - r[j])                     # P(i preferred to j)
    logits = torch.log(ref).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logp, logr = torch.log_softmax(logits, -1), torch.log(ref)
        loss = 0
        for a, b, w in zip(i.tolist(), j.tolist(), p.tolist()):   # both labels, weighted by their probability
            s_ = slice(a, a + 1), slice(b, b + 1)
            loss = loss + w * dpo.dpo_loss(logp[s_[0]], logp[s_[1]], logr[s_[0]], logr[s_[1]], beta=beta)[0]
            loss = loss + (1 - w) * dpo.dpo_loss(logp[s_[1]], logp[s_[0]], logr[s_[1]], logr[s_[0]], beta=beta)[0]
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(torch.softmax(logits, -1).detach(), dpo.optimal_policy(ref, r, beta),
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(loss="kto"), "unknown DPO loss"),
    (dict(label_smoothing=0.5), "label_smoothing")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(MiniLLMError, match=message):
        dpo.dpo_loss(*pairs(0.1), **kwargs)


def test_one_reference_without_the_other_is_refused():
    z = torch.zeros(2)
    with pytest.raises(MiniLLMError, match="both reference"):
        dpo.dpo_loss(z, z, z, None)


# ---------------------------------------------------------------------------------
# dpo_train: the training run
# ---------------------------------------------------------------------------------

def sigmoid_dpo(pc, pr, rc, rr, beta=0.1, loss="sigmoid", label_smoothing=0.0):
    """The plain DPO loss, written here: the training tests need none of the exercises."""
    assert loss == "sigmoid" and label_smoothing == 0.0
    return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean(), {}


@pytest.fixture
def tiny(monkeypatch):
    """A tiny random policy on the shipped tokenizer, in float32 (this file's default is float64).

    dpo_loss and completion_logprobs (exercises) are replaced by written-out twins."""
    import copy

    from minillm import logprobs
    from minillm.model import GPT, GPTConfig
    from minillm.tokenizer import Tokenizer
    monkeypatch.setattr(dpo, "dpo_loss", sigmoid_dpo)
    monkeypatch.setattr(dpo, "completion_logprobs", lambda m, ids, mask, attention_mask=None, average=False:
                        logprobs.completion_logprobs_reference(m, ids, mask, average).float())
    torch.set_default_dtype(torch.float32)
    tok = Tokenizer.load("data/checkpoints/sft/tokenizer.json")
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=200, n_layer=1, n_head=2, n_embd=16, style="llama"))
    return policy, copy.deepcopy(policy), tok


def few_pairs(n=12):
    from minillm import preferences
    return preferences.preference_pairs(n, seed=0, split="dpo-test")


def test_reference_precomputed_equals_on_the_fly(tiny):
    import copy
    policy, reference, tok = tiny
    out = {}
    for pre in (True, False):
        cfg = dpo.DPOConfig(steps=3, batch_size=4, lr=1e-2, beta=0.5, precompute_reference=pre)
        out[pre] = dpo.dpo_train(copy.deepcopy(policy), reference, tok, few_pairs(), cfg, log=None)
    for a, b in zip(out[True].model.parameters(), out[False].model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    losses = [h["train_loss"] for h in out[True].history]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)     # step 0: policy == reference
    assert [h["train_loss"] for h in out[False].history] == pytest.approx(losses, abs=1e-5)


def test_identical_pairs_are_counted_and_skipped(tiny):
    policy, reference, tok = tiny
    pairs = few_pairs(8)
    pairs += [dict(pairs[0], rejected=pairs[0]["chosen"]), dict(pairs[1], rejected=" " + pairs[1]["chosen"] + " ")]
    res = dpo.dpo_train(policy, reference, tok, pairs, dpo.DPOConfig(steps=1, batch_size=4), log=None)
    assert res.identical_skipped == 2 and res.pairs_used + res.too_long_skipped == 8


def test_dpo_raises_the_chosen_margin(tiny):
    import copy
    policy, reference, tok = tiny
    pairs = few_pairs(8)
    res = dpo.dpo_train(copy.deepcopy(policy), reference, tok, pairs,
                        dpo.DPOConfig(steps=8, batch_size=8, lr=1e-2, beta=0.5), log=None)
    rendered, _ = dpo.render_pairs(tok, pairs, 200)
    pc, pr = dpo.reference_logprobs(res.model, rendered)
    rc, rr = dpo.reference_logprobs(reference, rendered)
    assert ((pc - rc) - (pr - rr)).mean() > 0.2


def test_transfer_check_fits_its_batch_and_reports_the_held_out_loss(tiny):
    policy, reference, tok = tiny
    rows = dpo.transfer_check(policy, reference, tok, few_pairs(12), dpo.DPOConfig(lr=1e-2, beta=0.5),
                              steps=6, n_train=6, every=3)
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert rows[0]["train"] == pytest.approx(math.log(2), abs=1e-5) == rows[0]["heldout"]   # policy == reference
    assert rows[-1]["train"] < rows[0]["train"] - 0.05        # the batch it trains on is fitted
    with pytest.raises(MiniLLMError, match="usable pairs"):
        dpo.transfer_check(policy, reference, tok, few_pairs(4), dpo.DPOConfig(), n_train=64)


@pytest.mark.parametrize("change, message", [
    (dict(beta=0.0), "beta must be positive"), (dict(loss="kto"), "unknown DPO loss")])
def test_dpo_train_bad_config(tiny, change, message):
    policy, reference, tok = tiny
    with pytest.raises(MiniLLMError, match=message):
        dpo.dpo_train(policy, reference, tok, few_pairs(4), dpo.DPOConfig(steps=1, batch_size=2, **change), log=None)


def test_dpo_train_bad_input(tiny):
    from minillm.model import GPT, GPTConfig
    policy, reference, tok = tiny
    other = GPT(GPTConfig(vocab_size=tok.vocab_size + 1, block_size=200, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(MiniLLMError, match="the reference has a vocabulary of"):
        dpo.dpo_train(policy, other, tok, few_pairs(4), dpo.DPOConfig(steps=1, batch_size=2), log=None)
    bad = [dict(few_pairs(1)[0], chosen="")]
    with pytest.raises(MiniLLMError, match="empty"):
        dpo.dpo_train(policy, reference, tok, bad + few_pairs(4), dpo.DPOConfig(steps=1, batch_size=2), log=None)


@pytest.mark.slow  # ~1-2 min on a shared 2-core machine (loads the shipped model, writes run folders)
def test_dpo_command_trains_and_resumes(tmp_path, capsys):
    import argparse

    from minillm.checkpoint import load_run
    from minillm.commands import dpo as cmd
    torch.set_default_dtype(torch.float32)
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    out = str(tmp_path / "dpo")
    flags = ["--out", out, "--pairs", "16", "--batch-size", "4"]
    assert cmd.run(parser.parse_args(flags + ["--steps", "2"])) == 0
    assert cmd.run(parser.parse_args(flags + ["--steps", "3", "--resume"])) == 0
    run = load_run(out)                               # `minillm chat --checkpoint runs/dpo` loads this
    assert run.tokenizer is not None and run.model.config.vocab_size == run.tokenizer.vocab_size
    assert "steps 2->3" in capsys.readouterr().out
