"""Downstream effect: pretrain the same tiny model, same token budget, on each stage's output.

Builds `downstream_table(datasets, cfg)`: for every named training text (the raw
extracted crawl, the output of each stage cumulatively, clean TinyWorld) it trains
the same GPT (lesson 04's `train`) for the same number of tokens, with the same
tokenizer, and measures bits per byte on clean TinyWorld validation stories,
next to that text's entropy floor (lesson 00). The value of a stage is the drop
in bits per byte it buys; a stage that throws good data away can cost bits when
the budget makes the model repeat what is left.

Held fixed: the tokenizer (trained once on clean TinyWorld, so every run counts
bytes the same way), the model, the steps x batch x block token budget, the seed.
Left out: scaling the budget with the data (lesson 06), several seeds per cell.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from minillm import world


@dataclasses.dataclass
class DownstreamConfig:
    """The one tiny model and budget every dataset gets."""

    vocab_size: int = 384      # BPE vocabulary (trained on clean TinyWorld)
    block_size: int = 64       # context length T
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    steps: int = 300           # optimizer steps: the token budget is steps x batch_size x block_size
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0
    val_stories: int = 300     # clean TinyWorld validation stories (split "datapipe_val")


def docs_text(docs: list[dict]) -> str:
    """The training text of a list of documents: their lines, one document after another."""
    return "".join(d["text"].strip() + "\n" for d in docs if d["text"].strip())


@torch.no_grad()
def bits_per_byte(model: torch.nn.Module, ids: np.ndarray, n_bytes: int, block_size: int) -> float:
    """Deterministic full pass: non-overlapping windows of `block_size`, mean next-token loss
    over all predicted tokens, converted to bits per byte of the validation text."""
    model.eval()
    x = torch.as_tensor(ids.astype(np.int64))
    n = (len(x) - 1) // block_size
    inputs = x[: n * block_size].view(n, block_size)              # (B, T)
    targets = x[1: n * block_size + 1].view(n, block_size)        # (B, T)
    total = 0.0
    for i in range(0, n, 64):
        logits, _ = model(inputs[i:i + 64])
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[i:i + 64].flatten(),
                                                   reduction="sum").item()
    nats_per_token = total / (n * block_size)
    return nats_per_token / math.log(2) * len(ids) / n_bytes


def train_and_score(text: str, tok, cfg: DownstreamConfig, val_ids: np.ndarray, val_bytes: int) -> dict:
    """Train the fixed model on `text` for the fixed budget; its validation bits/byte."""
    from minillm.model import GPTConfig
    from minillm.train import TrainConfig, train

    ids = np.asarray(tok.encode(text), dtype=np.int64)
    mcfg = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                     n_head=cfg.n_head, n_embd=cfg.n_embd)
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=min(30, cfg.steps),
                       eval_every=0, log_every=10 ** 9, seed=cfg.seed, device="cpu")
    t0 = time.perf_counter()
    result = train(mcfg, tcfg, ids, None, log=None)
    budget = cfg.steps * cfg.batch_size * cfg.block_size
    return dict(train_mb=len(text.encode("utf-8")) / 1e6, train_tokens=len(ids), epochs=budget / len(ids),
                bits_per_byte=bits_per_byte(result.model, val_ids, val_bytes, cfg.block_size),
                seconds=time.perf_counter() - t0)


def downstream_table(datasets: dict[str, str], cfg: DownstreamConfig | None = None) -> tuple[list[dict], float]:
    """Rows {dataset, train_mb, train_tokens, epochs, bits_per_byte, above_floor}, and the floor.

    `datasets`: name -> training text, e.g. {"raw": ..., "+langid": ..., "clean TinyWorld": ...}.
    """
    from minillm.tokenizer import Tokenizer

    cfg = cfg or DownstreamConfig()
    val = world.generate(cfg.val_stories, seed=0, split="datapipe_val")
    val_text = world.corpus_text(val)
    floor = world.entropy_floor(val).bits_per_byte
    tok = Tokenizer.train(world.corpus_text(world.generate(2000, seed=0, split="datapipe_tok")), cfg.vocab_size)
    val_ids = np.asarray(tok.encode(val_text), dtype=np.int64)
    rows = []
    for name, text in datasets.items():
        row = dict(dataset=name, **train_and_score(text, tok, cfg, val_ids, len(val_text.encode("utf-8"))))
        row["above_floor"] = row["bits_per_byte"] - floor
        rows.append(row)
    return rows, floor


def format_downstream(rows: list[dict], floor: float) -> str:
    """A Markdown table of `downstream_table` rows."""
    lines = [f"entropy floor of the validation stories: {floor:.4f} bits/byte", "",
             "| training data | MB | tokens | epochs | val bits/byte | above floor |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['dataset']} | {r['train_mb']:.2f} | {r['train_tokens']} | {r['epochs']:.2f} | "
              f"{r['bits_per_byte']:.4f} | {r['above_floor']:+.4f} |" for r in rows]
    return "\n".join(lines)
