"""Pairwise battles between models, judges and their biases (lesson 12).

A battle: one prompt, two models' answers, a judge's verdict — "a", "b", "tie" or
"both_bad" (Chatbot Arena's four buttons; "both bad" counts as a tie in the ratings).
Battles are appended to a JSONL file that the ratings (`minillm.ratings`) read, from
the command line, the notebook or the web arena (`minillm.arena_server`) alike.

- `append_battle` / `read_battles`: one JSON object a line, appended under a file lock
  and flushed to disk, so two writers (two browser tabs) never lose or mix a record;
  a damaged line is one clear error naming it.
- `judge_both_orders`: ask a judge twice with the answers swapped; disagreeing verdicts
  become a tie, which removes the judge's position bias (Zheng et al. 2023, *Judging
  LLM-as-a-Judge*).
- `position_bias` and `length_bias`: how often a judge's verdict follows the first slot,
  or the longer answer, when the content says otherwise.
- `length_controlled_win_rate`: the win rate at equal length, from a logistic regression
  of the outcome on the length difference (the idea of AlpacaEval's length-controlled
  win rate, Dubois et al. 2024, reduced to one covariate).

- `make_judge("oracle" | "exact" | "ai:PATH" | "lik:PATH")`: a judge by name, its failures
  turned into one clear error; `judge_bias`: an AI judge's position and length bias on
  real answers, before and after judging both orders, and its agreement with the oracle.
- `course_arena` / `course_report`: the course leaderboard — checkpoints
  (`minillm.arena_models`) battling on held-out TinyWorld items under each judge,
  Bradley-Terry ratings with bootstrap intervals, beside each model's validation
  perplexity, and the rank agreement (Kendall's tau) between judges and with perplexity.

Left out: the sampling of model pairs by uncertainty, anonymity checks, and vote spam filters.
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from minillm.utils import MiniLLMError

VERDICTS = ("a", "b", "tie", "both_bad")
OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
REQUIRED = ("model_a", "model_b", "verdict")

# judge(item, answer_a, answer_b) -> one of VERDICTS
Judge = Callable[[dict, str, str], str]


def check_record(record: dict) -> dict:
    """A battle record, checked: both models named and different, a known verdict."""
    if not isinstance(record, dict):
        raise MiniLLMError(f"a battle must be a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise MiniLLMError(f"the battle lacks {', '.join(missing)}: {record}")
    if record["verdict"] not in VERDICTS:
        raise MiniLLMError(f"verdict must be one of {VERDICTS}, got {record['verdict']!r}")
    if not record["model_a"] or record["model_a"] == record["model_b"]:
        raise MiniLLMError(f"a battle needs two different models, got {record['model_a']!r} and {record['model_b']!r}")
    return record


def append_battle(path: str | os.PathLike, record: dict) -> None:
    """Append one battle to a JSONL file, atomically with respect to other writers."""
    line = json.dumps(check_record(record), ensure_ascii=False) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        try:
            import fcntl   # deferred: POSIX only; elsewhere the single write below is the best we have

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:
            pass
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_battles(path: str | os.PathLike) -> list[dict]:
    """All battles in a JSONL file (an absent or empty file has none)."""
    path = Path(path)
    if path.is_dir():
        raise MiniLLMError(f"{path} is a folder, not a battles file")
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(check_record(json.loads(line)))
            except (json.JSONDecodeError, MiniLLMError) as e:
                raise MiniLLMError(f"{path}, line {n}: not a battle ({e})") from None
    return out


def outcomes(records: Sequence[dict]) -> list[tuple[str, str, float]]:
    """Battles for `ratings`: (model_a, model_b, 1 | 0 | 0.5)."""
    return [(r["model_a"], r["model_b"], OUTCOME[r["verdict"]]) for r in records]


def swap(verdict: str) -> str:
    """The same verdict seen from the other side."""
    return {"a": "b", "b": "a"}.get(verdict, verdict)


def judge_both_orders(judge: Judge, item: dict, answer_a: str, answer_b: str) -> str:
    """The judge's verdict with its position bias removed: ask in both orders; if the two
    verdicts disagree, call it a tie."""
    first = judge(item, answer_a, answer_b)
    second = swap(judge(item, answer_b, answer_a))
    return first if first == second else "tie"


def position_bias(judge: Judge, triples: Sequence[tuple[dict, str, str]]) -> float:
    """Of the (item, x, y) pairs where swapping the order changes the verdict, the fraction
    where the judge picked whatever came first (0.5 would be no bias). NaN if none changed."""
    first_won = changed = 0
    for item, x, y in triples:
        v1, v2 = judge(item, x, y), judge(item, y, x)
        if v1 != swap(v2):
            changed += 1
            first_won += (v1 == "a") + (v2 == "a")
    return first_won / (2 * changed) if changed else math.nan


def length_bias(judge: Judge, triples: Sequence[tuple[dict, str, str]], pad: Callable[[str], str],
                both_orders: bool = True) -> float:
    """How often padding an answer (`pad`, content unchanged) turns a loss or tie into a win,
    minus how often it turns a win into a loss: 0 for a judge blind to length. The judge
    sees both orders (`judge_both_orders`) unless `both_orders` is False."""
    if not triples:
        raise MiniLLMError("no answers to measure the length bias on")
    verdict = (lambda i, x, y: judge_both_orders(judge, i, x, y)) if both_orders else judge
    gained = 0
    for item, x, y in triples:
        before = OUTCOME[verdict(item, x, y)]
        after = OUTCOME[verdict(item, pad(x), y)]
        gained += (after > before) - (after < before)
    return gained / len(triples)


def length_controlled_win_rate(results: Sequence[float], length_diff: Sequence[float],
                               iters: int = 50) -> tuple[float, float]:
    """(raw win rate, length-controlled win rate) of a model against a baseline.

    results: 1 win, 0 loss, 0.5 tie per battle; length_diff: its answer's length minus
    the baseline's. Fits P(win) = sigmoid(a + b * length_diff / scale) by Newton's method
    and reports sigmoid(a): the win rate the same judge would give at equal length.
    """
    y = np.asarray(results, dtype=float)
    d = np.asarray(length_diff, dtype=float)
    if len(y) == 0 or len(y) != len(d):
        raise MiniLLMError(f"need as many length differences as results, got {len(d)} and {len(y)}")
    scale = d.std() or 1.0
    X = np.stack([np.ones_like(d), d / scale], axis=1)          # (n, 2)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (y - p) - 1e-6 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-12:
            break
    return float(y.mean()), float(1 / (1 + math.exp(-w[0])))


def pair_schedule(models: Sequence[str], n_battles: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n_battles` pairs of distinct models, every pair about equally often, sides random."""
    if len(set(models)) < 2:
        raise MiniLLMError(f"an arena needs at least two different models, got {list(models)}")
    rng = random.Random(seed)
    names = sorted(set(models))
    all_pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out = []
    while len(out) < n_battles:
        rng.shuffle(all_pairs)
        out += [(a, b) if rng.random() < 0.5 else (b, a) for a, b in all_pairs]
    return out[:n_battles]


