"""Lesson 09's experiment and command line: LoRA SFT from the shipped checkpoint, the adapter
folder, merge, info, and the bad-input errors (through `minillm.cli.main`)."""

import json

import pytest
import torch
import torch.nn as nn

from minillm import cli, commands, instruct, lora, lora_runs
from minillm.checkpoint import load_run
from minillm.commands import lora as lora_cmd
from minillm.model import GPT, GPTConfig
from minillm.train import TrainConfig, fit

def _reference_forward(self, x):
    if self.merged:
        return self.base(x)
    low = nn.functional.linear(self.dropout(x), self.lora_A)               # (..., r)
    return self.base(x) + nn.functional.linear(low, self.lora_B) * self.scaling


@torch.no_grad()
def _reference_merge(self):
    if not self.merged:
        self.base.weight.add_(self.delta_weight().type_as(self.base.weight))
        self.merged = True


def _reference_count(model):
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@pytest.fixture(scope="module", autouse=True)
def reference_solutions():
    """No test here grades an exercise: lesson 09's three run their reference solutions, so a
    stubbed exercise fails only the tests in tests/test_lora.py marked with it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lora.LoRALinear, "forward", _reference_forward)
        mp.setattr(lora.LoRALinear, "merge", _reference_merge)
        mp.setattr(lora, "count_trainable", _reference_count)
        yield


TINY = ["--steps", "2", "--batch-size", "4", "--stories", "8", "--warmup-steps", "1"]


@pytest.fixture(scope="module", autouse=True)
def registered(reference_solutions):
    """`minillm lora` as the lead registers it (harmless once it is)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(commands.COMMANDS, "lora", lora_cmd)
        yield


@pytest.fixture(scope="module")
def adapter(registered, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "adapter"
    assert cli.main(["lora", "train", "--r", "2", "--alpha", "4", "--targets", "attn", "--out", str(out)] + TINY) == 0
    return out


def one_error_line(capsys, argv):
    """Run the CLI; it must exit 2 with exactly one `error:` line on stderr."""
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:"), (rc, err)
    return err[0]


def test_new_token_rows_train_and_old_rows_stay_exact():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16))
    before = model.transformer.wte.weight.detach().clone()
    lora.inject_lora(model, lora.LoRAConfig(r=2, alpha=4, targets="attn"))
    assert lora_runs.train_new_token_rows(model, 36) == 4 * 16
    cfg = TrainConfig(steps=3, batch_size=2, lr=1e-2, warmup_steps=1, weight_decay=0.0, eval_every=0, log_every=3)
    idx = torch.randint(0, 40, (2, 8))

    def loss_fn(m, batch):
        return m(batch, batch)[1]
    fit(model, cfg, lambda step: [idx], loss_fn, log=None)
    after = model.transformer.wte.weight.detach()
    assert torch.equal(after[:36], before[:36])           # zero gradient + no decay: bit for bit
    assert not torch.allclose(after[36:], before[36:])    # the new rows did train
    assert model.lm_head.weight is model.transformer.wte.weight


def test_train_writes_a_small_adapter_with_the_new_token_rows(adapter):
    meta = json.loads((adapter / lora.ADAPTER_CONFIG).read_text())
    assert meta["r"] == 2 and meta["first_new_token"] == 753 and meta["base_checkpoint"] == "pretrained"
    state = torch.load(adapter / lora.ADAPTER_FILE, weights_only=True)
    assert state[lora.TOKEN_ROWS].shape == (4, 96)        # the four chat tokens
    numbers = sum(t.numel() for t in state.values())
    # 4 blocks x r (in + out) for c_attn (96 -> 288) and c_proj (96 -> 96), + the rows
    assert numbers == 4 * (lora.lora_param_count(96, 288, 2) + lora.lora_param_count(96, 96, 2)) + 4 * 96
    full = (instruct.CHECKPOINTS / "pretrained" / "ckpt.pt").stat().st_size
    assert (adapter / lora.ADAPTER_FILE).stat().st_size < full / 10
    assert (adapter / "train" / "ckpt.pt").exists()        # fit's run state, for --resume


