"""`minillm sweep`: lesson 06: train small models of several sizes and fit scaling laws.

Trains every (size, steps) pair of `minillm.sweep.SweepConfig` on TinyWorld, prints
the fit of L(N, D) against the entropy floor, and with `--out` writes the rows
(sweep.json) and the plot (sweep.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

HELP = "lesson 06: train small models of several sizes and fit scaling laws"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.config import add_dataclass_arguments
    from minillm.sweep import FULL_SIZES, FULL_STEPS, SweepConfig  # deferred: importing torch takes a second

    parser.add_argument("--full", action="store_true",
                        help=f"the longer sweep (sizes {FULL_SIZES}, steps {FULL_STEPS}): tens of minutes on a CPU")
    parser.add_argument("--out", default=None, help="write the rows (JSON) and the plot (PNG) to this folder")
    add_dataclass_arguments(parser, SweepConfig)


def run(args: argparse.Namespace) -> int:
    from minillm import sweep  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.utils import MiniLLMError, atomic_write, atomic_write_text

    cfg = dataclass_from_args(sweep.SweepConfig, args)
    if args.full:
        cfg = dataclasses.replace(cfg, sizes=sweep.FULL_SIZES, steps=sweep.FULL_STEPS)
    sweep.check_enough_runs(cfg)  # before any training
    check_run_configs(cfg)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise MiniLLMError(f"--out {out} is a file; give a folder")
    if out is not None:            # an unwritable --out fails now, not after minutes of training
        from minillm.runfolder import prepare_out_dir

        prepare_out_dir(out)
    rows = sweep.sweep(cfg)
    analysis = sweep.analyse_sweep(rows)
    print(sweep.report(analysis))
    if out is not None:
        atomic_write_text(out / "sweep.json", json.dumps(rows, indent=1) + "\n")
        fig = sweep.plot_sweep(rows, analysis)
        atomic_write(out / "sweep.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0


def check_run_configs(cfg) -> None:
    """Build every run's model and training config (their checks raise) before the data is
    tokenized and the first run trains: a bad flag fails in milliseconds, not after minutes."""
    import itertools

    from minillm import sweep  # deferred: see add_arguments
    from minillm.model import GPTConfig
    from minillm.train import TrainConfig
    from minillm.utils import MiniLLMError

    if cfg.n_head < 1:
        raise MiniLLMError(f"--n-head must be a positive integer, got {cfg.n_head}")
    for (C, L), steps in itertools.product(sweep.parse_sizes(cfg.sizes), sweep.parse_steps(cfg.steps)):
        if C % cfg.n_head:
            raise MiniLLMError(f"n_embd {C} is not divisible by n_head {cfg.n_head}")
        GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=L, n_head=cfg.n_head, n_embd=C)
        TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=max(1, steps // 10),
                    eval_every=0, eval_batches=cfg.eval_batches, log_every=0, seed=cfg.seed,
                    device="cpu", dtype="float32")
