"""Lesson 11's side-by-side experiments: every post-training method on one scale, and reward hacking.

What it builds, on the loop of `minillm/rlhf_loop.py` and lesson 10's DPO and reward model:
- `compare`: from the shipped SFT model, each method trained and measured the same way on
  the same held-out questions — SFT as shipped, DPO (lesson 10), **RLHF** (a reward model
  trained on the simulated human's labels, then PPO against it: the classic three-plus-one
  models), GRPO on the verifiable reward (the judge), and **RLAIF** (the same RLHF loop with
  a reward model trained on pairs labelled by the SFT model itself). Each method runs in a
  fresh process, so its peak memory is its own; the models it holds are counted too.
- `reward_hacking`: a policy whose answers vary in length (`style_sft`: the SFT model
  fine-tuned on correct answers in all three styles), a reward model trained on the
  **length-biased** labeler's choices, and PPO against it at several KL coefficients; each
  step records the learned reward, the oracle's true utility and the length of the samples.

Left out: human labels (the oracle is the human), a separate value model (PPO's value head
sits on the policy's body), repeated seeds (each run is one seed: the lesson says so).
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from minillm import dpo, preferences as prefs, reward as rm_lib, rlhf_loop as L, rollout as ro, world
from minillm.instruct import instruction_items, load_shipped
from minillm.utils import MiniLLMError


@dataclass
class CompareConfig:
    """The sizes of lesson 11's comparison (the defaults take about 30 minutes on one CPU thread)."""

    rl_steps: int = field(default=40, metadata={"help": "policy updates of each RL run"})
    rm_steps: int = field(default=150, metadata={"help": "reward-model steps (RLHF, RLAIF, the hacking RM)"})
    rm_pairs: int = field(default=1500, metadata={"help": "offline pairs the reward models learn from"})
    dpo_steps: int = field(default=80, metadata={"help": "DPO steps (lesson 10's recipe: lr 5e-4, beta 0.1)"})
    lr: float = field(default=3e-4, metadata={"help": "RL learning rate"})
    max_new_tokens: int = field(default=16, metadata={"help": "longest answer, end token included"})
    eval_stories: int = field(default=15, metadata={"help": "held-out validation stories (6 questions each)"})
    bpb_stories: int = field(default=100, metadata={"help": "validation stories scored for bits/byte"})
    seed: int = field(default=0, metadata={"help": "seed of pairs, prompts and sampling"})


def held_out(cfg: CompareConfig) -> tuple[list[dict], str]:
    """The questions every method is measured on, and the text of its bits/byte."""
    stories = world.load_split("val").splitlines()
    return (instruction_items(stories[:cfg.eval_stories], "seen", seed=1),
            "".join(s + "\n" for s in stories[:cfg.bpb_stories]))


def measure(model, tok, reference, cfg: CompareConfig) -> dict:
    """`rlhf_loop.evaluate_policy` on the held-out questions plus validation bits/byte."""
    items, text = held_out(cfg)
    out = L.evaluate_policy(model, tok, items, reference, cfg.max_new_tokens, bpb_text=text)
    out["answers"] = out["answers"][:6]
    return out


def rl_items(cfg: CompareConfig, tok, block_size: int) -> list[dict]:
    """The RL runs' training prompts: training stories 2000-2399 (SFT used the first 2000), those
    whose chat prompt leaves room for the answer and a few tokens more (a reward model re-reads
    the answer with its end token, and re-encoding a decoded answer can take a token or two more)."""
    items = instruction_items(world.load_split("train").splitlines()[2000:2400], "seen", seed=2)
    return [it for it, p in zip(items, ro.chat_prompts(items, tok)) if len(p) + cfg.max_new_tokens + 4 <= block_size]


