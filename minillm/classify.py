"""Classification fine-tuning: pretrain, then fine-tune (lesson 08, the root of the whole idea).

What it builds:
- a TinyWorld task whose label needs reading the whole story: "did the hero end
  with MORE objects than at the start?" (`story_label`; finds add, gifts subtract,
  so the first count must be held against the last one);
- `Classifier`: a body (our GPT, or an LSTM LM) with a linear head on the hidden
  state of the last REAL token of each row, so right padding changes nothing;
- `finetune`: full fine-tuning, a linear probe (frozen body), and ULMFiT's two
  tricks as options: discriminative learning rates (each layer lr / decay^depth)
  and gradual unfreezing (the top layer first, one more every few steps);
- `LSTMLM`: a small `nn.LSTM` language model pretrained on the same text, then
  fine-tuned the same way (Dai & Le, 2015: semi-supervised sequence learning);
- `data_efficiency`: accuracy vs number of labels for pretrained / random-init /
  LSTM, over seeds, and `plot_data_efficiency` (mean +- standard error).

Follows Dai & Le (2015), Howard & Ruder (2018, ULMFiT), Radford et al. (2018, GPT-1:
the last token's state feeds the classifier). Left out: ULMFiT's slanted triangular
schedule and concat pooling, AWD-LSTM regularisation, multi-task auxiliary LM loss.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import world
from minillm.utils import MiniLLMError, set_seed

LABELS = ["not more", "more"]


def story_label(text: str) -> int:
    """1 if the hero ends with more objects than at the start, else 0 (read from the text)."""
    f = world.story_from_text(text).facts
    return int(f["hero_end"] > f["start"])


def labelled(split: str, n: int, offset: int = 0) -> list[tuple[str, int]]:
    """n (story, label) pairs from a TinyWorld split ("train" for training, "val" for testing)."""
    lines = world.load_split(split).splitlines()[offset:offset + n]
    if len(lines) < n:
        raise MiniLLMError(f"the {split} split has only {len(lines)} stories after offset {offset}, asked for {n}")
    return [(t, story_label(t)) for t in lines]


def encode_batch(tokenizer, texts: list[str], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (idx (B, T) right-padded, lengths (B,))."""
    rows = [tokenizer.encode(t) for t in texts]
    if any(len(r) == 0 for r in rows):
        raise MiniLLMError("an example encodes to no tokens: it needs at least one")
    idx = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, :len(r)] = torch.tensor(r)
    return idx, torch.tensor([len(r) for r in rows])


# ---------------------------------------------------------------------------------
# Bodies: the GPT (`GPT.hidden_states`) and an LSTM language model
# ---------------------------------------------------------------------------------

class LSTMLM(nn.Module):
    """A small LSTM language model (Dai & Le's body): embedding -> LSTM -> linear head."""

    def __init__(self, vocab_size: int, n_embd: int = 64, hidden: int = 128, n_layer: int = 1):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.lstm = nn.LSTM(n_embd, hidden, n_layer, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)
        self.n_embd = hidden

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.wte(idx))[0]  # (B, T, hidden)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.head(self.hidden_states(idx))  # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return [list(self.wte.parameters()), list(self.lstm.parameters())]


