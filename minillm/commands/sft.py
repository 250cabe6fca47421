"""`minillm sft`: lesson 08: supervised fine-tuning of a checkpoint on TinyWorld instructions.

    minillm sft --checkpoint data/checkpoints/pretrained --out runs/sft       # fine-tune (resumable)
    minillm sft --checkpoint data/checkpoints/pretrained --out runs/sft --resume
    minillm sft --ship data/checkpoints                                       # remake the shipped checkpoints
    minillm sft --compare data/checkpoints/sft                                # k-shot pretrained vs SFT table
    minillm sft --data-efficiency data/checkpoints                            # classification experiment
"""

from __future__ import annotations

import argparse

HELP = "lesson 08: supervised fine-tuning (chat template, loss on answers only, packing); --ship remakes data/checkpoints"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import instruct  # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm.config import add_dataclass_arguments

    parser.add_argument("--checkpoint", default="pretrained",
                        help="run folder to fine-tune: 'pretrained' (the shipped one) or a folder with ckpt.pt + tokenizer.json")
    parser.add_argument("--out", default="runs/sft", help="run folder of the fine-tuned model")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--ship", default=None, metavar="DIR",
                        help="instead: pretrain (the default speedrun's preset) and fine-tune, writing DIR/pretrained and DIR/sft")
    parser.add_argument("--from-run", default=None,
                        help="with --ship: take the pretrained model from this speedrun folder instead of pretraining")
    parser.add_argument("--compare", default=None, metavar="SFT_RUN",
                        help="instead: print the k-shot pretrained (--checkpoint) vs SFT_RUN exact-match table")
    parser.add_argument("--data-efficiency", default=None, metavar="DIR",
                        help="instead: the classification data-efficiency experiment on --checkpoint, into DIR "
                             "(data_efficiency.json and .png)")
    parser.add_argument("--compare-stories", type=int, default=50, help="validation stories for --compare and --curriculum (6 questions each)")
    parser.add_argument("--curriculum", default=None, metavar="KINDS",
                        help="instead: one question kind per stage (comma-separated order), --steps each, the kinds "
                             "already learnt replayed; the model into --out, curriculum.json beside it (lesson 08 §7b)")
    parser.add_argument("--new-share", type=float, default=0.8,
                        help="with --curriculum: the new kind's share of each batch's draws")
    parser.add_argument("--stage-steps", default=None, metavar="N,N,...",
                        help="with --curriculum: steps of each stage (default: --steps each)")
    add_dataclass_arguments(parser, instruct.SFTConfig)


def run(args: argparse.Namespace) -> int:
    from minillm import instruct  # deferred: see add_arguments
    from minillm.config import dataclass_from_args

    cfg = dataclass_from_args(instruct.SFTConfig, args)
    if args.ship:
        if args.from_run:
            model, tok = instruct.load_shipped(args.from_run)
        else:
            import tempfile

            model, tok = pretrain_default(tempfile.mkdtemp(prefix="minillm-pretrain-"))
        made = instruct.make_checkpoints(args.ship, model, tok, cfg, made_by="minillm sft --ship "
                                         "(pretraining: the default `minillm speedrun` preset, seed 0)")
        for name, path in made.items():
            size = sum(f.stat().st_size for f in path.iterdir())
            print(f"{name}: {path} ({size / 1e6:.1f} MB)")
        return 0
    pre, pre_tok = instruct.load_shipped(args.checkpoint)
    if args.data_efficiency:
        return data_efficiency(pre, pre_tok, args.data_efficiency)
    if args.compare:
        sft_model, sft_tok = instruct.load_shipped(args.compare)
        res = instruct.icl_vs_sft(pre, pre_tok, sft_model, sft_tok, n_stories=args.compare_stories, log=print)
        print(instruct.icl_table(res))
        return 0
    if args.curriculum:
        return curriculum(pre, pre_tok, cfg, args)
    model, tok, seconds = instruct.sft_train(pre, pre_tok, cfg, out_dir=args.out, resume=args.resume)
    print(f"fine-tuned in {seconds:.0f} s; run folder {args.out}; chat with: minillm chat --checkpoint {args.out}")
    return 0


def data_efficiency(model, tok, out_dir: str) -> int:
    """Run the classification experiment and write its JSON, plot and table."""
    import json
    import time
    from pathlib import Path

    from minillm import classify  # deferred: see add_arguments
    from minillm.utils import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    result = classify.experiment(model, tok, log=print)
    result["seconds"] = round(time.time() - t, 1)
    atomic_write_text(out / "data_efficiency.json", json.dumps(result, indent=1) + "\n")
    fig = classify.plot_data_efficiency(result["rows"], majority=result["majority"])
    fig.savefig(out / "data_efficiency.png", dpi=110, bbox_inches="tight")
    print(classify.efficiency_table(result))
    print(f"{result['seconds']:.0f} s; wrote {out / 'data_efficiency.json'} and {out / 'data_efficiency.png'}")
    return 0


def pretrain_default(out, seed: int = 0, log=print):
    """The default speedrun's tokenizer and pretraining (the same calls, into `out`) -> (model, tokenizer)."""
    from minillm import world  # deferred: see add_arguments
    from minillm.data import load_tokens, tokenize_file
    from minillm.model import GPTConfig
    from minillm.speedrun import PRESETS
    from minillm.tokenizer import Tokenizer
    from minillm.train import TrainConfig, train

    p, data = PRESETS["default"], world.default_data_dir()
    tok = Tokenizer.train(world.load_split("train")[:1 << 20], p.vocab_size)
    tokenize_file(data / "train.txt", tok, f"{out}/train.bin", progress=False)
    tokenize_file(data / "val.txt", tok, f"{out}/val.bin", progress=False)
    mcfg = GPTConfig(vocab_size=tok.vocab_size, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                     n_embd=p.n_embd, style=p.style, bias=p.style == "gpt2")
    tcfg = TrainConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup_steps=min(p.warmup_steps, p.steps),
                       eval_every=p.eval_every, eval_batches=4, log_every=max(1, p.eval_every // 5), seed=seed,
                       device="cpu")
    result = train(mcfg, tcfg, load_tokens(f"{out}/train.bin"), load_tokens(f"{out}/val.bin"), out_dir=out,
                   tokenizer=tok, log=log)
    return result.model.eval(), tok


def curriculum(model, tok, cfg, args) -> int:
    """--curriculum: `sft_curriculum.curriculum_train`, then the model and the per-stage records into --out."""
    import json
    from pathlib import Path

    from minillm.instruct import save_small
    from minillm.sft_curriculum import curriculum_train  # deferred: see add_arguments
    from minillm.utils import atomic_write_text

    from minillm.utils import MiniLLMError

    order = [k.strip() for k in args.curriculum.split(",") if k.strip()]
    try:
        steps = [int(n) for n in args.stage_steps.split(",")] if args.stage_steps else None
    except ValueError:
        raise MiniLLMError(f"--stage-steps must be comma-separated integers, got {args.stage_steps!r}") from None
    model, tok, records = curriculum_train(model, tok, order, cfg, new_share=args.new_share,
                                           eval_stories=args.compare_stories, stage_steps=steps)
    save_small(args.out, model, tok, dict(made_by="minillm sft --curriculum", order=order, new_share=args.new_share))
    atomic_write_text(Path(args.out) / "curriculum.json", json.dumps(records, indent=1) + "\n")
    print(f"stages: {len(records)}; final exact match {records[-1]['seen']:.3f} seen, {records[-1]['unseen']:.3f} "
          f"unseen phrasings; model and curriculum.json in {args.out}")
    return 0
