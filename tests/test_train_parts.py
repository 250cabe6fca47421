"""Direct tests of the training loop's named pieces (lm, trainlog) and the data pipeline's
model-based filters (datapipe.modelfilter); the loop's behaviour is tested in test_train.py."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minillm import lm, trainlog
from minillm.datapipe import modelfilter
from minillm.model import GPT, GPTConfig


def tiny():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()


def test_lm_loss_is_next_token_cross_entropy():
    model = tiny()
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(2))
    logits, _ = model(x)
    expected = F.cross_entropy(logits.reshape(-1, 32), y.reshape(-1))
    torch.testing.assert_close(lm.lm_loss(model, (x, y)), expected)


def test_estimate_loss_of_a_uniform_model_is_log_v():
    model = tiny()
    with torch.no_grad():                       # zero head: every logit 0, the loss is log V exactly
        model.lm_head.weight.zero_()
    tokens = np.arange(200) % 32
    loss = lm.estimate_loss(model, tokens, block_size=8, batch_size=4, n_batches=3, device=torch.device("cpu"))
    assert loss == pytest.approx(math.log(32), rel=1e-6)


def test_format_record_and_plot_history():
    rec = dict(step=10, train_loss=4.11719, lr=2.57e-3, tokens_per_s=41774.2, val_loss=3.5, val_bpb=1.25)
    assert trainlog.format_record(rec, 0.169) == ("step    10 | loss 4.1172 | lr 2.57e-03 | 41,774 tok/s | "
                                                   "val 3.5000 (1.2500 bits/byte, floor 0.1690)")
    history = [dict(step=s, train_loss=4 - s / 10, lr=1e-3) for s in (10, 20)] + \
        [dict(step=30, train_loss=1.0, lr=1e-3, val_loss=1.2, val_bpb=0.5)]
    fig = trainlog.plot_history(history, 0.169)
    ax = fig.axes[0]
    assert [list(line.get_xdata()) for line in ax.get_lines()][:2] == [[10, 20, 30], [30]]
    assert ax.get_xlabel() == "step" and len(fig.axes) == 2


def test_hashed_logistic_regression_separates_two_kinds_of_text():
    good = [f"the fox found {n} red stones near the river" for n in ("two", "three", "four", "five")] * 5
    bad = [f"buy cheap {w} now click here best price {w}" for w in ("pills", "shoes", "loans", "bags")] * 5
    clf = modelfilter.HashedLogReg(dim=1 << 10)
    clf.fit(good + bad, [1] * len(good) + [0] * len(bad))
    p = clf.predict_proba(["the owl found six red stones near the river", "click here for cheap loans now"])
    assert p[0] > 0.5 > p[1]


def test_ngram_lm_finds_reference_like_text_less_perplexing():
    ref = ["once upon a time there was a kind fox who lived near the river"] * 20
    model = modelfilter.NgramLM(ref)
    assert model.perplexity("once upon a time there was a kind fox") < model.perplexity("zq xv kk jj pp ww qq")


def test_the_progress_bar_shows_tokens_per_second_or_the_live_reward():
    from minillm.trainlog import Progress

    class Bar:
        postfix, n = None, 0

        def set_postfix_str(self, text, refresh=False):
            self.postfix = text

        def update(self, k):
            self.n += k
    p = Progress(0, 3, False, print)
    p.bar = Bar()
    p.step(None, dict(reward=0.25, train_loss=1.0))       # an RL step: no token count, a reward
    assert p.bar.postfix == "reward 0.250"
    p.step(1234.0, None)
    assert p.bar.postfix == "1,234 tok/s" and p.bar.n == 2
