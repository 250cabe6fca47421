"""LoRA on lesson 08's SFT task: training an adapter, putting one on its base, and the
lesson-09 experiment (full fine-tuning vs LoRA).

`lora_sft_train` fine-tunes a LoRA copy of a checkpoint through `train.fit` (resumable);
`load_with_adapter` loads a base, adds the chat tokens and an adapter (fingerprint-checked).

`lora_vs_full(cfg)` starts every run from the SHIPPED pretrained checkpoint, fine-tunes it
on the instruction data of lesson 08 (`instruct.sft_examples` / `sft_batches`, the same
batches for every run, through the shared loop `train.fit`), and measures per run:

- exact match on held-out validation questions, seen and unseen phrasings
  (`instruct.qa_exact_match`, 95% Wilson intervals);
- trainable parameters; wall time of the training loop;
- memory: `lora.finetune_memory` (weights + gradients + AdamW state, no activations) and
  the bytes measured while one training step runs (`kernels.memory.PeakMemory`: every
  tensor the step creates, activations included, plus the weights already there);
- forgetting: validation bits/byte of plain stories before vs after (`evaluate.score_text`),
  also with the chat tokens cut from the vocabulary (is the damage in the story model?).

The chat template adds four tokens the pretrained model never saw; their embedding rows start
equal (the mean row), and with a frozen, tied embedding <|end|> could never out-score the other
three. So LoRA runs also train those four rows (`train_new_token_rows`, what PEFT's
`trainable_token_indices` does); `new_tokens=False` measures the run without them.

Left out: learning-rate sweeps per rank (one lr for full, one for LoRA), several seeds,
dropout on the LoRA branch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from minillm import instruct, lora, world
from minillm.evaluate import score_text
from minillm.kernels.memory import PeakMemory
from minillm.model import resize_token_embeddings
from minillm.optim import make_optimizer
from minillm.sft import add_chat_tokens, sft_loss_mean
from minillm.tokenizer import Tokenizer
from minillm.train import TrainConfig, fit
from minillm.utils import MiniLLMError


@dataclass
class LoRARunsConfig:
    """The experiment's budget and learning rates (defaults: 7 runs, ~10 minutes on 1 CPU thread)."""

    steps: int = field(default=100, metadata={"help": "optimizer steps of every run"})
    batch_size: int = field(default=16, metadata={"help": "conversations per step"})
    full_lr: float = field(default=2e-3, metadata={"help": "peak lr of full fine-tuning (lesson 08: 1e-3, 600 steps)"})
    lora_lr: float = field(default=1e-2, metadata={"help": "peak lr of LoRA (usually ~5-10x full's)"})
    ranks: str = field(default="1,4,16", metadata={"help": "LoRA ranks, comma-separated (2 and 8 cut for time)"})
    targets: str = field(default="attn,all", metadata={"help": "LoRA target groups, comma-separated"})
    alpha_over_r: float = field(default=2.0, metadata={"help": "alpha = this * r: the same scale at every rank"})
    eval_stories: int = field(default=15, metadata={"help": "validation stories for QA (6 questions each)"})
    forgetting_stories: int = field(default=100, metadata={"help": "validation stories scored for bits/byte"})
    new_tokens: bool = field(default=True, metadata={"help": "LoRA runs also train the chat tokens' rows"})
    seed: int = field(default=0, metadata={"help": "seed of the batches and LoRA init"})


def train_new_token_rows(model: nn.Module, first_new: int) -> int:
    """Let embedding rows first_new.. train (the gradient of the others is masked to zero).

    With weight decay 0, AdamW then leaves the old rows exactly as they were (zero gradient
    -> zero moments -> zero update). Returns the number of trained numbers.
    """
    wte = model.transformer.wte.weight                          # (V, C), tied to lm_head
    mask = torch.zeros(wte.shape[0], 1, dtype=wte.dtype, device=wte.device)
    mask[first_new:] = 1.0
    wte.requires_grad_(True)
    wte.register_hook(lambda g: g * mask)
    return (wte.shape[0] - first_new) * wte.shape[1]


