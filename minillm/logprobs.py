"""THE sequence log-probability: log p(completion | prompt) under a model (lessons 10-12).

DPO (lesson 10), the reward model's evaluation, RLHF (lesson 11) and the arena (lesson
12) all need one number per (prompt, completion): the SUM of the completion tokens'
log-probs given everything before them,

    log p(y | x) = sum over completion tokens t of log p(y_t | x, y_<t),

with the prompt's tokens carrying no weight. What it builds:
- `render_completions`: (prompt, completion) pairs through the chat template
  (`sft.render_chat`): the user's turn, then the assistant's completion and its `<end>`
  (the end token counts: it is the model's choice to stop);
- `pad_completions`: right padding -> {ids, completion_mask, attention_mask};
- `completion_logprobs(model, ids, completion_mask, attention_mask)` on tensors, built on
  `sft.token_logprobs` (the one per-token log-prob), and its written-out twin
  `completion_logprobs_reference` (row by row, log-softmax by hand): equal (test);
- `sequence_logprobs(model, tokenizer, prompts, completions, ...)`: the whole path, in
  batches; `average=True` divides by the completion's token count (per-token mean).
Right padding needs no attention mask in a causal model (a real token never looks at
the pads after it), so padding changes nothing: each row scored alone gives the same
number (test).

Left out: left padding (generation's), packed rows, multi-turn completions.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from minillm.sft import IGNORE, ChatTemplate, render_chat, token_logprobs
from minillm.utils import MiniLLMError


def conversation_of(prompt: str | list[dict]) -> list[dict]:
    """A prompt as a chat: a string is one user turn; a list of turns is used as given."""
    if isinstance(prompt, str):
        return [dict(role="user", content=prompt)]
    return list(prompt)


def render_completions(tokenizer, prompts: list, completions: list[str],
                       template: ChatTemplate = ChatTemplate()) -> list[tuple[list[int], list[int]]]:
    """[(ids, completion mask), ...]: each prompt's chat plus its completion as the assistant turn.

    The mask is 1 on the completion's tokens and its end token. An empty completion has
    no tokens to score: a clear error.
    """
    if len(prompts) != len(completions):
        raise MiniLLMError(f"{len(prompts)} prompts but {len(completions)} completions")
    out = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        if not isinstance(c, str) or not c.strip():
            raise MiniLLMError(f"completion {i} is empty: there is nothing to score")
        out.append(render_chat(conversation_of(p) + [dict(role="assistant", content=c)], tokenizer, template))
    return out


def pad_completions(rendered: list[tuple[list[int], list[int]]], pad_id: int = 0,
                    block_size: int | None = None) -> dict:
    """[(ids, mask), ...] -> {ids, completion_mask, attention_mask}, each (B, T), right-padded.

    block_size: the model's context; a row longer than it is refused (say which).
    """
    if not rendered:
        raise MiniLLMError("no completions to score")
    if block_size is not None:
        for i, (ids, _) in enumerate(rendered):
            if len(ids) - 1 > block_size:   # the last token is only a label
                raise MiniLLMError(f"row {i} has {len(ids)} tokens, more than the context of "
                                   f"{block_size} + 1: shorten it or filter with `fits`")
    T = max(len(ids) for ids, _ in rendered)
    B = len(rendered)
    ids_t = torch.full((B, T), pad_id, dtype=torch.long)
    comp, att = torch.zeros(B, T, dtype=torch.long), torch.zeros(B, T, dtype=torch.long)
    for i, (ids, mask) in enumerate(rendered):
        ids_t[i, :len(ids)] = torch.tensor(ids)
        comp[i, :len(ids)] = torch.tensor(mask)
        att[i, :len(ids)] = 1
    return dict(ids=ids_t, completion_mask=comp, attention_mask=att)


def fits(rendered: list[tuple[list[int], list[int]]], block_size: int) -> list[bool]:
    """Which rendered rows fit a model with context `block_size` (inputs are ids[:-1])."""
    return [len(ids) - 1 <= block_size for ids, _ in rendered]


def completion_logprobs(model: nn.Module, ids: torch.Tensor, completion_mask: torch.Tensor,
                        attention_mask: torch.Tensor | None = None, average: bool = False) -> torch.Tensor:
    """Sum (or per-token mean) of log p(completion tokens): ids, masks (B, T) -> (B,).

    completion_mask[b, t] = 1 when token t of row b belongs to the completion; the model
    predicts token t from the logits at position t - 1. attention_mask (1 real, 0 pad)
    is passed to the model when given (right padding does not need it). Gradients flow.
    """
    device = next(model.parameters()).device
    ids, completion_mask = ids.to(device), completion_mask.to(device)
    kw = {} if attention_mask is None else dict(attention_mask=attention_mask[:, :-1].to(device))
    logits, _ = model(ids[:, :-1], **kw)                                     # (B, T-1, V)
    ### BEGIN SOLUTION name=logprobs.sequence points=2
    ### HINT: which positions' logits predict the completion's tokens? Turn everything else into an ignored label, then sum along time (and count the kept tokens for the average).
    keep = completion_mask[:, 1:].bool()                                     # (B, T-1): label t+1 is a completion token
    labels = torch.where(keep, ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE))
    total = token_logprobs(logits, labels).sum(-1)                           # (B,)
    if average:
        total = total / keep.sum(-1).clamp_min(1)
    return total
    ### END SOLUTION


def completion_logprobs_reference(model: nn.Module, ids: torch.Tensor, completion_mask: torch.Tensor,
                                  average: bool = False) -> torch.Tensor:
    """The written-out twin: one row at a time, unpadded, log-softmax and a Python sum."""
    out = []
    for row, mask in zip(ids, completion_mask):
        n = int((mask != 0).nonzero().max()) + 1 if mask.any() else len(row)   # drop right padding
        row, mask = row[:n], mask[:n]
        logits, _ = model(row[None, :-1].to(next(model.parameters()).device))
        logp = torch.log_softmax(logits[0].double(), -1)                          # (n-1, V)
        terms = [logp[t - 1, row[t]] for t in range(1, n) if mask[t]]
        total = torch.stack(terms).sum() if terms else logp.new_zeros(())
        out.append(total / max(len(terms), 1) if average else total)
    return torch.stack(out)


def sequence_logprobs(model: nn.Module, tokenizer, prompts: list, completions: list[str],
                      template: ChatTemplate = ChatTemplate(), average: bool = False,
                      batch_size: int = 32, pad_id: int = 0) -> torch.Tensor:
    """log p(completion | prompt) of each pair through the chat template -> (B,) (float32).

    prompts: strings (one user turn each) or conversations [{role, content}, ...].
    average: divide each sum by its token count (completion + end token). Scored in
    batches of `batch_size` rows, right-padded; equal to scoring each row alone.
    Gradients flow (call under torch.no_grad() to score only).
    """
    rendered = render_completions(tokenizer, prompts, completions, template)
    block = getattr(getattr(model, "config", None), "block_size", None)
    parts = []
    for k in range(0, len(rendered), batch_size):
        b = pad_completions(rendered[k:k + batch_size], pad_id, block)
        parts.append(completion_logprobs(model, b["ids"], b["completion_mask"], None, average))
    return torch.cat(parts)
