"""Tests of the batch-facing model API (lesson 03): masks and positions in forward,
hidden_states, generate_batch, resize_token_embeddings.

Every test is an identity: a left-padded batch == each row alone, a packed row ==
its examples apart, batched generation == one-by-one. Tolerance: float64 models,
atol 1e-10 on logits (rounding only: the masked keys contribute exactly 0).
"""

import pytest
import torch

from minillm import MiniLLMError
from minillm.generation import generate_batch, left_pad
from minillm.model import GPT, GPTConfig, resize_token_embeddings

TINY = dict(vocab_size=37, block_size=32, n_layer=2, n_head=4, n_embd=32)
STYLES = [("gpt2", {}), ("llama", {}), ("llama", {"n_kv_head": 2})]
TOL = dict(atol=1e-10, rtol=0)


def model_of(style, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GPTConfig.llama_style(**{**TINY, **kw}) if style == "llama" else GPTConfig(**{**TINY, **kw})
    return GPT(cfg).double().eval()


def rows_of(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 37, (n,), generator=g).tolist() for n in lengths]


# --- forward with attention_mask and position_ids ----------------------------------------

@pytest.mark.parametrize("style,kw", STYLES)
def test_left_padded_batch_equals_each_row_alone(style, kw):
    model = model_of(style, **kw)
    rows = rows_of([9, 4, 1, 7])
    ids, mask, pos = left_pad(rows, pad_id=5, device="cpu")
    with torch.no_grad():
        batched, _ = model(ids, attention_mask=mask, position_ids=pos)
        for i, r in enumerate(rows):
            alone, _ = model(torch.tensor([r]))
            torch.testing.assert_close(batched[i, -len(r):], alone[0], **TOL)


@pytest.mark.parametrize("style,kw", STYLES)
def test_pad_value_does_not_matter(style, kw):
    model = model_of(style, **kw)
    rows = rows_of([6, 2])
    ids, mask, pos = left_pad(rows, 0, "cpu")
    a = model(ids, attention_mask=mask, position_ids=pos)[0]
    ids, mask, pos = left_pad(rows, 36, "cpu")
    b = model(ids, attention_mask=mask, position_ids=pos)[0]
    torch.testing.assert_close(a[mask.bool()], b[mask.bool()], **TOL)
    assert torch.isfinite(b).all()  # padding queries see themselves: no empty softmax, no NaN


@pytest.mark.parametrize("style,kw", STYLES)
def test_packed_block_diagonal_row_equals_separate_sequences(style, kw):
    model = model_of(style, **kw)
    parts = rows_of([5, 8, 3])
    packed = torch.tensor([sum(parts, [])])  # (1, 16)
    seg = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])  # (16,) example of each token
    block = (seg[:, None] == seg[None, :])[None]  # (1, 16, 16) "same example"
    pos = torch.cat([torch.arange(len(p)) for p in parts])[None]  # restarts at each example
    targets = torch.tensor([sum((p[1:] + [-100] for p in parts), [])])  # no target across a boundary
    with torch.no_grad():
        logits, loss = model(packed, targets, attention_mask=block, position_ids=pos)
        start, total, n = 0, 0.0, 0
        for p in parts:
            alone, l_alone = model(torch.tensor([p]), torch.tensor([p[1:] + [-100]]))
            torch.testing.assert_close(logits[0, start:start + len(p)], alone[0], **TOL)
            total, n, start = total + l_alone * (len(p) - 1), n + len(p) - 1, start + len(p)
    torch.testing.assert_close(loss, total / n, **TOL)  # packed mean loss == token-weighted unpacked


def test_padding_mask_with_kv_cache_equals_full_forward():
    model = model_of("llama", n_kv_head=2)
    rows = rows_of([7, 3])
    ids, mask, pos = left_pad(rows, 0, "cpu")
    with torch.no_grad():
        full, _ = model(ids, attention_mask=mask, position_ids=pos)
        cache = model.new_cache(2)
        first, _ = model(ids[:, :4], attention_mask=mask[:, :4], position_ids=pos[:, :4], cache=cache)
        rest, _ = model(ids[:, 4:], attention_mask=mask, position_ids=pos[:, 4:], cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1)[mask.bool()], full[mask.bool()], **TOL)


def test_hidden_states_are_what_the_head_reads():
    for style, kw in STYLES:
        model = model_of(style, **kw)
        idx = torch.randint(0, 37, (2, 11))
        with torch.no_grad():
            h = model.hidden_states(idx)
            assert h.shape == (2, 11, 32)
            torch.testing.assert_close(model.lm_head(h), model(idx)[0], atol=0, rtol=0)


def test_bad_masks_and_positions_are_one_line_errors():
    model = model_of("gpt2")
    idx = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(MiniLLMError, match="attention_mask"):
        model(idx, attention_mask=torch.ones(2, 4))
    with pytest.raises(MiniLLMError, match="attention_mask"):
        model(idx, attention_mask=torch.ones(2, 5, 5))  # a (B, T, T) mask must be boolean
    with pytest.raises(MiniLLMError, match="position_ids"):
        model(idx, position_ids=torch.zeros(2, 5))  # floats
    with pytest.raises(MiniLLMError, match="position_ids"):
        model(idx, position_ids=torch.full((2, 5), 32))  # past block_size


@pytest.mark.parametrize("bad", [torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 2.0]]),
                                 torch.tensor([[float("nan"), 2.0]]), torch.tensor([[float("inf"), 2.0]])])