def _prepare(base: nn.Module, tok, lcfg: lora.LoRAConfig | None, new_tokens: bool):
    """A fresh copy of the base, with chat tokens and (optionally) LoRA -> (model, tok, trainable, old vocab)."""
    model, tok = copy.deepcopy(base), copy.deepcopy(tok)
    old_vocab = model.config.vocab_size
    model, tok = add_chat_tokens(model, tok)
    if lcfg is None:
        return model, tok, lora.count_trainable(model)[0], old_vocab
    lora.inject_lora(model, lcfg)
    trainable = sum(p.numel() for layer in lora.lora_layers(model).values() for p in (layer.lora_A, layer.lora_B))
    if new_tokens:
        trainable += train_new_token_rows(model, old_vocab)
    return model, tok, trainable, old_vocab


def _train_config(scfg: instruct.SFTConfig, lora_run: bool) -> TrainConfig:
    """fit's config for an SFT run; LoRA runs without weight decay (it would move the frozen
    rows of a partly trained embedding, and PEFT's recipes mostly use none)."""
    return TrainConfig(steps=scfg.steps, batch_size=scfg.batch_size, lr=scfg.lr,
                       warmup_steps=min(scfg.warmup_steps, scfg.steps), weight_decay=0.0 if lora_run else 0.1,
                       eval_every=0, log_every=max(1, scfg.steps // 12), seed=scfg.seed, device=scfg.device)


def lora_sft_train(base: nn.Module, tok, scfg: instruct.SFTConfig, lcfg: lora.LoRAConfig, out_dir=None,
                   resume: bool = False, new_tokens: bool = True, log=print) -> dict:
    """LoRA SFT of a copy of `base` through `train.fit` (resumable with out_dir) ->
    {model, tokenizer, seconds, base (fingerprint before training), first_new_token}."""
    torch.manual_seed(scfg.seed)                         # the LoRA init (A) is part of the run
    model, tok, _, old_vocab = _prepare(base, tok, lcfg, new_tokens)
    fingerprint = lora.base_fingerprint(model)           # chat rows still at their deterministic start
    T = model.config.block_size
    batches = instruct.sft_batches(instruct.sft_examples(tok, scfg, T), scfg, T)
    t = time.time()
    result = fit(model, _train_config(scfg, True), batches, sft_loss_mean, out_dir=out_dir, resume=resume,
                 run_files={"tokenizer.json": tok}, log=log)
    return dict(model=result.model.eval(), tokenizer=tok, seconds=time.time() - t, base=fingerprint,
                first_new_token=old_vocab if new_tokens else None)


def load_with_adapter(checkpoint: str | None, adapter) -> tuple[nn.Module, object, lora.LoRAConfig]:
    """(model, tokenizer, config): the base checkpoint (None: the one the adapter records),
    with the chat tokens the adapter was trained with and the adapter loaded (not merged)."""
    folder = Path(adapter)
    if not (folder / lora.ADAPTER_CONFIG).is_file():
        raise MiniLLMError(f"{folder} is not an adapter folder (no {lora.ADAPTER_CONFIG}): "
                           "make one with minillm lora train")
    meta = json.loads((folder / lora.ADAPTER_CONFIG).read_text(encoding="utf-8"))
    checkpoint = checkpoint or meta.get("base_checkpoint") or "pretrained"
    model, tok = instruct.load_shipped(checkpoint)
    if (folder / "tokenizer.json").is_file():
        want = Tokenizer.load(folder / "tokenizer.json")
        if want.vocab_size > tok.vocab_size:
            model, tok = add_chat_tokens(model, tok)
        if tok.vocab_size != want.vocab_size:
            raise MiniLLMError(f"the adapter's tokenizer has {want.vocab_size} tokens, {checkpoint}'s "
                               f"{tok.vocab_size}: the adapter was trained on another base model")
    return model, tok, lora.load_adapter(folder, model)


def measure_step_bytes(model: nn.Module, tcfg: TrainConfig, batch: dict) -> int:
    """Bytes of the weights plus the peak of every tensor one fresh training step creates
    (activations, gradients, AdamW moments), measured by `PeakMemory`; `model` is not changed."""
    model = copy.deepcopy(model).train()
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    optimizer = make_optimizer(model, tcfg, torch.device("cpu"))
    with PeakMemory() as pm:
        sft_loss_mean(model, batch).backward()
        optimizer.step()
    return weights + pm.peak


def one_run(base, tok, lcfg: lora.LoRAConfig | None, cfg: LoRARunsConfig, evals: dict, val_text: str) -> dict:
    """Fine-tune a copy of `base` (lcfg None: every weight) and measure it -> one table row."""
    base_tok = tok
    model, tok, trainable, old_vocab = _prepare(base, tok, lcfg, cfg.new_tokens)
    lr = cfg.full_lr if lcfg is None else cfg.lora_lr
    scfg = instruct.SFTConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, seed=cfg.seed)
    T = model.config.block_size
    batches = instruct.sft_batches(instruct.sft_examples(tok, scfg, T), scfg, T)
    tcfg = _train_config(scfg, lcfg is not None)
    measured = measure_step_bytes(model, tcfg, batches(0)[0])
    t = time.time()
    model = fit(model, tcfg, batches, sft_loss_mean, log=None).model.eval()
    seconds = time.time() - t
    est = lora.finetune_memory(model.config, lcfg)
    qa = {p: instruct.qa_exact_match(model, tok, items) for p, items in evals.items()}
    return dict(method="full" if lcfg is None else f"LoRA r={lcfg.r} {lcfg.targets}",
                r=None if lcfg is None else lcfg.r, targets=None if lcfg is None else lcfg.targets,
                lr=lr, trainable=trainable, seconds=seconds, qa=qa,
                est_bytes=est["weights"] + est["gradients"] + est["optimizer"], measured_bytes=measured,
                bpb_after=score_text(model, tok, val_text).bits_per_byte,
                # the same text with the chat tokens cut from the vocabulary: is the damage in
                # the story model itself, or mass moved onto the new tokens?
                bpb_text_only=score_text(resize_token_embeddings(copy.deepcopy(model), old_vocab), base_tok,
                                         val_text).bits_per_byte)


def lora_vs_full(cfg: LoRARunsConfig = LoRARunsConfig(), checkpoint: str = "pretrained", log=print) -> dict:
    """Full fine-tuning and every (rank, targets) LoRA run -> {rows, bpb_before, config}."""
    ranks = [int(r) for r in cfg.ranks.split(",") if r.strip()]
    targets = [t.strip() for t in cfg.targets.split(",") if t.strip()]
    if not ranks or not targets:
        raise MiniLLMError("give at least one LoRA rank and one target group")
    base, tok = instruct.load_shipped(checkpoint)
    stories = world.load_split("val").splitlines()
    evals = {p: instruct.instruction_items(stories[:cfg.eval_stories], p, seed=1) for p in ("seen", "unseen")}
    val_text = "".join(s + "\n" for s in stories[-cfg.forgetting_stories:])  # not the QA stories
    bpb_before = score_text(base, tok, val_text).bits_per_byte
    configs = [None] + [lora.LoRAConfig(r=r, alpha=cfg.alpha_over_r * r, targets=t) for t in targets for r in ranks]
    rows = []
    for lcfg in configs:
        torch.manual_seed(cfg.seed)                      # the same LoRA init for every run
        rows.append(one_run(base, tok, lcfg, cfg, evals, val_text))
        if log:
            r = rows[-1]
            log(f"{r['method']:>18}: seen {r['qa']['seen'].accuracy:.3f} unseen {r['qa']['unseen'].accuracy:.3f} "
                f"bpb {bpb_before:.4f} -> {r['bpb_after']:.4f}  {r['seconds']:.0f} s")
    return dict(rows=rows, bpb_before=bpb_before, config=cfg)


def lora_table(res: dict) -> str:
    """`lora_vs_full`'s result as a markdown table."""
    def acc(r):
        return f"{r.accuracy:.3f} [{r.ci95[0]:.2f}, {r.ci95[1]:.2f}]"
    b0 = res["bpb_before"]
    lines = ["| method | lr | trainable | seen EM [95% CI] | unseen EM [95% CI] | val bits/byte (before "
             f"{b0:.4f}) | forgetting | without chat tokens | memory est. / measured (MB) | train s |",
             "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} | {acc(r['qa']['seen'])} | "
                     f"{acc(r['qa']['unseen'])} | {r['bpb_after']:.4f} | {100 * (r['bpb_after'] / b0 - 1):+.1f}% | "
                     f"{100 * (r['bpb_text_only'] / b0 - 1):+.1f}% | "
                     f"{r['est_bytes'] / 1e6:.2f} / {r['measured_bytes'] / 1e6:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def results_json(res: dict) -> dict:
    """`lora_vs_full`'s result as plain JSON-able values."""
    def em(q):
        return dict(accuracy=q.accuracy, ci95=list(q.ci95), n=q.n, skipped=q.skipped)
    rows = [{k: v for k, v in r.items() if k != "qa"} | {f"{p}_em": em(q) for p, q in r["qa"].items()}
            for r in res["rows"]]
    return dict(bpb_before=res["bpb_before"], config=dataclasses.asdict(res["config"]), rows=rows)


def plot_lora_runs(res: dict):
    """Two panels: exact match vs trainable parameters; forgetting vs rank. -> figure."""
    import matplotlib.pyplot as plt  # deferred: plotting is optional for the experiment itself

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    b0, rows = res["bpb_before"], res["rows"]
    full = next(r for r in rows if r["r"] is None)
    for targets in sorted({r["targets"] for r in rows if r["r"] is not None}):
        sub = sorted((r for r in rows if r["targets"] == targets), key=lambda r: r["r"])
        colour = None
        for phrasing, style in (("seen", "o-"), ("unseen", "s--")):
            line, = ax1.plot([r["trainable"] for r in sub], [r["qa"][phrasing].accuracy for r in sub], style,
                             color=colour, label=f"LoRA {targets}, {phrasing}")
            colour = line.get_color()
        line, = ax2.plot([r["r"] for r in sub], [100 * (r["bpb_after"] / b0 - 1) for r in sub], "o-",
                         label=f"LoRA {targets}")
        ax2.plot([r["r"] for r in sub], [100 * (r["bpb_text_only"] / b0 - 1) for r in sub], "s--",
                 color=line.get_color(), label=f"LoRA {targets}, chat tokens cut")
    for phrasing, marker in (("seen", "*"), ("unseen", "X")):
        ax1.plot([full["trainable"]], [full["qa"][phrasing].accuracy], marker, ms=12, color="k",
                 label=f"full, {phrasing}")
    ax2.axhline(100 * (full["bpb_after"] / b0 - 1), color="k", ls=":", label="full fine-tuning")
    ax2.axhline(100 * (full["bpb_text_only"] / b0 - 1), color="grey", ls="-.", label="full, chat tokens cut")
    ax1.set(xscale="log", xlabel="trainable parameters", ylabel="exact match (held-out)",
            title="QA accuracy vs trainable parameters")
    ax2.set(xscale="log", xlabel="LoRA rank r", ylabel="validation bits/byte change (%)",
            title="Forgetting vs rank")
    ax2.set_xscale("log", base=2)
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig
