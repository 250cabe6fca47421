"""`minillm world`: lesson 00: TinyWorld stories with their exact bits, the entropy floor, the data set.

`sample` prints stories with their information in bits; `floor` the entropy floor of
a fresh corpus; `data` writes the default data set (`minillm.world_tasks.write_dataset`),
by default into data/tinyworld, where a test checks it byte for byte.
"""

from __future__ import annotations

import argparse

HELP = "lesson 00: TinyWorld stories, their entropy floor, and the default data set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.world import DEFAULT_SEED, DEFAULT_SIZES  # deferred: keeps `minillm --help` instant

    parser.add_argument("action", nargs="?", default="sample", choices=["sample", "floor", "data"],
                        help="sample: print stories with their bits; floor: the entropy floor of a "
                             "corpus; data: write a data set (default: the one in data/tinyworld)")
    parser.add_argument("--stories", type=int, default=3, help="how many stories (sample, floor)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--split", default="train", help="split name: a different split, different stories")
    parser.add_argument("--out", default=None, help="data: output folder (default: data/tinyworld)")
    parser.add_argument("--size", type=int, default=None,
                        help=f"data: stories in train (default {DEFAULT_SIZES['train']}); val gets a 12th")


def run(args: argparse.Namespace) -> int:
    from minillm import world, world_tasks  # deferred: see add_arguments

    if args.action == "sample":
        for story in world.generate(args.stories, args.seed, args.split):
            print(f"[{story.bits:.1f} bits, {len(story.text) + 1} bytes] {story.text}")
    elif args.action == "floor":
        print(world.entropy_floor(world.generate(args.stories, args.seed, args.split)))
    else:
        from pathlib import Path

        from minillm.utils import MiniLLMError, staged_folder

        if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
            raise MiniLLMError(f"--out {args.out} is a file; give a folder")
        sizes = None
        world.check_size_and_seed(1, args.seed)
        if args.size is not None:
            world.check_size_and_seed(args.size, args.seed)
            sizes = dict(train=args.size, val=max(1, args.size // 12))
        out = Path(args.out or world.REPO_DATA)
        with staged_folder(out) as tmp:   # a full disk or Ctrl-C leaves the old data set, not half a new one
            paths = world_tasks.write_dataset(tmp, args.seed, sizes)
            sizes_written = {name: p.stat().st_size for name, p in paths.items()}
        for name, path in paths.items():
            print(f"wrote {out / path.relative_to(tmp)} ({sizes_written[name]:,} bytes)")
    return 0
