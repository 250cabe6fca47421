"""Lesson 14's GPU-path options in the real training loop (minillm.train): fp16 with our dynamic
loss scaler, activation checkpointing per block, FSDP. All run on a CPU (FSDP over 2 gloo processes)."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from minillm import MiniLLMError
from minillm.checkpoint import load_checkpoint
from minillm.kernels.checkpointing import is_checkpointed
from minillm.kernels.scaler import LossScaler
from minillm.model import GPT, GPTConfig
from minillm.runtime import setup_runtime
from minillm.train import TrainConfig, train, train_step


def tiny_model(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32), **kw})


def tiny_train(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=0, eval_batches=2,
                                 log_every=1, device="cpu", dtype="float32"), **kw})


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    t = (np.arange(4000) + (rng.random(4000) < 0.1) * rng.integers(0, 64, 4000)) % 64
    return t[:3500].astype(np.uint16), t[3500:].astype(np.uint16)


# --- activation checkpointing ------------------------------------------------------

@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_activation_checkpointing_gives_the_same_gradients_through_train_step(style, data):
    tr, _ = data
    x = torch.from_numpy(np.stack([tr[i:i + 16] for i in range(0, 80, 10)]).astype(np.int64))  # (8, 16)
    y = torch.from_numpy(np.stack([tr[i + 1:i + 17] for i in range(0, 80, 10)]).astype(np.int64))
    mbs = [(x[:4], y[:4]), (x[4:], y[4:])]                     # two micro-batches
    rt = setup_runtime("cpu", "float32")
    grads = {}
    for on in (False, True):
        torch.manual_seed(0)
        model = GPT(tiny_model(style=style, dropout=0.1)).train()
        cfg = tiny_train(activation_checkpointing=on)
        seen = {}

        class Spy(torch.optim.SGD):            # records the gradients the optimizer is handed
            def step(self, closure=None):
                seen.update({n: p.grad.clone() for n, p in model.named_parameters()})
                return super().step(closure)

        opt = Spy(model.parameters(), lr=0.1)
        if cfg.activation_checkpointing:
            from minillm.kernels.checkpointing import checkpoint_blocks
            checkpoint_blocks(model)
        torch.manual_seed(1)                   # the same dropout masks in both runs
        r = train_step(model, opt, mbs, lambda m, b: m(*b)[1], rt, grad_clip=1.0)
        grads[on] = (r, seen)
    (ra, ga), (rb, gb) = grads[False], grads[True]
    assert ra.loss == rb.loss and ra.grad_norm == pytest.approx(rb.grad_norm, rel=1e-6)
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], atol=1e-6, rtol=1e-5, msg=n)


def test_activation_checkpointing_flag_trains_the_same_and_leaves_the_model_as_found(data, tmp_path):
    tr, va = data
    mc = tiny_model(dropout=0.1)
    a = train(mc, tiny_train(), tr, va, log=None)
    b = train(mc, tiny_train(activation_checkpointing=True), tr, va, out_dir=tmp_path, log=None)
    np.testing.assert_allclose([h["train_loss"] for h in b.history], [h["train_loss"] for h in a.history],
                               rtol=1e-5)
    assert is_checkpointed(b.model) == [False, False]         # undone after the run
    assert list(load_checkpoint(tmp_path)["model"]) == list(a.model.state_dict())   # the same keys
    with pytest.raises(MiniLLMError, match="activation checkpointing needs a minillm GPT"):
        from minillm.train import fit
        fit(torch.nn.Linear(2, 1), tiny_train(activation_checkpointing=True), lambda s: [], None, log=None)


# --- fp16 with our loss scaler --------------------------------------------------------

def test_fp16_uses_our_scaler_and_fails_clearly_without_fp16(data, monkeypatch):
    assert isinstance(setup_runtime("cpu", "float16").scaler, LossScaler)
    assert setup_runtime("cpu", "bfloat16").scaler is None and setup_runtime("cpu", "float32").scaler is None
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(MiniLLMError, match="float16 was asked for.*bfloat16 or float32"):
        train(tiny_model(), tiny_train(dtype="float16"), data[0], log=None)


class Overflow(torch.nn.Module):
    """loss = sum(w * g): the gradient is g, times the loss scale in backward."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))


def _scaler_run(scaler, grads):
    rt = dataclasses.replace(setup_runtime("cpu", "float32"), scaler=scaler)
    model = Overflow()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    rows = []
    for g in grads:
        r = train_step(model, opt, [g], lambda m, b: (m.weight * b).sum(), rt, grad_clip=1e9)
        rows.append((scaler.get_scale(), model.weight.detach().clone(), r.loss))
    return rows


def no_torch_update(monkeypatch):
    """No delegation: PyTorch's fused scale-update kernel raises from here on."""
    def refuse(*a, **k):
        raise AssertionError("write the update rule yourself, do not call torch._amp_update_scale_")
    monkeypatch.setattr(torch, "_amp_update_scale_", refuse)


