"""Supervised fine-tuning (SFT): a chat format, the loss on the answer only, packing (lesson 08).

What it builds, in the order of the lesson:
- `ChatTemplate` (data, not string code): the special tokens of the turns, and
  `render_chat` -> token ids + a loss mask that is 1 on the assistant's tokens only;
  `add_chat_tokens` appends the tokens to a trained tokenizer and grows the model's
  embedding (new rows start at the mean row);
- masked losses, the small public pieces later lessons reuse: `token_logprobs`,
  `entropy`, `masked_sum`, `masked_mean` (with a normaliser), `sft_loss_sum` (one
  micro-batch: a SUM of answer-token NLLs, so uneven micro-batches weigh right when
  divided by the batch's total count);
- packing: several examples per row, positions that restart per example and a
  block-diagonal causal mask (`packing_mask`), so the packed loss equals the sum of
  the unpacked ones.

Instruction data, SFT training and the exact-match evaluation that use these pieces
are in `minillm/instruct.py`; classification fine-tuning in `minillm/classify.py`.

Left out: multi-turn data, system prompts in the data (the template has the token),
chat-template Jinja strings (Hugging Face's format), NEFTune noise.
Follows: Radford et al. 2018 (GPT-1: fine-tune the whole LM), Ouyang et al. 2022
(SFT on prompt -> completion, loss on the completion), Taori et al. 2023 (Alpaca:
synthetic instruction data from templates/seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.model import resize_token_embeddings
from minillm.utils import MiniLLMError

IGNORE = -100  # label of a position that carries no loss (PyTorch's ignore_index)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 for a softmax (bf16/fp16 logits lose the small probabilities); float64 stays."""
    return x if x.dtype == torch.float64 else x.float()


# ---------------------------------------------------------------------------------
# The chat template and the loss mask
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatTemplate:
    """How a conversation becomes tokens: `<role> content <end>` per turn.

    >>> ChatTemplate().tokens()
    ['<|system|>', '<|user|>', '<|assistant|>', '<|end|>']
    """

    system: str = "<|system|>"        # opens a system turn
    user: str = "<|user|>"            # opens a user turn
    assistant: str = "<|assistant|>"  # opens an assistant turn (a prompt ends with it)
    end: str = "<|end|>"              # closes every turn; generation stops at it

    def tokens(self) -> list[str]:
        return [self.system, self.user, self.assistant, self.end]

    def role_token(self, role: str) -> str:
        if role not in ("system", "user", "assistant"):
            raise MiniLLMError(f"a turn's role must be system, user or assistant, got {role!r}")
        return getattr(self, role)


def check_template(tokenizer, template: ChatTemplate) -> dict[str, int]:
    """{token: id} of the template's tokens; a clear error when the tokenizer lacks them."""
    if not template.assistant or not template.end:
        raise MiniLLMError("the chat template has no assistant turn (its assistant/end token is empty)")
    missing = [t for t in template.tokens() if t not in tokenizer.special_tokens]
    if missing:
        raise MiniLLMError(f"the tokenizer lacks the chat tokens {missing}: add them with "
                           "sft.add_chat_tokens(model, tokenizer) (an SFT checkpoint has them)")
    return {t: tokenizer.special_tokens[t] for t in template.tokens()}


