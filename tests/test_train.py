"""Tests of minillm.train: the from-scratch pieces against PyTorch, the loop, checkpoints (lesson 04)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minillm import MiniLLMError
from minillm.model import GPT, GPTConfig
from minillm.checkpoint import load_checkpoint
from minillm.optim import AdamW, clip_grad_norm, cross_entropy, lr_at
from minillm.train import TrainConfig, TrainingDiverged, train

REPO = Path(__file__).resolve().parent.parent


def tiny_model(**kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    base.update(kw)
    return GPTConfig(**base)


def tiny_train(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=0, eval_batches=2, log_every=1,
                device="cpu", dtype="float32")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    """A token stream with structure to learn (a noisy counter mod 64) and a validation slice."""
    rng = np.random.default_rng(0)
    t = (np.arange(4000) + (rng.random(4000) < 0.1) * rng.integers(0, 64, 4000)) % 64
    return t[:3500].astype(np.uint16), t[3500:].astype(np.uint16)


# --- from-scratch pieces vs PyTorch ------------------------------------------------

def forbid(monkeypatch, *targets: str) -> None:
    """Make library functions raise while a test runs: an exercise must not just call them."""
    import importlib

    def refuse(*a, **k):
        raise AssertionError("this exercise must be written out, not delegated to the library")

    for target in targets:
        module, _, name = target.rpartition(".")
        try:
            obj = importlib.import_module(module)
        except ImportError:  # a class attribute: module.Class.method
            mod, _, cls = module.rpartition(".")
            obj = getattr(importlib.import_module(mod), cls)
        monkeypatch.setattr(obj, name, refuse)


CE_LIBRARY = ("torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss", "torch.nn.functional.log_softmax",
              "torch.log_softmax", "torch.Tensor.log_softmax", "torch.logsumexp", "torch.Tensor.logsumexp")
ADAMW_LIBRARY = ("torch.optim.AdamW.step", "torch.optim.Adam.step", "torch.optim.adamw.adamw", "torch.optim.adam.adam")
CLIP_LIBRARY = ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grads_with_norm_",
                "torch.nn.utils.get_total_norm")


@pytest.mark.exercise("optim.cross_entropy")
def test_cross_entropy_hand_example(monkeypatch):
    forbid(monkeypatch, *CE_LIBRARY)
    # uniform over two classes: -log(1/2)
    assert cross_entropy(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(2), abs=1e-7)


@pytest.mark.exercise("optim.cross_entropy")
def test_cross_entropy_matches_pytorch_with_ignored_targets(monkeypatch):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 50, generator=g) * 10  # large logits: needs the max trick
    targets = torch.randint(0, 50, (3, 7), generator=g)
    targets[0, :3] = -100
    ref = F.cross_entropy(logits.view(-1, 50), targets.view(-1), ignore_index=-100)
    forbid(monkeypatch, *CE_LIBRARY)
    ours = cross_entropy(logits, targets)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-6)
    big = torch.tensor([[1000.0, 0.0]])  # exp(1000) overflows without the max trick
    assert math.isfinite(cross_entropy(big, torch.tensor([1])).item())


@pytest.mark.exercise("optim.adamw")
def test_adamw_matches_pytorch_over_many_steps(monkeypatch):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    b = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    b.load_state_dict(a.state_dict())

    def groups(m):  # decay on matrices only, like make_optimizer
        return [dict(params=[p for p in m.parameters() if p.dim() >= 2], weight_decay=0.1),
                dict(params=[p for p in m.parameters() if p.dim() < 2], weight_decay=0.0)]

    x = torch.randn(16, 5)

    def run(m, opt):
        for step in range(20):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            for group in opt.param_groups:
                group["lr"] = 1e-2 * (1 - step / 40)  # a schedule changes lr between steps
            opt.step()

    run(b, torch.optim.AdamW(groups(b), lr=1e-2, betas=(0.9, 0.95), eps=1e-8))   # the answer key first
    forbid(monkeypatch, *ADAMW_LIBRARY)
    run(a, AdamW(groups(a), lr=1e-2, betas=(0.9, 0.95), eps=1e-8))
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)


@pytest.mark.exercise("optim.clip_grad")
def test_clip_grad_norm_hand_example(monkeypatch):
    forbid(monkeypatch, *CLIP_LIBRARY)
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    norm = clip_grad_norm([p], 1.0)
    assert norm.item() == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6, rtol=0)


@pytest.mark.exercise("optim.clip_grad")
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])  # clipped, and not clipped
def test_clip_grad_norm_matches_pytorch(max_norm, monkeypatch):
    g = torch.Generator().manual_seed(1)
    ours = [torch.nn.Parameter(torch.zeros(s)) for s in [(3, 4), (7,), (2, 2, 2)]]
    ref = [torch.nn.Parameter(torch.zeros(s)) for s in [(3, 4), (7,), (2, 2, 2)]]
    for a, b in zip(ours, ref):
        a.grad = torch.randn(a.shape, generator=g)
        b.grad = a.grad.clone()
    n2 = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    forbid(monkeypatch, *CLIP_LIBRARY)
    n1 = clip_grad_norm(ours, max_norm)
    torch.testing.assert_close(n1, n2, atol=1e-6, rtol=1e-6)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-7, rtol=1e-6)


def test_lr_schedule_hand_values():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)     # warmup: (step + 1) / warmup * lr
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)   # half way down the cosine: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay after warmup


def test_warmup_help_says_what_lr_at_does():
    # The flag's help used to say "from 0 to lr" while step 0 already used lr / warmup.
    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}["warmup_steps"]
    assert "lr * (s + 1) / warmup_steps" in help_text and "from 0" not in help_text
    cfg = TrainConfig(lr=2.0, warmup_steps=4, steps=10)
    assert [lr_at(s, cfg) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]  # 2 * (s + 1) / 4


# --- the loop ------------------------------------------------------------------------

def test_training_lowers_the_loss_and_reports(data):
    tr, va = data
    r = train(tiny_model(), tiny_train(steps=30, lr=1e-2, eval_every=15), tr, va, log=None)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"] - 0.5
    assert r.final_val_loss < math.log(64)  # better than uniform over the vocabulary
    assert r.tokens_seen == 30 * 8 * 16 and r.step == 30 and r.seconds > 0
    assert [h["step"] for h in r.history if "val_loss" in h] == [15, 30]
    assert all(h["tokens_per_s"] > 0 for h in r.history)


@pytest.mark.exercise("optim.adamw")
def test_adamw_in_the_loop_trains_like_torchs(data, monkeypatch):
    tr, va = data
    a = train(tiny_model(), tiny_train(optimizer="torch"), tr, log=None)
    forbid(monkeypatch, *ADAMW_LIBRARY)
    b = train(tiny_model(), tiny_train(optimizer="minillm"), tr, log=None)
    la, lb = [h["train_loss"] for h in a.history], [h["train_loss"] for h in b.history]
    np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_gradient_accumulation_gives_the_same_gradients_as_one_batch(data):
    tr, _ = data
    cfg = tiny_model()
    torch.manual_seed(0)
    model = GPT(cfg)
    x = torch.from_numpy(np.stack([tr[i:i + 16] for i in range(0, 80, 10)]).astype(np.int64))  # (8, 16)
    y = torch.from_numpy(np.stack([tr[i + 1:i + 17] for i in range(0, 80, 10)]).astype(np.int64))
    model(x, y)[1].backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for k in range(4):  # 4 micro-batches of 2, each loss divided by 4
        (model(x[2 * k:2 * k + 2], y[2 * k:2 * k + 2])[1] / 4).backward()
    for g, p in zip(full, model.parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def test_loop_with_accumulation_matches_one_big_batch(data):
    tr, _ = data
    a = train(tiny_model(), tiny_train(steps=3, grad_accum=1), tr, log=None)
    b = train(tiny_model(), tiny_train(steps=3, grad_accum=4), tr, log=None)
    for (k, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4, msg=k)


def test_resume_is_bit_exact(tmp_path, data):
    tr, va = data
    mc = tiny_model(dropout=0.1)  # dropout draws random numbers: the RNG state must be restored
    tc = tiny_train(steps=8, eval_every=4)
    full = train(mc, tc, tr, va, log=None)
    half = train(mc, tc, tr, va, out_dir=tmp_path, until_step=4, log=None)
    assert half.step == 4 and load_checkpoint(tmp_path)["step"] == 4
    rest = train(mc, tc, tr, va, out_dir=tmp_path, resume=True, log=None)
    assert [h["train_loss"] for h in rest.history] == [h["train_loss"] for h in full.history]  # bit for bit
    assert [h.get("val_loss") for h in rest.history] == [h.get("val_loss") for h in full.history]
    for pa, pb in zip(full.model.state_dict().values(), rest.model.state_dict().values()):
        assert torch.equal(pa, pb)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == list(range(1, 9))


def test_run_folder_holds_checkpoint_config_metrics_and_plot(tmp_path, data):
    tr, va = data
    r = train(tiny_model(), tiny_train(steps=4, eval_every=2), tr, va, out_dir=tmp_path,
              bytes_per_token=2.0, floor_bits_per_byte=0.5, log=None)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # no code is executed
    assert set(ckpt) >= {"model", "config", "optimizer", "step", "rng", "data_position", "train_config"}
    assert ckpt["config"] == dataclasses.asdict(tiny_model()) and ckpt["step"] == 4
    assert ckpt["train_config"]["steps"] == 4
    model = GPT(GPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    x = torch.from_numpy(va[:16].astype(np.int64))[None]
    torch.testing.assert_close(model.eval()(x)[0], r.model.eval()(x)[0])
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 4
    recs = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["val_bpb"] == pytest.approx(recs[-1]["val_loss"] / math.log(2) / 2.0)
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert r.checkpoint == tmp_path / "ckpt.pt"


def test_no_files_without_an_out_dir(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = train(tiny_model(), tiny_train(steps=2), data[0], log=None)
    assert r.checkpoint is None and list(tmp_path.iterdir()) == []


class NaNAfter(torch.nn.Module):
    """A GPT whose loss turns NaN from forward call `n` on (a fault injected on purpose)."""

    def __init__(self, cfg, n):
        super().__init__()
        self.gpt, self.n, self.calls = GPT(cfg), n, 0

    def forward(self, idx, targets=None):
        self.calls += 1
        logits, loss = self.gpt(idx, targets)
        return logits, (loss * float("nan") if self.calls >= self.n else loss)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data):
    cfg = tiny_model()
    model = NaNAfter(cfg, n=4)  # steps 1-3 are fine; step 4 gives NaN
    with pytest.raises(TrainingDiverged, match="nan at step 3.*last good checkpoint"):
        train(cfg, tiny_train(checkpoint_every=2), data[0], model=model, out_dir=tmp_path, log=None)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_bad_inputs_are_clear_errors(data):
    tr, va = data
    with pytest.raises(MiniLLMError, match="empty"):
        train(tiny_model(), tiny_train(), np.zeros(0, np.uint16), log=None)
    with pytest.raises(MiniLLMError, match="needs at least 17"):
        train(tiny_model(), tiny_train(), tr[:10], log=None)  # context longer than the data
    with pytest.raises(MiniLLMError, match="vocab_size"):
        train(tiny_model(vocab_size=32), tiny_train(), tr, log=None)  # ids up to 63
    with pytest.raises(MiniLLMError, match="divisible"):
        train(tiny_model(), tiny_train(batch_size=6, grad_accum=4), tr, log=None)

    class Tok:
        vocab_size = 100

    with pytest.raises(MiniLLMError, match="tokenizer has 100 ids"):
        train(tiny_model(), tiny_train(), tr, tokenizer=Tok(), log=None)


def test_resume_refuses_a_different_model(tmp_path, data):
    train(tiny_model(), tiny_train(steps=2), data[0], out_dir=tmp_path, log=None)
    with pytest.raises(MiniLLMError, match="different model config"):
        train(tiny_model(n_embd=64), tiny_train(steps=4), data[0], out_dir=tmp_path, resume=True, log=None)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_paths_run(data, dtype):
    # bf16 autocast on CPU; fp16 goes through a gradient scaler
    r = train(tiny_model(), tiny_train(steps=3, dtype=dtype), data[0], data[1], log=None)
    assert all(math.isfinite(h["train_loss"]) for h in r.history) and math.isfinite(r.final_val_loss)


# --- crash safety and multi-process ------------------------------------------------

KILL_SCRIPT = r"""
import sys, time, torch
import minillm.checkpoint as t
path = sys.argv[1]
t.save_checkpoint(path, {"step": 1, "w": torch.ones(1000)})
real_save = torch.save
def slow_save(obj, f):
    real_save(obj, f)          # the new file is complete on disk, but not yet renamed...
    print("writing", flush=True)
    time.sleep(60)             # ...when the parent kills us
