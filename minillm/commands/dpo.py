"""`minillm dpo`: lesson 10: Direct Preference Optimization of the SFT model on oracle pairs.

    minillm dpo --checkpoint sft --out runs/dpo --beta 0.1          # train (resumable: --resume)
    minillm dpo --out runs/dpo --resume
    minillm chat --checkpoint runs/dpo                              # talk to it
    minillm dpo --experiment runs/dpo-exp                           # the lesson's table and plot
    minillm dpo --pairs-file my_pairs.jsonl --out runs/dpo-mine     # train on your own pairs (JSONL)
    minillm dpo --write-pairs data/preferences/oracle_pairs.jsonl   # remake the shipped pairs
    minillm dpo --write-pairs runs/onpolicy.jsonl --on-policy       # two samples of --checkpoint, oracle-labelled
"""

from __future__ import annotations

import argparse

HELP = "lesson 10: DPO of a chat model on oracle-labelled preference pairs; --experiment makes the lesson's table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import dpo  # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm.config import add_dataclass_arguments

    parser.add_argument("--checkpoint", default="sft", help="policy and reference to start from: 'sft' (shipped) or a run folder")
    parser.add_argument("--out", default="runs/dpo", help="run folder of the DPO model (ckpt.pt + tokenizer.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--experiment", default=None, metavar="DIR",
                        help="instead: DPO at --betas vs SFT on the chosen answers, table + plot into DIR")
    parser.add_argument("--betas", default="0.1,0.5,2.0", help="with --experiment: comma-separated beta values")
    parser.add_argument("--pairs-file", default=None, metavar="JSONL",
                        help="train on these pairs ({story, question, chosen, rejected} per line) instead of "
                             "--pairs offline oracle pairs drawn afresh")
    parser.add_argument("--write-pairs", default=None, metavar="JSONL",
                        help="instead: write --pairs oracle-labelled pairs (templated answers) to JSONL")
    parser.add_argument("--on-policy", action="store_true",
                        help="with --write-pairs: two answers sampled from --checkpoint per question, oracle-labelled")
    add_dataclass_arguments(parser, dpo.DPOConfig)


def run(args: argparse.Namespace) -> int:
    import copy
    import json

    from minillm import dpo, preferences  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.instruct import load_shipped
    from minillm.utils import atomic_write_text

    cfg = dataclass_from_args(dpo.DPOConfig, args)
    if args.experiment:
        from minillm.runfolder import prepare_out_dir

        out = prepare_out_dir(args.experiment)
        betas = tuple(float(b) for b in args.betas.split(","))
        res = dpo.experiment(betas=betas, steps=cfg.steps, n_pairs=cfg.pairs, lr=cfg.lr, checkpoint=args.checkpoint)
        atomic_write_text(out / "experiment.json", json.dumps(res, indent=1, default=str) + "\n")
        dpo.plot_utility_vs_kl(res).savefig(out / "utility_vs_kl.png", dpi=110, bbox_inches="tight")
        print(dpo.experiment_table(res))
        print(f"wrote {out / 'experiment.json'} and {out / 'utility_vs_kl.png'}")
        return 0
    if args.write_pairs and not args.on_policy:
        pairs = preferences.preference_pairs(cfg.pairs, seed=cfg.seed, split="dpo_train")
        print(f"wrote {len(pairs)} pairs to {preferences.write_pairs(args.write_pairs, pairs)}")
        return 0
    reference, tok = load_shipped(args.checkpoint)
    if args.write_pairs:
        return write_on_policy(reference, tok, args.write_pairs, cfg)
    pairs = (preferences.load_pairs(args.pairs_file) if args.pairs_file
             else preferences.preference_pairs(cfg.pairs, seed=cfg.seed, split="dpo_train"))
    res = dpo.dpo_train(copy.deepcopy(reference), reference, tok, pairs, cfg, out_dir=args.out, resume=args.resume)
    print(f"DPO on {res.pairs_used} pairs ({res.identical_skipped} identical and {res.too_long_skipped} too long "
          f"skipped) in {res.seconds:.0f} s; run folder {args.out}; chat with: minillm chat --checkpoint {args.out}")
    return 0


def write_on_policy(model, tok, path: str, cfg) -> int:
    """Two sampled answers of `model` to each of cfg.pairs training questions, oracle-labelled, into `path`."""
    from minillm import preferences, rollout, world_tasks  # deferred: see add_arguments

    items = world_tasks.qa_pairs(cfg.pairs, cfg.seed, "dpo_onpolicy")
    pairs, skipped = rollout.on_policy_pairs(model, tok, items, seed=cfg.seed)
    if not pairs:
        from minillm.utils import MiniLLMError
        raise MiniLLMError(f"no usable pair: every item was skipped ({skipped}); sample a model that answers")
    preferences.write_pairs(path, pairs)
    print(f"wrote {len(pairs)} on-policy pairs to {path}; skipped {skipped}")
    return 0