def run_battles(answer: Callable[[str, dict], str], models: Sequence[str], items: Sequence[dict],
                judge: Judge, n_battles: int, seed: int = 0, judge_name: str = "judge",
                debias: bool = True) -> list[dict]:
    """Battles between `models` on `items`: answer(model, item) -> text, judged by `judge`
    (in both orders when `debias`). Returns the records `append_battle` writes."""
    if not items:
        raise MiniLLMError("no prompts to battle on")
    rng = random.Random(seed)
    records = []
    for a, b in pair_schedule(models, n_battles, seed):
        item = items[rng.randrange(len(items))]
        ans_a, ans_b = answer(a, item), answer(b, item)
        verdict = judge_both_orders(judge, item, ans_a, ans_b) if debias else judge(item, ans_a, ans_b)
        if verdict not in VERDICTS:
            raise MiniLLMError(f"judge {judge_name!r} returned {verdict!r}, not one of {VERDICTS}")
        records.append(dict(prompt=item.get("question", item.get("prompt", "")), model_a=a, model_b=b,
                            answer_a=ans_a, answer_b=ans_b, verdict=verdict, judge=judge_name))
    return records


def exact_match_judge() -> Judge:
    """The programmatic judge: a right answer beats a wrong one; two right ones tie; two wrong
    ones are "both bad". Items carry `story` and `question` (TinyWorld)."""
    from minillm import world_tasks  # deferred: the arena's core does not need TinyWorld

    def judge(item: dict, answer_a: str, answer_b: str) -> str:
        right_a = world_tasks.judge(item["story"], item["question"], answer_a)
        right_b = world_tasks.judge(item["story"], item["question"], answer_b)
        return {(True, False): "a", (False, True): "b", (True, True): "tie"}.get((right_a, right_b), "both_bad")

    return judge


