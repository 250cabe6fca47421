"""The TinyWorld preference oracle: answers with known utility, and a simulated labeler (lessons 10-12).

Real preference data is noisy and its true reward unknown. Here both are known:

- **Answers have styles** (`STYLES`): the bare answer ("four"), a full sentence that
  restates the question ("Ivy had four blue kites at the end."), and padded
  answers — the sentence with filler phrases around it. Any of them can be wrong
  (a plausible wrong value of the same kind). `read_answer` reads the style, the
  filler and the correctness back from the text alone, as `world.judge` does.
- **A known utility** (`Utility`, the weights in one place): correctness first, then
  a small bonus for a full sentence, minus a small cost per filler word.
- **A simulated labeler** (`Labeler`): P(A preferred to B) = sigmoid((u(A) - u(B)) / tau),
  Bradley-Terry with a known temperature, so the Bayes-optimal accuracy of any set of
  pairs is computable (`bayes_accuracy`). A **length-biased** labeler adds a bonus per
  word to what it perceives (people tend to rate longer answers higher), the reward to
  hack in lesson 11.

Pairs are stored as JSONL (`write_pairs` / `load_pairs`, checked line by line); the default
set ships as `data/preferences/oracle_pairs.jsonl` (`SHIPPED_PAIRS`). On-policy pairs, two
answers sampled from a model and labelled here, are `rollout.on_policy_pairs` (they need a model).

Left out: AI labelers and judges (they are models, lessons 11-12), multi-turn answers.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from minillm import world, world_tasks as tasks
from minillm.utils import MiniLLMError, atomic_write_text, jsonl_objects

STYLES = ("bare", "sentence", "padded")

# Filler phrases a padded answer wraps around its sentence (before, after).
FILLERS_BEFORE = ["Let me think about the story.", "Good question!", "I read the story carefully.",
                  "Here is what I found."]
FILLERS_AFTER = ["I hope this helps.", "That is what the story says.", "It was a nice story.",
                 "Thank you for asking."]


@dataclass(frozen=True)
class Utility:
    """What an answer is worth to the simulated person (the oracle's true reward)."""

    correct: float = 2.0        # a right answer
    sentence: float = 0.5       # ... said as a full sentence that restates the question
    per_filler_word: float = 0.1  # cost of every word of filler
    unreadable: float = -1.0    # an answer that is neither a known style nor parseable


UTILITY = Utility()


def _sentence(story: world.Story, kind: str, value: str) -> str:
    """The full-sentence form of answer `value` to the question of `kind` about `story`."""
    f = story.facts
    if kind in ("start", "hero_end", "friend_end"):
        who = f["friend"] if kind == "friend_end" else f["hero"]
        singular = next((s for s, p in world.OBJECTS if p == f["object"]), f["object"])
        obj = singular if value == "one" else f["object"]
        when = "at the start" if kind == "start" else "at the end"
        return f"{who} had {value} {f['colour']} {obj} {when}."
    if kind == "place":
        return f"{f['hero']} lived {value}."
    if kind == "friend_species":
        return f"{f['friend']} was {value}."
    if kind == "colour":
        return f"The {f['object']} of {f['hero']} were {value}."
    raise MiniLLMError(f"unknown question kind {kind!r}; choose from {tasks.QUESTION_KINDS}")


def _kind_of(story: world.Story, question: str) -> tuple[str, str, list[str]]:
    """(kind, right answer, all answers of the kind) of a question about `story`."""
    for kind in tasks.QUESTION_KINDS:
        q, answer, pool = tasks.question(story, kind)
        if q == question:
            return kind, answer, pool
    raise MiniLLMError(f"the oracle does not know the question {question!r}")


def wrong_value(answer: str, pool: list[str], rng: random.Random) -> str:
    """A plausible wrong answer of the same kind (counts near the true one)."""
    if answer in world.NUMBERS:
        i = pool.index(answer)
        pool = pool[max(0, i - 3): i + 4]
    return rng.choice([x for x in pool if x != answer])


def answer_in_style(story_text: str, question: str, style: str, correct: bool = True,
                    n_fillers: int = 2, rng: random.Random | None = None) -> str:
    """An answer to `question` in `style` ('bare', 'sentence' or 'padded'), right or wrong.

    >>> s = world.generate(1, seed=0)[0]
    >>> q, a, _ = tasks.question(s, "colour")
    >>> answer_in_style(s.text, q, "bare") == a
    True
    """
    if style not in STYLES:
        raise MiniLLMError(f"unknown answer style {style!r}; choose from {STYLES}")
    rng = rng or random.Random(0)
    story = world.story_from_text(story_text)
    kind, answer, pool = _kind_of(story, question)
    value = answer if correct else wrong_value(answer, pool, rng)
    if style == "bare":
        return value
    text = _sentence(story, kind, value)
    if style == "padded":
        if n_fillers < 1:
            raise MiniLLMError("a padded answer needs at least one filler phrase")
        n_before = rng.randint(0, n_fillers)
        before = rng.sample(FILLERS_BEFORE, min(n_before, len(FILLERS_BEFORE)))
        after = rng.sample(FILLERS_AFTER, min(n_fillers - n_before, len(FILLERS_AFTER)))
        text = " ".join(before + [text] + after)
    return text


@dataclass(frozen=True)
class Reading:
    """What the oracle reads off an answer's text."""

    style: str          # 'bare', 'sentence', 'padded' or 'unreadable'
    correct: bool
    filler_words: int
    words: int


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip()).rstrip(".").strip().lower()