@pytest.mark.exercise("scaler.update_scale")   # the loop's fp16 path updates the scale every step
def test_scaler_in_train_step_skips_inf_steps_and_backs_off_like_grad_scaler(monkeypatch):
    # fp32's largest number is just under 2^128. A gradient of 2^20 times the scale 2^108 is 2^128: inf,
    # so the step is skipped and the scale halves; 2^107 * 2^20 fits. After 3 clean steps the scale
    # grows; then a gradient of 2^21 needs two back-offs (two skipped steps).
    grads = [torch.tensor([1.0, 2.0, 3.0])] * 2 + [torch.tensor([2.0 ** 20, 0, 0])] * 2 + \
            [torch.tensor([1.0, -1.0, 0.5])] * 3 + [torch.tensor([0, 2.0 ** 21, 0])] * 2 + [torch.tensor([1.0, 1, 1])]
    kw = dict(init_scale=2.0 ** 108, growth_interval=3)
    theirs = _scaler_run(torch.amp.GradScaler("cpu", **kw), grads)   # the answer key first
    no_torch_update(monkeypatch)
    ours = _scaler_run(LossScaler(**kw), grads)
    for step, ((s1, w1, l1), (s2, w2, l2)) in enumerate(zip(ours, theirs)):
        assert s1 == s2 and l1 == l2, step
        assert torch.equal(w1, w2), step                      # same skips, same updates, bit for bit
    assert [math.log2(r[0]) for r in ours] == [108, 108, 107, 107, 107, 108, 108, 107, 106, 106]
    w = [r[1] for r in ours]
    assert not torch.equal(w[1], w[0]) and torch.equal(w[2], w[1]) and not torch.equal(w[3], w[2])
    assert torch.equal(w[7], w[6]) and torch.equal(w[8], w[7]) and bool(torch.isfinite(w[9]).all())


@pytest.mark.exercise("scaler.update_scale")
def test_fp16_resume_restores_the_scaler_exactly(data, tmp_path, monkeypatch):
    # A huge initial scale overflows fp16's backward (max 65504): the first steps are skipped while the
    # scale backs off; growth every 3 clean steps. A resumed run must continue with the same scale.
    import minillm.runtime as runtime

    no_torch_update(monkeypatch)
    monkeypatch.setattr(runtime, "LossScaler", functools.partial(LossScaler, init_scale=2.0 ** 20, growth_interval=3))
    tr, va = data
    mc, tc = tiny_model(dropout=0.1), tiny_train(steps=12, dtype="float16")
    full = train(mc, tc, tr, va, log=None)
    scales = [h["loss_scale"] for h in full.history]
    assert scales[0] < 2.0 ** 20 and len(set(scales)) > 2    # backed off, then grew
    assert any(b > a for a, b in zip(scales, scales[1:])) and full.history[-1]["skipped_steps"] > 0
    train(mc, tc, tr, va, out_dir=tmp_path, until_step=6, log=None)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["scaler"]["scale"] == scales[5]
    rest = train(mc, tc, tr, va, out_dir=tmp_path, resume=True, log=None)
    assert [h["train_loss"] for h in rest.history] == [h["train_loss"] for h in full.history]   # bit for bit
    assert [h["loss_scale"] for h in rest.history] == scales
    for pa, pb in zip(full.model.state_dict().values(), rest.model.state_dict().values()):
        assert torch.equal(pa, pb)


def test_grad_scaler_state_dicts_load_into_our_scaler():
    # fp16 checkpoints written before our scaler replaced GradScaler still resume
    theirs = torch.amp.GradScaler("cpu", init_scale=512.0)
    ours = LossScaler()
    ours.load_state_dict(theirs.state_dict())
    assert ours.get_scale() == 512.0 and ours.state_dict()["growth_tracker"] == 0


# --- FSDP ------------------------------------------------------------------------------

def test_fsdp_without_a_process_group_is_one_clear_error(data):
    with pytest.raises(MiniLLMError, match="fsdp needs several processes: launch with `torchrun"):
        train(tiny_model(), tiny_train(fsdp=True), data[0], log=None)


FSDP_SCRIPT = r"""
import sys, numpy as np, torch
from minillm.train import train, TrainConfig
from minillm.model import GPTConfig
out, accum, fsdp, until = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
rng = np.random.default_rng(0)
tokens = ((np.arange(3000) + (rng.random(3000) < 0.1) * 7) % 64).astype(np.uint16)
mc = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=False)  # see test_kernels_parallel
tc = TrainConfig(steps=4, batch_size=8, grad_accum=accum, lr=3e-3, warmup_steps=1, eval_every=2, eval_batches=2,
                 log_every=1, device="cpu", dtype="float32", fsdp=fsdp)
torch.set_num_threads(1)
train(mc, tc, tokens, tokens[:500], out_dir=out, until_step=until, resume=until == 4 and fsdp, log=None)
"""


@pytest.mark.slow
def test_fsdp_two_processes_equal_one_process_and_resume(tmp_path):
    # Both processes run train(); FSDP shards each block over them. grad_accum 2 exercises
    # set_requires_gradient_sync; the run stops at step 2 and resumes from its gathered checkpoint.
    # One process accumulates 4 micro-batches of 2 (the same windows; validation windows depend on it).
    script = tmp_path / "fsdp.py"
    script.write_text(FSDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4", "0", "4"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    for until in (2, 4):
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(script), str(tmp_path / "two"), "2", "1", str(until)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert b["step"] == 4 and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], atol=1e-5, rtol=1e-4, msg=k)
    assert [h["step"] for h in b["history"]] == [h["step"] for h in a["history"]] == [1, 2, 3, 4]
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5)
        if "val_loss" in ha:                                   # steps 2 and 4
            assert hb["val_loss"] == pytest.approx(ha["val_loss"], rel=1e-5)
