"""Instruction tuning on TinyWorld: the data, the SFT run, and exact-match evaluation (lesson 08).

What it builds, on top of the mechanics in `minillm/sft.py`:
- instruction data: TinyWorld questions worded by several phrasings per kind, one
  per kind kept unseen, so generalisation to new wordings is measured (the Alpaca
  idea of growing instruction data from templates, done with known answers);
- `qa_exact_match`: a model, its tokenizer, QA items -> exact match of greedy
  answers graded by `world_tasks.judge`, with Wilson intervals per kind; a chat prompt
  for an SFT model, a k-shot plain-text prompt for a pretrained one (in-context
  learning: no weight changes);
- `sft_train`: SFT of a pretrained GPT through the shared loop (`train.fit`, a SUM
  loss with the answer-token count as normaliser); `make_checkpoints`: the shipped
  pretrained and SFT checkpoints in `data/checkpoints/`, from the shipped data.

Left out: multi-turn conversations, rejection of ambiguous wordings, LLM-written
instructions (Self-Instruct): every phrasing here is a hand-written template.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from minillm import world
from minillm import world_tasks as tasks
from minillm.checkpoint import load_run, save_checkpoint
from minillm.evaluate import format_example, score_text, wilson_interval
from minillm.sft import (ChatTemplate, add_chat_tokens, check_template, pack_batch, pad_batch, render_chat,
                         sft_count, sft_loss_mean, sft_loss_sum)
from minillm.train import TrainConfig, fit
from minillm.utils import MiniLLMError

# Several phrasings per question kind. Index 0 is world.question's canonical text (the
# judge's key); the LAST one of each kind is never trained on (unseen phrasings).
PHRASINGS = {
    "start": ["How many {things} did {hero} have at the start?",
              "At the start of the story, how many {things} did {hero} have?",
              "Count the {things} {hero} had before anything happened.",
              "What number of {things} did {hero} begin with?"],
    "hero_end": ["How many {things} did {hero} have at the end?",
                 "When the story ends, how many {things} does {hero} have?",
                 "Tell me how many {things} {hero} was left with.",
                 "What number of {things} did {hero} finish with?"],
    "friend_end": ["How many {things} did {friend} have at the end?",
                   "When the story ends, how many {things} does {friend} have?",
                   "Tell me how many {things} {friend} was left with.",
                   "What number of {things} did {friend} finish with?"],
    "place": ["Where did {hero} live?", "What place did {hero} live near?",
              "Tell me where {hero} lived.", "Name the place {hero} called home."],
    "friend_species": ["What kind of animal was {friend}?", "Which animal was {friend}?",
                       "Tell me what animal {friend} was.", "{friend} was what sort of creature?"],
    "colour": ["What colour were the {object} of {hero}?", "Which colour did {hero}'s {object} have?",
               "Tell me the colour of {hero}'s {object}.", "What shade were the {object} that {hero} owned?"],
}


def instruction_items(stories: list[str], phrasings: str = "seen", kinds: list[str] | None = None,
                      seed: int = 0) -> list[dict]:
    """Stories -> QA items {story, question (canonical), prompt, answer, kind, phrasing}.

    Every story gets one item per kind (default: all of `tasks.QUESTION_KINDS`), its
    question worded by a phrasing drawn from `phrasings`: "seen" (all but the last),
    "unseen" (the last) or "canonical" (index 0). Answers come from the world, so the
    judge can grade any wording.
    """
    pick = {"seen": slice(0, -1), "unseen": slice(-1, None), "canonical": slice(0, 1)}
    if phrasings not in pick:
        raise MiniLLMError(f"phrasings must be seen, unseen or canonical, got {phrasings!r}")
    rng, out = random.Random(f"sft-phrasings/{seed}"), []
    for text in stories:
        story = world.story_from_text(text)
        f = story.facts
        fields = dict(hero=f["hero"], friend=f["friend"], object=f["object"], things=f"{f['colour']} {f['object']}")
        for kind in kinds or tasks.QUESTION_KINDS:
            canonical, answer, _ = tasks.question(story, kind)
            choices = list(range(len(PHRASINGS[kind])))[pick[phrasings]]
            j = choices[rng.randrange(len(choices))]
            out.append(dict(story=text, question=canonical, prompt=PHRASINGS[kind][j].format(**fields),
                            answer=answer, kind=kind, phrasing=j))
    return out


def qa_conversation(item: dict, with_answer: bool = True) -> list[dict]:
    """A QA item as a chat: the user gives the story and the question, the assistant answers."""
    if with_answer and not item.get("answer"):
        raise MiniLLMError(f"the dataset row has no answer: {str(item)[:80]}...")
    turns = [dict(role="user", content=f"{item['story']}\n{item.get('prompt') or item['question']}")]
    # A leading space: the words of the answer then tokenize as they do inside stories
    # (" four" is one known token; "four" would be three rarely seen ones).
    return turns + ([dict(role="assistant", content=" " + item["answer"])] if with_answer else [])


def kshot_prompt(item: dict, shots: int, rng: random.Random) -> str:
    """A plain-text prompt for a pretrained LM: the story, `shots` solved questions of
    OTHER kinds about the same story (a 128-token context has no room for other
    stories), then the question and 'Answer:'."""
    story = world.story_from_text(item["story"])
    others = [k for k in tasks.QUESTION_KINDS if k != item["kind"]]
    text = item["story"]
    for kind in rng.sample(others, shots):
        q, a, _ = tasks.question(story, kind)
        text = format_example(text, q, a).rstrip("\n")
    return format_example(text, item.get("prompt") or item["question"])


@dataclass
class QAResult:
    """Exact match of generated answers, with a 95% Wilson interval, overall and per kind."""

    accuracy: float
    ci95: tuple[float, float]
    n: int
    by_kind: dict[str, tuple[float, float, float, int]]  # kind -> (accuracy, lo, hi, n)
    skipped: int = 0                                     # items whose prompt does not fit the context
    answers: list[str] = field(default_factory=list, repr=False)
    kept: list[int] = field(default_factory=list, repr=False)  # the index in `items` of each answer

    def __str__(self) -> str:
        return f"exact match {self.accuracy:.3f} (95% CI [{self.ci95[0]:.3f}, {self.ci95[1]:.3f}], n={self.n})"


@torch.no_grad()
def qa_exact_match(model: nn.Module, tokenizer, items: list[dict], shots: int | None = None,
                   template: ChatTemplate | None = ChatTemplate(), max_new_tokens: int = 8, seed: int = 0) -> QAResult:
    """Greedy answers to QA items, graded by `world_tasks.judge` -> `QAResult`.

    template: prompt as a chat and stop at its end token (an SFT model). shots (with
    template=None): the k-shot plain-text prompt of `kshot_prompt`, stopping at a
    newline (a pretrained model). Items whose prompt + answer do not fit the context are
    skipped and counted. Items: {story, question (canonical), kind, [prompt]}.
    """
    if not items:
        raise MiniLLMError("no QA items to evaluate")
    rng, T = random.Random(seed), model.config.block_size
    if template is not None and shots:
        raise MiniLLMError("k-shot prompts are for a pretrained model: pass template=None")
    stop = [check_template(tokenizer, template)[template.end]] if template is not None else tokenizer.encode("\n")
    device = next(model.parameters()).device
    hits, kinds, answers, kept, skipped = [], [], [], [], 0
    for i, item in enumerate(items):
        if template is not None:
            ids, _ = render_chat(qa_conversation(item, False), tokenizer, template, add_generation_prompt=True)
        else:
            ids = tokenizer.encode(kshot_prompt(item, shots or 0, rng))
        if len(ids) + max_new_tokens > T:
            skipped += 1
            continue
        out = model.generate(torch.tensor([ids], device=device), max_new_tokens, temperature=0, stop_tokens=stop)
        new = [t for t in out[0, len(ids):].tolist() if t not in stop][:max_new_tokens]
        answer = tokenizer.decode(new).split("\n")[0].strip()
        answers.append(answer)
        kept.append(i)
        hits.append(tasks.judge(item["story"], item["question"], answer))
        kinds.append(item["kind"])
    if not hits:  # a measured outcome (k-shot prompts outgrow a small context), not an error
        return QAResult(float("nan"), (0.0, 1.0), 0, {}, skipped)
    by_kind = {}
    for kind in sorted(set(kinds)):
        h = [x for x, k in zip(hits, kinds) if k == kind]
        by_kind[kind] = (sum(h) / len(h), *wilson_interval(sum(h), len(h)), len(h))
    return QAResult(sum(hits) / len(hits), wilson_interval(sum(hits), len(hits)), len(hits), by_kind, skipped,
                    answers, kept)


# ---------------------------------------------------------------------------------
# The SFT run
# ---------------------------------------------------------------------------------

@dataclass
class SFTConfig:
    """How to fine-tune (the model's shape comes from the checkpoint)."""

    steps: int = field(default=600, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "conversations per optimizer step"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per step (uneven answer counts are weighted right)"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (pretraining used 4e-3)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warmup steps"})
    stories: int = field(default=2000, metadata={"help": "training stories; each gives one question of every kind"})
    train_on_prompt: bool = field(default=False, metadata={"help": "put the loss on the prompt too (default: answers only)"})
    pack: bool = field(default=False, metadata={"help": "pack several conversations per row (block-diagonal mask)"})
    kinds: str = field(default="", metadata={"help": "train on these question kinds only, comma-separated "
                                                      "(default: all; lesson 08 §7b)"})
    seed: int = field(default=0, metadata={"help": "seed for the phrasings, batches and init"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, mps or auto"})


def sft_items(cfg: SFTConfig) -> list[dict]:
    """The training QA items: the first `cfg.stories` training stories, seen phrasings, `cfg.kinds`."""
    stories = world.load_split("train").splitlines()[:cfg.stories]
    kinds = [k.strip() for k in cfg.kinds.split(",") if k.strip()] or None
    unknown = sorted(set(kinds or []) - set(tasks.QUESTION_KINDS))
    if unknown:
        raise MiniLLMError(f"unknown question kind(s) {unknown}: choose from {', '.join(tasks.QUESTION_KINDS)}")
    return instruction_items(stories, "seen", kinds=kinds, seed=cfg.seed)


def sft_examples(tokenizer, cfg: SFTConfig, block_size: int, template: ChatTemplate = ChatTemplate()):
    """Rendered (ids, mask) pairs of the training items (`sft_items`), those that fit the context."""
    items = sft_items(cfg)
    rendered = [render_chat(qa_conversation(it), tokenizer, template, cfg.train_on_prompt) for it in items]
    return [r for r in rendered if len(r[0]) <= block_size + 1]  # +1: inputs are ids[:-1]


def sft_batches(examples: list, cfg: SFTConfig, block_size: int, pad_id: int = 0):
    """batches(step) -> this step's micro-batches: a pure function of (seed, step), so resume is exact."""
    if cfg.batch_size % cfg.grad_accum:
        raise MiniLLMError(f"batch_size {cfg.batch_size} must be divisible by grad_accum {cfg.grad_accum}")
    if len(examples) < cfg.batch_size:
        raise MiniLLMError(f"only {len(examples)} instruction examples fit the context of {block_size} tokens; "
                           f"a batch needs {cfg.batch_size}: use more --stories or a model with a longer context")
    micro = cfg.batch_size // cfg.grad_accum

    def batches(step: int) -> list[dict]:
        rng = random.Random(f"sft-batches/{cfg.seed}/{step}")
        picked = [examples[i] for i in rng.sample(range(len(examples)), cfg.batch_size)]
        chunks = [picked[k * micro:(k + 1) * micro] for k in range(cfg.grad_accum)]
        return [pack_batch(c, block_size, pad_id) if cfg.pack else pad_batch(c, pad_id) for c in chunks]
    return batches


def sft_train(model: nn.Module, tokenizer, cfg: SFTConfig, out_dir=None, resume: bool = False,
              template: ChatTemplate = ChatTemplate(), log=print):
    """Fine-tune `model` on instruction data -> (model, tokenizer, seconds). Adds the chat tokens first."""
    model, tokenizer = add_chat_tokens(model, tokenizer, template)
    T = model.config.block_size
    examples = sft_examples(tokenizer, cfg, T, template)
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, lr=cfg.lr,
                       warmup_steps=min(cfg.warmup_steps, cfg.steps), eval_every=0, log_every=max(1, cfg.steps // 12),
                       seed=cfg.seed, device=cfg.device)
    # One micro-batch per step: its mean IS the step's objective. Several: sums over the
    # batch's total count (the uneven-accumulation rule, `train_step`'s count_fn).
    loss_fn, count_fn = (sft_loss_mean, None) if cfg.grad_accum == 1 else (sft_loss_sum, sft_count)
    t = time.time()
    result = fit(model, tcfg, sft_batches(examples, cfg, T), loss_fn, count_fn=count_fn, out_dir=out_dir,
                 resume=resume, run_files={"tokenizer.json": tokenizer}, log=log)
    return result.model.eval(), tokenizer, time.time() - t


# ---------------------------------------------------------------------------------
# The shipped checkpoints
# ---------------------------------------------------------------------------------

CHECKPOINTS = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


def save_small(folder, model: nn.Module, tokenizer, meta: dict) -> Path:
    """ckpt.pt (weights, config, meta: no optimizer, `weights_only`-safe) + tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_checkpoint(folder / "ckpt.pt", dict(model=state, config=dataclasses.asdict(model.config), meta=meta))
    tokenizer.save(folder / "tokenizer.json")
    return folder


def load_shipped(name: str = "sft", device: str = "cpu"):
    """(model, tokenizer) of a shipped checkpoint ("pretrained", "sft") or of a run folder."""
    folder = CHECKPOINTS / name if name in ("pretrained", "sft") else Path(name)
    run = load_run(folder, device)
    if run.tokenizer is None:
        raise MiniLLMError(f"no tokenizer.json beside the checkpoint in {folder} (make them: minillm sft --ship)")
    return run.model, run.tokenizer


def make_checkpoints(out, model: nn.Module, tokenizer, cfg: SFTConfig = SFTConfig(), made_by: str = "",
                     log=print) -> dict[str, Path]:
    """The shipped checkpoints: OUT/pretrained (`model` as given) and OUT/sft (a copy after
    `sft_train`). `minillm sft --ship` pretrains `model` as the default speedrun does."""
    out = Path(out)
    pre = save_small(out / "pretrained", model, tokenizer, dict(made_by=made_by, stage="pretrained"))
    sft_model, sft_tok, seconds = sft_train(copy.deepcopy(model), copy.deepcopy(tokenizer), cfg, log=log)
    meta = dict(made_by=made_by, stage="sft", sft=dataclasses.asdict(cfg), sft_seconds=round(seconds, 1))
    return dict(pretrained=pre, sft=save_small(out / "sft", sft_model, sft_tok, meta))


def icl_vs_sft(pretrained: nn.Module, pre_tok, sft_model: nn.Module, sft_tok, n_stories: int = 50,
               shots=(0, 1, 3), forgetting_stories: int = 200, log=None) -> dict:
    """The lesson's table: exact match of the pretrained model k-shot vs the SFT model
    zero-shot on the same validation questions (seen and unseen phrasings), and the
    validation bits/byte of both (forgetting). -> {rows: [...], bits_per_byte: {...}}."""
    stories = world.load_split("val").splitlines()[:n_stories]
    sets = {p: instruction_items(stories, p, seed=1) for p in ("seen", "unseen")}
    rows = []
    for phrasing, items in sets.items():
        runs = [(f"pretrained, {k}-shot", pretrained, pre_tok, dict(shots=k, template=None)) for k in shots]
        for name, model, tok, kw in runs + [("SFT, 0-shot", sft_model, sft_tok, {})]:
            r = qa_exact_match(model, tok, items, **kw)
            rows.append(dict(model=name, phrasing=phrasing, result=r))
            if log:
                log(f"{name:>20} {phrasing:>6}: {r} skipped {r.skipped}")
    val = "".join(s + "\n" for s in world.load_split("val").splitlines()[:forgetting_stories])
    bpb = {name: score_text(m, t, val).bits_per_byte for name, m, t in
           (("pretrained", pretrained, pre_tok), ("SFT", sft_model, sft_tok))}
    return dict(rows=rows, bits_per_byte=bpb)


def icl_table(res: dict) -> str:
    """`icl_vs_sft`'s result as a markdown table (accuracy [95% CI], n, per kind)."""
    kinds = tasks.QUESTION_KINDS
    lines = ["| model | phrasings | exact match [95% CI] | n (skipped) | " + " | ".join(kinds) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in kinds) + " |"]
    for row in res["rows"]:
        r = row["result"]
        per = " | ".join(f"{r.by_kind[k][0]:.2f}" if k in r.by_kind else "-" for k in kinds)
        acc = f"{r.accuracy:.3f} [{r.ci95[0]:.3f}, {r.ci95[1]:.3f}]" if r.n else "no prompt fits the context"
        lines.append(f"| {row['model']} | {row['phrasing']} | {acc} | {r.n} ({r.skipped}) | {per} |")
    b = res["bits_per_byte"]
    lines += ["", f"Validation bits/byte: pretrained {b['pretrained']:.4f}, after SFT {b['SFT']:.4f} "
                  f"({100 * (b['SFT'] / b['pretrained'] - 1):+.1f}%)."]
    return "\n".join(lines)