def pretrain_lstm(tokens, vocab_size: int, steps: int = 300, batch_size: int = 16, block_size: int = 128,
                  lr: float = 3e-3, seed: int = 0, log=None) -> LSTMLM:
    """Next-token pretraining of an `LSTMLM` on a token stream (random windows, Adam)."""
    set_seed(seed)
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    model = LSTMLM(vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        start = torch.randint(0, len(tokens) - block_size - 1, (batch_size,), generator=g)
        win = torch.stack([tokens[s:s + block_size + 1] for s in start.tolist()])  # (B, T + 1)
        _, loss = model(win[:, :-1], win[:, 1:])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if log and (step + 1) % max(1, steps // 5) == 0:
            log(f"lstm step {step + 1} | loss {loss.item():.4f}")
    return model.eval()


def layer_groups(body: nn.Module) -> list[list[nn.Parameter]]:
    """The body's parameters from the bottom (embedding) to the top, one list per layer."""
    if hasattr(body, "layer_groups"):
        return body.layer_groups()
    t = body.transformer
    groups = [[p for n, p in t.named_parameters() if n.startswith(("wte", "wpe"))]]
    groups += [list(b.parameters()) for b in t.h]
    groups[-1] += list(t.ln_f.parameters())
    return groups


class Classifier(nn.Module):
    """A body plus a linear head on the hidden state of each row's last real token.

    >>> idx, lengths = torch.tensor([[5, 6, 0]]), torch.tensor([2])   # token 0 is padding
    >>> # logits(idx, lengths) reads position lengths - 1 = 1, never the pad
    """

    def __init__(self, body: nn.Module, n_classes: int = 2):
        super().__init__()
        self.body = body
        width = body.config.n_embd if hasattr(body, "config") else body.n_embd
        self.head = nn.Linear(width, n_classes)

    def features(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T), (B,) -> (B, C): the state of token lengths[b] - 1 of row b."""
        h = self.body.hidden_states(idx)                     # (B, T, C) after the final norm
        return h[torch.arange(idx.size(0)), lengths - 1]   # (B, C)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(idx, lengths))       # (B, n_classes)


# ---------------------------------------------------------------------------------
# Fine-tuning and the data-efficiency experiment
# ---------------------------------------------------------------------------------

@dataclass
class FinetuneConfig:
    """How to fine-tune a classifier."""

    steps: int = field(default=20, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "examples per step (all of them if fewer)"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the top layer and the head"})
    mode: str = field(default="full", metadata={"help": "full (every weight) or probe (frozen body, head only)"})
    lr_decay: float = field(default=1.0, metadata={"help": "ULMFiT discriminative lr: layer l gets lr / decay^(depth from top); 2.6 in ULMFiT"})
    unfreeze_every: int = field(default=0, metadata={"help": "ULMFiT gradual unfreezing: one more layer every N steps (0: off)"})
    seed: int = field(default=0, metadata={"help": "seed of the head's init and the batches"})


def finetune(clf: Classifier, tokenizer, data: list[tuple[str, int]], cfg: FinetuneConfig = FinetuneConfig()) -> Classifier:
    """Train `clf` on (text, label) pairs with cross-entropy; returns it in eval mode."""
    if cfg.mode not in ("full", "probe"):
        raise MiniLLMError(f"mode must be full or probe, got {cfg.mode!r}")
    if not data:
        raise MiniLLMError("no labelled examples to fine-tune on")
    set_seed(cfg.seed)
    clf.head.reset_parameters()
    groups = layer_groups(clf.body)                   # bottom -> top
    n = len(groups)
    params = [dict(params=clf.head.parameters(), lr=cfg.lr)]
    if cfg.mode == "full":
        params += [dict(params=g, lr=cfg.lr / cfg.lr_decay ** (n - 1 - i)) for i, g in enumerate(groups)]
    opt = torch.optim.AdamW(params, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    clf.train()
    for step in range(cfg.steps):
        # gradual unfreezing: at step s the top 1 + s // unfreeze_every layers train
        live = n if cfg.unfreeze_every <= 0 else min(n, 1 + step // cfg.unfreeze_every)
        for i, g in enumerate(groups):
            for p in g:
                p.requires_grad_(cfg.mode == "full" and i >= n - live)
        batch = rng.sample(data, min(cfg.batch_size, len(data)))
        idx, lengths = encode_batch(tokenizer, [t for t, _ in batch])
        loss = F.cross_entropy(clf(idx, lengths), torch.tensor([y for _, y in batch]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
        opt.step()
    for p in clf.parameters():
        p.requires_grad_(True)
    return clf.eval()


@torch.no_grad()
def accuracy(clf: Classifier, tokenizer, data: list[tuple[str, int]], batch_size: int = 64) -> float:
    """Fraction of `data` classified right."""
    hits = 0
    for i in range(0, len(data), batch_size):
        chunk = data[i:i + batch_size]
        idx, lengths = encode_batch(tokenizer, [t for t, _ in chunk])
        hits += int((clf(idx, lengths).argmax(-1) == torch.tensor([y for _, y in chunk])).sum())
    return hits / len(data)


def data_efficiency(bodies: dict, tokenizer, counts=(10, 30, 100, 300, 1000), seeds=(0, 1, 2), test_n: int = 300,
                    cfg: FinetuneConfig = FinetuneConfig(), log=None) -> list[dict]:
    """Accuracy vs labels: for each body (a factory () -> fresh nn.Module), count and seed,
    fine-tune a fresh copy on `count` training stories (a seed-dependent sample) and test
    on `test_n` validation stories -> rows {body, n, seed, accuracy}."""
    pool, test = labelled("train", max(counts) * 2), labelled("val", test_n)
    rows = []
    for name, make in bodies.items():
        for n in counts:
            for seed in seeds:
                train_set = random.Random(f"labels/{seed}").sample(pool, n)
                clf = finetune(Classifier(make()), tokenizer, train_set, FinetuneConfig(**{**cfg.__dict__, "seed": seed}))
                rows.append(dict(body=name, n=n, seed=seed, accuracy=accuracy(clf, tokenizer, test)))
                if log:
                    log(f"{name:>12} n={n:5d} seed={seed}: accuracy {rows[-1]['accuracy']:.3f}")
    return rows


def summarise(rows: list[dict]) -> dict[tuple[str, int], tuple[float, float]]:
    """{(body, n): (mean accuracy, standard error over seeds)}."""
    out = {}
    for key in dict.fromkeys((r["body"], r["n"]) for r in rows):
        acc = [r["accuracy"] for r in rows if (r["body"], r["n"]) == key]
        out[key] = (statistics.mean(acc), statistics.stdev(acc) / math.sqrt(len(acc)) if len(acc) > 1 else 0.0)
    return out


def plot_data_efficiency(rows: list[dict], majority: float | None = None):
    """Accuracy vs number of labels (log x), mean +- standard error per body; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    s = summarise(rows)
    for body in dict.fromkeys(r["body"] for r in rows):
        ns = sorted(n for b, n in s if b == body)
        ax.errorbar(ns, [s[body, n][0] for n in ns], yerr=[s[body, n][1] for n in ns], marker="o", capsize=3, label=body)
    if majority is not None:
        ax.axhline(majority, color="grey", ls=":", label="majority class")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training stories")
    ax.set_ylabel("test accuracy")
    ax.set_title('"Did the hero end with more?"')
    ax.legend()
    return fig


def experiment(pretrained: nn.Module, tokenizer, counts=(10, 30, 100, 300, 1000), seeds=(0, 1, 2), test_n: int = 100,
               cfg: FinetuneConfig = FinetuneConfig(), lstm_steps: int = 200, log=None) -> dict:
    """The lesson's data-efficiency experiment: pretrained GPT (full fine-tuning and a linear
    probe), the same GPT from random init, and an LSTM LM pretrained on the same text.
    -> {rows, majority, lstm_seconds} (rows as in `data_efficiency`)."""
    import copy
    import time

    from minillm.model import GPT

    text = "\n".join(world.load_split("train").splitlines()[:4000]) + "\n"
    t = time.time()
    lstm = pretrain_lstm(tokenizer.encode(text), tokenizer.vocab_size, steps=lstm_steps, log=log)
    lstm_seconds = time.time() - t

    def scratch() -> nn.Module:
        torch.manual_seed(0)
        return GPT(pretrained.config)

    bodies = {"pretrained GPT": lambda: copy.deepcopy(pretrained), "random-init GPT": scratch,
              "pretrained LSTM (Dai & Le)": lambda: copy.deepcopy(lstm)}
    rows = data_efficiency(bodies, tokenizer, counts, seeds, test_n, cfg, log)
    rows += data_efficiency({"pretrained GPT, linear probe": lambda: copy.deepcopy(pretrained)}, tokenizer, counts,
                            seeds, test_n, FinetuneConfig(**{**cfg.__dict__, "mode": "probe", "lr": 1e-2}), log)
    labels = [y for _, y in labelled("val", test_n)]
    majority = max(sum(labels), len(labels) - sum(labels)) / len(labels)
    return dict(rows=rows, majority=majority, lstm_seconds=lstm_seconds, config=cfg.__dict__)


def efficiency_table(result: dict) -> str:
    """Markdown: mean accuracy +- standard error per body and label count."""
    s = summarise(result["rows"])
    bodies = list(dict.fromkeys(b for b, _ in s))
    counts = sorted({n for _, n in s})
    lines = ["| body | " + " | ".join(f"{n} labels" for n in counts) + " |", "| --- |" + " --- |" * len(counts)]
    for b in bodies:
        lines.append(f"| {b} | " + " | ".join(f"{s[b, n][0]:.3f} ± {s[b, n][1]:.3f}" for n in counts) + " |")
    return "\n".join(lines) + f"\n\nMajority class: {result['majority']:.3f}."
