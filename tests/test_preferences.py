"""The preference oracle (lesson 10): styles read back, utilities, the labeler's probabilities."""

import itertools
import math
import random

import pytest

from minillm import preferences as P
from minillm import world, world_tasks as tasks
from minillm.utils import MiniLLMError

STORIES = world.generate(40, seed=3, split="oracle-test")


def all_questions():
    for s in STORIES:
        for kind in tasks.QUESTION_KINDS:
            q, a, _ = tasks.question(s, kind)
            yield s, kind, q, a


def test_every_style_reads_back_with_its_correctness():
    rng = random.Random(0)
    for s, kind, q, a in all_questions():
        for style, correct in itertools.product(P.STYLES, (True, False)):
            text = P.answer_in_style(s.text, q, style, correct, n_fillers=2, rng=rng)
            r = P.read_answer(s.text, q, text)
            assert (r.style, r.correct) == (style, correct), (kind, style, text)
            assert r.words == len(text.split())
            assert (r.filler_words > 0) == (style == "padded")
            assert tasks.judge(s.text, q, text) == correct if style == "bare" else True


def test_utilities_by_hand():
    s = STORIES[0]
    q, a, _ = tasks.question(s, "hero_end")
    f = s.facts
    sentence = P.answer_in_style(s.text, q, "sentence")
    assert sentence.startswith(f"{f['hero']} had {a} ") and sentence.endswith("at the end.")
    assert P.utility(s.text, q, a) == 2.0
    assert P.utility(s.text, q, sentence) == 2.5
    padded = f"Good question! {sentence} I hope this helps."         # 2 + 4 filler words
    assert P.utility(s.text, q, padded) == pytest.approx(2.5 - 0.1 * 6)
    wrong = P.answer_in_style(s.text, q, "bare", correct=False)
    assert wrong != a and P.utility(s.text, q, wrong) == 0.0
    assert P.utility(s.text, q, "purple elephants sang") == P.UTILITY.unreadable


def test_right_beats_wrong_in_every_style():
    rng = random.Random(1)
    for s, kind, q, a in itertools.islice(all_questions(), 60):
        right = [P.utility(s.text, q, P.answer_in_style(s.text, q, st, True, 3, rng)) for st in P.STYLES]
        wrong = [P.utility(s.text, q, P.answer_in_style(s.text, q, st, False, 3, rng)) for st in P.STYLES]
        assert min(right) > max(wrong)


def test_labeler_is_bradley_terry_with_known_temperature():
    s = STORIES[1]
    q, a, _ = tasks.question(s, "colour")
    sentence = P.answer_in_style(s.text, q, "sentence")
    lab = P.Labeler(tau=0.5)
    assert lab.p_prefers(s.text, q, sentence, a) == pytest.approx(1 / (1 + math.exp(-0.5 / 0.5)))
    assert lab.p_prefers(s.text, q, a, sentence) + lab.p_prefers(s.text, q, sentence, a) == pytest.approx(1)
    assert lab.p_prefers(s.text, q, a, a) == 0.5
    with pytest.raises(MiniLLMError, match="tau"):
        P.Labeler(tau=0).p_prefers(s.text, q, a, sentence)


def test_length_biased_labeler_prefers_padding_the_true_one_does_not():
    s = STORIES[2]
    q, _, _ = tasks.question(s, "place")
    sentence = P.answer_in_style(s.text, q, "sentence")
    padded = " ".join(P.FILLERS_BEFORE[:2] + [sentence] + P.FILLERS_AFTER[:2])
    assert P.HUMAN.p_prefers(s.text, q, sentence, padded) > 0.5
    assert P.LENGTH_BIASED.p_prefers(s.text, q, padded, sentence) > 0.5