torch.save = slow_save
t.save_checkpoint(path, {"step": 2, "w": torch.zeros(1000)})
"""


def test_sigkill_during_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.ones(1000))


DDP_SCRIPT = r"""
import sys, numpy as np, torch
from minillm.train import train, TrainConfig
from minillm.model import GPTConfig
rng = np.random.default_rng(0)
tokens = ((np.arange(3000) + (rng.random(3000) < 0.1) * 7) % 64).astype(np.uint16)
mc = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
tc = TrainConfig(steps=4, batch_size=8, grad_accum=int(sys.argv[2]), lr=3e-3, warmup_steps=1, eval_every=0,
                 log_every=1, device="cpu", dtype="float32")
torch.set_num_threads(1)
train(mc, tc, tokens, out_dir=sys.argv[1], log=None)
"""


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "1"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "two"), "2"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one")
    b = load_checkpoint(tmp_path / "two")
    assert b["step"] == 4
    json_two = json.loads((tmp_path / "two" / "config.json").read_text())
    assert json_two["processes"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4, msg=k)


def test_train_command_writes_a_run_folder_and_resumes(tmp_path, capsys):
    from minillm import world
    from minillm.cli import main

    text = tmp_path / "stories.txt"
    text.write_text("".join(s + "\n" for s in world.load_split("train").splitlines()[:200]), encoding="utf-8")
    flags = ["--data", str(text), "--out", str(tmp_path / "run"), "--vocab-size", "300", "--block-size", "32",
             "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "4",
             "--eval-every", "2", "--device", "cpu", "--no-progress"]
    assert main(["train", *flags, "--steps", "4"]) == 0
    assert "bits/byte" in capsys.readouterr().out
    run = tmp_path / "run"
    assert {"ckpt.pt", "tokenizer.json", "metrics.jsonl", "config.json", "loss.png"} <= {p.name for p in run.iterdir()}
    assert load_checkpoint(run)["step"] == 4
    assert main(["train", *flags, "--steps", "6", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out and load_checkpoint(run)["step"] == 6


def test_history_reports_model_flops_per_second(data):
    # tokens/s x model FLOPs per token (lesson 07's count) = achieved FLOP/s; no MFU on a CPU.
    from minillm import flops

    tr, va = data
    mc = tiny_model()
    res = train(mc, tiny_train(steps=3), tr, va, log=None)
    rec = res.history[-1]
    assert rec["tflops"] == pytest.approx(rec["tokens_per_s"] * flops.model_flops_per_token(mc, 16) / 1e12)
    assert rec["mfu"] is None


# --- the loop's public pieces: train_step and fit ------------------------------------

from minillm.runtime import setup_runtime  # noqa: E402
from minillm.train import StepResult, fit, model_flops_per_token, train_step  # noqa: E402


def sq_loss_sum(model, mb):
    """Sum over the micro-batch's items of (w x - y)^2 (a SUM: used with count_fn)."""
    x, y = mb
    return (model(x).squeeze(-1) - y).pow(2).sum()


