"""TinyWorld's tasks (lessons 05, 08, 10): questions, multiple choice, preference pairs, the judge."""

import pytest

from minillm import world, world_tasks
from minillm.utils import MiniLLMError


def test_qa_answers_are_checked_by_judge():
    for item in world_tasks.qa_pairs(100, seed=2):
        assert world_tasks.judge(item["story"], item["question"], item["answer"])
        assert world_tasks.judge(item["story"], item["question"], " " + item["answer"].upper() + ".")


def test_multiple_choice_has_one_right_answer():
    for m in world_tasks.multiple_choice(100, seed=2):
        verdicts = [world_tasks.judge(m["story"], m["question"], c) for c in m["choices"]]
        assert verdicts.count(True) == 1 and verdicts.index(True) == m["answer_index"]
        assert len(set(m["choices"])) == 4


def test_preference_pairs_judge_prefers_chosen():
    for p in world_tasks.preference_pairs(100, seed=2):
        assert world_tasks.judge(p["story"], p["question"], p["chosen"])
        assert not world_tasks.judge(p["story"], p["question"], p["rejected"])


def test_answers_need_the_story():
    # The counting questions are not answerable from the question alone: answers vary.
    answers = {m["answer"] for m in world_tasks.qa_pairs(300, seed=5) if m["kind"] == "hero_end"}
    assert len(answers) >= 5



def test_question_hand_example():
    story = world.story_from_text(world.generate(1, seed=0)[0].text)  # a silly goat named Milo
    q, a, pool = world_tasks.question(story, "friend_species")
    assert q.startswith("What kind of animal was ") and a in pool and len(pool) == len(world.SPECIES)
    assert world_tasks.question(story, "start")[1] == world_tasks.count_word(story.facts["start"])
    with pytest.raises(MiniLLMError, match="unknown question kind"):
        world_tasks.question(story, "weather")


def test_judge_rejects_unknown_questions():
    item = world_tasks.qa_pairs(1, seed=0)[0]
    with pytest.raises(MiniLLMError, match="does not know the question"):
        world_tasks.judge(item["story"], "Why?", "because")


def test_write_task_sets_rejects_an_unknown_set(tmp_path):
    with pytest.raises(MiniLLMError, match="unknown derived set"):
        world_tasks.write_task_sets(tmp_path, derived={"poems_val": 3})
