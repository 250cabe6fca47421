"""SFT as a curriculum with replay: one question kind at a time, the kinds already learnt kept in the batches.

Lesson 08 §7b measured that each TinyWorld look-up is learnt alone (a copying circuit forms
after a plateau) but not when all six are mixed from the start, and that a kind trained
alone overwrites the one before it. This module is the next experiment: stage k trains
kind k for `stage_steps` steps with `new_share` of each batch's draws on it, the rest
spread over the kinds of stages 0..k-1 (replay), and after every stage the model is
measured per kind on held-out questions (seen and unseen phrasings).

Each stage is one `train.fit` run (`instruct.sft_batches`, `sft.sft_loss_mean`), so a
stage's schedule warms up and decays on its own. Left out: choosing the order or the
share automatically, mixing stages of different lengths.
"""

from __future__ import annotations

import dataclasses
import time

from minillm import world
from minillm.instruct import SFTConfig, instruction_items, qa_exact_match, sft_batches, sft_examples
from minillm.sft import ChatTemplate, add_chat_tokens, sft_loss_mean
from minillm.train import TrainConfig, fit
from minillm.utils import MiniLLMError
from minillm.world_tasks import QUESTION_KINDS


def stage_examples(by_kind: dict[str, list], order: list[str], k: int, new_share: float) -> list:
    """Stage k's examples: kind order[k] repeated so it makes up about `new_share` of the draws."""
    new, old = by_kind[order[k]], [x for kind in order[:k] for x in by_kind[kind]]
    if not old:
        return list(new)
    repeat = max(1, round(new_share / (1 - new_share) * len(old) / len(new)))
    return new * repeat + old


def curriculum_train(model, tok, order: list[str], cfg: SFTConfig, new_share: float = 0.8, eval_stories: int = 50,
                     stage_steps: list[int] | None = None, template: ChatTemplate = ChatTemplate(),
                     log=print) -> tuple[object, object, list[dict]]:
    """Fine-tune `model` kind by kind (`stage_steps[k]` steps in stage k; default cfg.steps each) ->
    (model, tokenizer, one record per stage: {stage, kind, steps, seconds, seen, unseen, seen_by_kind,
    unseen_by_kind})."""
    unknown = sorted(set(order) - set(QUESTION_KINDS))
    if unknown or not order or len(set(order)) != len(order):
        raise MiniLLMError(f"the curriculum must name distinct question kinds from {', '.join(QUESTION_KINDS)}; "
                           f"got {','.join(order) or 'none'}")
    if not 0 < new_share < 1:
        raise MiniLLMError(f"new_share must be between 0 and 1 (the new kind's share of the draws), got {new_share}")
    steps = list(stage_steps) if stage_steps else [cfg.steps] * len(order)
    if len(steps) != len(order) or not all(isinstance(n, int) and n > 0 for n in steps):
        raise MiniLLMError(f"give one positive step count per stage ({len(order)}), got {steps}")
    model, tok = add_chat_tokens(model, tok, template)
    T = model.config.block_size
    by_kind = {kind: sft_examples(tok, dataclasses.replace(cfg, kinds=kind), T, template) for kind in order}
    val = world.load_split("val").splitlines()[:eval_stories]
    evals = {ph: instruction_items(val, ph, seed=1) for ph in ("seen", "unseen")}
    records, t0 = [], time.time()
    for k, kind in enumerate(order):
        stage = dataclasses.replace(cfg, seed=cfg.seed + k, steps=steps[k])   # each stage draws its own batches
        tcfg = TrainConfig(steps=stage.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                           warmup_steps=min(cfg.warmup_steps, stage.steps), eval_every=0,
                           log_every=max(1, stage.steps // 6), seed=stage.seed, device=cfg.device)
        examples = stage_examples(by_kind, order, k, new_share)
        model = fit(model, tcfg, sft_batches(examples, stage, T), sft_loss_mean, log=log).model.eval()
        rec = dict(stage=k, kind=kind, steps=steps[k], seconds=round(time.time() - t0))
        for ph, items in evals.items():
            r = qa_exact_match(model, tok, items)
            rec[ph], rec[ph + "_by_kind"] = r.accuracy, {kk: v[0] for kk, v in r.by_kind.items()}
        records.append(rec)
        if log:
            log(f"stage {k} ({kind}): exact match {rec['seen']:.3f} seen, {rec['unseen']:.3f} unseen; by kind " +
                ", ".join(f"{kk} {v:.2f}" for kk, v in rec["seen_by_kind"].items()))
        model.train()
    return model.eval(), tok, records
