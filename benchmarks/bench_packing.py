"""Packing vs padding for SFT: padding saved and training speed, from one run.

TinyWorld instruction examples (story + question -> answer, rendered with the chat
template) are batched two ways: right-padded to the longest example of each batch,
or packed first-fit into rows of `--block` tokens with a block-diagonal mask and
restarting positions (`minillm.sft.pack_batch`). Printed: rows, the share of
padding, and the wall time of forward + backward over the same examples with the
default speedrun's model shape (random weights: speed does not depend on them).
The default context (128) holds one ~100-token example per row, so packing saves
little there; `--block 512` is the case packing is for.

    OMP_NUM_THREADS=1 python benchmarks/bench_packing.py --block 128
    OMP_NUM_THREADS=1 python benchmarks/bench_packing.py --block 512
"""

from __future__ import annotations

import argparse
import time

import torch

from minillm import instruct, sft, world
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import Tokenizer


def examples(n: int, block: int):
    tok = Tokenizer.train(world.load_split("train")[:1 << 18], 753)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    _, tok = sft.add_chat_tokens(model, tok)
    items = instruct.instruction_items(world.load_split("train").splitlines()[:n], "seen")[:n]
    out = [sft.render_chat(instruct.qa_conversation(it), tok) for it in items]
    return [e for e in out if len(e[0]) <= block + 1], tok.vocab_size


def timed(model, batches, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for b in batches:
            model.zero_grad(set_to_none=True)
            sft.sft_loss_sum(model, b).backward()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, default=512, help="row length of the packed batches (the model's context)")
    ap.add_argument("--examples", type=int, default=256, help="examples in the timed epoch")
    ap.add_argument("--batch", type=int, default=16, help="examples per padded batch (packed: the same examples)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats (the best is printed)")
    args = ap.parse_args()
    exs, vocab = examples(args.examples, args.block)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=args.block, n_layer=4, n_head=4, n_embd=96, style="llama",
                          bias=False))
    chunks = [exs[i:i + args.batch] for i in range(0, len(exs), args.batch)]
    padded = [sft.pad_batch(c) for c in chunks]
    # packing works on the whole epoch: as many examples per row as fit, `batch` rows per batch
    whole = sft.pack_batch(exs, args.block)
    packed = [{k: v[i:i + args.batch] for k, v in whole.items()} for i in range(0, whole["idx"].size(0), args.batch)]
    real = sum(len(x) - 1 for x, _ in exs)
    for name, batches in (("padded", padded), ("packed", packed)):
        slots = sum(b["idx"].numel() for b in batches)
        rows = sum(b["idx"].size(0) for b in batches)
        with torch.no_grad():
            loss = sum(float(sft.sft_loss_sum(model, b)) for b in batches)
        s = timed(model, batches, args.repeats)
        print(f"{name}: {rows:4d} rows, {slots:7,d} token slots, padding {100 * (1 - real / slots):5.1f}%, "
              f"loss sum {loss:.2f}, {s:.2f} s per epoch ({real / s:,.0f} real tokens/s)")


if __name__ == "__main__":
    main()