def test_merge_gives_an_ordinary_checkpoint_with_the_adapters_logits(adapter, tmp_path, capsys):
    assert cli.main(["lora", "merge", "--adapter", str(adapter), "--out", str(tmp_path / "m")]) == 0
    merged = load_run(tmp_path / "m")
    model, tok, cfg = lora_runs.load_with_adapter(None, adapter)
    assert cfg.r == 2 and merged.tokenizer.vocab_size == tok.vocab_size == 757
    assert not lora.lora_layers(merged.model)
    idx = torch.tensor([tok.encode("Once upon a time") + [756]])
    with torch.no_grad():
        want, got = model.eval()(idx)[0], merged.model.eval()(idx)[0]
    assert torch.allclose(got, want, atol=1e-5, rtol=0)      # float32 merge: one rounding per weight
    assert cli.main(["lora", "info", str(adapter)]) == 0
    text = capsys.readouterr().out
    assert "r=2" in text and "new token rows" in text


def test_resume_continues_the_run(adapter, capsys):
    out = adapter.parent / "resumed"
    args = ["lora", "train", "--r", "2", "--alpha", "4", "--targets", "attn", "--out", str(out)]
    assert cli.main(args + TINY) == 0
    tiny4 = [a if a != "2" else "4" for a in TINY]
    assert cli.main(args + tiny4 + ["--resume"]) == 0
    history = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert max(h.get("step", 0) for h in history) >= 3


@pytest.mark.parametrize("flags, says", [(["--r", "0"], "rank"), (["--r", "500"], "rank"),
                                         (["--targets", "nothing_like_this"], "match no Linear")])
def test_bad_train_input_is_one_error_line(tmp_path, capsys, flags, says):
    line = one_error_line(capsys, ["lora", "train", "--out", str(tmp_path / "a")] + flags + TINY)
    assert says in line


def test_an_adapter_on_the_wrong_base_is_refused(adapter, tmp_path, capsys):
    line = one_error_line(capsys, ["lora", "merge", "--checkpoint", "sft", "--adapter", str(adapter),
                                   "--out", str(tmp_path / "m")])
    assert "another base" in line


def test_missing_folders_are_one_error_line(tmp_path, capsys):
    assert "not an adapter folder" in one_error_line(capsys, ["lora", "info", str(tmp_path / "none")])
    one_error_line(capsys, ["lora", "merge", "--adapter", str(tmp_path / "none"), "--out", str(tmp_path / "m")])
    one_error_line(capsys, ["lora", "train", "--checkpoint", str(tmp_path / "none"),
                            "--out", str(tmp_path / "a")] + TINY)


def test_the_experiment_table_on_a_tiny_budget():
    cfg = lora_runs.LoRARunsConfig(steps=2, batch_size=4, ranks="1", targets="attn", eval_stories=1,
                                   forgetting_stories=2)
    res = lora_runs.lora_vs_full(cfg, log=None)
    full, lo = res["rows"]
    assert full["trainable"] == lora.count_trainable(load_run(instruct.CHECKPOINTS / "pretrained").model)[0] + 4 * 96
    assert lo["trainable"] == 4 * (lora.lora_param_count(96, 288, 1) + lora.lora_param_count(96, 96, 1)) + 4 * 96
    for r in res["rows"]:
        assert r["measured_bytes"] >= r["est_bytes"]        # the estimate leaves out activations
        assert r["qa"]["seen"].n == r["qa"]["unseen"].n == 6
    assert lo["est_bytes"] < full["est_bytes"]
    table = lora_runs.lora_table(res)
    assert table.count("\n") == 3 and "LoRA r=1 attn" in table
    # the same logits renormalised over a subset holding every true token: never worse
    assert all(0 < r["bpb_text_only"] <= r["bpb_after"] + 1e-9 for r in res["rows"])
    json.dumps(lora_runs.results_json(res))
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    plt.close(lora_runs.plot_lora_runs(res))
