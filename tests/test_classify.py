"""Tests of classification fine-tuning (minillm/classify.py): the label, the last-real-token head,
probe vs full fine-tuning, ULMFiT's options, the LSTM baseline, the data-efficiency bookkeeping."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from minillm import classify, world
from minillm.classify import Classifier, FinetuneConfig, LSTMLM
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import Tokenizer
from minillm.utils import MiniLLMError


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(world.load_split("val")[:20000], 300)


def gpt(style="llama", vocab=300, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=512, n_layer=2, n_head=2, n_embd=16, style=style))


def test_label_needs_the_first_and_the_last_count():
    s = world.load_jsonl("qa_train")[0]["story"]  # Pablo had nine ... found one more ... had ten
    assert "had nine" in s and "Now Pablo had ten" in s and classify.story_label(s) == 1
    labels = [y for _, y in classify.labelled("val", 200)]
    assert 0.3 < sum(labels) / len(labels) < 0.5  # "more" is the minority: a majority guess gets ~0.6


@pytest.mark.parametrize("body", ["llama", "gpt2", "lstm"])
def test_prediction_does_not_depend_on_padding(body, tok):
    torch.manual_seed(0)
    clf = Classifier(LSTMLM(300) if body == "lstm" else gpt(body)).eval()
    ids = tok.encode(world.load_split("val").splitlines()[0])
    rows = [ids + [0] * pad for pad in (0, 3, 17)]
    T = max(map(len, rows))
    idx = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    logits = clf(idx, torch.tensor([len(ids)] * 3))
    assert logits.shape == (3, 2)
    torch.testing.assert_close(logits, logits[:1].expand(3, -1), rtol=0, atol=1e-5)
    alone = clf(torch.tensor([ids]), torch.tensor([len(ids)]))
    torch.testing.assert_close(logits[:1], alone, rtol=0, atol=1e-5)


def test_hidden_states_are_what_the_lm_head_reads():
    model = gpt().eval()
    idx = torch.randint(0, 300, (2, 9))
    h = Classifier(model).features(idx, torch.tensor([9, 9]))[:, None]  # the last token's state
    full = model.hidden_states(idx)
    torch.testing.assert_close(h[:, 0], full[:, -1], rtol=0, atol=0)
    h = full
    logits, _ = model(idx)
    assert h.shape == (2, 9, 16)
    torch.testing.assert_close(model.lm_head(h), logits, rtol=1e-5, atol=1e-5)


def _changed(a: torch.nn.Module, b: torch.nn.Module) -> list[bool]:
    return [not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())]


def test_probe_freezes_the_body_and_full_finetuning_moves_it(tok):
    data = classify.labelled("train", 8)
    body = gpt()
    probe = classify.finetune(Classifier(copy.deepcopy(body)), tok, data, FinetuneConfig(steps=3, mode="probe"))
    assert not any(_changed(probe.body, body))
    full = classify.finetune(Classifier(copy.deepcopy(body)), tok, data, FinetuneConfig(steps=3))
    assert any(_changed(full.body, body))
    assert all(p.requires_grad for p in full.parameters())  # unfrozen again afterwards


def test_gradual_unfreezing_trains_only_the_top_layer_first(tok):
    data = classify.labelled("train", 8)
    body = gpt()
    clf = classify.finetune(Classifier(copy.deepcopy(body)), tok, data,
                            FinetuneConfig(steps=3, unfreeze_every=100, lr_decay=2.6))
    groups_new, groups_old = classify.layer_groups(clf.body), classify.layer_groups(body)
    moved = [any(not torch.equal(p, q) for p, q in zip(g, h)) for g, h in zip(groups_new, groups_old)]
    assert moved == [False, False, True]  # embeddings, block 0 frozen; block 1 (+ final norm) trains


def test_lstm_pretraining_lowers_the_loss():
    ids = torch.tensor(Tokenizer.train("ab" * 200, 258).encode("ab" * 400))
    model = classify.pretrain_lstm(ids, 258, steps=60, batch_size=4, block_size=16)
    _, loss = model(ids[None, :32], ids[None, 1:33])
    assert float(loss.detach()) < 0.3 * math.log(258)


def test_data_efficiency_rows_summary_and_plot(tok):
    bodies = {"random": lambda: gpt(seed=1), "lstm": lambda: LSTMLM(300)}
    rows = classify.data_efficiency(bodies, tok, counts=(4, 8), seeds=(0, 1), test_n=10, cfg=FinetuneConfig(steps=2))
    assert len(rows) == 8 and {r["body"] for r in rows} == {"random", "lstm"}
    s = classify.summarise(rows)
    acc = [r["accuracy"] for r in rows if r["body"] == "lstm" and r["n"] == 4]
    assert s["lstm", 4][0] == pytest.approx(sum(acc) / 2)
    assert s["lstm", 4][1] == pytest.approx(abs(acc[0] - acc[1]) / 2)  # stdev/sqrt(2) of two values
    fig = classify.plot_data_efficiency(rows, majority=0.6)
    assert fig.axes[0].get_xlabel() == "labelled training stories"


def test_bad_input(tok):
    with pytest.raises(MiniLLMError, match="mode"):
        classify.finetune(Classifier(gpt()), tok, classify.labelled("train", 2), FinetuneConfig(mode="lora"))
    with pytest.raises(MiniLLMError, match="no labelled"):
        classify.finetune(Classifier(gpt()), tok, [])
    with pytest.raises(MiniLLMError, match="only"):
        classify.labelled("val", 5, offset=999)
