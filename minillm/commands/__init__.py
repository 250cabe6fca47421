"""The `minillm` subcommands: one small module per command.

Each module has `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
The lesson modules know no argparse: a command turns flags into the lesson's config
dataclasses (`minillm.config`), calls the lesson's functions, prints and writes files.
A command imports its lesson module inside `add_arguments`/`run`, so that
`minillm --help` does not pay for importing torch.
"""

from __future__ import annotations

from minillm.commands import (arena, assign, chat, cost, datapipe, doctor, dpo, evaluate, generate, lora, rlhf, rm,
                              sft, speedrun, sweep, tokenizer, train, world)

# name -> command module, in the order of the lessons
COMMANDS = {
    "speedrun": speedrun,
    "doctor": doctor,
    "world": world,
    "tokenizer": tokenizer,
    "generate": generate,
    "train": train,
    "evaluate": evaluate,
    "sweep": sweep,
    "cost": cost,
    "sft": sft,
    "chat": chat,
    "lora": lora,
    "rm": rm,
    "dpo": dpo,
    "rlhf": rlhf,
    "arena": arena,
    "datapipe": datapipe,
    "assign": assign,
}
