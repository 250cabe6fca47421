"""`minillm/trainrun.py` on its own: the pending checkpoint that becomes ckpt.pt only after one more
finite step, what a divergence message says is kept, and a folderless run that writes nothing."""

import torch
import torch.nn as nn

from minillm.checkpoint import load_checkpoint
from minillm.runtime import setup_runtime
from minillm.train import TrainConfig
from minillm.trainrun import PENDING_NAME, TrainState


def state(folder):
    model = nn.Linear(3, 2)
    return TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), TrainConfig(steps=4),
                      setup_runtime("cpu", "float32"), None, folder, run_id="test")


def test_a_pending_checkpoint_becomes_ckpt_pt_only_when_committed(tmp_path):
    s = state(tmp_path)
    assert s.kept_path() is None and s.diverged() == "no checkpoint was written"
    s.step = 2
    s.save(pending=True)
    assert (tmp_path / PENDING_NAME).is_file() and not (tmp_path / "ckpt.pt").exists() and s.kept is None
    s.commit()                                    # its weights gave a finite step
    assert not (tmp_path / PENDING_NAME).exists() and s.kept_path() == tmp_path / "ckpt.pt" and s.kept == 2
    ckpt = load_checkpoint(tmp_path / "ckpt.pt", "cpu")
    assert ckpt["step"] == 2 and torch.equal(ckpt["model"]["weight"], s.model.weight.detach())
    assert "step 2" in s.diverged()


def test_a_discarded_pending_checkpoint_leaves_the_last_good_one(tmp_path):
    s = state(tmp_path)
    s.step = 1
    s.save(pending=False)                         # the final kind: written directly
    s.step = 3
    s.save(pending=True)
    s.discard_pending()                           # the next step diverged
    s.commit()                                    # nothing pending: nothing moves
    assert not (tmp_path / PENDING_NAME).exists()
    assert load_checkpoint(tmp_path / "ckpt.pt", "cpu")["step"] == 1 and s.kept == 1


def test_without_a_folder_nothing_is_written(tmp_path):
    s = state(None)
    s.save(pending=True)
    s.record(dict(step=1, train_loss=1.0))
    s.plot()
    assert s.history == [dict(step=1, train_loss=1.0)] and s.kept_path() is None and list(tmp_path.iterdir()) == []