def test_train_step_hand_example():
    # w = 1, items (x, y) = (1, 3), (2, 2): errors -2, 0 -> mean loss 2, gradient mean(2 (w x - y) x) = -2
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rt = setup_runtime("cpu", "float32")
    mb = (torch.tensor([[1.0], [2.0]]), torch.tensor([3.0, 2.0]))
    r = train_step(model, opt, [mb], lambda m, b: sq_loss_sum(m, b) / 2, rt, grad_clip=100.0)
    assert isinstance(r, StepResult) and r.loss == pytest.approx(2.0) and r.grad_norm == pytest.approx(2.0)
    assert model.weight.item() == pytest.approx(1.0 + 0.1 * 2.0)  # SGD: w - lr * grad
    # clipping to 0.5 scales the gradient -2 down to -0.5
    r = train_step(model, opt, [mb], lambda m, b: sq_loss_sum(m, b) / 2, rt, grad_clip=0.5)
    assert model.weight.item() == pytest.approx(1.2 + 0.1 * 0.5, abs=1e-6)


def test_count_fn_weighs_uneven_micro_batches_by_their_items():
    # One micro-batch of 6 items == micro-batches of 1, 5 and 0 items weighted by count (not 1/3 each).
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=g), torch.randn(6, generator=g)
    rt = setup_runtime("cpu", "float32")

    def one_step(splits):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mbs = [(x[a:b], y[a:b]) for a, b in splits]
        r = train_step(model, opt, mbs, sq_loss_sum, rt, count_fn=lambda mb: len(mb[1]), grad_clip=0)
        return r, model.weight.detach().clone()

    whole, w_whole = one_step([(0, 6)])
    split, w_split = one_step([(0, 1), (1, 6), (6, 6)])
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 1)
    assert whole.loss == pytest.approx((sq_loss_sum(m, (x, y)) / 6).item(), rel=1e-6)  # the mean over items
    assert split.loss == pytest.approx(whole.loss, rel=1e-6) and split.count == whole.count == 6
    torch.testing.assert_close(w_split, w_whole, atol=1e-7, rtol=1e-6)
    empty, _ = one_step([(6, 6)])       # no items at all: loss 0, never NaN
    assert empty.loss == 0.0 and empty.count == 0


