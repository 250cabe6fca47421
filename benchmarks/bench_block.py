"""Training-step time of our GPT, LLaMA style and GPT-2 style, beside a plain nanoGPT GPT-2.

Each "step" is forward + cross-entropy + backward + AdamW on the same shapes (default
B=32, T=256, 4 layers, 4 heads, C=128, V=512: the speedrun's model). The three
models run interleaved (A, B, C, A, B, C, ...) after warm-up, so a change in machine
load hits all three alike; we print medians, the ratios to nanoGPT and the load
average. The nanoGPT block below is written out here (Karpathy's nanoGPT model.py
shape: LayerNorm, fused qkv, F.scaled_dot_product_attention(is_causal=True), GELU
MLP, tied head), so the reference does not depend on our code.

    OMP_NUM_THREADS=2 python benchmarks/bench_block.py [--repeats 10] [--batch 32] [--seq 256]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.model import GPT, GPTConfig


class NanoBlock(nn.Module):
    def __init__(self, C: int, nh: int):
        super().__init__()
        self.nh = nh
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(self, V: int, T: int, L: int, nh: int, C: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(NanoBlock(C, nh) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def stepper(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(x, y):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    V, L, nh, C, B, T = 512, 4, 4, 128, args.batch, args.seq
    torch.manual_seed(0)
    models = {
        "minillm llama": GPT(GPTConfig.llama_style(vocab_size=V, block_size=T, n_layer=L, n_head=nh, n_embd=C)),
        "minillm gpt2": GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=nh, n_embd=C)),
        "nanoGPT gpt2": NanoGPT(V, T, L, nh, C),
    }
    steps = {name: stepper(m) for name, m in models.items()}  # built outside the timed region, for all
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    for _ in range(args.warmup):
        for s in steps.values():
            s(x, y)
    times = {name: [] for name in steps}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, s in steps.items():  # interleaved
            t0 = time.perf_counter()
            s(x, y)
            times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]
    ref = statistics.median(times["nanoGPT gpt2"])
    print(f"training step, B={B} T={T} L={L} nh={nh} C={C} V={V}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats, medians")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} cores")
    for name, ts in times.items():
        med = statistics.median(ts)
        spread = (max(ts) - min(ts)) / 2
        print(f"  {name:14s} {1000 * med:8.1f} ms  (+-{1000 * spread:.1f})  {med / ref:5.2f}x nanoGPT")
    assert all(math.isfinite(statistics.median(t)) for t in times.values())


if __name__ == "__main__":
    main()