def oracle_judge(labeler=None, seed: int = 0) -> Judge:
    """The simulated person of lesson 10: prefers a with P = sigmoid((u(a) - u(b)) / tau)."""
    from minillm import preferences  # deferred: the arena's core does not need TinyWorld

    labeler = labeler or preferences.HUMAN
    rng = random.Random(seed)

    def judge(item: dict, answer_a: str, answer_b: str) -> str:
        p = labeler.p_prefers(item["story"], item["question"], answer_a, answer_b)
        return "tie" if p == 0.5 else ("a" if rng.random() < p else "b")

    return judge


# ---------------------------------------------------------------------------------
# Judges by name, and the course arena (the models come from `minillm.arena_models`)
# ---------------------------------------------------------------------------------

DEFAULT_JUDGES = ("oracle", "ai:sft", "lik:sft")


def checked(judge, name: str):
    """`judge`, with any failure on an answer turned into one clear error naming the judge."""
    def wrapped(item: dict, answer_a: str, answer_b: str) -> str:
        try:
            verdict = judge(item, answer_a, answer_b)
        except MiniLLMError:
            raise
        except Exception as e:  # a judge is user code (a reward model): say which answer broke it
            raise MiniLLMError(f"judge {name!r} failed on the answers {answer_a!r} / {answer_b!r}: "
                               f"{type(e).__name__}: {e}") from None
        return verdict

    return wrapped


def make_judge(spec: str, seed: int = 0, raw: bool = False):
    """'oracle' | 'exact' | 'ai:PATH' | 'lik:PATH' | 'rm:FOLDER' -> (judge, debias): whether `run_battles` should
    ask it in both orders (a model judge, unless `raw`; the oracle and exact match have no
    position bias). ai: `arena_models.model_judge`; lik: its `likelihood_scorer`; rm: `reward_scorer`."""
    if spec == "oracle":
        return checked(oracle_judge(seed=seed), spec), False
    if spec == "exact":
        return checked(exact_match_judge(), spec), False
    from minillm import arena_models as am  # deferred: model judges need torch; the core does not

    if spec.startswith("ai:") and spec[3:]:
        return checked(am.model_judge(spec[3:]), spec), not raw
    if spec.startswith("lik:") and spec[4:]:
        return checked(am.scorer_judge(am.likelihood_scorer(spec[4:])), spec), not raw
    if spec.startswith("rm:") and spec[3:]:
        return checked(am.scorer_judge(am.reward_scorer(spec[3:])), spec), not raw
    raise MiniLLMError(f"unknown judge {spec!r}: use oracle, exact, ai:PATH, lik:PATH (a checkpoint) "
                       "or rm:FOLDER (a reward model)")


def kendall_tau(x: dict[str, float], y: dict[str, float]) -> float:
    """Kendall's tau-a between two ratings of the same models (1: same order, -1: reversed)."""
    names = sorted(set(x) & set(y))
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    if not pairs:
        raise MiniLLMError("need at least two models rated by both")
    sign = lambda v: (v > 0) - (v < 0)  # noqa: E731
    return sum(sign(x[a] - x[b]) * sign(y[a] - y[b]) for a, b in pairs) / len(pairs)