def test_fit_runs_any_module_with_its_own_loss(tmp_path):
    # fit is the loop of every lesson: a regression with a SUM loss and counts, checkpoint and resume.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])

    def batches(step):  # a pure function of the step
        i = (step * 8) % 64
        return [(x[i:i + 3], y[i:i + 3]), (x[i + 3:i + 8], y[i + 3:i + 8])]

    cfg = tiny_train(steps=40, lr=0.2, warmup_steps=1, log_every=10, weight_decay=0.0)
    torch.manual_seed(0)
    r = fit(torch.nn.Linear(3, 1), cfg, batches, sq_loss_sum, count_fn=lambda mb: len(mb[1]), log=None)
    assert r.history[-1]["train_loss"] < 0.1 * r.history[0]["train_loss"] and r.step == 40
    assert r.tokens_seen == 40 * 8  # counted items
    torch.manual_seed(0)
    fit(torch.nn.Linear(3, 1), cfg, batches, sq_loss_sum, count_fn=lambda mb: len(mb[1]), out_dir=tmp_path,
        until_step=20, log=None)
    torch.manual_seed(5)  # a different init: resume must overwrite it
    rest = fit(torch.nn.Linear(3, 1), cfg, batches, sq_loss_sum, count_fn=lambda mb: len(mb[1]),
               out_dir=tmp_path, resume=True, log=None)
    assert [h["train_loss"] for h in rest.history] == [h["train_loss"] for h in r.history]
    assert torch.equal(rest.model.weight, r.model.weight)


