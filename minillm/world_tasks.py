"""TinyWorld's tasks: questions with checkable answers, multiple choice, preference pairs, a judge.

Every story's facts (who had how many of what, where, which animal) are known, so
questions about them have exactly one right answer (`question`), and a program
can grade any answer from the text alone (`judge`): questions for SFT and
evaluation (`qa_pairs`, lessons 05 and 08), multiple-choice items for few-shot
evaluation (`multiple_choice`, lesson 05) and preference pairs (`preference_pairs`,
lessons 10 and 11). `write_dataset` writes the default data set: the stories of
`minillm.world` and these derived sets.

Left out: free-form questions, answers that need more than one fact, the preference
oracle with answer styles and known utilities (lesson 10 adds it beside these tasks).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from minillm.utils import MiniLLMError, atomic_write_text
from minillm.world import (COLOURS, DEFAULT_SEED, NUMBERS, PLACES, SPECIES, Story, article, iter_stories,
                           story_from_text, write_stories)

QUESTION_KINDS = ["start", "hero_end", "friend_end", "place", "friend_species", "colour"]


def count_word(n: int) -> str:
    """3 -> 'three': how the stories write a count."""
    return NUMBERS[n]


def question(story: Story, kind: str) -> tuple[str, str, list[str]]:
    """(question, correct answer, all possible answers of that kind) about `story`."""
    f = story.facts
    things_ = f"{f['colour']} {f['object']}"
    counts = [count_word(i) for i in range(len(NUMBERS))]
    if kind == "start":
        return f"How many {things_} did {f['hero']} have at the start?", count_word(f["start"]), counts
    if kind == "hero_end":
        return f"How many {things_} did {f['hero']} have at the end?", count_word(f["hero_end"]), counts
    if kind == "friend_end":
        return f"How many {things_} did {f['friend']} have at the end?", count_word(f["friend_end"]), counts
    if kind == "place":
        return f"Where did {f['hero']} live?", f"near {f['place']}", [f"near {p}" for p in PLACES]
    if kind == "friend_species":
        return f"What kind of animal was {f['friend']}?", f"a {f['friend_species']}" if article(
            f["friend_species"]) == "a" else f"an {f['friend_species']}", [f"{article(x)} {x}" for x in SPECIES]
    if kind == "colour":
        return f"What colour were the {f['object']} of {f['hero']}?", f["colour"], list(COLOURS)
    raise MiniLLMError(f"unknown question kind {kind!r}; choose from {QUESTION_KINDS}")


def qa_pairs(n: int, seed: int = 0, split: str = "qa") -> list[dict]:
    """Question/answer pairs grounded in fresh stories: {story, question, answer, kind}."""
    rng = random.Random(f"tinyworld-qa/{seed}/{split}")
    out = []
    for story in iter_stories(n, seed, split):
        kind = QUESTION_KINDS[rng.randrange(len(QUESTION_KINDS))]
        q, a, _ = question(story, kind)
        out.append(dict(story=story.text, question=q, answer=a, kind=kind))
    return out


def multiple_choice(n: int, seed: int = 0, split: str = "mc", n_choices: int = 4) -> list[dict]:
    """Multiple-choice items: {story, question, choices, answer_index, kind}.

    Distractors are other answers of the same kind (numbers near the true one for counts).
    """
    rng = random.Random(f"tinyworld-mc/{seed}/{split}")
    out = []
    for item in qa_pairs(n, seed, split):
        story = story_from_text(item["story"])
        _, answer, pool = question(story, item["kind"])
        if item["kind"] in ("start", "hero_end", "friend_end"):
            i = pool.index(answer)
            pool = pool[max(0, i - 4): i + 5]  # plausible numbers, not "twenty" for "two"
        wrong = [x for x in pool if x != answer]
        choices = rng.sample(wrong, n_choices - 1)
        k = rng.randrange(n_choices)
        choices.insert(k, answer)
        out.append(dict(story=item["story"], question=item["question"], choices=choices,
                        answer_index=k, kind=item["kind"]))
    return out


def judge(story_text: str, question_text: str, answer: str) -> bool:
    """The programmatic judge: is `answer` the right answer to `question_text` about the story?

    Works from the text alone (the story is parsed, not looked up), so it can
    grade answers a model wrote. Case, spaces and a final period are ignored.
    """
    story = story_from_text(story_text)
    norm = lambda x: x.strip().rstrip(".").strip().lower()  # noqa: E731
    for kind in QUESTION_KINDS:
        q, a, _ = question(story, kind)
        if q == question_text:
            return norm(answer) == norm(a)
    raise MiniLLMError(f"the judge does not know the question {question_text!r}")


def preference_pairs(n: int, seed: int = 0, split: str = "prefs") -> list[dict]:
    """Preference pairs for DPO/RLHF: {story, question, chosen, rejected}.

    `chosen` is the correct answer and `rejected` a wrong one of the same kind, so
    `judge` prefers `chosen` every time.
    """
    return [dict(story=m["story"], question=m["question"], chosen=m["choices"][m["answer_index"]],
                 rejected=next(c for i, c in enumerate(m["choices"]) if i != m["answer_index"]),
                 kind=m["kind"])
            for m in multiple_choice(n, seed, split)]



# ---------------------------------------------------------------------------------
# The default data set: stories (minillm.world) plus the derived sets
# ---------------------------------------------------------------------------------

DERIVED_SIZES = dict(qa_train=2000, qa_val=300, mc_val=300, prefs_train=2000, prefs_val=200)
MAKERS = dict(qa=qa_pairs, mc=multiple_choice, prefs=preference_pairs)


def write_task_sets(out_dir: str | Path, seed: int = DEFAULT_SEED, derived: dict | None = None) -> dict[str, Path]:
    """Write one `<name>.jsonl` per derived set, e.g. {"mc_val": 300}: 300 multiple-choice
    items from the stories of split "mc_val". Returns {name: path}."""
    derived = dict(DERIVED_SIZES if derived is None else derived)
    out, paths = Path(out_dir), {}
    for name, n in derived.items():
        kind = name.split("_")[0]
        if kind not in MAKERS:
            raise MiniLLMError(f"unknown derived set {name!r}: its name must start with one of {', '.join(MAKERS)}")
        rows = MAKERS[kind](n, seed, name)
        paths[name] = atomic_write_text(out / f"{name}.jsonl",
                                        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return paths


def write_dataset(out_dir: str | Path, seed: int = DEFAULT_SEED, sizes: dict | None = None,
                  derived: dict | None = None) -> dict[str, Path]:
    """The whole default data set (`minillm world data`): train.txt / val.txt and floor.json
    (`minillm.world.write_stories`), then the derived JSONL sets. Returns {name: path}."""
    paths = write_stories(out_dir, seed, sizes)
    floor = paths.pop("floor")
    paths.update(write_task_sets(out_dir, seed, derived))
    paths["floor"] = floor
    return paths
