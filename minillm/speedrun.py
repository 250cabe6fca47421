"""The main job: `minillm speedrun`.

TinyWorld -> its entropy floor -> a BPE tokenizer -> pretraining a GPT ->
evaluation (bits per byte vs the floor, few-shot multiple choice, a
contamination check) -> samples -> `report.md` with plots and a table.

The default takes about 5 minutes on a 2-core CPU; `--fast` is a smoke run for
CI (well under a minute). Later lessons append their post-training stages to the
report with `append_section`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from minillm import world
from minillm.utils import atomic_write_text


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
    eval_every: int
    val_stories: int      # validation stories scored for bits per byte (1000 = all)
    mc_items: int         # multiple-choice items
    shots: int            # solved examples before each question
    samples: int          # stories sampled at the end


PRESETS = {
    "default": Preset(style="llama", vocab_size=1024, block_size=128, n_layer=4, n_head=4, n_embd=96, steps=3000,
                      batch_size=16, lr=4e-3, warmup_steps=100, eval_every=500, val_stories=1000,
                      mc_items=200, shots=1, samples=8),
    "fast": Preset(style="llama", vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64, steps=60,
                   batch_size=16, lr=3e-3, warmup_steps=10, eval_every=30, val_stories=40,
                   mc_items=24, shots=1, samples=2),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/speedrun", help="folder for the report and artifacts")
    parser.add_argument("--fast", action="store_true", help="a tiny run for CI (well under a minute)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's training steps")
    parser.add_argument("--device", default="auto", help="auto (CUDA -> MPS -> CPU), cpu, cuda, mps")


def append_section(out: str | Path, title: str, markdown: str) -> Path:
    """Add a `## title` section to OUT/report.md (later stages call this)."""
    path = Path(out) / "report.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# minillm speedrun\n"
    return atomic_write_text(path, text.rstrip("\n") + f"\n\n## {title}\n\n{markdown.strip()}\n")


def val_floor() -> world.Floor:
    """The entropy floor of the default validation split (bits per byte)."""
    val = world.load_split("val")
    return world.entropy_floor([world.story_from_text(line) for line in val.splitlines()])


def run(args: argparse.Namespace) -> int:
    import torch

    from minillm.data import load_tokens, tokenize_file
    from minillm.evaluate import contamination, floor_gap, multiple_choice_eval, score_text
    from minillm.model import GPTConfig
    from minillm.tokenizer import Tokenizer
    from minillm.train import TrainConfig, train

    t0 = time.time()
    p = PRESETS["fast" if args.fast else "default"]
    steps = args.steps or p.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    # 1. Data and the floor
    data = world.default_data_dir()
    print(f"TinyWorld data: {data}")
    train_text, val_text = world.load_split("train"), world.load_split("val")
    print(f"train: {len(train_text.encode()):,} bytes, val: {len(val_text.encode()):,} bytes")
    floor = val_floor()
    print(f"validation {floor}")

    # 2. Tokenizer (trained on the first MB: TinyWorld's words all appear there)
    t = time.time()
    tok = Tokenizer.train(train_text[:1 << 20], p.vocab_size)
    tok.save(out / "tokenizer.json")
    n_train = tokenize_file(data / "train.txt", tok, out / "train.bin", progress=False)
    n_val = tokenize_file(data / "val.txt", tok, out / "val.bin", progress=False)
    bpt = len(val_text.encode()) / n_val
    timings["tokenizer"] = time.time() - t
    print(f"tokenizer: {tok.vocab_size} ids, {n_train:,} train tokens, {bpt:.2f} bytes/token "
          f"({timings['tokenizer']:.1f} s)")

    # 3. Pretraining
    t = time.time()
    mcfg = GPTConfig(vocab_size=tok.vocab_size, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                     n_embd=p.n_embd, style=p.style, bias=p.style == "gpt2")
    tcfg = TrainConfig(steps=steps, batch_size=p.batch_size, lr=p.lr, warmup_steps=min(p.warmup_steps, steps),
                       eval_every=p.eval_every, eval_batches=4, log_every=max(1, p.eval_every // 5),
                       seed=args.seed, device=args.device)
    result = train(mcfg, tcfg, load_tokens(out / "train.bin"), load_tokens(out / "val.bin"), out_dir=out,
                   tokenizer=tok, bytes_per_token=bpt, floor_bits_per_byte=floor.bits_per_byte)
    timings["pretraining"] = time.time() - t
    model = result.model.eval()

    # 4. Evaluation
    t = time.time()
    val_part = "".join(line + "\n" for line in val_text.splitlines()[:p.val_stories])
    part_floor = world.entropy_floor([world.story_from_text(s) for s in val_part.splitlines()])
    score = score_text(model, tok, val_part)
    print(f"validation ({p.val_stories} stories): {score}")
    print(f"vs the floor {part_floor.bits_per_byte:.4f}: {floor_gap(score.bits_per_byte, part_floor.bits_per_byte)}")
    items = world.load_jsonl("mc_val")[:p.mc_items]
    mc = multiple_choice_eval(model, tok, items, shots=p.shots, shot_pool=world.load_jsonl("qa_train")[:200],
                              seed=args.seed)
    print(f"multiple choice: {mc}")
    cont = contamination([it["story"] for it in items], train_text)
    print(f"contamination: {cont}")
    timings["evaluation"] = time.time() - t

    # 5. Samples
    t = time.time()
    prompt = torch.tensor([tok.encode("Once upon a time")], device=next(model.parameters()).device)
    newline = tok.encode("\n")
    samples, valid = [], 0
    for i in range(p.samples):
        ids = model.generate(prompt, max_new_tokens=min(120, 2 * p.block_size), temperature=1.0,
                             stop_tokens=newline if len(newline) == 1 else None, seed=args.seed + i)
        text = tok.decode(ids[0].tolist()).split("\n")[0]
        try:
            world.story_from_text(text)
            ok = True
        except Exception:  # not a story the world could have written
            ok = False
        valid += ok
        samples.append((ok, text))
    timings["samples"] = time.time() - t
    print(f"samples: {valid}/{len(samples)} are valid TinyWorld stories")

    # 6. Report
    total = time.time() - t0
    metrics = dict(
        parameters=model.num_parameters(), tokens=result.tokens_seen, train_seconds=timings["pretraining"],
        tokens_per_s=result.tokens_seen / timings["pretraining"], val_bits_per_byte=score.bits_per_byte,
        floor_bits_per_byte=part_floor.bits_per_byte, ratio_to_floor=score.bits_per_byte / part_floor.bits_per_byte,
        val_loss=score.loss, val_perplexity=score.perplexity, mc_accuracy=mc.accuracy, mc_ci95=list(mc.ci95),
        mc_shots=mc.shots, mc_n=mc.n, mc_by_kind=mc.by_kind, contamination=asdict(cont),
        valid_samples=valid, n_samples=len(samples), total_seconds=total, timings=timings,
        preset="fast" if args.fast else "default", model=asdict(mcfg), train=asdict(tcfg))
    atomic_write_text(out / "speedrun.json", json.dumps(metrics, indent=2) + "\n")
    write_report(out, metrics, samples, floor, tok.vocab_size, bpt)
    print(f"done in {total:.0f} s; report: {out / 'report.md'}")
    return 0


def write_report(out: Path, m: dict, samples: list[tuple[bool, str]], floor, vocab: int, bpt: float) -> Path:
    lo, hi = m["mc_ci95"]
    rows = [
        ("parameters", f"{m['parameters']:,}"),
        ("training tokens", f"{m['tokens']:,}"),
        ("training time", f"{m['train_seconds']:.0f} s"),
        ("tokens/s", f"{m['tokens_per_s']:,.0f}"),
        ("tokenizer", f"{vocab} ids, {bpt:.2f} bytes/token"),
        ("validation loss", f"{m['val_loss']:.4f} nats/token (perplexity {m['val_perplexity']:.3f})"),
        ("validation bits/byte", f"**{m['val_bits_per_byte']:.4f}**"),
        ("entropy floor", f"{m['floor_bits_per_byte']:.4f} bits/byte (x {m['ratio_to_floor']:.2f}: "
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
        f"Preset `{m['preset']}`: {m['model']['style']}-style GPT with {m['model']['n_layer']} layers, width {m['model']['n_embd']}, "
        f"context {m['model']['block_size']}, {m['train']['steps']} steps of {m['train']['batch_size']} sequences.",
        "", "| | |", "| --- | --- |", *[f"| {a} | {b} |" for a, b in rows], "",
        "Times are wall-clock: other programs running on the machine slow them down.", "",
        "![loss curves: train/validation and validation vs the entropy floor](loss.png)", "",
        f"Validation entropy floor of TinyWorld: {floor}.", "",
        f"Multiple choice by question kind: {by_kind}.", "",
        f"Contamination ({c['n']}-grams of the evaluation stories in the training text): "
        f"{100 * c['flagged']:.0f}% of items share an n-gram (TinyWorld is templated), "
        f"{100 * c['ngram_overlap']:.0f}% of their n-grams; {c['exact_duplicates']} exact duplicates.", "",
        "## Samples", "",
        "Prompt `Once upon a time`; (valid) means the story parses as one TinyWorld could have written.", "",
        *[f"- {'(valid) ' if ok else ''}{s}" for ok, s in samples], ""])
    return atomic_write_text(out / "report.md", text)