@pytest.mark.parametrize("lr, warmup, kept", [
    (1e9, 2, None),           # finite weights after step 0, NaN loss at step 1: that checkpoint is not kept
    (float("inf"), 2, None),  # non-finite weights after step 0
    (1e9, 10**7, 2),          # lr 100, 200, 300, 400: the gradients overflow at step 3
])
def test_divergence_keeps_the_last_finite_checkpoint(tmp_path, data, lr, warmup, kept):
    # Before: the kept "last good" checkpoint gave a NaN loss (lr 1e9) or held inf weights (lr inf).
    tr, _ = data
    cfg = tiny_train(steps=12, lr=1.0, warmup_steps=warmup, checkpoint_every=1)
    object.__setattr__(cfg, "lr", lr)  # past the config check on purpose: the loop must cope
    with pytest.raises(TrainingDiverged) as e:
        train(tiny_model(), cfg, tr, out_dir=tmp_path, log=None)
    assert "Lower the learning rate" in str(e.value)
    assert not (tmp_path / "ckpt.pending.pt").exists()
    if kept is None:
        assert "no checkpoint was written" in str(e.value) and not (tmp_path / "ckpt.pt").exists()
        return
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == kept and f"step {kept}: finite weights and loss" in str(e.value)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())   # finite weights...
    model = GPT(tiny_model())
    model.load_state_dict(ckpt["model"])
    from minillm.data import batch_offsets, get_batch

    x, y = get_batch(tr, batch_offsets(len(tr), 16, 8, cfg.seed, ckpt["step"]), 16)
    assert math.isfinite(model(x, y)[1].item())   # ...that give a finite loss on the next step's batch


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(grad_accum=0), "grad_accum must be a positive integer"),
    (dict(lr=float("nan")), "lr must be a positive finite number"),
    (dict(lr=-1.0), "lr must be a positive finite number"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(beta2=1.0), "beta2 must be in"),
    (dict(optimizer="sgd"), "optimizer must be"),
])
def test_train_config_rejects_bad_values(bad, message):
    with pytest.raises(MiniLLMError, match=message):
        tiny_train(**bad)