def test_float_token_ids_are_refused_not_truncated(bad):
    with pytest.raises(MiniLLMError, match="integer"):
        model_of("gpt2")(bad)


# --- generate_batch -----------------------------------------------------------------------

LENGTHS = [3, 11, 1, 6]


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("style,kw", STYLES)
def test_generate_batch_greedy_equals_one_by_one(style, kw, use_cache):
    model = model_of(style, **kw)
    prompts = rows_of(LENGTHS)
    # 30 new tokens: the 11-token row runs past block_size=32 (the window slides), the others later
    batched = generate_batch(model, prompts, 30, temperature=0, use_cache=use_cache)
    for p, out in zip(prompts, batched):
        alone = generate_batch(model, [p], 30, temperature=0, use_cache=use_cache)[0]
        assert out == alone
        legacy = model.generate(torch.tensor([p]), 30, temperature=0, use_cache=not use_cache)
        assert legacy[0, len(p):].tolist() == out  # the other cache setting, through GPT.generate


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("style,kw", STYLES[:2])
def test_generate_batch_seeded_sampling_equals_one_by_one(style, kw, use_cache):
    model = model_of(style, **kw)
    prompts = rows_of(LENGTHS, seed=2)
    kwargs = dict(temperature=1.0, top_k=12, top_p=0.95, use_cache=use_cache)
    batched = generate_batch(model, prompts, 25, seed=40, **kwargs)
    for i, (p, out) in enumerate(zip(prompts, batched)):
        assert out == generate_batch(model, [p], 25, seed=40 + i, **kwargs)[0]
    assert batched == generate_batch(model, prompts, 25, seed=40, **kwargs)  # repeatable
    assert batched != generate_batch(model, prompts, 25, seed=41, **kwargs)


def test_generate_batch_cuts_each_row_before_its_first_stop_id():
    model = model_of("gpt2")
    prompts = rows_of([2, 5])
    free = generate_batch(model, prompts, 20, seed=3)
    stop = free[0][4]
    cut = generate_batch(model, prompts, 20, seed=3, stop_ids=[stop])
    for f, c in zip(free, cut):
        assert c == (f[:f.index(stop)] if stop in f else f)
    assert generate_batch(model, prompts, 0) == [[], []]


@pytest.mark.parametrize("prompts,match", [
    ([[]], "empty"),
    ([[1, 2.5]], "integers"),
    ([[1, float("nan")]], "integers"),
    ([[True, 1]], "integers"),
    ([[1, 37]], "outside"),
    ([], "no prompts"),
])
def test_generate_batch_bad_prompts_are_one_line_errors(prompts, match):
    with pytest.raises(MiniLLMError, match=match):
        generate_batch(model_of("gpt2"), prompts, 3)


def test_generate_batch_bad_options_are_errors():
    model = model_of("gpt2")
    for kw, match in [({"pad_id": 99}, "pad_id"), ({"temperature": -1.0}, "temperature"),
                      ({"temperature": float("nan")}, "temperature"), ({"top_p": 0.0}, "top_p")]:
        with pytest.raises(MiniLLMError, match=match):
            generate_batch(model, [[1]], 3, **kw)
    with pytest.raises(MiniLLMError, match="max_new_tokens"):
        generate_batch(model, [[1]], -1)


def test_generate_batch_restores_training_mode():
    model = model_of("gpt2", dropout=0.1).train()
    generate_batch(model, [[1, 2]], 2)
    assert model.training


# --- resize_token_embeddings ----------------------------------------------------------------

@pytest.mark.parametrize("style,tie", [("gpt2", True), ("llama", False)])
def test_resize_token_embeddings_appends_mean_rows(style, tie):
    model = model_of(style, tie_embeddings=tie)
    old_wte = model.transformer.wte.weight.detach().clone()
    old_head = model.lm_head.weight.detach().clone()
    idx = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        before = model(idx)[0]
    assert resize_token_embeddings(model, 40) is model
    wte, head = model.transformer.wte.weight, model.lm_head.weight
    assert model.config.vocab_size == 40 and wte.shape == (40, 32) and head.shape == (40, 32)
    assert torch.equal(wte[:37], old_wte) and torch.equal(head[:37], old_head)
    torch.testing.assert_close(wte[37:], old_wte.mean(0).expand(3, -1), atol=0, rtol=0)
    torch.testing.assert_close(head[37:], old_head.mean(0).expand(3, -1), atol=0, rtol=0)
    assert (head is wte) == tie  # a tied head stays tied
    with torch.no_grad():
        after = model(idx)[0]
        model(torch.tensor([[39, 38]]))  # the new ids are valid input
    torch.testing.assert_close(after[..., :37], before, **TOL)  # old tokens' logits are unchanged
    # the resized model is an ordinary GPT of the new config: its state dict loads into one
    GPT(model.config).double().load_state_dict(model.state_dict())
    assert wte.requires_grad


def test_resize_token_embeddings_refuses_a_bad_size():
    with pytest.raises(MiniLLMError, match="new_vocab_size"):
        resize_token_embeddings(model_of("gpt2"), 0)


def test_generate_batch_with_a_prompt_longer_than_the_context():
    model = model_of("llama", n_kv_head=2)
    prompts = rows_of([40, 5])  # 40 > block_size 32: that row starts with its last 32 tokens
    cached = generate_batch(model, prompts, 6, temperature=0)
    assert cached == generate_batch(model, prompts, 6, temperature=0, use_cache=False)
    assert cached[0] == generate_batch(model, [prompts[0][-32:]], 6, temperature=0, use_cache=False)[0]
