"""The speedrun's post-training stages: SFT and DPO of the model it pretrained, then the arena (lessons 08-12).

After pretraining, `minillm speedrun` fine-tunes copies of its model on TinyWorld
instructions — all weights (`instruct.sft_train`, lesson 08) and a rank-8 LoRA on the
attention layers (`lora_runs.lora_sft_train`, lesson 09) — then runs DPO from the SFT
model on the shipped oracle-labelled pairs (`dpo.dpo_train`, lesson 10), saves them as
OUT/sft, OUT/lora (merged) and OUT/dpo (run folders that `minillm chat` and `minillm
arena` take), and measures the four models the same way:
exact match on held-out questions in trained and unseen phrasings (Wilson
intervals), the oracle's mean utility of the answers (lesson 10's `utility`) and
validation bits/byte (what fine-tuning costs the language model). Then the four play
in a small arena under the oracle judge (lesson 12's `course_arena`), and the report
gets one results table and the leaderboard.

Left out (each has its own command, too slow for the main job's budget on 2 cores):
LoRA at other ranks (`minillm lora experiment`), DPO at other betas (`minillm dpo --experiment`),
RLHF (`minillm rlhf`), the full course arena with AI judges (`minillm arena course`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from minillm import preferences, world
from minillm.evaluate import score_text
from minillm.instruct import SFTConfig, instruction_items, qa_exact_match, save_small, sft_train


@dataclass
class PostPreset:
    """The post-training stages' size in one speedrun preset."""

    sft_steps: int
    lora_steps: int       # LoRA r=8 on the attention layers, lr 1e-2 (lesson 09's recipe)
    dpo_steps: int        # DPO from the SFT model on the shipped pairs, beta 0.1, lr 5e-4 (lesson 10's recipe)
    eval_stories: int     # validation stories (6 questions each) for exact match
    bpb_stories: int      # validation stories scored for bits/byte
    arena_items: int
    arena_battles: int


POST_PRESETS = {"default": PostPreset(sft_steps=600, lora_steps=300, dpo_steps=40, eval_stories=60, bpb_stories=200,
                                      arena_items=40, arena_battles=160),
                "fast": PostPreset(sft_steps=8, lora_steps=4, dpo_steps=3, eval_stories=4, bpb_stories=10, arena_items=6,
                                   arena_battles=12)}


def eval_sets(p: PostPreset) -> tuple[dict[str, list[dict]], str]:
    """Held-out questions per phrasing set, and the validation text of bits/byte, for a preset."""
    stories = world.load_split("val").splitlines()
    items = {ph: instruction_items(stories[:p.eval_stories], ph, seed=1) for ph in ("seen", "unseen")}
    return items, "".join(s + "\n" for s in stories[:p.bpb_stories])


def measure(model, tok, chat: bool, items: dict[str, list[dict]], bpb_text: str) -> dict:
    """Exact match per phrasing set, the oracle's mean utility, validation bits/byte."""
    row = {}
    for phrasing, its in items.items():
        r = qa_exact_match(model, tok, its) if chat else qa_exact_match(model, tok, its, shots=0, template=None)
        row[phrasing] = dict(accuracy=r.accuracy, ci95=list(r.ci95), n=r.n, skipped=r.skipped,
                             by_kind={k: v[0] for k, v in r.by_kind.items()})
        if phrasing == "seen":
            row["utility"] = sum(preferences.utility(its[i]["story"], its[i]["question"], a)
                                 for i, a in zip(r.kept, r.answers)) / max(r.n, 1)
    row["bits_per_byte"] = score_text(model, tok, bpb_text).bits_per_byte
    return row