def test_mfu_counts_the_model_in_hand(data):
    from minillm import flops

    cfg = tiny_model(style="llama", bias=False)
    assert model_flops_per_token(GPT(cfg), 16) == flops.model_flops_per_token(cfg, 16)
    wrapped = NaNAfter(cfg, n=10**9)   # a custom module: no .config, its Linear weights still count
    W = sum(m.weight.numel() for m in wrapped.modules() if isinstance(m, torch.nn.Linear))
    assert model_flops_per_token(wrapped, 16) == 6 * W


def test_checkpoints_go_to_and_from_file_objects():
    import io

    from minillm.checkpoint import save_checkpoint

    buf = io.BytesIO()
    save_checkpoint(buf, {"step": 3, "w": torch.arange(4.0)})
    buf.seek(0)
    back = load_checkpoint(buf)
    assert back["step"] == 3 and torch.equal(back["w"], torch.arange(4.0))


def test_plot_history_has_plain_log_ticks_and_the_floor():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minillm.train import plot_history

    hist = [dict(step=s, train_loss=6.0 / s, val_loss=6.5 / s, val_bpb=3.0 / s) for s in (1, 2, 4, 8)]
    fig = plot_history(hist, floor_bits_per_byte=0.2)
    left, right = fig.axes
    assert left.get_xlabel() == "step" and "nats" in left.get_ylabel() and right.get_ylabel() == "bits per byte"
    assert len(left.lines) == 2 and any(line.get_label().startswith("entropy floor") for line in right.lines)
    fig.canvas.draw()
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels() if t.get_text()]
    assert labels and not any("10^" in s or "times" in s or "$" in s for s in labels), labels
    plt.close(fig)


def test_progress_bar_keeps_log_lines_on_their_own_lines(data, capsys):
    r = train(tiny_model(), tiny_train(steps=4, log_every=2), data[0], progress=True)
    out, err = capsys.readouterr()
    assert [line.split("|")[0].strip() for line in out.splitlines() if line.startswith("step")] == ["step     2",
                                                                                                   "step     4"]
    assert "4/4" in err and r.step == 4   # the bar counts steps out of the total


def test_estimate_loss_of_a_uniform_model_is_log_vocab(data):
    from minillm.train import estimate_loss

    class Uniform(torch.nn.Module):
        def forward(self, x, y):
            logits = torch.zeros(*x.shape, 64)
            return logits, F.cross_entropy(logits.view(-1, 64), y.reshape(-1))

    loss = estimate_loss(Uniform(), data[1], 16, 4, 2, torch.device("cpu"))
    assert loss == pytest.approx(math.log(64), rel=1e-6)
