"""DPO's loss against TRL's own code (interop extra): the same log-probs give the same loss,
rewards and gradient for each variant. TRL's loss lives inside `DPOTrainer._compute_loss`; we
call it on a stand-in trainer whose "model" returns the per-token log-probs we choose."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from minillm import dpo

trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")


class Accelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, x):
        return x

    gather = gather_for_metrics


def trl_loss(per_token_logps, completion_mask, ref_chosen, ref_rejected, beta, loss_type, label_smoothing=0.0):
    """TRL's loss and metrics for a batch laid out as TRL does: [chosen rows; rejected rows]."""
    n, T = completion_mask.shape

    def model(**kwargs):
        zeros = torch.zeros(n, T - 1)
        return SimpleNamespace(log_probs=per_token_logps, entropy=zeros, mean_logits=zeros,
                               is_top1=torch.zeros(n, T - 1, dtype=torch.bool), aux_loss=0.0)

    model.training = True
    trainer = SimpleNamespace(model=model, accelerator=Accelerator(), aux_loss_enabled=False,
                              precompute_ref_logps=True, ld_alpha=None, f_divergence_type="reverse_kl",
                              loss_types=[loss_type], loss_weights=[1.0], beta=beta,
                              label_smoothing=label_smoothing, use_weighting=False,
                              _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                              _total_train_tokens=0, _tp_size=1)
    inputs = dict(input_ids=torch.zeros(n, T, dtype=torch.long), attention_mask=torch.ones(n, T, dtype=torch.long),
                  completion_mask=completion_mask, ref_chosen_logps=ref_chosen, ref_rejected_logps=ref_rejected)
    loss = trl_dpo.DPOTrainer._compute_loss(trainer, model, inputs, False)
    return loss, trainer._metrics["train"]


@pytest.mark.exercise("dpo.loss")
@pytest.mark.parametrize("loss_type, eps", [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0), ("robust", 0.2)])
def test_same_loss_rewards_and_gradient_as_trl(loss_type, eps):
    g = torch.Generator().manual_seed(0)
    B, T, beta = 3, 7, 0.3
    completion_mask = torch.zeros(2 * B, T, dtype=torch.long)
    for i, start in enumerate([2, 3, 4, 2, 5, 3]):                 # completions of different lengths
        completion_mask[i, start:] = 1
    logps = (torch.randn(2 * B, T - 1, generator=g) - 2) * completion_mask[:, 1:]
    ref_c, ref_r = torch.randn(B, generator=g) - 6, torch.randn(B, generator=g) - 6

    theirs_in = logps.clone().requires_grad_(True)
    theirs, metrics = trl_loss(theirs_in, completion_mask, ref_c, ref_r, beta, loss_type, eps)
    theirs.backward()

    ours_in = logps.clone().requires_grad_(True)
    seq = ours_in.sum(1)                                            # sequence log-probs, as TRL sums
    chosen, rejected = seq[:B], seq[B:]
    lengths = completion_mask.sum(1)
    kwargs = dict(chosen_lengths=lengths[:B], rejected_lengths=lengths[B:]) if loss_type == "ipo" else {}
    ours, stats = dpo.dpo_loss(chosen, rejected, ref_c, ref_r, beta=beta, loss=loss_type, label_smoothing=eps,
                               **kwargs)
    ours.backward()

    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=1e-6, rtol=1e-6)
    if loss_type != "ipo":   # TRL logs summed-log-prob rewards; our IPO reports per-token ones
        assert stats["chosen_reward"].mean().item() == pytest.approx(metrics["rewards/chosen"][0], rel=1e-5)
        assert stats["reward_accuracy"].mean().item() == pytest.approx(metrics["rewards/accuracies"][0])

