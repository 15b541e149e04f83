"""The judge classifier and its training loop."""

from __future__ import annotations

import contextlib

import pytest
import torch

from genduel.checkpoint import load_checkpoint
from genduel.config import JudgeConfig
from genduel.data.splits import Split
from genduel.errors import TrainingError
from genduel.models.judge import Judge, build_judge
from genduel.tracking.base import RecordingTracker
from genduel.train.judge import evaluate_accuracy, judge_train_step, train_judge

CPU = torch.device("cpu")
SMALL = JudgeConfig(epochs=3, batch_size=32, lr=5e-3, width=8, feature_dim=32, dropout=0.1)



def _blocks(n: int, seed: int, k: int = 10) -> Split:
    """Class c lights up block c of a 4x4 grid of 7x7 blocks, over noise: (n, 1, 28, 28) uint8."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=gen)
    images = torch.randint(0, 90, (n, 1, 28, 28), generator=gen)
    for c in range(k):
        r, q = divmod(c, 4)
        images[labels == c, :, 7 * r:7 * r + 7, 7 * q:7 * q + 7] += 150
    return Split(images.to(torch.uint8), labels, [f"c{c}" for c in range(k)])


def test_train_step_rejects_non_finite_loss_before_the_update():
    model = Judge(SMALL, (1, 28, 28), 10)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.zeros(4, 1, 28, 28)
    x[0] = float("nan")
    with pytest.raises(TrainingError, match=r"judge loss became NaN at step 3.*judge\.lr"):
        judge_train_step(model, opt, x, torch.zeros(4, dtype=torch.int64),
                         amp_ctx=contextlib.nullcontext(), step=3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_learns_an_easy_task_and_the_checkpoint_round_trips(tmp_path):
    train, val, test = _blocks(640, 0), _blocks(200, 1), _blocks(300, 2)
    tracker, path = RecordingTracker(), tmp_path / "judge.pt"
    summary = train_judge(SMALL, train, val, test, device=CPU, amp=False, tracker=tracker,
                          checkpoint_path=path)
    assert summary["test_accuracy"] >= 0.95 and summary["val_accuracy"] >= 0.95
    assert summary["steps"] == 3 * (640 // 32)
    assert len(tracker.metrics["train/loss"]) == summary["steps"] // 20
    assert [s for s, _ in tracker.metrics["val_accuracy"]] == [20, 40, 60]
    assert tracker.metrics["val_accuracy"][-1][1] == summary["val_accuracy"]  # one name, JSON's
    assert tracker.metrics["test_accuracy"] == [(summary["steps"], summary["test_accuracy"])]

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "judge" and ckpt["epoch"] == 3 and ckpt["step"] == summary["steps"]
    assert ckpt["extra"]["test_accuracy"] == summary["test_accuracy"]
    assert "judge" in ckpt["optimizers"] and "torch" in ckpt["rng"]
    model = build_judge(load_checkpoint(path, "judge")["model_config"])
    model.load_state_dict(ckpt["state_dicts"]["judge"])
    assert model.feature_dim == SMALL.feature_dim
    acc, nll = evaluate_accuracy(model, test, 64, CPU)  # another batch size: same answer
    assert acc == pytest.approx(summary["test_accuracy"], abs=1.5 / len(test))
    assert nll == pytest.approx(summary["test_nll"], rel=1e-5)
