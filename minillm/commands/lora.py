"""`minillm lora`: lesson 09: train a LoRA adapter on the SFT task, fold one in, describe one.

    minillm lora train --checkpoint pretrained --r 8 --alpha 16 --targets attn --out runs/lora
    minillm lora train --out runs/lora --resume             # continue where it stopped
    minillm lora merge --checkpoint pretrained --adapter runs/lora --out runs/lora-merged
    minillm lora info runs/lora
    minillm lora experiment --out runs/lora-exp             # full fine-tuning vs LoRA (~10+ min)
"""

from __future__ import annotations

import argparse
import dataclasses

HELP = "lesson 09: LoRA adapters (train on the SFT task, merge into a checkpoint, info, the experiment)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm import instruct, lora, lora_runs  # deferred: importing torch takes a second
    from minillm.config import add_dataclass_arguments

    sub = parser.add_subparsers(dest="action", required=True)
    fmt = dict(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train = sub.add_parser("train", help="train an adapter (lesson 08's SFT data) and write it to --out", **fmt)
    train.add_argument("--checkpoint", default="pretrained", help="base: 'pretrained' (shipped) or a run folder")
    train.add_argument("--out", required=True, help="adapter folder (its fit run state goes to OUT/train)")
    train.add_argument("--resume", action="store_true", help="continue the run in OUT/train")
    train.add_argument("--new-tokens", action=argparse.BooleanOptionalAction, default=True,
                       help="also train the embedding rows of the chat tokens the base lacks")
    add_dataclass_arguments(train, lora.LoRAConfig)
    add_dataclass_arguments(train, instruct.SFTConfig)
    train.set_defaults(lr=1e-2, steps=300)      # LoRA wants a larger lr than full fine-tuning's 1e-3
    merge = sub.add_parser("merge", help="fold an adapter into its base: an ordinary checkpoint + tokenizer", **fmt)
    merge.add_argument("--checkpoint", default=None, help="base (default: the one the adapter records)")
    merge.add_argument("--adapter", required=True, help="adapter folder from `minillm lora train`")
    merge.add_argument("--out", required=True, help="folder for ckpt.pt + tokenizer.json")
    info = sub.add_parser("info", help="print an adapter's rank, targets, size and base", **fmt)
    info.add_argument("adapter", help="adapter folder")
    exp = sub.add_parser("experiment", help="full fine-tuning vs LoRA: table.md, lora_runs.png, results.json", **fmt)
    exp.add_argument("--checkpoint", default="pretrained", help="base checkpoint of every run")
    exp.add_argument("--out", required=True, help="folder for the table and the plot")
    add_dataclass_arguments(exp, lora_runs.LoRARunsConfig)


def run(args: argparse.Namespace) -> int:
    return {"train": train, "merge": merge, "info": info, "experiment": experiment}[args.action](args)


def train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from minillm import instruct, lora, lora_runs  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.utils import MiniLLMError

    lcfg, scfg = dataclass_from_args(lora.LoRAConfig, args), dataclass_from_args(instruct.SFTConfig, args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise MiniLLMError(f"--out {out} is a file; give a folder")
    base, tok = instruct.load_shipped(args.checkpoint)
    res = lora_runs.lora_sft_train(base, tok, scfg, lcfg, out_dir=out / "train", resume=args.resume,
                                   new_tokens=args.new_tokens)
    lora.save_adapter(out, res["model"], lcfg, base=res["base"], first_new_token=res["first_new_token"],
                      extra=dict(base_checkpoint=str(args.checkpoint), sft=dataclasses.asdict(scfg)))
    res["tokenizer"].save(out / "tokenizer.json")
    print(f"trained in {res['seconds']:.0f} s; adapter in {out} "
          f"({(out / lora.ADAPTER_FILE).stat().st_size / 1e3:.0f} kB); merge with: "
          f"minillm lora merge --adapter {out} --out {out}-merged")
    return 0


def merge(args: argparse.Namespace) -> int:
    from minillm import instruct, lora, lora_runs  # deferred: see add_arguments

    model, tok, lcfg = lora_runs.load_with_adapter(args.checkpoint, args.adapter)
    lora.merge_lora(model)
    meta = dict(stage="lora-merged", adapter=str(args.adapter), lora=dataclasses.asdict(lcfg))
    folder = instruct.save_small(args.out, model, tok, meta)
    print(f"merged r={lcfg.r} {lcfg.targets} into {folder} "
          f"(an ordinary checkpoint: minillm chat --checkpoint {folder})")
    return 0


def info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from minillm import lora  # deferred: see add_arguments
    from minillm.checkpoint import load_checkpoint
    from minillm.utils import MiniLLMError

    folder = Path(args.adapter)
    if not (folder / lora.ADAPTER_CONFIG).is_file() or not (folder / lora.ADAPTER_FILE).is_file():
        raise MiniLLMError(f"{folder} is not an adapter folder "
                           f"(it needs {lora.ADAPTER_CONFIG} and {lora.ADAPTER_FILE})")
    meta = json.loads((folder / lora.ADAPTER_CONFIG).read_text(encoding="utf-8"))
    state = load_checkpoint(folder / lora.ADAPTER_FILE)
    rows = state.get(lora.TOKEN_ROWS)
    numbers = sum(t.numel() for t in state.values())
    print(f"adapter {folder}: r={meta['r']} alpha={meta['alpha']} targets={meta['targets']} "
          f"rslora={meta.get('rslora', False)} dropout={meta.get('dropout', 0.0)}")
    print(f"  {len(meta.get('modules', []))} wrapped layers, {numbers:,} numbers"
          + (f" (incl. {rows.numel():,} in {rows.shape[0]} new token rows)" if rows is not None else "")
          + f", {(folder / lora.ADAPTER_FILE).stat().st_size / 1e3:.0f} kB")
    print(f"  base fingerprint {meta.get('base')}, base checkpoint {meta.get('base_checkpoint', 'not recorded')}")
    return 0


def experiment(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from minillm import lora_runs  # deferred: see add_arguments
    from minillm.config import dataclass_from_args
    from minillm.utils import atomic_write_text

    cfg = dataclass_from_args(lora_runs.LoRARunsConfig, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = lora_runs.lora_vs_full(cfg, args.checkpoint)
    table = lora_runs.lora_table(res)
    atomic_write_text(out / "table.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps(lora_runs.results_json(res), indent=1) + "\n")
    lora_runs.plot_lora_runs(res).savefig(out / "lora_runs.png", dpi=110)
    print(table)
    return 0
