"""Training speed: minillm's loop vs a minimal plain-PyTorch loop, same model, same batch.

Our loop does more per step (stateless batch sampling from a memmap, the
schedule, a finite-loss check, clipping, logging); this measures what that costs.
Both run the speedrun's default GPT on TinyWorld tokens, float32, for the same
number of steps, and both timers include building the model and the optimizer; the two are interleaved (A B A B ...) so that load from other
processes hits both alike, and each figure is the best of its repeats.

    python benchmarks/bench_train.py [--steps 30] [--repeats 3] [--fast]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from minillm import set_seed
from minillm.model import GPT, GPTConfig
from minillm.speedrun import PRESETS
from minillm.train import TrainConfig, train


def plain_loop(cfg: GPTConfig, tokens: np.ndarray, steps: int, batch: int, lr: float) -> float:
    """The smallest honest training loop: random windows, AdamW, clipping. Returns tokens/s.

    The timer covers what `train`'s does: building the model and optimizer, then the steps.
    """
    t = time.perf_counter()
    set_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.from_numpy(tokens.astype(np.int64))
    T = cfg.block_size
    for _ in range(steps):
        ix = torch.randint(len(data) - T - 1, (batch,))
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch * T / (time.perf_counter() - t)


def our_loop(cfg: GPTConfig, tokens: np.ndarray, steps: int, batch: int, lr: float) -> float:
    tc = TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=1, eval_every=0, log_every=0,
                     device="cpu", dtype="float32")
    t = time.perf_counter()
    r = train(cfg, tc, tokens, log=None)
    return r.tokens_seen / (time.perf_counter() - t)  # model construction included, as in plain_loop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fast", action="store_true", help="the --fast speedrun model instead of the default")
    args = ap.parse_args()
    from minillm import world
    from minillm.data import tokenize_text
    from minillm.tokenizer import Tokenizer

    p = PRESETS["fast" if args.fast else "default"]
    text = world.load_split("train")[:1 << 20]
    tok = Tokenizer.train(text, p.vocab_size)
    tokens = tokenize_text(text, tok)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                    n_embd=p.n_embd, style=p.style, bias=p.style == "gpt2")
    print(f"model: {GPT(cfg).num_parameters():,} parameters, batch {p.batch_size} x {p.block_size} tokens, "
          f"{args.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    ours, plain = [], []
    for r in range(args.repeats):
        plain.append(plain_loop(cfg, tokens, args.steps, p.batch_size, p.lr))
        ours.append(our_loop(cfg, tokens, args.steps, p.batch_size, p.lr))
        print(f"repeat {r}: plain PyTorch {plain[-1]:,.0f} tok/s | minillm.train {ours[-1]:,.0f} tok/s")
    best_o, best_p = max(ours), max(plain)
    print(f"best: plain PyTorch {best_p:,.0f} tok/s | minillm.train {best_o:,.0f} tok/s | "
          f"ours / plain = {best_o / best_p:.3f}")


if __name__ == "__main__":
    main()