def ai_labelled(pairs: list[dict], labeler: ro.AILabeler, seed: int = 0) -> list[dict]:
    """The same pairs, chosen/rejected re-drawn from the AI labeler's probabilities (RLAIF's data)."""
    p = []
    for i in range(0, len(pairs), 64):    # 64 at a time: the logits of all pairs at once would not fit
        chunk = pairs[i:i + 64]
        p += labeler.p_prefers(chunk, [x["chosen"] for x in chunk], [x["rejected"] for x in chunk]).tolist()
    rng, out = random.Random(f"rlaif-labels/{seed}"), []
    for x, pa in zip(pairs, p):
        keep = rng.random() < pa
        out.append(dict(x, chosen=x["chosen"] if keep else x["rejected"],
                        rejected=x["rejected"] if keep else x["chosen"], p_chosen=pa if keep else 1 - pa))
    return out


def learned_reward(body, tok, pairs: list[dict], cfg: CompareConfig, labeler: prefs.Labeler = prefs.HUMAN):
    """A reward model fitted to `pairs`, as a reward function, and its held-out evaluation."""
    rm, info = rm_lib.train_reward_model(body, tok, pairs, rm_lib.RMConfig(steps=cfg.rm_steps, seed=cfg.seed),
                                         log=None)
    heldout = prefs.preference_pairs(300, seed=cfg.seed, split="rm_heldout", labeler=labeler)
    ev = rm_lib.evaluate_reward_model(rm, tok, heldout, labeler)
    ev.pop("reliability")
    return L.model_reward(rm, tok), dict(ev, seconds=info["seconds"], pairs=info["pairs_used"])


METHODS = ("SFT", "DPO", "RLHF", "GRPO-oracle", "RLAIF")


