"""The main job's pieces: `minillm speedrun` (the command is minillm/commands/speedrun.py).

TinyWorld -> its entropy floor -> a BPE tokenizer -> pretraining a GPT ->
evaluation (bits per byte vs the floor, few-shot multiple choice, a contamination
check) -> samples -> `report.md` with plots and a table.

What it holds: the measured size presets, the training schedule of a preset at
any number of steps (evaluation, logging and checkpoints scale with the run),
a step count that fits a time budget, readable samples, and the report, which
explains its numbers and ends with what to do next. Later lessons append their
post-training stages to the report with `append_section`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from minillm import world
from minillm.model import GPTConfig
from minillm.train import TrainConfig
from minillm.utils import MiniLLMError, atomic_write_text


@dataclass
class Preset:
    """The knobs of one speedrun size (picked by measuring, see lesson 04's notes)."""

    style: str            # 'llama' (RoPE, RMSNorm, SwiGLU) or 'gpt2'
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    eval_every: int       # at `steps`; scaled with the run's length
    val_stories: int      # validation stories scored for bits per byte (1000 = all)
    mc_items: int         # multiple-choice items
    shots: int            # solved examples before each question
    samples: int          # stories sampled at the end


PRESETS = {
    "default": Preset(style="llama", vocab_size=1024, block_size=128, n_layer=4, n_head=4, n_embd=96, steps=3000,
                      batch_size=16, lr=4e-3, warmup_steps=100, eval_every=500, val_stories=1000,
                      mc_items=200, shots=1, samples=8),
    "fast": Preset(style="llama", vocab_size=512, block_size=128, n_layer=2, n_head=2, n_embd=64, steps=60,
                   batch_size=16, lr=3e-3, warmup_steps=10, eval_every=30, val_stories=40,
                   mc_items=24, shots=1, samples=2),
}


def model_config(p: Preset, vocab_size: int) -> GPTConfig:
    """The preset's GPT; `vocab_size` is the tokenizer's (the tokenizer owns the vocabulary)."""
    return GPTConfig(vocab_size=vocab_size, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                     n_embd=p.n_embd, style=p.style, bias=p.style == "gpt2")


def train_config(p: Preset, steps: int | None = None, seed: int = 0, device: str = "auto") -> TrainConfig:
    """The preset's schedule at `steps` steps: evaluations (6 per run at the preset's
    length, at least 2), 5 log lines per evaluation and a checkpoint at each evaluation
    all scale with the run; the warmup is capped at the run's length.

    >>> train_config(PRESETS["default"], 300).eval_every, train_config(PRESETS["default"]).eval_every
    (50, 500)
    """
    steps = steps or p.steps
    if steps < 1:
        raise MiniLLMError(f"--steps must be at least 1, got {steps}")
    eval_every = max(1, min(round(p.eval_every * steps / p.steps), steps // 2 or 1))
    return TrainConfig(steps=steps, batch_size=p.batch_size, lr=p.lr, warmup_steps=min(p.warmup_steps, steps),
                       eval_every=eval_every, eval_batches=4, log_every=max(1, eval_every // 5),
                       checkpoint_every=eval_every, seed=seed, device=device)


def steps_for_budget(seconds: float, seconds_per_step: float, p: Preset) -> int:
    """The most steps (at most the preset's, at least 10) that fit `seconds` of training."""
    if not seconds > 0:
        raise MiniLLMError(f"--time-budget must be a positive number of seconds, got {seconds}")
    return max(10, min(p.steps, int(seconds / max(seconds_per_step, 1e-9))))


def readable_sample(text: str, end_token: str = "<|endoftext|>") -> str:
    """A sampled story for people: cut at its end (the first newline or end-of-text token),
    with bytes that are not valid UTF-8 (U+FFFD after decoding) shown as `·`.

    >>> readable_sample("Once upon a \\ufffd\\ufffdtime.<|endoftext|>Once")
    'Once upon a ·time.'
    """
    text = text.split("\n")[0].split(end_token)[0]
    while "\ufffd\ufffd" in text:
        text = text.replace("\ufffd\ufffd", "\ufffd")
    return text.replace("\ufffd", "·").strip()


@torch.no_grad()
def sample_stories(model, tok, n: int, max_new_tokens: int, seed: int = 0) -> list[tuple[bool, str]]:
    """`n` sampled stories after "Once upon a time": (parses as a TinyWorld story, readable text)."""
    prompt = torch.tensor([tok.encode("Once upon a time")], device=next(model.parameters()).device)
    newline = tok.encode("\n")
    samples = []
    for i in range(n):
        ids = model.generate(prompt, max_new_tokens=max_new_tokens, temperature=1.0,
                             stop_tokens=newline if len(newline) == 1 else None, seed=seed + i)
        text = readable_sample(tok.decode(ids[0].tolist()))
        try:
            world.story_from_text(text)
            ok = "·" not in text
        except Exception:  # not a story the world could have written
            ok = False
        samples.append((ok, text))
    return samples


def append_section(out: str | Path, title: str, markdown: str) -> Path:
    """Add a `## title` section to OUT/report.md (later stages call this), before its
    "What to do next", which stays last."""
    path = Path(out) / "report.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# minillm speedrun\n"
    body, sep, tail = text.partition("\n## What to do next")
    section = f"\n\n## {title}\n\n{markdown.strip()}\n"
    return atomic_write_text(path, body.rstrip("\n") + section + (sep + tail if sep else ""))


NEXT_STEPS = """\
- Talk to the model: `minillm generate --checkpoint {out} --prompt "Once upon a time"`.
- Score it again, on more text or more questions: `minillm evaluate {out}`.
- Stopped early? `minillm speedrun --out {out} --resume` continues from the last checkpoint (same flags).
- Train longer: `minillm speedrun --steps 6000 --out runs/longer` (evaluations and checkpoints scale with it).
- Read how each number is measured: `lessons/05-evaluation.md`; open `notebooks/04_pretraining.ipynb` and
  `notebooks/05_evaluation.ipynb` to see the curves and the scores step by step.
"""


def write_report(out: Path, m: dict, samples: list[tuple[bool, str]], floor: world.Floor, vocab: int,
                 bpt: float) -> Path:
    """report.md: the table, what the two floors are, the plot, samples and what to do next."""
    lo, hi = m["mc_ci95"]
    rows = [
        ("parameters", f"{m['parameters']:,}"),
        ("training tokens", f"{m['tokens']:,}"),
        ("training time", f"{m['train_seconds']:.0f} s"),
        ("tokens/s", f"{m['tokens_per_s']:,.0f}"),
        ("tokenizer", f"{vocab} ids, {bpt:.2f} bytes/token"),
        ("validation loss", f"{m['val_loss']:.4f} nats/token (perplexity {m['val_perplexity']:.3f})"),
        ("validation bits/byte", f"**{m['val_bits_per_byte']:.4f}** ({m['val_stories']} stories)"),
        ("entropy floor", f"{m['floor_bits_per_byte']:.4f} bits/byte of the same stories (x {m['ratio_to_floor']:.2f}: "
                          f"{100 * (m['ratio_to_floor'] - 1):+.1f}%)"),
        (f"{m['mc_shots']}-shot multiple choice", f"{m['mc_accuracy']:.3f} (95% CI [{lo:.3f}, {hi:.3f}], "
                                                  f"n={m['mc_n']}, chance 0.25)"),
        ("valid sampled stories", f"{m['valid_samples']}/{m['n_samples']}"),
        ("total time", f"{m['total_seconds']:.0f} s"),
    ]
    by_kind = ", ".join(f"{k} {v:.2f}" for k, v in m["mc_by_kind"].items())
    c = m["contamination"]
    text = "\n".join([
        "# minillm speedrun", "",
        f"Preset `{m['preset']}`: {m['model']['style']}-style GPT with {m['model']['n_layer']} layers, width "
        f"{m['model']['n_embd']}, context {m['model']['block_size']}, {m['train']['steps']} steps of "
        f"{m['train']['batch_size']} sequences.", "",
        "| | |", "| --- | --- |", *[f"| {a} | {b} |" for a, b in rows], "",
        "Times are wall-clock: other programs running on the machine slow them down.", "",
        "**Two floors.** TinyWorld's stories come from a known generator, so the best any model can do "
        "(the entropy floor) is computed exactly. The table compares the model with the floor of *the "
        f"stories it was scored on* ({m['val_stories']} of them: {m['floor_bits_per_byte']:.4f} bits/byte). "
        f"The plot's dashed line is the floor of the *whole* validation split ({floor.bits_per_byte:.4f} "
        f"bits/byte over {floor.n_stories} stories), the one the training log's bits/byte are measured "
        "against. The two differ only because the stories differ.", "",
        "![loss curves: train/validation and validation vs the entropy floor](loss.png)", "",
        f"Multiple choice by question kind: {by_kind}.", "",
        f"Contamination ({c['n']}-grams of the evaluation stories in the training text): "
        f"{100 * c['flagged']:.0f}% of items share an n-gram (TinyWorld is templated), "
        f"{100 * c['ngram_overlap']:.0f}% of their n-grams; {c['exact_duplicates']} exact duplicates.", "",
        "## Samples", "",
        "Prompt `Once upon a time`, cut at the story's end; (valid) means the story parses as one TinyWorld "
        "could have written; `·` marks bytes that are not valid UTF-8 (a young model has not learned to "
        "spell yet).", "",
        *[f"- {'(valid) ' if ok else ''}{s}" for ok, s in samples], "",
        "## What to do next", "", NEXT_STEPS.format(out=out)])
    return atomic_write_text(out / "report.md", text)
