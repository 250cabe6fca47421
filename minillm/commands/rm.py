"""`minillm rm`: lesson 10: a Bradley-Terry reward model on oracle-labelled TinyWorld pairs.

    minillm rm train --checkpoint sft --out runs/rm                   # train (resumable: --resume)
    minillm rm train --labeler length_biased --out runs/rm-biased     # lesson 11's hackable reward
    minillm rm eval --out runs/rm                                     # held-out accuracy vs Bayes, calibration plot
"""

from __future__ import annotations

import argparse

HELP = "lesson 10: train / evaluate a Bradley-Terry reward model on oracle-labelled preference pairs"

LABELERS = ("human", "length_biased")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import reward  # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm.config import add_dataclass_arguments

    parser.add_argument("action", choices=("train", "eval"), help="train a reward model, or evaluate one")
    parser.add_argument("--checkpoint", default="sft", help="body to start from: 'sft' (shipped) or a run folder")
    parser.add_argument("--out", default="runs/rm", help="the reward model's folder (reward.pt, tokenizer.json, run files)")
    parser.add_argument("--resume", action="store_true", help="train: continue the run in --out where it stopped")
    parser.add_argument("--labeler", choices=LABELERS, default="human",
                        help="who labels the pairs: the oracle person, or the length-biased one")
    parser.add_argument("--eval-pairs", type=int, default=600, help="eval: held-out pairs to score")
    parser.add_argument("--pairs-file", default=None, metavar="JSONL",
                        help="train: learn from these pairs ({story, question, chosen, rejected} per line) instead "
                             "of --pairs offline pairs labelled by --labeler")
    add_dataclass_arguments(parser, reward.RMConfig)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from minillm import preferences, reward  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.instruct import load_shipped
    from minillm.tokenizer import Tokenizer

    labeler = preferences.HUMAN if args.labeler == "human" else preferences.LENGTH_BIASED
    out = Path(args.out)
    if args.action == "train":
        cfg = dataclass_from_args(reward.RMConfig, args)
        body, tok = load_shipped(args.checkpoint)
        pairs = (preferences.load_pairs(args.pairs_file) if args.pairs_file else
                 preferences.preference_pairs(cfg.pairs, seed=cfg.seed, split="rm_train", labeler=labeler))
        rm, info = reward.train_reward_model(body, tok, pairs, cfg, out_dir=out, resume=args.resume)
        reward.save_reward_model(out, rm, tok, dict(labeler=args.labeler, pairs_used=info["pairs_used"]))
        print(f"trained on {info['pairs_used']} of {info['pairs_given']} pairs (the rest do not fit the context) "
              f"in {info['seconds']:.0f} s; wrote {out / 'reward.pt'}")
        return 0
    rm = reward.load_reward_model(out)
    tok = Tokenizer.load(out / "tokenizer.json")
    pairs = preferences.preference_pairs(args.eval_pairs, seed=args.seed, split="rm_eval", labeler=labeler)
    ev = reward.evaluate_reward_model(rm, tok, pairs, labeler)
    print(f"held-out accuracy {ev['accuracy']:.3f} vs Bayes-optimal {ev['bayes_accuracy']:.3f} on {ev['n']} pairs; "
          f"agreement with the oracle's better answer {ev['oracle_agreement']:.3f}; "
          f"mean |predicted - oracle probability| {ev['calibration_error']:.3f}")
    fig = reward.plot_reliability(ev["reliability"])
    fig.savefig(out / "reliability.png", dpi=110, bbox_inches="tight")
    print(f"wrote {out / 'reliability.png'}")
    return 0