def train_method(name: str, cfg: CompareConfig):
    """Train one method from the shipped SFT model -> (policy, reference, tokenizer, info): info has
    seconds, models (distinct models held while training) and, for RLHF/RLAIF, the reward model's
    evaluation."""
    if name not in METHODS:
        raise MiniLLMError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    policy, tok = load_shipped("sft")
    reference = copy.deepcopy(policy).eval()
    t, info = time.time(), {}
    rl = L.RLConfig(algo="grpo" if name == "GRPO-oracle" else "ppo", steps=cfg.rl_steps, lr=cfg.lr,
                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    if name == "SFT":
        info["models"] = L.models_held(policy)
    elif name == "DPO":
        pairs = prefs.preference_pairs(cfg.rm_pairs, seed=cfg.seed, split="dpo_train")
        res = dpo.dpo_train(policy, reference, tok, pairs, dpo.DPOConfig(steps=cfg.dpo_steps, seed=cfg.seed), log=None)
        info["models"] = dict(L.models_held(policy), note="reference log-probs precomputed")
        info["final_loss"] = res.history[-1]["train_loss"]
    else:   # the RL methods
        if name == "GRPO-oracle":
            reward = ro.judge_reward
        else:
            pairs = prefs.preference_pairs(cfg.rm_pairs, seed=cfg.seed, split="rm_train")
            if name == "RLAIF":
                ai = ai_labelled(pairs, ro.AILabeler(reference, tok), cfg.seed)
                info["labels_agree_with_human_labels"] = sum(a["chosen"] == h["chosen"]
                                                             for a, h in zip(ai, pairs)) / len(pairs)
                pairs = ai
            reward, info["reward_model"] = learned_reward(reference, tok, pairs, cfg)
        res = L.rl_train(policy, tok, rl_items(cfg, tok, policy.config.block_size), reward, rl, reference=reference,
                         log=None)
        value = res["value_model"].value_head if res["value_model"] is not None else None
        info.update(stopped=res["stopped"], history=res["history"],
                    models=L.models_held(policy, reference, getattr(reward, "model", None), value))
    info["seconds"] = time.time() - t
    return policy.eval(), reference, tok, info


def run_method(name: str, cfg: CompareConfig) -> dict:
    """Train and measure one method -> one row (with this process's peak RSS)."""
    policy, reference, tok, info = train_method(name, cfg)
    row = dict(method=name, **info, **measure(policy, tok, reference, cfg))
    row["peak_rss_mb"] = L.peak_rss_mb()
    return row


def run_isolated(name: str, cfg: CompareConfig) -> dict:
    """`run_method` in a fresh Python process (`python -m minillm.rlhf_compare NAME CONFIG`), so
    the peak memory it reports is this method's alone; its error, if any, is re-raised here."""
    done = subprocess.run([sys.executable, "-m", "minillm.rlhf_compare", name, json.dumps(asdict(cfg))],
                          capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MiniLLMError(f"the {name} run failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(cfg: CompareConfig = CompareConfig(), methods=METHODS, isolated: bool = True, log=print) -> dict:
    """Every method in `methods`, each in a fresh process when `isolated` -> {rows, cfg}."""
    rows = []
    for name in methods:
        row = run_isolated(name, cfg) if isolated else run_method(name, cfg)
        rows.append(row)
        if log:
            log(f"{name}: accuracy {row['accuracy']:.3f}, utility {row['utility']:.3f}, KL {row['kl']:.3f}, "
                f"{row['seconds']:.0f} s, peak RSS {row['peak_rss_mb']:.0f} MB")
    return dict(rows=rows, cfg=asdict(cfg))


def compare_table(res: dict) -> str:
    """`compare`'s rows as a markdown table."""
    head = ("| method | judge accuracy | true utility | perceived (length-biased) | answer words | KL to SFT | "
            "bits/byte | train s | models held (MB of weights) | peak RSS (MB) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in res["rows"]:
        m = r["models"]
        held = f"{m['models']} ({m['param_bytes'] / 1e6:.1f})" + (f", {m['note']}" if m.get("note") else "")
        lines.append(f"| {r['method']}{' (stopped)' if r.get('stopped') else ''} | {r['accuracy']:.3f} | "
                     f"{r['utility']:.3f} | {r['perceived']:.3f} | {r['words']:.2f} | {r['kl']:.3f} | "
                     f"{r['bits_per_byte']:.4f} | {r['seconds']:.0f} | {held} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# Reward hacking
# ---------------------------------------------------------------------------------

def style_sft(model, tok, steps: int = 300, lr: float = 1e-3, seed: int = 0, log=None):
    """Fine-tune `model` (in place) on correct answers in random styles (bare, sentence, padded
    with one filler): a policy whose samples vary in length, so a length-loving reward has
    something to select. SFT on these 'chosen' answers, `dpo.sft_on_chosen`'s loop."""
    rng = random.Random(f"style-sft/{seed}")
    rows = []
    for it in instruction_items(world.load_split("train").splitlines()[:2000], "seen", seed=seed):
        style = rng.choice(prefs.STYLES)
        rows.append(dict(it, chosen=prefs.answer_in_style(it["story"], it["question"], style, n_fillers=1, rng=rng),
                         rejected=prefs.answer_in_style(it["story"], it["question"], "bare", correct=False, rng=rng)))
    return dpo.sft_on_chosen(model, tok, rows, dpo.DPOConfig(steps=steps, lr=lr, seed=seed), log=log)[0]


def traced(reward: ro.RewardFn, trace: list) -> ro.RewardFn:
    """`reward`, recording for each call the oracle's true utility and the words of the answers."""
    def fn(items: list[dict], answers: list[str]) -> torch.Tensor:
        r = reward(items, answers)
        trace.append(dict(learned=float(r.mean()), utility=float(ro.utility_reward()(items, answers).mean()),
                          words=sum(len(a.split()) for a in answers) / len(answers)))
        return r
    fn.model = getattr(reward, "model", None)
    return fn


def reward_hacking(cfg: CompareConfig = CompareConfig(), kl_coefs=(0.0, 0.05, 0.2), steps: int = 50,
                   lr: float = 1e-3, style_steps: int = 300, log=print) -> dict:
    """PPO from a mixed-style SFT policy against a reward model of the length-biased labeler,
    one run per KL coefficient -> {start, reward_model, runs: [{kl_coef, trace, after, ...}]}."""
    base, tok = load_shipped("sft")
    t = time.time()
    start = style_sft(base, tok, style_steps, seed=cfg.seed).eval()
    style_seconds = time.time() - t
    pairs = prefs.preference_pairs(cfg.rm_pairs, seed=cfg.seed, split="rm_train", labeler=prefs.LENGTH_BIASED)
    reward, rm_info = learned_reward(start, tok, pairs, cfg, labeler=prefs.LENGTH_BIASED)
    out = dict(style_seconds=style_seconds, reward_model=rm_info, start=measure(start, tok, start, cfg), runs=[],
               steps=steps, lr=lr)
    if log:
        log(f"start: {out['start']['words']:.2f} words, utility {out['start']['utility']:.3f}; reward model "
            f"accuracy {rm_info['accuracy']:.3f} (Bayes {rm_info['bayes_accuracy']:.3f})")
    for beta in kl_coefs:
        policy, reference, trace = copy.deepcopy(start), copy.deepcopy(start), []   # rl_train freezes the reference
        rl = L.RLConfig(algo="ppo", steps=steps, lr=lr, kl_coef=beta, max_new_tokens=cfg.max_new_tokens,
                        max_kl=50.0, seed=cfg.seed)
        res = L.rl_train(policy, tok, rl_items(cfg, tok, policy.config.block_size), traced(reward, trace), rl, reference=reference, log=None)
        run = dict(kl_coef=beta, trace=trace, kl=[h.get("kl_seq") for h in res["history"]], seconds=res["seconds"],
                   stopped=res["stopped"], after=measure(policy, tok, start, cfg))
        out["runs"].append(run)
        if log:
            log(f"beta {beta}: learned reward {trace[0]['learned']:.2f} -> {trace[-1]['learned']:.2f}, utility "
                f"{trace[0]['utility']:.2f} -> {trace[-1]['utility']:.2f}, words {trace[0]['words']:.1f} -> "
                f"{trace[-1]['words']:.1f} ({res['seconds']:.0f} s)")
    return out


def hacking_table(res: dict, last: int = 10) -> str:
    """`reward_hacking`'s runs as a markdown table: the samples' mean over the first and the last
    `last` steps, and the held-out greedy answers after training."""
    def mean(xs):
        return sum(xs) / len(xs)
    lines = ["| KL coef | learned reward (first → last steps) | true utility of samples | words per sample | "
             "held-out: accuracy | true utility | words | KL to start | s |", "|" + " --- |" * 9]
    s = res["start"]
    lines.append(f"| start (mixed-style SFT) | - | - | - | {s['accuracy']:.3f} | {s['utility']:.3f} | {s['words']:.2f} | "
                 f"0 | {res['style_seconds']:.0f} |")
    for run in res["runs"]:
        t, a = run["trace"], run["after"]
        first, end = t[:last], t[-last:]
        cells = [f"{mean([x[k] for x in first]):.2f} → {mean([x[k] for x in end]):.2f}" for k in ("learned", "utility", "words")]
        lines.append(f"| {run['kl_coef']}{' (stopped)' if run['stopped'] else ''} | " + " | ".join(cells) +
                     f" | {a['accuracy']:.3f} | {a['utility']:.3f} | {a['words']:.2f} | {a['kl']:.3f} | {run['seconds']:.0f} |")
    return "\n".join(lines)


def plot_hacking(res: dict, window: int = 5):
    """Three panels over the PPO steps, one line per KL coefficient: learned reward, true utility, words."""
    import matplotlib.pyplot as plt  # deferred: plotting is optional for the library

    def smooth(xs):
        return [sum(xs[max(0, i - window + 1):i + 1]) / len(xs[max(0, i - window + 1):i + 1]) for i in range(len(xs))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for run in res["runs"]:
        for ax, key in zip(axes, ("learned", "utility", "words")):
            ax.plot(smooth([t[key] for t in run["trace"]]), label=f"KL coef {run['kl_coef']}")
    for ax, title in zip(axes, ("learned reward (length-biased RM)", "oracle's true utility", "words per sample")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"PPO step (mean of the last {window})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":   # `run_isolated`'s child: one method, its row as the last line of stdout
    print(json.dumps(run_method(sys.argv[1], CompareConfig(**json.loads(sys.argv[2])))))
