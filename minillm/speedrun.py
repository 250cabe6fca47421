"""The main job: `minillm speedrun`.

Today: TinyWorld -> its entropy floor. Each later lesson appends a stage
(tokenizer -> pretraining -> evaluation -> post-training) and a section of the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minillm import world


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/speedrun", help="folder for the report and artifacts")
    parser.add_argument("--fast", action="store_true", help="a tiny run for CI (well under a minute)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = world.default_data_dir()
    print(f"TinyWorld data: {data}")
    train, val = world.load_split("train"), world.load_split("val")
    print(f"train: {len(train.encode()):,} bytes, val: {len(val.encode()):,} bytes")
    floor = world.entropy_floor([world.story_from_text(line) for line in val.splitlines()])
    print(f"validation {floor}")
    (out / "report.md").write_text(f"# minillm speedrun\n\nValidation {floor}.\n", encoding="utf-8")
    print(f"report: {out / 'report.md'}")
    return 0
