"""The main job end to end: `minillm speedrun --fast` (TinyWorld -> tokenizer -> GPT -> evaluation -> report)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch

from minillm import world
from minillm.cli import main


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speedrun")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["speedrun", "--fast", "--out", str(out)]) == 0
    return out, json.loads((out / "speedrun.json").read_text()), printed.getvalue()


def test_report_has_the_table_plot_and_samples(fast_run):
    out, m, _ = fast_run
    report = (out / "report.md").read_text()
    for row in ("parameters", "training tokens", "tokens/s", "validation bits/byte", "entropy floor",
                "1-shot multiple choice", "## Samples"):
        assert row in report, row
    assert "![loss curves" in report and (out / "loss.png").stat().st_size > 1000
    assert f"{m['val_bits_per_byte']:.4f}" in report


def test_metrics_are_consistent(fast_run):
    out, m, _ = fast_run
    train = m["train"]
    assert m["tokens"] == train["steps"] * train["batch_size"] * m["model"]["block_size"]
    # Nothing beats the generator: bits per byte stays above the floor of the same stories
    # (a fast run is far above it), and the floor is TinyWorld's (about 0.17).
    assert m["val_bits_per_byte"] > m["floor_bits_per_byte"]
    assert m["ratio_to_floor"] == pytest.approx(m["val_bits_per_byte"] / m["floor_bits_per_byte"])
    assert 0.15 < m["floor_bits_per_byte"] < 0.19
    assert m["val_perplexity"] == pytest.approx(math.exp(m["val_loss"]))
    lo, hi = m["mc_ci95"]
    assert 0 <= lo <= m["mc_accuracy"] <= hi <= 1
    assert m["contamination"]["exact_duplicates"] == 0


def test_run_folder_works_with_generate_and_evaluate(fast_run, capsys):
    out, m, _ = fast_run
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == m["train"]["steps"] and (out / "tokenizer.json").exists()
    assert main(["evaluate", str(out), "--mc-items", "4", "--shots", "0", "--max-chars", "5000"]) == 0
    printed = capsys.readouterr().out
    assert "bits/byte" in printed and "entropy floor" in printed and "0-shot accuracy" in printed


def test_speedrun_prints_the_floor_first(fast_run):
    _, _, printed = fast_run
    floor = json.loads((world.default_data_dir() / "floor.json").read_text())["val"]["bits_per_byte"]
    line = f"validation entropy floor: {floor:.4f} bits/byte"
    assert line in printed and printed.index(line) < printed.index("training")


def test_append_section(tmp_path):
    from minillm.speedrun import append_section

    append_section(tmp_path, "Fine-tuning", "accuracy 0.9")
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# minillm speedrun") and "## Fine-tuning\n\naccuracy 0.9\n" in text


def test_report_explains_its_floors_shows_clean_samples_and_what_to_do_next(fast_run):
    out, m, printed = fast_run
    report = (out / "report.md").read_text()
    assert "**Two floors.**" in report and f"{m['split_floor_bits_per_byte']:.4f}" in report
    assert "\ufffd" not in report and "<|endoftext|>" not in report
    assert "## What to do next" in report and f"minillm generate --checkpoint {out}" in report
    assert report.count("entropy floor: ") == 0   # the Floor's own label is not repeated after ours


def test_schedule_scales_with_the_steps():
    from minillm.speedrun import PRESETS, train_config

    p = PRESETS["default"]
    assert (train_config(p).eval_every, train_config(p).log_every) == (500, 100)   # the measured preset
    short = train_config(p, 300)
    assert (short.eval_every, short.log_every, short.checkpoint_every, short.warmup_steps) == (50, 10, 50, 100)
    tiny = train_config(p, 3)
    assert tiny.eval_every == 1 and tiny.warmup_steps == 3
    assert train_config(PRESETS["fast"]).eval_every == 30


def test_time_budget_picks_steps_that_fit():
    from minillm.speedrun import PRESETS, steps_for_budget

    p = PRESETS["default"]
    assert steps_for_budget(60, 0.1, p) == 600 and steps_for_budget(1e6, 0.1, p) == 3000
    assert steps_for_budget(0.01, 0.1, p) == 10
    with pytest.raises(Exception, match="time-budget"):
        steps_for_budget(0, 0.1, p)


def test_readable_sample():
    from minillm.speedrun import readable_sample

    assert readable_sample("Once upon a \ufffd\ufffdtime.<|endoftext|>Once") == "Once upon a ·time."
    assert readable_sample("A story.\nB") == "A story."


def test_speedrun_resumes_from_its_checkpoint(fast_run, capsys):
    out, m, _ = fast_run
    assert main(["speedrun", "--fast", "--out", str(out), "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"resumed from {out / 'ckpt.pt'} at step 60" in printed
    again = json.loads((out / "speedrun.json").read_text())
    assert again["val_bits_per_byte"] == m["val_bits_per_byte"]   # nothing left to train: the same model


def test_post_training_saves_a_chat_model_and_reports_it_before_what_to_do_next(fast_run):
    out, m, _ = fast_run
    report = (out / "report.md").read_text()
    post = report.index("## Post-training")
    assert post < report.index("## What to do next")   # "what to do next" stays last
    assert "| SFT (full fine-tuning) |" in report and "### Leaderboard" in report
    from minillm.arena_models import is_chat, open_run

    sft = open_run(out / "sft")
    assert is_chat(sft) and not is_chat(open_run(out))
    rows = m["post"]["rows"]
    for row in rows.values():   # every measured figure is a figure, inside its interval
        for ph in ("seen", "unseen"):
            r = row[ph]
            assert r["n"] + r["skipped"] > 0 and (r["n"] == 0 or r["ci95"][0] <= r["accuracy"] <= r["ci95"][1])
        assert row["bits_per_byte"] > 0 and -5 < row["utility"] < 5
    runs = m["post"]["runs"]
    assert (runs["SFT"]["steps"], runs["LoRA"]["steps"]) == (8, 4)
    assert runs["LoRA"]["trainable"] < runs["SFT"]["trainable"] / 5   # a few extra weights, not all of them
    assert "| LoRA r=8 (attention) |" in report and is_chat(open_run(out / "lora"))
    assert runs["DPO"]["steps"] == 3 and runs["DPO"]["pairs"] > 0 and "| DPO from SFT (beta 0.1) |" in report
    import torch

    from minillm.instruct import load_shipped
    (dpo_model, _), (sft_model, _) = load_shipped(str(out / "dpo")), load_shipped(str(out / "sft"))
    moved = [k for k, v in dpo_model.state_dict().items() if not torch.equal(v, sft_model.state_dict()[k])]
    assert moved and is_chat(open_run(out / "dpo"))   # DPO started from the SFT model and changed it
    assert main(["chat", "--checkpoint", str(out / "dpo"), "--prompt", "Where did Iris live?", "--max-new-tokens",
                 "4", "--temperature", "0"]) == 0   # `minillm chat` serves the DPO model
    assert set(m["arena"]["ratings"]) == {f"{out}:0shot"} | {str(out / n) for n in ("sft", "lora", "dpo")}


def test_append_section_keeps_what_to_do_next_last(tmp_path):
    from minillm.speedrun import append_section

    (tmp_path / "report.md").write_text("# minillm speedrun\n\nbody\n\n## What to do next\n\n- this\n")
    append_section(tmp_path, "SFT", "table")
    text = (tmp_path / "report.md").read_text()
    assert text == "# minillm speedrun\n\nbody\n\n## SFT\n\ntable\n\n## What to do next\n\n- this\n"


def test_no_post_training_flag_skips_the_stage(tmp_path):
    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["speedrun", "--fast", "--out", str(out), "--steps", "2", "--no-progress",
                     "--no-post-training"]) == 0
    assert not (out / "sft").exists() and "post" not in json.loads((out / "speedrun.json").read_text())


def test_speedrun_post_results_table_is_made_from_the_measured_rows():
    from minillm import speedrun_post

    row = lambda acc, bpb: dict(seen=dict(accuracy=acc, ci95=[acc / 2, min(1, acc * 2)], n=10, skipped=0,
                                          by_kind={"place": acc}),
                                unseen=dict(accuracy=0.0, ci95=[0, 0], n=0, skipped=5, by_kind={}),
                                utility=acc - 1, bits_per_byte=bpb)
    post = dict(rows={"pretrained": row(0.0, 0.18), "SFT": row(0.25, 0.92)},
                runs={"SFT": dict(steps=600, seconds=187.0, trainable=515904, folder="runs/x/sft")})
    table = speedrun_post.results_table(post).splitlines()
    assert table[2].startswith("| pretrained, 0-shot | - | - | - |") and "| 0.1800 |" in table[2]
    assert "| SFT (full fine-tuning) | 515,904 | 600 | 187 s | 0.250 [0.12, 0.50] | none fits | -0.75 |" in table[3]
    text = speedrun_post.post_section(post, None)
    assert "place 0.25" in text and "minillm chat --checkpoint runs/x/sft" in text and "Leaderboard" not in text