def test_bayes_accuracy_by_enumeration():
    s = STORIES[3]
    q, _, _ = tasks.question(s, "start")
    answers = [P.answer_in_style(s.text, q, st, c, 1, random.Random(7)) for st in P.STYLES for c in (True, False)]
    pairs = [dict(story=s.text, question=q, a=x, b=y) for x, y in itertools.combinations(answers, 2)]
    acc = P.bayes_accuracy(pairs)
    # Exact: the best rule predicts the higher-utility answer; it is right with prob max(p, 1-p).
    by_hand = []
    for x in pairs:
        gap = P.utility(s.text, q, x["a"]) - P.utility(s.text, q, x["b"])
        p = 1 / (1 + math.exp(-gap / P.HUMAN.tau))
        by_hand.append(max(p, 1 - p))
    assert acc == pytest.approx(sum(by_hand) / len(by_hand))
    assert 0.5 <= acc <= 1.0
    # Simulated labels: the higher-utility answer wins about as often as Bayes says.
    rng = random.Random(0)
    hits = n = 0
    for _ in range(400):
        for x in pairs:
            p = P.HUMAN.p_prefers(x["story"], x["question"], x["a"], x["b"])
            if p != 0.5:
                n += 1
                hits += (rng.random() < p) == (p > 0.5)
    assert hits / n == pytest.approx(P.bayes_accuracy([x for x in pairs if P.HUMAN.p_prefers(
        x["story"], x["question"], x["a"], x["b"]) != 0.5]), abs=0.02)


def test_preference_pairs_are_seeded_and_distinct():
    rows = P.preference_pairs(50, seed=1)
    assert rows == P.preference_pairs(50, seed=1)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    assert all(0 < r["p_chosen"] < 1 for r in rows)
    # The labels follow the labeler: the chosen answer has the higher utility more often than not.
    better = sum(P.utility(r["story"], r["question"], r["chosen"]) >
                 P.utility(r["story"], r["question"], r["rejected"]) for r in rows)
    assert better > len(rows) * 0.6


def test_bad_input():
    s = STORIES[0]
    q, _, _ = tasks.question(s, "colour")
    with pytest.raises(MiniLLMError, match="style"):
        P.answer_in_style(s.text, q, "shouting")
    with pytest.raises(MiniLLMError, match="question"):
        P.read_answer(s.text, "Why is the sky blue?", "because")
    with pytest.raises(MiniLLMError, match="no pairs"):
        P.bayes_accuracy([])


# ---------------------------------------------------------------------------------
# Files: the shipped pairs and the JSONL reader
# ---------------------------------------------------------------------------------

def test_shipped_pairs_are_what_the_command_writes(tmp_path):
    # `minillm dpo --write-pairs` (the default --pairs 1500, seed 0) remakes the shipped file byte for byte
    from minillm.cli import main
    assert main(["dpo", "--write-pairs", str(tmp_path / "p.jsonl")]) == 0
    assert (tmp_path / "p.jsonl").read_bytes() == P.SHIPPED_PAIRS.read_bytes()
    rows = P.load_pairs(P.SHIPPED_PAIRS)
    assert rows == P.preference_pairs(1500, seed=0, split="dpo_train")     # read back exactly
    assert all(0 < r["p_chosen"] < 1 and r["chosen"] != r["rejected"] for r in rows)


def test_pairs_round_trip(tmp_path):
    rows = P.preference_pairs(5, seed=3)
    assert P.load_pairs(P.write_pairs(tmp_path / "x.jsonl", rows)) == rows


@pytest.mark.parametrize("text, message", [
    (None, "no preference file at"),
    ("", "has no preference pairs"),
    ("\n\n", "has no preference pairs"),
    ('{"story": "s", "question": "q", "chosen": "a", "rejected": "b"}\n{oops\n', ":2: not a JSON line"),
    ('[1, 2]\n', ":1: every line must be a JSON object, got list"),
    ('{"story": "s", "question": "q", "chosen": "a"}\n', ":1: a pair needs non-empty text fields"),
    ('{"story": "s", "question": "q", "chosen": " ", "rejected": "b"}\n', "missing or empty: chosen"),
    ('{"story": "s", "question": 3, "chosen": "a", "rejected": "b"}\n', "missing or empty: question"),
])
def test_bad_pair_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "pairs.jsonl"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MiniLLMError, match=message):
        P.load_pairs(path)


def test_a_nearly_consistent_labeler_does_not_overflow():
    s = world.generate(1, seed=5)[0]
    q, a, _ = tasks.question(s, "colour")
    wrong = P.answer_in_style(s.text, q, "bare", correct=False)
    sharp = P.Labeler(tau=1e-4)
    assert sharp.p_prefers(s.text, q, a, wrong) == 1.0 and sharp.p_prefers(s.text, q, wrong, a) == 0.0