def sft_stage(model, tok, out: Path, preset: str = "default", seed: int = 0, device: str = "cpu",
              log=print) -> dict:
    """Fine-tune copies of `model` (full SFT, LoRA), save OUT/sft and OUT/lora (merged), measure all three
    -> {rows: {name: measurements}, runs: {name: {steps, seconds, trainable, folder}}}."""
    from minillm import lora  # deferred: the LoRA layers are only needed here
    from minillm.lora_runs import lora_sft_train

    p = POST_PRESETS[preset]
    cfg = SFTConfig(steps=p.sft_steps, warmup_steps=min(20, p.sft_steps), seed=seed, device=device)
    t = time.time()
    sft_model, sft_tok, _ = sft_train(copy.deepcopy(model), copy.deepcopy(tok), cfg, log=lambda *a: None)
    runs = {"SFT": dict(steps=cfg.steps, seconds=time.time() - t, trainable=sft_model.num_parameters())}
    lcfg, lora_cfg = lora.LoRAConfig(r=8, alpha=16.0, targets="attn"), SFTConfig(
        steps=p.lora_steps, lr=1e-2, warmup_steps=min(20, p.lora_steps), seed=seed, device=device)
    t = time.time()
    res = lora_sft_train(model, tok, lora_cfg, lcfg, log=lambda *a: None)
    wte = res["model"].transformer.wte.weight           # the chat tokens' rows train too (lesson 09)
    trainable = sum(layer.lora_A.numel() + layer.lora_B.numel() for layer in lora.lora_layers(res["model"]).values())
    trainable += (wte.shape[0] - res["first_new_token"]) * wte.shape[1]
    runs["LoRA"] = dict(steps=lora_cfg.steps, seconds=time.time() - t, trainable=trainable, rank=lcfg.r)
    lora_model = lora.merge_lora(res["model"])   # merged == unmerged (lesson 09): one plain checkpoint
    for name, m, tk in (("SFT", sft_model, sft_tok), ("LoRA", lora_model, res["tokenizer"])):
        folder = save_small(Path(out) / name.lower(), m, tk, dict(made_by="minillm speedrun", stage=name.lower()))
        runs[name]["folder"] = str(folder)
        log(f"{name}: {runs[name]['steps']} steps in {runs[name]['seconds']:.0f} s -> {folder}")
    items, bpb_text = eval_sets(p)
    rows = {"pretrained": measure(model, tok, False, items, bpb_text),
            "SFT": measure(sft_model, sft_tok, True, items, bpb_text),
            "LoRA": measure(lora_model, res["tokenizer"], True, items, bpb_text)}
    for name, r in rows.items():
        log(f"{name}: exact match {r['seen']['accuracy']:.3f} seen, {r['unseen']['accuracy']:.3f} unseen "
            f"phrasings; {r['bits_per_byte']:.4f} bits/byte")
    return dict(rows=rows, runs=runs)


def dpo_stage(out: Path, preset: str = "default", seed: int = 0, device: str = "cpu", log=print) -> dict:
    """DPO of OUT/sft (policy and frozen reference) on the shipped oracle pairs; save OUT/dpo and measure it
    -> {row: measurements, run: {steps, seconds, trainable, folder, pairs, final_loss}}."""
    from minillm import dpo  # deferred: lesson 10's module is only needed here
    from minillm.instruct import load_shipped

    p = POST_PRESETS[preset]
    reference, tok = load_shipped(str(Path(out) / "sft"), device)
    policy = copy.deepcopy(reference)
    pairs = preferences.load_pairs(preferences.SHIPPED_PAIRS)      # data/preferences/oracle_pairs.jsonl
    res = dpo.dpo_train(policy, reference, tok, pairs, dpo.DPOConfig(steps=p.dpo_steps, seed=seed, device=device),
                        log=None)
    folder = save_small(Path(out) / "dpo", res.model, tok, dict(made_by="minillm speedrun", stage="dpo"))
    run = dict(steps=p.dpo_steps, seconds=res.seconds, trainable=res.model.num_parameters(), folder=str(folder),
               pairs=res.pairs_used, final_loss=res.history[-1]["train_loss"])
    log(f"DPO: {run['steps']} steps on {run['pairs']} pairs in {run['seconds']:.0f} s -> {folder}")
    items, bpb_text = eval_sets(p)
    row = measure(res.model, tok, True, items, bpb_text)
    log(f"DPO: exact match {row['seen']['accuracy']:.3f} seen, {row['unseen']['accuracy']:.3f} unseen phrasings; "
        f"utility {row['utility']:+.2f}; {row['bits_per_byte']:.4f} bits/byte")
    return dict(row=row, run=run)


