"""Exact resume: a trainer stopped by SIGTERM, SIGINT or a crash and run again with the same
state file ends bit-identical to a run that was never stopped; divergence stops it with one
line and keeps the last good state."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from genduel import interrupts
from genduel.config import GANConfig, JudgeConfig, VAEConfig
from genduel.data.splits import Split
from genduel.errors import Interrupted, TrainingError
from genduel.tracking.base import RecordingTracker
from genduel.train import loop
from genduel.train.gan import train_gan
from genduel.train.judge import train_judge
from genduel.train.resume import Resume
from genduel.train.vae import train_vae

CPU = torch.device("cpu")
VAE = VAEConfig(latent_dim=4, width=4, epochs=2, batch_size=8, log_every=3, grid_images=4,
                decoder_components=2)
GAN = GANConfig(latent_dim=8, width=4, epochs=2, batch_size=8, d_steps=2, log_every=2,
                grid_images=4, diag_samples=6, ema_decay=0.9)
JUDGE = JudgeConfig(epochs=2, batch_size=8, width=4, feature_dim=16, log_every=2)


def _split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                 torch.arange(n) % 3, ["a", "b", "c"])


@pytest.fixture
def signals():
    """The stage's SIGINT/SIGTERM handlers for the test, the previous ones after it."""
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    interrupts.install()
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


def _train(kind: str, out: Path, resume: Resume) -> dict[str, float]:
    torch.manual_seed(7)  # the stage seeds the global RNG before training
    common = {"device": CPU, "amp": False, "tracker": RecordingTracker(),
              "checkpoint_path": out / "model.pt", "resume": resume}
    if kind == "vae":
        return train_vae(VAE, _split(40, 0), _split(8, 1), artifacts_dir=out / "art", **common)
    if kind == "gan":
        return train_gan(GAN, _split(48, 0), artifacts_dir=out / "art", **common)
    return train_judge(JUDGE, _split(40, 0), _split(8, 1), _split(8, 2), **common)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "resume" not in p.parts}


def _stop_at(monkeypatch, step: int, how: str) -> None:
    """At ``step`` (after its optimizer step): a real signal to this process, or a crash."""
    after_step = Resume.after_step

    def patched(self: Resume, s: int) -> None:
        if s == step:
            if how == "crash":
                raise RuntimeError("planted crash")
            os.kill(os.getpid(), signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        after_step(self, s)

    monkeypatch.setattr(Resume, "after_step", patched)


@pytest.mark.parametrize("kind, step, how", [
    ("vae", 3, "sigterm"),   # mid-epoch 1 (5 steps per epoch)
    ("vae", 5, "sigint"),    # the last step of epoch 1, before its validation
    ("gan", 4, "sigterm"),   # mid-epoch 2 (3 G steps per epoch, 2 D steps each), EMA on
    ("gan", 2, "crash"),     # a crash: the periodic save (every step here) is what is left
    ("judge", 7, "sigint"),  # mid-epoch 2, dropout on (the global RNG)
])
def test_a_stopped_run_resumes_bit_identical(tmp_path, monkeypatch, signals, kind, step, how):
    whole = _train(kind, tmp_path / "whole", Resume(tmp_path / "whole" / "resume" / "s.pt"))
    every_s = 0.0 if how == "crash" else float("inf")  # crash: rely on the periodic save
    state = tmp_path / "cut" / "resume" / "s.pt"
    with monkeypatch.context() as m:
        _stop_at(m, step, how)
        with pytest.raises(RuntimeError if how == "crash" else Interrupted) as stopped:
            _train(kind, tmp_path / "cut", Resume(state, every_s))
    if how != "crash":
        assert stopped.value.exit_code == (143 if how == "sigterm" else 130)
    assert state.exists()
    resume = Resume(state, every_s)
    resumed = _train(kind, tmp_path / "cut", resume)
    assert resume.resumed_step == (step - 1 if how == "crash" else step)
    assert _files(tmp_path / "cut") == _files(tmp_path / "whole")  # weights, CSVs, grids
    volatile = ("train_seconds", "train_images_per_s")
    assert {k: v for k, v in resumed.items() if k not in volatile} == \
        {k: v for k, v in whole.items() if k not in volatile}


def test_a_second_signal_stops_at_once(signals):
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupts.pending() == signal.SIGTERM  # the first only waits for the step
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Interrupted):
        interrupts.raise_pending()


def test_a_diverging_loss_stops_with_the_stage_step_and_fix(tmp_path):
    cfg = GANConfig(**{**GAN.__dict__, "max_loss": 0.5})  # BCE losses start near 0.69-1.4
    state = tmp_path / "resume" / "s.pt"
    with pytest.raises(TrainingError, match=r"gan diverged: (d|g)_loss = [0-9.]+ at step 1 is "
                       r"beyond the sane bound 0.5 \(gan.max_loss\); .*lower gan.lr_d"):
        train_gan(cfg, _split(48, 0), device=CPU, amp=False, tracker=RecordingTracker(),
                  checkpoint_path=tmp_path / "g.pt", artifacts_dir=tmp_path / "art",
                  resume=Resume(state))


def test_bounds_refuse_non_finite_and_huge_values_only():
    spec = loop.EpochSpec("vae", ("loss",), 1, {}, bounds={"loss": 1e6}, fix="lower vae.lr")
    loop.check_bounds(spec, {"loss": -9.9e5}, 3)  # within: no error
    for bad in (1.9e14, float("nan"), float("inf")):
        with pytest.raises(TrainingError, match="vae diverged: loss = .* at step 3 .*vae.lr"):
            loop.check_bounds(spec, {"loss": bad}, 3)


def test_an_unreadable_state_starts_over(tmp_path, caplog):
    state = tmp_path / "s.pt"
    state.write_bytes(b"\x80truncated")
    resume = Resume(state)
    progress = loop.Progress(step=3)
    resume.register(progress=progress)
    assert not resume.restore() and progress.step == 3
    assert "unreadable" in caplog.text
