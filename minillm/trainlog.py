"""What a training run shows while it runs and leaves behind (lesson 04).

- `Meter`: tokens/s, achieved model TFLOP/s and MFU between two log records;
- `format_record`: one log line per logged step (loss, lr, tokens/s, MFU, validation);
- `Progress`: a progress bar of optimizer steps (step/total, tokens/s, ETA) whose log
  lines are printed above the bar, never glued onto it (`tqdm.external_write_mode`);
- `plot_history`: the loss curves, with plain numbers on the log-scale axes.

Nothing here changes what is trained; the loop (`minillm.train.fit`) calls these.
"""

from __future__ import annotations

import time
from typing import Callable

from minillm import flops
from minillm.runtime import Runtime
from minillm.utils import MiniLLMError


def format_record(rec: dict, floor_bits_per_byte: float | None = None) -> str:
    """The log line of one record, e.g. `step   10 | loss 4.1172 | lr 2.57e-03 | 41,774 tok/s`."""
    msg = f"step {rec['step']:5d} | loss {rec['train_loss']:.4f} | lr {rec['lr']:.2e}"
    if rec.get("tokens_per_s"):
        msg += f" | {rec['tokens_per_s']:,.0f} tok/s"
    if rec.get("mfu") is not None:
        msg += f" | MFU {rec['mfu']:.1%}"
    if "val_loss" in rec:
        msg += f" | val {rec['val_loss']:.4f}"
        if "val_bpb" in rec:
            msg += f" ({rec['val_bpb']:.4f} bits/byte"
            msg += f", floor {floor_bits_per_byte:.4f})" if floor_bits_per_byte else ")"
    return msg


class Meter:
    """Tokens/s, model TFLOP/s and MFU since the last record."""

    def __init__(self, runtime: Runtime, flops_per_token: float | None):
        self.world, self.flops_per_token = runtime.world, flops_per_token or 0
        dtype = {"bfloat16": "bf16", "float16": "fp16"}.get(runtime.dtype, "tf32")
        self.peak = flops.peak_flops(None, dtype) if runtime.device.type == "cuda" and flops_per_token else None
        self.t, self.tokens, self.last_rate = time.time(), 0, None

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def record(self, state, lr: float, result, t_start: float) -> dict:
        """The log record of this step (and the meter restarts)."""
        now = time.time()
        rate = self.tokens / max(now - self.t, 1e-9)
        rec = dict(step=state.step, lr=lr, train_loss=result.loss, tokens=state.tokens, tokens_per_s=rate,
                   elapsed=now - t_start, tflops=rate * self.flops_per_token / 1e12,  # achieved model TFLOP/s
                   mfu=flops.mfu(rate, self.flops_per_token, self.peak, self.world) if self.peak else None)
        if result.grad_norm is not None:
            rec["grad_norm"] = result.grad_norm
        self.t, self.tokens, self.last_rate = time.time(), 0, rate
        return rec


class Progress:
    """A bar over the steps `start..stop` (or nothing when disabled); `log` prints above it."""

    def __init__(self, start: int, stop: int, enabled: bool, log: Callable[[str], None]):
        self._log, self.bar = log, None
        if enabled:
            from tqdm.auto import tqdm  # deferred: only runs that show a bar need it

            self.bar = tqdm(total=stop, initial=start, desc="training", unit="step", dynamic_ncols=True)

    def log(self, msg: str) -> None:
        if self.bar is None:
            self._log(msg)
            return
        with self.bar.external_write_mode():   # clear the bar, print, redraw it below
            self._log(msg)

    def step(self, tokens_per_s: float | None = None, record: dict | None = None) -> None:
        """Advance one step; the postfix shows tok/s and, when this step's record has one, the live reward (RL)."""
        if self.bar is not None:
            parts = [f"{tokens_per_s:,.0f} tok/s"] if tokens_per_s is not None else []
            if record and isinstance(record.get("reward"), float):
                parts.append(f"reward {record['reward']:.3f}")
            if parts:
                self.bar.set_postfix_str(" | ".join(parts), refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def plain_log_ticks(ax) -> None:
    """Log-scale axes labelled 2, 3, 5 ... instead of 2x10^0, 3x10^0 ..."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_history(history: list[dict], floor_bits_per_byte: float | None = None):
    """Loss curves: train/validation loss (nats/token) and validation bits/byte vs the floor."""
    import matplotlib.pyplot as plt  # deferred: plotting is optional and slow to import

    has_bpb = any("val_bpb" in h for h in history)
    fig, axes = plt.subplots(1, 2 if has_bpb else 1, figsize=(11 if has_bpb else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot([h["step"] for h in history], [h["train_loss"] for h in history], label="train")
    val = [h for h in history if "val_loss" in h]
    if val:
        ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", label="validation")
    ax.set(xlabel="step", ylabel="loss (nats/token)", yscale="log", title="training")
    plain_log_ticks(ax)
    ax.legend()
    if has_bpb:
        ax = axes[0, 1]
        bpb = [h for h in history if "val_bpb" in h]
        ax.plot([h["step"] for h in bpb], [h["val_bpb"] for h in bpb], "o-", label="validation")
        if floor_bits_per_byte:
            ax.axhline(floor_bits_per_byte, color="k", ls="--", label=f"entropy floor {floor_bits_per_byte:.3f}")
        ax.set(xlabel="step", ylabel="bits per byte", yscale="log", title="validation vs the floor")
        plain_log_ticks(ax)
        ax.legend()
    fig.tight_layout()
    return fig


def save_plot(history: list[dict], path, floor_bits_per_byte: float | None = None) -> None:
    """Draw `plot_history` into a PNG file and close the figure."""
    import matplotlib.pyplot as plt  # deferred: see plot_history

    fig = plot_history(history, floor_bits_per_byte)
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise MiniLLMError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
