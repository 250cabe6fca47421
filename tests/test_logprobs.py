"""Sequence log-probabilities (lesson 10): batched == alone, == a hand sum, the prompt carries no weight."""

import pytest
import torch

from minillm import logprobs as L
from minillm import sft
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import Tokenizer
from minillm.utils import MiniLLMError

TEXT = "Once upon a time there was a cat named Lily. Lily lived near the village. The end.\n" * 5


@pytest.fixture(scope="module")
def tok():
    t = Tokenizer.train(TEXT, 280)
    t.add_special_tokens(sft.ChatTemplate().tokens())
    return t


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32, style="llama"))
    return m.eval()


PROMPTS = ["Where did Lily live?", "Who was Lily?", "A story, please"]
COMPLETIONS = [" near the village", " a cat", " Once upon a time there was a cat. The end."]


class FixedLogits(torch.nn.Module):
    """A 'model' that returns given logits (B, T, V) for any input of T tokens."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, idx, attention_mask=None):
        return self.logits[: idx.size(0), : idx.size(1)], None


@pytest.mark.exercise("logprobs.sequence")
def test_batched_equals_each_row_alone(model, tok, monkeypatch):
    monkeypatch.setattr(L, "completion_logprobs_reference", lambda *a, **k: 1 / 0)  # no delegation
    with torch.no_grad():
        batched = L.sequence_logprobs(model, tok, PROMPTS, COMPLETIONS)
        alone = torch.cat([L.sequence_logprobs(model, tok, [p], [c]) for p, c in zip(PROMPTS, COMPLETIONS)])
        avg = L.sequence_logprobs(model, tok, PROMPTS, COMPLETIONS, average=True, batch_size=2)
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    counts = torch.tensor([sum(m) for _, m in L.render_completions(tok, PROMPTS, COMPLETIONS)], dtype=torch.float)
    torch.testing.assert_close(avg, batched / counts, rtol=0, atol=1e-5)


@pytest.mark.exercise("logprobs.sequence")
def test_equals_a_hand_sum_of_log_softmax(model, tok, monkeypatch):
    b = L.pad_completions(L.render_completions(tok, PROMPTS, COMPLETIONS))
    with torch.no_grad():
        want = L.completion_logprobs_reference(model, b["ids"], b["completion_mask"])
        want_avg = L.completion_logprobs_reference(model, b["ids"], b["completion_mask"], average=True)
        monkeypatch.setattr(L, "completion_logprobs_reference", lambda *a, **k: 1 / 0)
        got = L.completion_logprobs(model, b["ids"], b["completion_mask"], b["attention_mask"])
        got_avg = L.completion_logprobs(model, b["ids"], b["completion_mask"], average=True)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)
    torch.testing.assert_close(got_avg.double(), want_avg, rtol=0, atol=1e-5)


@pytest.mark.exercise("logprobs.sequence")
def test_by_hand_on_fixed_logits():
    """V = 3, T = 4: ids [0, 1, 2, 1], completion = tokens 2 and 3 -> log p(2 | pos 1) + log p(1 | pos 2)."""
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 3)
    m = FixedLogits(logits)
    ids, mask = torch.tensor([[0, 1, 2, 1]]), torch.tensor([[0, 0, 1, 1]])
    lp = torch.log_softmax(logits[0], -1)
    want = lp[1, 2] + lp[2, 1]
    got = L.completion_logprobs(m, ids, mask)
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    assert L.completion_logprobs(m, ids, mask, average=True).item() == pytest.approx(want.item() / 2, abs=1e-6)


@pytest.mark.exercise("logprobs.sequence")
def test_the_prompt_carries_no_weight():
    """Logits at the positions that predict prompt tokens (and pads) get zero gradient."""
    torch.manual_seed(2)
    m = FixedLogits(torch.randn(2, 5, 7))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 0, 0]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    L.completion_logprobs(m, ids, mask).sum().backward()
    g = m.logits.grad.abs().sum(-1)                       # (2, 5): position t predicts token t+1
    assert torch.equal(g[0, :2] == 0, torch.tensor([True, True])) and (g[0, 2:] > 0).all()
    assert (g[1, [0, 3, 4]] == 0).all() and (g[1, 1:3] > 0).all()


@pytest.mark.exercise("logprobs.sequence")
def test_gradients_flow_and_padding_rows_do_not_mix(model, tok):
    lp = L.sequence_logprobs(model, tok, PROMPTS, COMPLETIONS)
    lp[0].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_conversation_prompts_and_end_token_counted(tok):
    r = L.render_completions(tok, [[dict(role="user", content="hi")]], [" a cat"])
    ids, mask = r[0]
    assert ids[-1] == tok.special_tokens["<|end|>"] and mask[-1] == 1
    assert sum(mask) == len(tok.encode(" a cat")) + 1
    assert L.render_completions(tok, ["hi"], [" a cat"]) == r


def test_bad_input(model, tok):
    with pytest.raises(MiniLLMError, match="empty"):
        L.sequence_logprobs(model, tok, ["hi"], ["  "])
    with pytest.raises(MiniLLMError, match="2 prompts but 1"):
        L.sequence_logprobs(model, tok, ["a", "b"], [" c"])
    with pytest.raises(MiniLLMError, match="context"):
        L.sequence_logprobs(model, tok, ["hi " * 80], [" x"])