def render_chat(conversation: list[dict], tokenizer, template: ChatTemplate = ChatTemplate(),
                train_on_prompt: bool = False, add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """A conversation [{role, content}, ...] -> (ids, loss mask), two lists of equal length.

    Each turn is `<role> content <end>`; content is encoded as plain text, so a
    special-token string typed by a user stays text. The mask is 1 on an assistant
    turn's content and its `<end>` (what the model must learn to write), 0 elsewhere;
    `train_on_prompt` makes it 1 everywhere. `add_generation_prompt` appends an open
    `<assistant>` (mask 0): the prompt to generate the next answer from.

    With ids shown as text: [user "hi", assistant "yo"] ->
    `<|user|> hi <|end|> <|assistant|> yo <|end|>` with mask 0 0 0 0 1 1.
    """
    if not conversation:
        raise MiniLLMError("the conversation is empty: give at least one {role, content} turn")
    special = check_template(tokenizer, template)
    ### BEGIN SOLUTION name=sft.render_chat points=2
    ### HINT: per turn: the role's special id, the content's ids (plain text), the end id; which of them must the model learn to write?
    ids, mask = [], []
    for turn in conversation:
        role, content = turn.get("role"), turn.get("content")
        if not isinstance(content, str):
            raise MiniLLMError(f"a turn needs a text 'content', got {turn!r}")
        body = tokenizer.encode(content, disallowed_special=())  # plain text, never special ids
        learn = 1 if (role == "assistant" or train_on_prompt) else 0
        ids += [special[template.role_token(role)]] + body + [special[template.end]]
        mask += [int(train_on_prompt)] + [learn] * (len(body) + 1)
    if add_generation_prompt:
        ids.append(special[template.assistant])
        mask.append(0)
    return ids, mask
    ### END SOLUTION


def add_chat_tokens(model: nn.Module, tokenizer, template: ChatTemplate = ChatTemplate()):
    """Append the template's tokens to a trained tokenizer and grow the model's embedding.

    Returns (model, tokenizer), both changed in place. New ids come after the current
    vocab (`Tokenizer.add_special_tokens`); their embedding rows start at the mean of
    the old rows (`resize_token_embeddings`): a start the model already reads as "some
    token", not a random direction. Idempotent: tokens it has keep their ids.
    """
    tokenizer.add_special_tokens(template.tokens())
    if tokenizer.vocab_size > model.config.vocab_size:
        model = resize_token_embeddings(model, tokenizer.vocab_size)
    return model, tokenizer


def labels_from_mask(ids: list[int], mask: list[int]) -> tuple[list[int], list[int]]:
    """(inputs, labels) for next-token training: inputs ids[:-1], labels ids[1:] or -100 where mask is 0.

    >>> labels_from_mask([5, 6, 7], [0, 1, 1])
    ([5, 6], [6, 7])
    """
    return ids[:-1], [t if m else IGNORE for t, m in zip(ids[1:], mask[1:])]


# ---------------------------------------------------------------------------------
# Masked losses (the pieces DPO, reward models and RLHF reuse)
# ---------------------------------------------------------------------------------

def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) per position: logits (B, T, V), labels (B, T) -> (B, T), 0.0 where label is -100."""
    keep = labels != IGNORE
    logp = torch.log_softmax(_wide(logits), dim=-1)                         # (B, T, V)
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked * keep


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in nats: (B, T, V) -> (B, T). Uniform over V gives log V."""
    logp = torch.log_softmax(_wide(logits), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of `values` where `mask` is true (0.0 for an empty mask, never NaN)."""
    return (values * mask.to(values.dtype)).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor, normaliser: float | torch.Tensor | None = None) -> torch.Tensor:
    """masked_sum / normaliser (default: the number of true mask entries); 0.0 when it is 0.

    Pass the normaliser of the WHOLE batch when this micro-batch is one of several:
    sum over micro-batches of masked_sum / N_total is the batch mean (uneven counts included).
    """
    n = mask.sum() if normaliser is None else torch.as_tensor(normaliser)
    return masked_sum(values, mask) / n.clamp_min(1).to(values.dtype)


def masked_nll_reference(logits: torch.Tensor, labels: torch.Tensor, normaliser: float | None = None) -> torch.Tensor:
    """Mean NLL (nats) of `labels` under softmax(`logits`), skipping -100, written out.

    logits (B, T, V), labels (B, T). Divided by `normaliser` (default: the number of
    labels that are not -100; 0 of them gives 0.0, not NaN).
    Example: logits all 0 over V = 4, one real label -> log 4 = 1.3863.
    """
    ### BEGIN SOLUTION name=sft.masked_loss points=2
    ### HINT: -log softmax(z)_y = logsumexp(z) - z_y; which positions count, and what do you divide by when none do?
    z = logits.double()
    keep = labels != IGNORE                                      # (B, T)
    top = z.max(dim=-1, keepdim=True).values                     # (B, T, 1) for a stable log-sum-exp
    lse = top.squeeze(-1) + (z - top).exp().sum(-1).log()        # (B, T)
    z_y = z.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    nll = ((lse - z_y) * keep).sum()
    n = keep.sum() if normaliser is None else torch.as_tensor(normaliser)
    return (nll / max(float(n), 1.0)).to(logits.dtype)
    ### END SOLUTION


def sft_count(batch: dict) -> int:
    """Supervised tokens in a micro-batch (`train.fit`'s count_fn)."""
    return int((batch["targets"] != IGNORE).sum())


def sft_loss_sum(model: nn.Module, batch: dict) -> torch.Tensor:
    """One SFT micro-batch: the SUM of answer-token NLLs (fit divides by the batch's total count).

    batch: idx (B, T), targets (B, T) with -100 off the answers, and for packed rows
    attention_mask (B, T, T) and position_ids (B, T). A batch without a supervised
    token gives 0.0 (with a gradient graph), never NaN.
    """
    device = next(model.parameters()).device
    kw = {k: batch[k].to(device) for k in ("attention_mask", "position_ids") if batch.get(k) is not None}
    logits, _ = model(batch["idx"].to(device), **kw)
    return F.cross_entropy(_wide(logits.flatten(0, 1)), batch["targets"].to(device).flatten(),
                           ignore_index=IGNORE, reduction="sum")


def sft_loss_mean(model: nn.Module, batch: dict) -> torch.Tensor:
    """`sft_loss_sum` / the batch's supervised-token count (0.0 for none): the loss of one whole batch."""
    return sft_loss_sum(model, batch) / max(sft_count(batch), 1)


def pad_batch(examples: list[tuple[list[int], list[int]]], pad_id: int = 0) -> dict:
    """[(ids, mask), ...] -> {idx, targets} right-padded to the longest (B, T).

    Right padding needs no attention mask: a causal model never looks at the pads
    that come after a real token, and the pads carry label -100.
    """
    pairs = [labels_from_mask(ids, mask) for ids, mask in examples]
    T = max(len(x) for x, _ in pairs)
    idx = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    targets = torch.full((len(pairs), T), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(pairs):
        idx[i, :len(x)] = torch.tensor(x)
        targets[i, :len(y)] = torch.tensor(y)
    return dict(idx=idx, targets=targets)


# ---------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------

def packing_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) segment ids -> (B, T, T) bool: query i may attend key j.

    True when j <= i (causal) and both positions belong to the same segment (one
    example); padding shares a segment of its own (-1), so no row is all False.
    >>> packing_mask(torch.tensor([[0, 0, 1]]))[0].int().tolist()
    [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    """
    ### BEGIN SOLUTION name=sft.packing_mask points=2
    ### HINT: two conditions per (i, j) pair: a lower-triangular one, and an equality of segment ids broadcast to (B, T, T).
    T = segment_ids.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()  # (T, T)
    same = segment_ids[:, :, None] == segment_ids[:, None, :]                        # (B, T, T)
    return same & causal
    ### END SOLUTION


def pack_examples(lengths: list[int], block_size: int) -> list[list[int]]:
    """First-fit: group example indices into rows of at most block_size tokens.

    >>> pack_examples([3, 2, 2, 1], 4)
    [[0, 3], [1, 2]]
    """
    rows, room = [], []
    for i, n in enumerate(lengths):
        if n > block_size:
            raise MiniLLMError(f"example {i} has {n} tokens, more than the block size {block_size}")
        for r in range(len(rows)):
            if room[r] >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(block_size - n)
    return rows


def pack_batch(examples: list[tuple[list[int], list[int]]], block_size: int, pad_id: int = 0) -> dict:
    """[(ids, mask), ...] -> packed {idx, targets, position_ids, segment_ids, attention_mask}.

    Each example is shifted into (inputs, labels) on its own first, so its last
    token never predicts the next example's first one; positions restart at 0.
    """
    pairs = [labels_from_mask(ids, mask) for ids, mask in examples]
    rows = pack_examples([len(x) for x, _ in pairs], block_size)
    T = max(sum(len(pairs[i][0]) for i in row) for row in rows)
    shape = (len(rows), T)
    idx, targets = torch.full(shape, pad_id), torch.full(shape, IGNORE)
    pos, seg = torch.zeros(shape, dtype=torch.long), torch.full(shape, -1)
    for r, row in enumerate(rows):
        t = 0
        for s, i in enumerate(row):
            x, y = pairs[i]
            idx[r, t:t + len(x)], targets[r, t:t + len(x)] = torch.tensor(x), torch.tensor(y)
            pos[r, t:t + len(x)], seg[r, t:t + len(x)] = torch.arange(len(x)), s
            t += len(x)
    return dict(idx=idx, targets=targets, position_ids=pos, segment_ids=seg, attention_mask=block_causal_mask(rows_lengths(rows, pairs), T))


def rows_lengths(rows: list[list[int]], pairs: list) -> list[list[int]]:
    """The token count of each example in each packed row."""
    return [[len(pairs[i][0]) for i in row] for row in rows]


def block_causal_mask(lengths: list[list[int]], T: int) -> torch.Tensor:
    """The fast twin of `packing_mask`, built from the example lengths of each row:
    one lower triangle per example on the diagonal (`torch.block_diag`), and one for
    the padding at the end. (B, T, T) bool, equal to packing_mask (test)."""
    out = []
    for row in lengths:
        blocks = [torch.ones(n, n, dtype=torch.bool).tril() for n in row + [T - sum(row)] if n > 0]
        out.append(torch.block_diag(*blocks))
    return torch.stack(out)

