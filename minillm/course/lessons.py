"""The lesson map as data: lesson NN <-> reading <-> notebook <-> modules <-> test files.

This is the one table the code reads (the README's lesson map shows the same rows to
people; tests/test_assign.py checks that the two agree). A module's exercise regions
belong to the lesson that lists the module; a notebook's regions to the lesson whose
`NN_` starts the notebook's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Lesson:
    number: str                  # "00", "01", ...
    title: str                   # as the README's lesson map shows it
    reading: str                 # lessons/NN-topic.md
    notebook: str                # notebooks/NN_topic.ipynb
    modules: tuple[str, ...]     # minillm/*.py (or a folder, "minillm/kernels/") whose regions are its exercises
    tests: tuple[str, ...]       # the test files that grade them (glob patterns allowed)


LESSONS: tuple[Lesson, ...] = (
    Lesson("00", "What it takes; TinyWorld", "lessons/00-tinyworld.md", "notebooks/00_tinyworld.ipynb",
           ("minillm/world.py", "minillm/world_tasks.py"), ("tests/test_world.py", "tests/test_world_tasks.py")),
    Lesson("01", "Tokens: byte-level BPE", "lessons/01-tokenizer.md", "notebooks/01_tokenizer.ipynb",
           ("minillm/bpe.py", "minillm/bpe_fast.py", "minillm/tokenizer.py", "minillm/tokenizer_io.py"),
           ("tests/test_bpe.py", "tests/test_tokenizer.py")),
    Lesson("02", "Attention", "lessons/02-attention.md", "notebooks/02_attention.ipynb",
           ("minillm/attention.py",), ("tests/test_attention.py",)),
    Lesson("03", "A GPT you can load real weights into", "lessons/03-gpt.md", "notebooks/03_gpt.ipynb",
           ("minillm/layers.py", "minillm/model.py", "minillm/functional_gpt.py", "minillm/generation.py",
            "minillm/interop.py"),
           ("tests/test_model.py", "tests/test_functional_gpt.py", "tests/test_generation.py",
            "tests/test_generate_command.py")),
    Lesson("04", "Pretraining", "lessons/04-pretraining.md", "notebooks/04_pretraining.ipynb",
           ("minillm/data.py", "minillm/optim.py", "minillm/lm.py", "minillm/train.py", "minillm/runtime.py",
            "minillm/trainrun.py", "minillm/trainlog.py", "minillm/runfolder.py", "minillm/checkpoint.py"),
           ("tests/test_data.py", "tests/test_train.py", "tests/test_runfolder.py", "tests/test_trainrun.py")),
    Lesson("05", "Evaluation: perplexity, bits per byte, few-shot", "lessons/05-evaluation.md",
           "notebooks/05_evaluation.ipynb", ("minillm/evaluate.py",), ("tests/test_evaluate.py",)),
    Lesson("06", "Scaling laws", "lessons/06-scaling-laws.md", "notebooks/06_scaling_laws.ipynb",
           ("minillm/scaling.py", "minillm/sweep.py"), ("tests/test_scaling.py", "tests/test_sweep.py")),
    Lesson("07", "The cost of compute", "lessons/07-compute-cost.md", "notebooks/07_compute_cost.ipynb",
           ("minillm/flops.py", "minillm/cost.py"), ("tests/test_flops.py", "tests/test_cost.py")),
    Lesson("08", "Fine-tuning: a classifier and an instruction follower", "lessons/08-fine-tuning.md",
           "notebooks/08_fine_tuning.ipynb", ("minillm/sft.py", "minillm/instruct.py", "minillm/classify.py",
                                            "minillm/sft_curriculum.py"),
           ("tests/test_sft.py", "tests/test_classify.py")),
    Lesson("09", "LoRA: fine-tuning a few extra weights", "lessons/09-lora.md", "notebooks/09_lora.ipynb",
           ("minillm/lora.py", "minillm/lora_runs.py"), ("tests/test_lora.py", "tests/test_lora_runs.py")),
    Lesson("10", "Learning from preferences: the TinyWorld oracle and DPO", "lessons/10-preferences.md",
           "notebooks/10_preferences.ipynb",
           ("minillm/preferences.py", "minillm/logprobs.py", "minillm/reward.py", "minillm/dpo.py"),
           ("tests/test_preferences.py", "tests/test_logprobs.py", "tests/test_reward.py", "tests/test_dpo.py",
            "tests/test_dpo_trl.py")),
    Lesson("11", "RLHF and RLAIF: a policy on a KL leash", "lessons/11-rlhf.md", "notebooks/11_rlhf.ipynb",
           ("minillm/rlhf.py", "minillm/rollout.py", "minillm/rlhf_loop.py", "minillm/rlhf_compare.py"),
           ("tests/test_rlhf.py", "tests/test_rollout.py", "tests/test_rlhf_loop.py", "tests/test_rlhf_compare.py")),
    Lesson("12", "Evaluating aligned models: battles and arena ratings", "lessons/12-arena.md",
           "notebooks/12_arena.ipynb",
           ("minillm/ratings.py", "minillm/arena.py", "minillm/arena_models.py", "minillm/arena_server.py"),
           ("tests/test_ratings.py", "tests/test_arena.py", "tests/test_arena_models.py", "tests/test_arena_server.py")),
    Lesson("13", "The data pipeline: from a web crawl to training text", "lessons/13-data-pipeline.md",
           "notebooks/13_data_pipeline.ipynb", ("minillm/datapipe/",), ("tests/test_datapipe*.py",)),
    Lesson("14", "The GPU path: fewer bits, fewer trips to memory, more GPUs", "lessons/14-gpu-path.md",
           "notebooks/14_gpu_path.ipynb", ("minillm/kernels/",), ("tests/test_kernels_*.py", "tests/test_train_gpu_path.py")),
)


def readme_rows() -> str:
    """The README's lesson map, made from LESSONS (paste it over the README's rows)."""
    def code(items):
        return ", ".join(f"`{x}`" for x in items)
    return "\n".join(f"| {ls.number} | [{ls.title}]({ls.reading}) | `{ls.notebook}` | {code(ls.modules)} | "
                     f"{code(ls.tests)} |" for ls in LESSONS)


UNKNOWN = "??"  # the lesson of a file no lesson lists


def lesson(number: str) -> Lesson | None:
    """The lesson numbered `number` ("04"), or None."""
    return next((ls for ls in LESSONS if ls.number == number), None)


def lesson_of(path: str) -> str:
    """The lesson a file's regions belong to: "minillm/world.py" -> "00",
    "notebooks/03_gpt.ipynb" -> "03", "minillm/unknown.py" -> "??"."""
    p = PurePosixPath(path)
    if p.suffix == ".ipynb":
        m = re.match(r"(\d{2})_", p.name)
        return m.group(1) if m else UNKNOWN
    return next((ls.number for ls in LESSONS if owns(ls, p.as_posix())), UNKNOWN)


def owns(ls: Lesson, path: str) -> bool:
    """Whether `path` is one of the lesson's modules (or inside one of its module folders)."""
    return any(path == m or (m.endswith("/") and path.startswith(m)) for m in ls.modules)
