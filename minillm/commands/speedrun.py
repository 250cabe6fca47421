"""`minillm speedrun`: the main job: TinyWorld -> tokenizer -> pretraining -> evaluation -> report.

The route: the preset -> the run folder (locked) -> TinyWorld's floor -> the tokenizer
first and its token files (`minillm.data.write_token_files`) -> the GPT with the
tokenizer's vocab size -> `minillm.train.train` (a progress bar, a checkpoint at every
evaluation, `--resume`) -> `minillm.evaluate` -> samples -> report.md
(`minillm.speedrun.write_report`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

HELP = "the main job: TinyWorld -> tokenizer -> pretraining -> evaluation -> report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/speedrun", help="folder for the report and artifacts")
    parser.add_argument("--fast", action="store_true", help="a tiny run for CI (well under a minute)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    # default=SUPPRESS: "(default: None)" would tell a newcomer nothing; the help says it
    parser.add_argument("--steps", type=int, default=argparse.SUPPRESS,
                        help="training steps (default: the preset's, 3000 or 60 with --fast); "
                             "evaluations, log lines and checkpoints scale with it")
    parser.add_argument("--time-budget", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="pick the number of steps that fits this much training time on this machine "
                             "(measured on a few steps first; default: the preset's steps)")
    parser.add_argument("--resume", action="store_true", help="continue OUT's run from its last checkpoint")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar with step/total, tokens/s and time left")
    parser.add_argument("--device", default="auto", help="auto (CUDA -> MPS -> CPU), cpu, cuda, mps")
    parser.add_argument("--post-training", action=argparse.BooleanOptionalAction, default=True,
                        help="after pretraining: SFT (saved as OUT/sft) and a small arena of the two models")


def tokenize(out: Path, vocab_size: int, resume: bool):
    """The tokenizer (trained on TinyWorld's first MB: its words all appear there) and token files."""
    # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm import world
    from minillm.data import TokenFile, load_tokens, write_token_files
    from minillm.tokenizer import Tokenizer

    data = world.default_data_dir()
    if resume and all((out / n).exists() for n in ("tokenizer.json", "train.bin", "val.bin")):
        files = {s: TokenFile(out / f"{s}.bin", len(load_tokens(out / f"{s}.bin")), (data / f"{s}.txt").stat().st_size)
                 for s in ("train", "val")}
        return Tokenizer.load(out / "tokenizer.json"), files
    tok = Tokenizer.train(world.load_split("train")[:1 << 20], vocab_size)
    return tok, write_token_files(out, tok, {"train": data / "train.txt", "val": data / "val.txt"})


def pick_steps(args: argparse.Namespace, p, mcfg, files) -> int:
    """--steps, or the steps that fit --time-budget (timed on 5 steps of this model), or the preset's."""
    from minillm.speedrun import steps_for_budget, train_config
    from minillm.train import train

    steps, budget = getattr(args, "steps", None), getattr(args, "time_budget", None)
    if budget is None:
        return steps or p.steps
    steps_for_budget(budget, 1.0, p)   # a bad budget fails before the probe runs
    probe = train(mcfg, train_config(p, steps, args.seed, args.device), files["train"].path,
                  until_step=5, log=None)
    steps = steps_for_budget(budget, probe.seconds / 5, p)
    print(f"time budget {budget:.0f} s: {probe.seconds / 5:.3f} s/step measured -> {steps} steps")
    return steps


def evaluate_model(model, tok, p, val_text: str, train_text: str, seed: int):
    """Bits per byte on the preset's validation stories vs their floor, multiple choice, contamination."""
    from minillm import world
    from minillm.evaluate import contamination, floor_gap, multiple_choice_eval, score_text

    val_part = "".join(line + "\n" for line in val_text.splitlines()[:p.val_stories])
    part_floor = world.text_floor(val_part)
    score = score_text(model, tok, val_part)
    print(f"validation ({p.val_stories} stories): {score}")
    print(f"vs the floor of those stories {part_floor.bits_per_byte:.4f}: "
          f"{floor_gap(score.bits_per_byte, part_floor.bits_per_byte)}")
    items = world.load_jsonl("mc_val")[:p.mc_items]
    mc = multiple_choice_eval(model, tok, items, shots=p.shots, shot_pool=world.load_jsonl("qa_train")[:200],
                              seed=seed)
    print(f"multiple choice: {mc}")
    cont = contamination([it["story"] for it in items], train_text)
    print(f"contamination: {cont}")
    return score, part_floor, mc, cont


def check_flags(args: argparse.Namespace) -> None:
    """--steps, --time-budget, --seed, --device and --resume checked before the run folder is touched."""
    import math

    from minillm.device import pick_device
    from minillm.utils import MiniLLMError

    steps, budget = getattr(args, "steps", None), getattr(args, "time_budget", None)
    if steps is not None and steps < 1:
        raise MiniLLMError(f"--steps must be at least 1, got {steps}")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise MiniLLMError(f"--time-budget must be a positive finite number of seconds, got {budget}")
    if args.seed < 0:
        raise MiniLLMError(f"--seed must be a non-negative integer, got {args.seed}")
    pick_device(args.device)
    if args.resume and not (Path(args.out) / "ckpt.pt").is_file():
        raise MiniLLMError(f"cannot resume: {args.out} has no ckpt.pt (run without --resume first)")


def post_train(out: Path, model, tok, metrics: dict, args: argparse.Namespace, t0: float) -> float:
    """SFT, LoRA, DPO + arena into OUT/{sft,lora,dpo}, speedrun.json's "post" and the report's last section
    -> total seconds."""
    from minillm.device import pick_device
    from minillm.speedrun import append_section
    from minillm.speedrun_post import arena_stage, dpo_stage, post_section, sft_stage
    from minillm.utils import atomic_write_text

    preset = "fast" if args.fast else "default"
    t = time.time()
    device = str(pick_device(args.device))
    post = sft_stage(model, tok, out, preset, args.seed, device)
    metrics["timings"]["sft"] = time.time() - t
    t = time.time()
    d = dpo_stage(out, preset, args.seed, device)
    post["rows"]["DPO"], post["runs"]["DPO"] = d["row"], d["run"]
    metrics["timings"]["dpo"] = time.time() - t
    t = time.time()
    arena = arena_stage(out, preset, args.seed)
    metrics["timings"]["arena"] = time.time() - t
    metrics.update(post=post, arena=dict(ratings=arena["ratings"], battles=arena["battles"]),
                   total_seconds=time.time() - t0)
    atomic_write_text(out / "speedrun.json", json.dumps(metrics, indent=2) + "\n")
    append_section(out, "Post-training: fine-tuning, DPO and the arena", post_section(post, arena))
    return metrics["total_seconds"]


def run(args: argparse.Namespace) -> int:
    from minillm import world
    from minillm.runfolder import locked, prepare_out_dir
    from minillm.speedrun import PRESETS, model_config, sample_stories, train_config, write_report
    from minillm.train import train
    from minillm.utils import atomic_write_text

    t0, timings = time.time(), {}
    p = PRESETS["fast" if args.fast else "default"]
    check_flags(args)
    out = prepare_out_dir(args.out)
    with locked(out):
        # 1. Data and the floor
        train_text, val_text = world.load_split("train"), world.load_split("val")
        print(f"TinyWorld data: {world.default_data_dir()}")
        print(f"train: {len(train_text.encode()):,} bytes, val: {len(val_text.encode()):,} bytes")
        floor = world.split_floor("val")
        print(f"validation {floor}")

        # 2. Tokenizer first; the model's vocabulary is the tokenizer's
        t = time.time()
        tok, files = tokenize(out, p.vocab_size, args.resume)
        bpt = files["val"].bytes_per_token
        timings["tokenizer"] = time.time() - t
        print(f"tokenizer: {tok.vocab_size} ids, {files['train'].n_tokens:,} train tokens, {bpt:.2f} bytes/token "
              f"({timings['tokenizer']:.1f} s)")

        # 3. Pretraining
        mcfg = model_config(p, tok.vocab_size)
        tcfg = train_config(p, pick_steps(args, p, mcfg, files), args.seed, args.device)
        t = time.time()
        result = train(mcfg, tcfg, files["train"].path, files["val"].path, out_dir=out, resume=args.resume,
                       tokenizer=tok, bytes_per_token=bpt, floor_bits_per_byte=floor.bits_per_byte,
                       progress=args.progress, run_files={"train.bin": files["train"].path,
                                                          "val.bin": files["val"].path})
        timings["pretraining"] = time.time() - t
        model = result.model.eval()

        # 4. Evaluation (on the first val_stories stories, against the floor of exactly those)
        t = time.time()
        score, part_floor, mc, cont = evaluate_model(model, tok, p, val_text, train_text, args.seed)
        timings["evaluation"] = time.time() - t

        # 5. Samples
        t = time.time()
        samples = sample_stories(model, tok, p.samples, min(120, 2 * p.block_size), args.seed)
        valid = sum(ok for ok, _ in samples)
        timings["samples"] = time.time() - t
        print(f"samples: {valid}/{len(samples)} are valid TinyWorld stories")

        # 6. Report
        total = time.time() - t0
        metrics = dict(
            parameters=model.num_parameters(), tokens=result.tokens_seen, train_seconds=timings["pretraining"],
            tokens_per_s=result.tokens_seen / timings["pretraining"], val_bits_per_byte=score.bits_per_byte,
            floor_bits_per_byte=part_floor.bits_per_byte, split_floor_bits_per_byte=floor.bits_per_byte,
            ratio_to_floor=score.bits_per_byte / part_floor.bits_per_byte, val_stories=p.val_stories,
            val_loss=score.loss, val_perplexity=score.perplexity, mc_accuracy=mc.accuracy, mc_ci95=list(mc.ci95),
            mc_shots=mc.shots, mc_n=mc.n, mc_by_kind=mc.by_kind, contamination=asdict(cont),
            valid_samples=valid, n_samples=len(samples), total_seconds=total, timings=timings,
            preset="fast" if args.fast else "default", model=asdict(mcfg), train=asdict(tcfg))
        atomic_write_text(out / "speedrun.json", json.dumps(metrics, indent=2) + "\n")
        write_report(out, metrics, samples, floor, tok.vocab_size, bpt)

        # 7. Post-training (lessons 08, 12): SFT of this model, both measured, then the arena
        if args.post_training:
            total = post_train(out, model, tok, metrics, args, t0)
    print(f"done in {total:.0f} s; report: {out / 'report.md'}")
    print(f"next: minillm generate --checkpoint {out} --prompt \"Once upon a time\"   (more in the report)")
    return 0