def judge_bias(judge, items: list[dict], answers: dict[str, list[str]], seed: int = 0) -> dict[str, float]:
    """A judge's position and length bias on the models' own answers, before and after
    judging both orders, and its agreement with the oracle's utility where that differs."""
    from minillm import preferences  # deferred: the arena's core does not need TinyWorld

    rng = random.Random(seed)
    names = sorted(answers)
    triples = []
    for i, item in enumerate(items):
        a, b = rng.sample(names, 2)
        if answers[a][i] != answers[b][i]:
            triples.append((item, answers[a][i], answers[b][i]))
    both = lambda it, x, y: judge_both_orders(judge, it, x, y)  # noqa: E731
    pad = lambda x: f"{x} {preferences.FILLERS_AFTER[0]}"           # noqa: E731
    out = dict(pairs=len(triples), position_bias=position_bias(judge, triples),
               flip_rate=sum(judge(i, x, y) != swap(judge(i, y, x)) for i, x, y in triples) / len(triples))
    for tag, j in (("one_order", judge), ("both_orders", both)):
        verdicts = [j(i, x, y) for i, x, y in triples]
        out[f"first_slot_{tag}"] = sum(v == "a" for v in verdicts) / len(verdicts)
        out[f"decisive_{tag}"] = sum(v in ("a", "b") for v in verdicts) / len(verdicts)
        out[f"length_bias_{tag}"] = length_bias(judge, triples, pad, both_orders=tag == "both_orders")
        agree = [(v == "a") == (preferences.utility(i["story"], i["question"], x) >
                                preferences.utility(i["story"], i["question"], y))
                 for (i, x, y), v in zip(triples, verdicts)
                 if preferences.utility(i["story"], i["question"], x) != preferences.utility(i["story"], i["question"], y)
                 and v in ("a", "b")]
        out[f"oracle_agreement_{tag}"] = sum(agree) / len(agree) if agree else float("nan")
    return out


def model_columns(answerers: dict, items: list[dict], answers: dict[str, list[str]],
                  val_stories: int = 200) -> dict[str, dict[str, object]]:
    """The leaderboard's extra columns per model: validation bits/byte and perplexity (the
    last `val_stories` validation stories, `evaluate.score_text`), exact match, the oracle's
    mean utility, and how many prompts were cut to fit the context."""
    # deferred: scoring needs torch and TinyWorld; the arena's core needs neither
    from minillm import preferences, world, world_tasks
    from minillm.evaluate import score_text

    val = "".join(s + "\n" for s in world.load_split("val").splitlines()[-val_stories:])
    scores, columns = {}, {}
    for name, a in answerers.items():
        if id(a.run) not in scores:         # k-shot and sampled variants share one checkpoint
            scores[id(a.run)] = score_text(a.run.model, a.run.tokenizer, val)
        s, ans = scores[id(a.run)], answers[name]
        hits = sum(world_tasks.judge(i["story"], i["question"], x) for i, x in zip(items, ans))
        u = sum(preferences.utility(i["story"], i["question"], x) for i, x in zip(items, ans))
        columns[name] = {"val bits/byte": f"{s.bits_per_byte:.4f}", "val perplexity": f"{s.perplexity:.3f}",
                         "exact match": f"{hits / len(items):.2f}", "mean utility": f"{u / len(items):+.2f}",
                         "prompts cut": a.shortened}
    return columns


