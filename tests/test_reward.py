"""The Bradley-Terry reward model (lesson 10): the loss and its gradient, padding, training, evaluation."""

import math

import pytest
import torch
import torch.nn.functional as F

from minillm import preferences as prefs
from minillm import reward
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import Tokenizer
from minillm.utils import MiniLLMError


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.load("data/checkpoints/sft/tokenizer.json")


@pytest.fixture(scope="module")
def body(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=200, n_layer=1, n_head=2, n_embd=16, style="llama"))


def no_delegation(monkeypatch):
    monkeypatch.setattr(F, "binary_cross_entropy_with_logits", lambda *a, **k: 1 / 0)
    from minillm import dpo
    monkeypatch.setattr(dpo, "dpo_loss", lambda *a, **k: 1 / 0)


@pytest.mark.exercise("reward.bt_loss")
def test_bt_loss_by_hand(monkeypatch):
    no_delegation(monkeypatch)
    rc, rr = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.0, 0.0, 1.0])
    want = sum(-math.log(1 / (1 + math.exp(-d))) for d in (1.0, 0.0, -3.0)) / 3
    assert reward.bt_loss(rc, rr).item() == pytest.approx(want, rel=1e-6)
    assert reward.bt_loss(rc, rr, margin=0.5).item() == pytest.approx(
        sum(-math.log(1 / (1 + math.exp(-d))) for d in (0.5, -0.5, -3.5)) / 3, rel=1e-6)
    assert reward.bt_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(math.log(2), rel=1e-7)
    big = reward.bt_loss(torch.tensor([200.0]), torch.tensor([0.0]))    # no overflow either way
    assert big.item() == pytest.approx(0.0, abs=1e-30)
    assert reward.bt_loss(torch.tensor([-200.0]), torch.tensor([0.0])).item() == pytest.approx(200.0)


@pytest.mark.exercise("reward.bt_loss")
def test_bt_loss_gradient_against_finite_differences(monkeypatch):
    no_delegation(monkeypatch)
    torch.manual_seed(0)
    rc = torch.randn(5, dtype=torch.float64, requires_grad=True)
    rr = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reward.bt_loss(a, b, margin=0.3), (rc, rr), eps=1e-6, atol=1e-8)
    reward.bt_loss(rc, rr).backward()
    d = (rc - rr).detach()
    torch.testing.assert_close(rc.grad, -torch.sigmoid(-d) / 5)     # d/dr_c = -sigma(-(r_c - r_r)) / B
    torch.testing.assert_close(rr.grad, torch.sigmoid(-d) / 5)


def pairs(n, split="t", labeler=prefs.HUMAN):
    return prefs.preference_pairs(n, seed=0, split=split, labeler=labeler)


def test_reward_reads_the_last_real_token_padding_independent(body, tok):
    rm = reward.RewardModel(body).eval()
    torch.nn.init.normal_(rm.head.weight)
    rendered, _ = reward.render_pairs(tok, pairs(4), 200)
    with torch.no_grad():
        together = reward.pair_rewards(rm, reward.pair_batch(rendered))
        alone = [reward.pair_rewards(rm, reward.pair_batch([r])) for r in rendered]
    torch.testing.assert_close(together[0], torch.cat([a[0] for a in alone]), rtol=0, atol=1e-5)
    torch.testing.assert_close(together[1], torch.cat([a[1] for a in alone]), rtol=0, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_a_fresh_head_gives_zero_reward(body, tok):
    rm = reward.RewardModel(body)
    rendered, _ = reward.render_pairs(tok, pairs(2), 200)
    rc, rr = reward.pair_rewards(rm, reward.pair_batch(rendered))
    assert torch.equal(rc, torch.zeros(2)) and torch.equal(rr, torch.zeros(2))


def test_training_lowers_the_loss_and_evaluation_reports(body, tok, tmp_path, monkeypatch):
    monkeypatch.setattr(reward, "bt_loss", lambda rc, rr, margin=0.0: -F.logsigmoid(rc - rr - margin).mean())  # not the exercise
    train = pairs(24)
    cfg = reward.RMConfig(steps=25, batch_size=8, lr=1e-2)
    rm, info = reward.train_reward_model(body, tok, train, cfg, log=None)
    rc, rr, _ = reward.score_pairs(rm, tok, train)
    assert -F.logsigmoid(rc - rr).mean().item() < 0.9 * math.log(2)      # it fits its training pairs
    ev = reward.evaluate_reward_model(rm, tok, pairs(20, split="v"))
    assert 0 <= ev["accuracy"] <= 1 and 0.5 <= ev["bayes_accuracy"] <= 1
    assert sum(r["n"] for r in ev["reliability"]) == ev["n"]
    reward.save_reward_model(tmp_path, rm, tok)
    back = reward.load_reward_model(tmp_path)
    rendered, _ = reward.render_pairs(tok, pairs(3), 200)
    with torch.no_grad():
        torch.testing.assert_close(reward.pair_rewards(back, reward.pair_batch(rendered)),
                                   reward.pair_rewards(rm, reward.pair_batch(rendered)))


def test_reliability_bins():
    rows = reward.reliability([0.05, 0.07, 0.95, 1.0], [0.0, 0.2, 1.0, 0.9], bins=10)
    assert [r["n"] for r in rows] == [2, 2]
    assert rows[0]["predicted"] == pytest.approx(0.06) and rows[0]["oracle"] == pytest.approx(0.1)


def test_bad_input(tmp_path, body, tok):
    with pytest.raises(MiniLLMError, match="no reward model"):
        reward.load_reward_model(tmp_path)
    with pytest.raises(MiniLLMError, match="a batch needs"):
        reward.pair_batches([], 4)


@pytest.mark.slow  # ~1-2 min on a shared 2-core machine (loads the shipped model, writes run folders)
def test_rm_command_trains_and_evaluates(tmp_path, capsys):
    import argparse

    from minillm.commands import rm as cmd
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    out = str(tmp_path / "rm")
    assert cmd.run(parser.parse_args(["train", "--out", out, "--steps", "2", "--pairs", "20", "--batch-size", "4"])) == 0
    assert cmd.run(parser.parse_args(["eval", "--out", out, "--eval-pairs", "12"])) == 0
    text = capsys.readouterr().out
    assert "vs Bayes-optimal" in text and (tmp_path / "rm" / "reliability.png").exists()


def test_rows_of_exactly_the_context_plus_one_are_left_out(tok):
    """A language model reads ids[:-1]; a reward model reads every token, so it needs len(ids) <= block_size."""
    pairs_ = pairs(40)
    rendered, _ = reward.render_pairs(tok, pairs_, 10_000)
    longest = max(max(len(c[0]), len(r[0])) for c, r in rendered)
    small = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=longest - 1, n_layer=1, n_head=2, n_embd=16))
    rc, rr, keep = reward.score_pairs(reward.RewardModel(small), tok, pairs_)   # no context error
    assert len(keep) < len(pairs_) and rc.shape == (len(keep),)
