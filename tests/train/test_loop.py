"""The shared epoch loop: batching rule, window means, hooks, progress state, NaN guard, seeded
building and the checkpoint layout."""

from __future__ import annotations

import pytest
import torch

from genduel.checkpoint import load_checkpoint
from genduel.data.splits import Split
from genduel.errors import TrainingError
from genduel.train import loop


def _split(n: int) -> Split:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return Split(images, torch.arange(n) % 3, ["a", "b", "c"])


@pytest.mark.parametrize(("n", "batch", "group", "steps"),
                         [(10, 3, 1, 3), (9, 3, 1, 3), (2, 3, 1, 1), (10, 3, 2, 1), (12, 3, 2, 2),
                          (2, 3, 2, 0)])
def test_steps_per_epoch_keeps_full_batches_and_full_groups(n, batch, group, steps):
    assert loop.steps_per_epoch(n, batch, group) == steps


def test_epoch_batches_are_a_seeded_permutation_of_full_batches():
    split = _split(10)
    first = list(loop.epoch_batches(split, 3, generator=torch.Generator().manual_seed(5),
                                    device=torch.device("cpu")))
    again = list(loop.epoch_batches(split, 3, generator=torch.Generator().manual_seed(5),
                                    device=torch.device("cpu")))
    assert len(first) == 3 and all(len(b) == 1 and b[0][0].shape[0] == 3 for b in first)
    ids = torch.cat([((x[:, 0, 0, 0] + 1) * 127.5).round() for (x, _), in first]).long()
    assert len(set(ids.tolist())) == 9  # disjoint: one image of 10 left out (drop_last)
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(first, again))
    grouped = list(loop.epoch_batches(split, 2, generator=torch.Generator().manual_seed(5),
                                      device=torch.device("cpu"), group=2))
    assert [len(g) for g in grouped] == [2, 2]  # 5 batches -> 2 groups of k = 2


def test_a_split_smaller_than_a_batch_is_one_batch():
    (batch,), = [list(loop.epoch_batches(_split(2), 8, generator=torch.Generator(),
                                         device=torch.device("cpu")))]
    assert batch[0][0].shape[0] == 2


def _count_steps(batch, step):
    return {"step": float(step), "size": float(batch[0][0].shape[0])}


def test_run_epoch_logs_window_means_and_calls_hooks_in_step_order():
    spec = loop.EpochSpec("t", ("step", "size"), log_every=2, postfix={"step": ".0f"})
    progress, logged, hooked = loop.Progress(step=10), [], []
    steps = loop.epoch_batches(_split(12), 2, generator=torch.Generator(),
                               device=torch.device("cpu"))
    values = loop.run_epoch(spec, 3, steps, 6, _count_steps, progress,
                            on_log=lambda e, s, m: logged.append((e, s, m["step"])),
                            on_step=[hooked.append])
    assert values["step"] == [11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert hooked == [11, 12, 13, 14, 15, 16]
    # global steps 12, 14, 16 close a window; the first window holds step 11 and 12 only
    assert logged == [(3, 12, 11.5), (3, 14, 13.5), (3, 16, 15.5)]
    assert progress.step == 16 and progress.images == 12


def test_fit_runs_the_epochs_after_the_ones_done_and_times_only_the_steps():
    spec = loop.EpochSpec("t", ("step",), log_every=100, postfix={})
    progress, ends = loop.Progress(step=4, epoch=1, images=8), []
    loop.fit(spec, 3, progress, total=2, step_fn=_count_steps, on_log=lambda *a: None,
             on_epoch=lambda e, v, t0: ends.append((e, v["step"])),
             make_steps=lambda: loop.epoch_batches(_split(4), 2, generator=torch.Generator(),
                                                   device=torch.device("cpu")))
    assert ends == [(2, [5.0, 6.0]), (3, [7.0, 8.0])]
    assert (progress.epoch, progress.step, progress.images) == (3, 8, 16)
    assert progress.fit_seconds > 0


def test_progress_round_trips_through_its_state_dict():
    p = loop.Progress(step=7, epoch=2, images=896, fit_seconds=1.5)
    q = loop.Progress()
    q.load_state_dict(p.state_dict())
    assert q == p and q.images_per_s == pytest.approx(896 / 1.5)


def test_require_finite_names_the_value_the_step_and_the_fix():
    loop.require_finite(torch.tensor(1.0), "x loss", 3, "fix it")
    with pytest.raises(TrainingError, match=r"^x loss became NaN at step 3; fix it$"):
        loop.require_finite(torch.tensor(float("nan")), "x loss", 3, "fix it")
    with pytest.raises(TrainingError, match="became infinite"):
        loop.require_finite(torch.tensor(float("-inf")), "x loss", 3, "fix it")


def test_epoch_means_and_std_are_float64_statistics():
    means = loop.epoch_means({"a": [1.0, 2.0, 4.0], "b": []})
    assert means["a"] == 7 / 3
    assert means["b"] != means["b"]  # NaN for an empty epoch
    assert loop.epoch_std([1.0, 3.0]) == 1.0 and loop.epoch_std([]) != loop.epoch_std([])


def test_build_seeded_depends_on_the_seed_alone_and_leaves_the_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = loop.build_seeded(7, lambda: torch.nn.Linear(4, 2))
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream is untouched
    b = loop.build_seeded(7, lambda: torch.nn.Linear(4, 2))
    c = loop.build_seeded(8, lambda: torch.nn.Linear(4, 2))
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)


def test_save_state_writes_the_checkpoint_layout(tmp_path):
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loop.save_state(tmp_path / "m.pt", kind="judge", model_config={"w": 2}, nets={"judge": net},
                    optimizers={"judge": opt}, progress=loop.Progress(step=5), epoch=2,
                    extra={"val": 1.0})
    ckpt = load_checkpoint(tmp_path / "m.pt", "judge")  # weights_only: plain tensors only
    assert list(ckpt) == ["kind", "model_config", "state_dicts", "optimizers", "step", "epoch",
                          "rng", "extra"]
    assert (ckpt["step"], ckpt["epoch"], ckpt["extra"]) == (5, 2, {"val": 1.0})
    assert torch.equal(ckpt["state_dicts"]["judge"]["weight"], net.weight.detach())
    assert not list(tmp_path.glob("*.tmp"))