def read_answer(story_text: str, question: str, answer: str) -> Reading:
    """Read style, correctness and filler of `answer` from its text (no hidden labels)."""
    story = world.story_from_text(story_text)
    kind, truth, pool = _kind_of(story, question)
    words = len(answer.split())
    text, filler = answer.strip(), 0
    for phrase in FILLERS_BEFORE + FILLERS_AFTER:      # peel off filler phrases wherever they are
        while phrase in text:
            text = text.replace(phrase, " ", 1)
            filler += len(phrase.split())
    text = re.sub(r"\s+", " ", text).strip()
    for value in pool:
        if _norm(text) == _norm(value):
            return Reading("padded" if filler else "bare", value == truth, filler, words)
        if _norm(text) == _norm(_sentence(story, kind, value)):
            return Reading("padded" if filler else "sentence", value == truth, filler, words)
    return Reading("unreadable", False, filler, words)


def utility(story_text: str, question: str, answer: str, weights: Utility = UTILITY) -> float:
    """The true value of `answer` to the simulated person.

    >>> s = world.generate(1, seed=0)[0]
    >>> q, a, _ = tasks.question(s, "colour")
    >>> utility(s.text, q, a), utility(s.text, q, answer_in_style(s.text, q, "sentence"))
    (2.0, 2.5)
    """
    r = read_answer(story_text, question, answer)
    if r.style == "unreadable":
        return weights.unreadable
    u = weights.correct * r.correct + weights.sentence * (r.style in ("sentence", "padded"))
    return u - weights.per_filler_word * r.filler_words


@dataclass(frozen=True)
class Labeler:
    """A simulated person comparing two answers: Bradley-Terry on the (perceived) utility.

    tau: the temperature (0 would be a perfectly consistent person).
    length_bonus: utility the person wrongly adds per word of the answer (0: unbiased).
    """

    tau: float = 0.5
    length_bonus: float = 0.0

    def perceived(self, story_text: str, question: str, answer: str) -> float:
        return utility(story_text, question, answer) + self.length_bonus * len(answer.split())

    def p_prefers(self, story_text: str, question: str, a: str, b: str) -> float:
        """P(this labeler prefers answer a to answer b)."""
        if self.tau <= 0:
            raise MiniLLMError(f"the labeler's temperature tau must be positive, got {self.tau}")
        z = (self.perceived(story_text, question, a) - self.perceived(story_text, question, b)) / self.tau
        if z >= 0:                     # the two halves of a sigmoid that cannot overflow (a small tau)
            return 1.0 / (1.0 + math.exp(-z))
        return math.exp(z) / (1.0 + math.exp(z))


HUMAN = Labeler()
LENGTH_BIASED = Labeler(length_bonus=0.15)


def bayes_accuracy(pairs: list[dict], labeler: Labeler = HUMAN) -> float:
    """The best accuracy any predictor of `labeler`'s choices can reach on `pairs`:
    the mean of max(p, 1 - p) over the pairs ({story, question, a, b})."""
    if not pairs:
        raise MiniLLMError("no pairs to score")
    ps = [labeler.p_prefers(x["story"], x["question"], x["a"], x["b"]) for x in pairs]
    return sum(max(p, 1 - p) for p in ps) / len(ps)


def preference_pairs(n: int, seed: int = 0, split: str = "prefs", labeler: Labeler = HUMAN) -> list[dict]:
    """Offline preference data: two templated answers per question, labelled by `labeler`.

    Rows: {story, question, kind, chosen, rejected, p_chosen} where p_chosen is the
    labeler's probability of the choice it made (the label is a draw from it).
    """
    rng = random.Random(f"tinyworld-prefs/{seed}/{split}")
    rows = []
    for item in tasks.qa_pairs(n, seed, split):
        a, b = "", ""
        while a == b:   # two different answers
            a, b = (answer_in_style(item["story"], item["question"], rng.choice(STYLES),
                                    correct=rng.random() < 0.6, n_fillers=rng.randint(1, 3), rng=rng)
                    for _ in range(2))
        p = labeler.p_prefers(item["story"], item["question"], a, b)
        chosen, rejected, p_chosen = (a, b, p) if rng.random() < p else (b, a, 1 - p)
        rows.append(dict(story=item["story"], question=item["question"], kind=item["kind"],
                         chosen=chosen, rejected=rejected, p_chosen=p_chosen))
    return rows


# ---------------------------------------------------------------------------------
# Files: one pair per JSON line
# ---------------------------------------------------------------------------------

PAIR_FIELDS = ("story", "question", "chosen", "rejected")
SHIPPED_PAIRS = Path(__file__).resolve().parent.parent / "data" / "preferences" / "oracle_pairs.jsonl"


def write_pairs(path, rows: list[dict]) -> Path:
    """Pairs -> JSONL, one object per line with sorted keys (what `load_pairs` reads back)."""
    return atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def load_pairs(path) -> list[dict]:
    """A JSONL file of pairs, each with non-empty string fields story, question, chosen, rejected.
    Missing, empty or malformed files and rows are one clear error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise MiniLLMError(f"no preference file at {path} (write one: minillm dpo --write-pairs {path})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MiniLLMError(f"{path} is not UTF-8 text (a JSONL file of preference pairs)") from None
    rows = []
    for n, row in jsonl_objects(text, path):
        bad = [k for k in PAIR_FIELDS if not (isinstance(row.get(k), str) and row[k].strip())]
        if bad:
            raise MiniLLMError(f"{path}:{n}: a pair needs non-empty text fields {', '.join(PAIR_FIELDS)}; "
                               f"missing or empty: {', '.join(bad)}")
        rows.append(row)
    if not rows:
        raise MiniLLMError(f"{path} has no preference pairs")
    return rows