def arena_stage(out: Path, preset: str = "default", seed: int = 0, log=print) -> dict:
    """The pretrained run (0-shot), OUT/sft, OUT/lora and OUT/dpo battle on held-out items under the oracle judge."""
    from minillm.arena import course_arena  # deferred: the arena's players import the generation code

    p = POST_PRESETS[preset]
    players = [f"{out}:0shot"] + [str(Path(out) / name) for name in ("sft", "lora", "dpo")
                                  if (Path(out) / name / "ckpt.pt").is_file()]
    res = course_arena(players, judges=("oracle",), n_items=p.arena_items,
                       n_battles=p.arena_battles, n_boot=50, seed=seed, val_stories=p.bpb_stories)
    fit = res["ratings"]["oracle"]
    log("arena (oracle judge): " + ", ".join(f"{n} {r:.0f}" for n, r in fit.as_dict().items()))
    return dict(table=res["tables"]["oracle"], ratings=fit.as_dict(), battles=len(res["battles"]["oracle"]))


def results_table(post: dict) -> str:
    """The post-training lessons' results table (POSTTRAIN.md's columns that the speedrun measures)."""
    def em(r, ph):
        x = r[ph]
        return f"{x['accuracy']:.3f} [{x['ci95'][0]:.2f}, {x['ci95'][1]:.2f}]" if x["n"] else "none fits"
    lines = ["| method | trainable params | steps | wall time | exact match, trained phrasings [95% CI] | "
             "unseen phrasings | oracle utility | validation bits/byte |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    labels = {"pretrained": "pretrained, 0-shot", "SFT": "SFT (full fine-tuning)", "LoRA": "LoRA r=8 (attention)",
              "DPO": "DPO from SFT (beta 0.1)"}
    for name, r in post["rows"].items():
        run = post["runs"].get(name)
        cost = f"{run['trainable']:,} | {run['steps']} | {run['seconds']:.0f} s" if run else "- | - | -"
        lines.append(f"| {labels.get(name, name)} | {cost} | {em(r, 'seen')} | {em(r, 'unseen')} | "
                     f"{r['utility']:+.2f} | {r['bits_per_byte']:.4f} |")
    return "\n".join(lines)


def post_section(post: dict, arena: dict | None) -> str:
    """The report's post-training section: the results table, what it means, the leaderboard."""
    sft = post["rows"]["SFT"]
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in sft["seen"]["by_kind"].items())
    parts = [results_table(post), "",
             "Exact match: greedy answers to held-out questions about validation stories, graded by the "
             "world's judge; *unseen phrasings* are wordings never trained on. The pretrained model gets the "
             "plain `Question: ... Answer:` prompt; the SFT, LoRA and DPO models the chat template (lessons 08-10; "
             "the LoRA model is saved merged; DPO starts from the SFT model and learns from oracle-labelled "
             "preference pairs, lesson 10). Oracle "
             "utility is lesson 10's known reward of an answer (+2 when right, form bonuses, filler costs). "
             "Bits/byte on plain validation stories shows what fine-tuning costs the language model "
             "(forgetting).", "",
             f"SFT exact match by question kind (trained phrasings): {kinds}.", "",
             f"Chat with it: `minillm chat --checkpoint {post['runs']['SFT']['folder']}`."]
    if arena:
        parts += ["", f"### Leaderboard ({arena['battles']} battles, oracle judge, Bradley-Terry)", "",
                  arena["table"].strip()]
    return "\n".join(parts)