def course_arena(specs: Sequence[str] | None = None, judges: Sequence[str] = DEFAULT_JUDGES,
                 n_items: int = 60, n_battles: int = 300, n_boot: int = 100, seed: int = 0,
                 val_stories: int = 200, log: Callable[[str], None] | None = None) -> dict:
    """The course leaderboard: models battle on held-out TinyWorld items under each judge.

    Returns {battles: {judge: records}, ratings: {judge: Ratings}, intervals, table (markdown),
    columns: {model: bits/byte, perplexity, exact match, utility}, agreement: {judge pair:
    Kendall tau}, bias: the AI judges' `judge_bias`}.
    """
    # deferred: the models need torch and TinyWorld; the arena's core needs neither
    from minillm import arena_models as am, ratings

    log = log or (lambda s: None)
    answerers = am.build_answerers(list(specs or am.DEFAULT_MODELS), seed=seed)
    items = am.course_items(n_items, seed)
    answers = {name: a.answer_many(items) for name, a in answerers.items()}
    log(f"answered {n_items} items with {len(answerers)} models")
    columns = model_columns(answerers, items, answers, val_stories)
    out = dict(items=items, answers=answers, columns=columns, battles={}, ratings={}, intervals={}, bias={}, tables={})
    for jname in judges:
        judge, debias = make_judge(jname, seed)
        recs = run_battles(lambda m, it: answerers[m](it), list(answerers), items, judge, n_battles,
                           seed=seed, judge_name=jname, debias=debias)
        games = outcomes(recs)
        with warnings.catch_warnings():  # a model that never lost is flagged in the table instead
            warnings.simplefilter("ignore")
            fit = ratings.fit_bradley_terry(games)
            ci = ratings.bootstrap_ratings(games, n_boot=n_boot, seed=seed)
        out["battles"][jname], out["ratings"][jname], out["intervals"][jname] = recs, fit, ci
        out["tables"][jname] = ratings.leaderboard(fit, ci, columns) + (
            "\n(some model never lost or never won: a weak prior keeps its rating finite; read it as a bound)\n"
            if fit.bounded else "")
        if jname.startswith(("ai:", "lik:", "rm:")):
            out["bias"][jname] = judge_bias(make_judge(jname, seed, raw=True)[0], items, answers, seed)
        log(f"{jname}: {len(recs)} battles fitted")
    names = list(out["ratings"])
    out["agreement"] = {f"{a} vs {b}": kendall_tau(out["ratings"][a].as_dict(), out["ratings"][b].as_dict())
                        for i, a in enumerate(names) for b in names[i + 1:]}
    bpb = {n: -float(c["val bits/byte"]) for n, c in columns.items()}  # lower bits/byte ranks higher
    out["agreement"].update({f"{j} vs -bits/byte": kendall_tau(out["ratings"][j].as_dict(), bpb) for j in names})
    return out


def course_report(res: dict) -> str:
    """`course_arena`'s result as markdown: a leaderboard per judge, rank agreement, judge biases."""
    parts = [f"### Judge: {j}\n\n{t}" for j, t in res["tables"].items()]
    parts.append("### Rank agreement (Kendall's tau)\n\n| pair | tau |\n| --- | --- |\n" +
                 "".join(f"| {k} | {v:+.2f} |\n" for k, v in res["agreement"].items()))
    if res["bias"]:
        keys = list(next(iter(res["bias"].values())))
        parts.append("### AI judges' biases (one order vs both orders)\n\n| measure | " +
                     " | ".join(res["bias"]) + " |\n| --- |" + " --- |" * len(res["bias"]) + "\n" +
                     "".join(f"| {k} | " + " | ".join(f"{b[k]:.3f}" for b in res["bias"].values()) + " |\n"
                             for k in keys))
    return "\n".join(parts)


def plot_course(res: dict):
    """Ratings with their 95% intervals per judge (left) and against validation bits/byte (right)."""
    import matplotlib.pyplot as plt  # deferred: start-up speed

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = res["ratings"][next(iter(res["ratings"]))].names
    for k, (judge, fit) in enumerate(res["ratings"].items()):
        r, ci = fit.as_dict(), res["intervals"][judge]
        y = np.arange(len(names)) + 0.8 * k / max(len(res["ratings"]), 1)
        lo = [r[n] - ci.get(n, (r[n], r[n]))[0] for n in names]
        hi = [ci.get(n, (r[n], r[n]))[1] - r[n] for n in names]
        ax.errorbar([r[n] for n in names], y, xerr=[lo, hi], fmt="o", capsize=3, label=judge)
        bx.scatter([float(res["columns"][n]["val bits/byte"]) for n in names], [r[n] for n in names], label=judge)
    ax.set_yticks(np.arange(len(names)) + 0.2, names)
    ax.set_xlabel("Bradley-Terry rating (Elo scale), 95% bootstrap interval")
    ax.legend(fontsize=8)
    bx.set_xlabel("validation bits/byte (lower = better language model)")
    bx.set_ylabel("rating")
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig
