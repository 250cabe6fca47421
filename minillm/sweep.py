"""The TinyWorld sweep: train small GPTs, fit scaling laws, compare E with the entropy floor (lesson 06).

`sweep` trains every (size, token budget) pair of a `SweepConfig` on TinyWorld (CPU,
minutes) and records (N, D, C, loss) per run; `analyse_sweep` fits L(N, D) with
`minillm.scaling.fit_chinchilla` leaving the largest-compute run out to predict it,
fits the compute frontier, and converts TinyWorld's entropy floor to the loss's unit
(nats per token), so the fitted irreducible loss E can be held against the true one.
`plot_sweep` and `report` show the result. `REFERENCE_SWEEP` is a committed
`minillm sweep --full` run (`data/tables/reference_sweep.json`), for analysing a real
sweep in seconds.

Left out: learning-rate tuning per size, repeated seeds per point, IsoFLOP-style sweeps.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minillm import world
from minillm.data import tokenize_text
from minillm.model import GPT, GPTConfig
from minillm.scaling import ChinchillaLaw, PowerLaw, fit_chinchilla, fit_power_law
from minillm.tokenizer import Tokenizer
from minillm.train import TrainConfig, train
from minillm.utils import MiniLLMError

FAST_SIZES = "16x1,32x1,48x2"               # n_embd x n_layer
FAST_STEPS = "30,60,120"
FULL_SIZES = "16x1,24x1,32x2,48x2,64x3"
FULL_STEPS = "100,200,400,800,1600"
MIN_RUNS = 7  # fitting L(N, D) needs 6 points (5 parameters + 1), plus the held-out run

REFERENCE_SWEEP_FILE = Path(__file__).resolve().parent.parent / "data" / "tables" / "reference_sweep.json"


def with_derived_columns(row: dict, bytes_per_token: float) -> dict:
    """A sweep row with its compute C = 6 N D and its loss in bits per byte."""
    return dict(row, C=6.0 * row["N"] * row["D"], bytes_per_token=bytes_per_token,
                bits_per_byte=row["loss"] / math.log(2) / bytes_per_token)


def load_reference_sweep(path: str | Path = REFERENCE_SWEEP_FILE) -> list[dict]:
    """The rows of a committed sweep (see the file's "made_by"), with C and bits per byte."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
        return [with_derived_columns(r, table["bytes_per_token"]) for r in table["rows"]]
    except (OSError, ValueError, KeyError) as e:
        raise MiniLLMError(f"cannot read the sweep table {path}: {e}") from None


# The output of `minillm sweep --full` (SweepConfig defaults) on a shared 2-core CPU.
REFERENCE_SWEEP = load_reference_sweep()

@dataclass
class SweepConfig:
    """What `sweep` trains: every size for every budget (steps x batch x block tokens)."""

    sizes: str = dataclasses.field(default=FAST_SIZES, metadata={"help": "comma-separated n_embd x n_layer, e.g. 16x1,32x2"})
    steps: str = dataclasses.field(default=FAST_STEPS, metadata={"help": "comma-separated step counts (token budgets)"})
    n_head: int = dataclasses.field(default=4, metadata={"help": "attention heads (must divide every n_embd)"})
    block_size: int = dataclasses.field(default=64, metadata={"help": "context length in tokens"})
    batch_size: int = dataclasses.field(default=16, metadata={"help": "sequences per step"})
    lr: float = dataclasses.field(default=1e-2, metadata={"help": "peak learning rate (warmup 10%, cosine)"})
    eval_batches: int = dataclasses.field(default=16, metadata={"help": "validation batches per final estimate"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of every run"})
    vocab_size: int = dataclasses.field(default=512, metadata={"help": "BPE vocabulary (256: raw bytes, no merges)"})



def parse_comma_list(text: str, convert=str, what: str = "items") -> list:
    """'16x1, 32x2' -> ['16x1', '32x2'] (each item through `convert`); empty items are dropped.

    >>> parse_comma_list("30, 60,,120", int)
    [30, 60, 120]
    """
    try:
        items = [convert(s.strip()) for s in str(text).split(",") if s.strip()]
    except ValueError:
        items = []
    if not items:
        raise MiniLLMError(f"{what}: expected a comma-separated list, got {text!r}")
    return items


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'16x1,32x2' -> [(16, 1), (32, 2)]: (n_embd, n_layer) pairs."""
    def size(s: str) -> tuple[int, int]:
        parts = tuple(int(v) for v in s.lower().split("x"))
        if len(parts) != 2 or min(parts) < 1:
            raise ValueError(s)
        return parts

    try:
        return parse_comma_list(text, size, "sizes")
    except MiniLLMError:
        raise MiniLLMError(f"sizes must look like '16x1,32x2' (n_embd x n_layer), got {text!r}") from None


def parse_steps(text: str) -> list[int]:
    """'30,60,60,120' -> [30, 60, 120]: the distinct step counts (token budgets), sorted."""
    budgets = sorted(set(parse_comma_list(text, int, "steps")))
    if budgets[0] < 1:
        raise MiniLLMError(f"steps must be comma-separated positive integers, got {text!r}")
    return budgets


def check_enough_runs(config: "SweepConfig") -> int:
    """The number of runs of `config`; an error before any training if too few to fit and test."""
    n_runs = len(parse_sizes(config.sizes)) * len(parse_steps(config.steps))
    if n_runs < MIN_RUNS:
        raise MiniLLMError(f"{n_runs} runs are too few: fitting L(N, D) needs at least 6 points "
                           "(plus one held out); give more --sizes or --steps")
    return n_runs


def tinyworld_tokens(vocab_size: int = 512, tokenizer_chars: int = 200_000) -> tuple[np.ndarray, np.ndarray, float]:
    """TinyWorld's train and val splits as token ids, and the val text's bytes per token.

    A byte-level BPE (`minillm.tokenizer`) with `vocab_size` ids is trained on the first
    `tokenizer_chars` characters of train; vocab_size 256 means raw bytes (1 byte per token).
    """
    train_text, val_text = world.load_split("train"), world.load_split("val")
    if vocab_size == 256:
        tr = np.frombuffer(train_text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        va = np.frombuffer(val_text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        return tr, va, 1.0
    if vocab_size < 256:
        raise MiniLLMError(f"vocab_size must be >= 256 (the bytes), got {vocab_size}")
    tok = Tokenizer.train(train_text[:tokenizer_chars], vocab_size)
    tr = tokenize_text(train_text, tok).astype(np.int64)   # the one text -> ids path (lesson 04's data.py)
    va = tokenize_text(val_text, tok).astype(np.int64)
    return tr, va, len(val_text.encode("utf-8")) / len(va)


def floor_nats_per_token(bits_per_byte: float, bytes_per_token: float = 1.0) -> float:
    """Convert the floor from bits per byte to the training loss's unit, nats per token:
    x ln 2 (bits -> nats) x bytes per token. `floor_nats_per_token(0.169, 3.5)` -> 0.41."""
    return bits_per_byte * math.log(2) * bytes_per_token


def sweep(config: SweepConfig | None = None, log=print) -> list[dict]:
    """Train every (size, steps) pair of `config`; one row per run.

    Rows: n_embd, n_layer, N (non-embedding parameters, as Kaplan et al. count),
    params (all), D (training tokens), C = 6 N D, loss (validation, nats/token),
    bits_per_byte, bytes_per_token, seconds. Data: TinyWorld through a BPE of
    `config.vocab_size` ids (`tinyworld_tokens`).
    """
    cfg = config or SweepConfig()
    sizes, budgets = parse_sizes(cfg.sizes), parse_steps(cfg.steps)
    train_data, val_data, bytes_per_token = tinyworld_tokens(cfg.vocab_size)
    rows = []
    for (C, L), steps in itertools.product(sizes, budgets):
        if C % cfg.n_head:
            raise MiniLLMError(f"n_embd {C} is not divisible by n_head {cfg.n_head}")
        mc = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=L, n_head=cfg.n_head, n_embd=C)
        tc = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=max(1, steps // 10),
                         eval_every=0, eval_batches=cfg.eval_batches, log_every=0, seed=cfg.seed,
                         device="cpu", dtype="float32")
        r = train(mc, tc, train_data, val_data, log=None)
        model = r.model if r.model is not None else GPT(mc)
        n = model.num_parameters(non_embedding=True)
        row = with_derived_columns(dict(n_embd=C, n_layer=L, N=n, params=model.num_parameters(),
                                        D=r.tokens_seen, loss=float(r.final_val_loss), seconds=r.seconds),
                                   bytes_per_token)
        rows.append(row)
        if log:
            log(f"n_embd {C:3d} x {L} layers  N {n:8,d}  D {row['D']:9,d}  C {row['C']:.2e}  "
                f"loss {row['loss']:.4f} nats/token ({row['bits_per_byte']:.4f} bits/byte)  {r.seconds:.1f}s")
    return rows


@dataclass
class SweepAnalysis:
    """Fits of a sweep, and how the fitted E compares with the entropy floor."""

    chinchilla: ChinchillaLaw
    frontier: PowerLaw | None         # E + A / C^alpha through the runs no cheaper run beats
    floor: float                      # entropy floor in nats/token
    held_out: dict | None             # the run left out of the fit
    predicted: float | None           # the fit's prediction for it

    @property
    def e_minus_floor(self) -> float:
        return self.chinchilla.E - self.floor


def analyse_sweep(rows: list[dict], floor_bits_per_byte: float | None = None,
                  hold_out_largest: bool = True) -> SweepAnalysis:
    """Fit L(N, D) to the sweep (leaving the largest-compute run out to predict it), fit the
    compute frontier (runs that beat every cheaper run) as E + A / C^alpha, and convert the
    floor from bits per byte to nats per token (default: TinyWorld's validation floor)."""
    if floor_bits_per_byte is None:
        floor_bits_per_byte = world.split_floor("val").bits_per_byte
    rows = list(rows)
    held = max(rows, key=lambda r: r["C"]) if hold_out_largest and len(rows) > 6 else None
    fit_rows = [r for r in rows if r is not held]
    law = fit_chinchilla([r["N"] for r in fit_rows], [r["D"] for r in fit_rows], [r["loss"] for r in fit_rows])
    # The compute frontier (Pareto): the runs that beat every run of smaller compute.
    best: dict[float, float] = {}
    for r in sorted(fit_rows, key=lambda r: r["C"]):
        if not best or r["loss"] < min(best.values()):
            best[r["C"]] = r["loss"]
    frontier = None
    if len(best) >= 4:
        try:
            frontier = fit_power_law(list(best), list(best.values()))
        except MiniLLMError:
            frontier = None
    bytes_per_token = rows[0].get("bytes_per_token", 1.0)
    return SweepAnalysis(law, frontier, floor_nats_per_token(floor_bits_per_byte, bytes_per_token), held,
                         float(law(held["N"], held["D"])) if held else None)


def plot_sweep(rows: list[dict], analysis: SweepAnalysis):
    """Loss vs compute (each size a line), the fitted law, the floor, and the held-out
    prediction. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = sorted({(r["n_embd"], r["n_layer"]) for r in rows})
    for (c, l) in sizes:
        rs = sorted((r for r in rows if (r["n_embd"], r["n_layer"]) == (c, l)), key=lambda r: r["C"])
        line, = ax.plot([r["C"] for r in rs], [r["loss"] for r in rs], "o", label=f"N={rs[0]['N']:,} ({c}x{l})")
        d = np.logspace(np.log10(rs[0]["D"] / 2), np.log10(rs[-1]["D"] * 4), 50)
        ax.plot(6 * rs[0]["N"] * d, analysis.chinchilla(rs[0]["N"], d), "-", color=line.get_color(), alpha=0.6)
    if analysis.frontier:
        cs = np.logspace(np.log10(min(r["C"] for r in rows)), np.log10(max(r["C"] for r in rows) * 4), 50)
        ax.plot(cs, analysis.frontier(cs), "k-", lw=2, alpha=0.4, label="compute frontier fit")
    ax.axhline(analysis.floor, color="k", ls=":", label=f"entropy floor {analysis.floor:.3f}")
    ax.axhline(analysis.chinchilla.E, color="gray", ls="--", label=f"fitted E {analysis.chinchilla.E:.3f}")
    if analysis.held_out:
        h = analysis.held_out
        ax.plot([h["C"]], [h["loss"]], "k*", ms=14, label="held-out run (measured)")
        ax.plot([h["C"]], [analysis.predicted], "rx", ms=12, mew=3, label="held-out run (predicted)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.legend(fontsize=7)
    ax.set_title("TinyWorld sweep: L(N, D) = E + A/N^a + B/D^b")
    return fig


def report(analysis: SweepAnalysis) -> str:
    """A few lines that summarise the fit."""
    law = analysis.chinchilla
    lines = [f"fit: L(N, D) = {law.E:.3f} + {law.A:.3g}/N^{law.alpha:.3f} + {law.B:.3g}/D^{law.beta:.3f}",
             f"fitted E = {law.E:.4f} nats/token vs entropy floor {analysis.floor:.4f}: "
             f"E - floor = {analysis.e_minus_floor:+.4f}"]
    if analysis.held_out:
        h = analysis.held_out
        err = analysis.predicted / h["loss"] - 1
        lines.append(f"held-out run N={h['N']:,} D={h['D']:,}: measured {h['loss']:.4f}, "
                     f"predicted {analysis.predicted:.4f} ({err:+.1%})")
    if analysis.frontier:
        f = analysis.frontier
        lines.append(f"compute frontier: L(C) = {f.E:.3f} + {f.A:.3g}/C^{f.alpha:.3f}")
    return "\n".join(lines)

