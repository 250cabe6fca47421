"""`minillm rlhf`: lesson 11: RLHF / RLAIF of the SFT model against a reward, on a KL leash.

    minillm rlhf --algo grpo --reward oracle --out runs/grpo          # verifiable reward (judge)
    minillm rlhf --algo reinforce --reward utility --out runs/rf      # the oracle's true utility
    minillm rlhf --algo ppo --reward oracle --out runs/ppo            # value head + GAE, KL in the reward
    minillm rlhf --reward length --max-new-tokens 16 --out runs/hack  # a length-biased reward to hack
    minillm rlhf --reward ai --out runs/rlaif                         # RLAIF: the SFT model as labeler
    minillm rlhf --reward rm:runs/rm --out runs/rlhf                  # lesson 10's reward model
    minillm rlhf --out runs/grpo --resume                             # continue where it stopped
    minillm rlhf --agreement 200                                      # the AI labeler vs the oracle
    minillm rlhf --compare runs/rl-compare                            # SFT, DPO, RLHF, GRPO, RLAIF side by side
    minillm rlhf --hacking runs/rl-hacking                            # PPO against a length-biased reward model
"""

from __future__ import annotations

import argparse

HELP = "lesson 11: RLHF/RLAIF (GRPO, REINFORCE, PPO) of the SFT model against the oracle, a reward model or an AI labeler"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import rlhf_loop  # deferred: importing torch takes a second; `minillm --help` stays instant
    from minillm.config import add_dataclass_arguments

    parser.add_argument("--checkpoint", default="sft", help="the policy to start from: 'sft' (shipped) or a run folder")
    parser.add_argument("--reward", default="oracle", help=f"one of {', '.join(rlhf_loop.REWARDS)}")
    parser.add_argument("--out", default=None, help="run folder (checkpoint with optimizer and step, metrics.jsonl)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="save a checkpoint every N steps (with --out)")
    parser.add_argument("--eval-stories", type=int, default=20, help="held-out validation stories to measure on (6 questions each; 0: none)")
    parser.add_argument("--agreement", type=int, default=0, metavar="N",
                        help="instead: the AI labeler's agreement with the oracle on N held-out preference pairs")
    parser.add_argument("--compare", default=None, metavar="DIR",
                        help="instead: lesson 11's comparison (SFT, DPO, RLHF, GRPO, RLAIF; each in its own "
                             "process), compare.json + table into DIR")
    parser.add_argument("--hacking", default=None, metavar="DIR",
                        help="instead: lesson 11's reward-hacking runs, hacking.json + hacking.png into DIR")
    parser.add_argument("--kl-coefs", default="0,0.05,0.2", help="with --hacking: the KL coefficients to run")
    add_dataclass_arguments(parser, rlhf_loop.RLConfig)


def run(args: argparse.Namespace) -> int:
    import copy

    from minillm import rlhf_loop as L, world  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.instruct import instruction_items, load_shipped

    if args.compare or args.hacking:
        return experiments(args)
    policy, tok = load_shipped(args.checkpoint)
    reference = copy.deepcopy(policy).eval()
    if args.agreement:
        return agreement(reference, tok, args.agreement)
    cfg = dataclass_from_args(L.RLConfig, args)
    reward = L.make_reward(args.reward, reference, tok)
    train = instruction_items(world.load_split("train").splitlines()[2000:2000 + cfg.stories], "seen", seed=2)
    held = instruction_items(world.load_split("val").splitlines()[:args.eval_stories], "seen", seed=1)
    if held:
        show("before", L.evaluate_policy(policy, tok, held, reference, cfg.max_new_tokens))
    res = L.rl_train(policy, tok, train, reward, cfg, reference=reference, out_dir=args.out, resume=args.resume,
                     checkpoint_every=args.checkpoint_every if args.out else 0, progress=True)
    if held:   # (a KL early stop was printed by rl_train's log)
        show("after", L.evaluate_policy(policy, tok, held, reference, cfg.max_new_tokens))
    value = res["value_model"].value_head if res["value_model"] is not None else None
    held_models = L.models_held(policy, reference, getattr(reward, "model", None), value)
    print(f"{res['seconds']:.0f} s; models held {held_models['models']} ({held_models['param_bytes'] / 1e6:.1f} MB of "
          f"weights); peak RSS {L.peak_rss_mb():.0f} MB" + (f"; run folder {args.out}" if args.out else ""))
    return 0 if not res["stopped"] else 1


def show(when: str, m: dict) -> None:
    kl = f", KL to SFT {m['kl']:.3f} nats" if "kl" in m else ""
    print(f"{when}: judge accuracy {m['accuracy']:.3f}, true utility {m['utility']:.3f}, length-biased "
          f"{m['perceived']:.3f}, {m['words']:.2f} words per answer{kl} (n={m['n']})")


def agreement(model, tok, n: int) -> int:
    from minillm import preferences, rollout  # deferred: see add_arguments

    pairs = preferences.preference_pairs(n, seed=0, split="prefs-heldout")
    for mode in ("score", "compare"):
        a = rollout.labeler_agreement(rollout.AILabeler(model, tok, mode=mode), pairs)
        print(f"AI labeler ({mode}): agrees with the oracle on {a['agreement']:.3f} of {a['n']} pairs "
              f"(the simulated human: {a['human_agreement']:.3f} in expectation)")
    return 0


def experiments(args: argparse.Namespace) -> int:
    """--compare / --hacking: lesson 11's experiments (sizes from RLConfig's --steps, --lr, --max-new-tokens)."""
    import json

    from minillm import rlhf_compare as C  # deferred: see add_arguments
    from minillm.runfolder import prepare_out_dir
    from minillm.utils import MiniLLMError, atomic_write_text

    try:
        betas = tuple(float(b) for b in args.kl_coefs.split(","))
    except ValueError:
        raise MiniLLMError(f"--kl-coefs must be comma-separated numbers, got {args.kl_coefs!r}") from None
    if not all(b >= 0 for b in betas):   # (nan fails too)
        raise MiniLLMError(f"every KL coefficient must be >= 0, got {args.kl_coefs!r}")
    out = prepare_out_dir(args.compare or args.hacking)   # before any compute: a bad folder is one error
    cfg = C.CompareConfig(rl_steps=args.steps, lr=args.lr, max_new_tokens=args.max_new_tokens,
                          eval_stories=args.eval_stories or C.CompareConfig.eval_stories, seed=args.seed)
    if args.compare:
        res = C.compare(cfg)
        atomic_write_text(out / "compare.json", json.dumps(res, indent=1) + "\n")
        print(C.compare_table(res))
        print(f"wrote {out / 'compare.json'}")
        return 0
    res = C.reward_hacking(cfg, kl_coefs=betas, steps=args.steps, lr=args.lr)
    atomic_write_text(out / "hacking.json", json.dumps(res, indent=1) + "\n")
    C.plot_hacking(res).savefig(out / "hacking.png", dpi=110, bbox_inches="tight")
    print(C.hacking_table(res))
    print(f"wrote {out / 'hacking.json'} and {out / 'hacking.png'}")
    return 0
