"""Data-parallel training on the CPU: gloo, 2 processes, started by the stage launcher.

Known answers: the ranks' shards of every global batch partition it in the one-process order; a
network without BatchNorm takes, under 2 processes, the steps one process takes on the same
global batch (losses and weights to float tolerance); rank 0 alone writes and tracks; a failing
rank fails the launch with one line. This file is also the workers' script
(``python test_distributed.py <mode> <out>``), run under :func:`genduel.stage.launch`.
The tests that start workers are end-to-end (``make test-e2e``); the others run in ``make test``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import yaml

from genduel import runtime, stage
from genduel.config import (
    DataConfig,
    GANConfig,
    JudgeConfig,
    RuntimeConfig,
    VAEConfig,
    load_all,
)
from genduel.data.raw import write_idx
from genduel.data.splits import Split, batches, prepare
from genduel.errors import ConfigError, DataError
from genduel.models.judge import Judge
from genduel.runtime import World
from genduel.tracking.base import RecordingTracker
from genduel.train import loop
from genduel.train.gan import STEP_KEYS, train_gan
from genduel.train.judge import judge_train_step, train_judge
from genduel.train.resume import Resume
from genduel.train.vae import train_vae

ROOT = Path(__file__).resolve().parents[2]
RT = RuntimeConfig(device="cpu", num_threads=1, nproc_per_node=2)
VAE_CFG = VAEConfig(latent_dim=4, width=8, batch_size=16, epochs=1, log_every=1, grid_images=4)
GAN_CFG = GANConfig(latent_dim=4, width=8, d_width=8, batch_size=8, epochs=1, log_every=1,
                    grid_images=4, diag_samples=4, loss="wgan_gp", ema_decay=0.9)
JUDGE_CFG = JudgeConfig(width=4, feature_dim=16, dropout=0.0, batch_size=16, epochs=1,
                        log_every=1)
JUDGE_STEPS = 3


def _split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                 torch.randint(0, 10, (n,), generator=g), [str(k) for k in range(10)])


def _judge_without_batchnorm() -> Judge:
    """The judge with every BatchNorm replaced by the identity: no coupling across the batch."""
    model = loop.build_seeded(JUDGE_CFG.seed, lambda: Judge(JUDGE_CFG, (1, 28, 28), 10))
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
                setattr(module, name, torch.nn.Identity())
    return model


def _judge_steps(world: World) -> tuple[list[float], torch.Tensor]:
    """JUDGE_STEPS steps of the judge without BatchNorm: (the logged losses, final weights)."""
    model = _judge_without_batchnorm()
    parallel = runtime.data_parallel(model, world, torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    steps = loop.epoch_batches(_split(64, 3), JUDGE_CFG.batch_size, world=world,
                               generator=runtime.make_generator(0), device=torch.device("cpu"))
    losses = []
    for i, ((x, y),) in zip(range(JUDGE_STEPS), steps):
        stats = judge_train_step(parallel, opt, x, y, amp_ctx=nullcontext(), step=i)
        losses.append(runtime.all_mean(stats, world)["loss"])
    return losses, torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _train(world: World, out: Path) -> None:
    """The worker of :func:`test_two_processes_train_and_rank_0_alone_writes`."""
    device = torch.device("cpu")
    calls = {}
    for name, run in (
        ("vae", lambda t: train_vae(VAE_CFG, _split(64, 1), _split(16, 2), device=device,
                                    amp=False, tracker=t, checkpoint_path=out / "vae.pt",
                                    artifacts_dir=out / "vae", world=world)),
        ("gan", lambda t: train_gan(GAN_CFG, _split(64, 1), device=device, amp=False,
                                    tracker=t, checkpoint_path=out / "gan.pt",
                                    artifacts_dir=out / "gan", world=world)),
        ("bce_gan", lambda t: train_gan(  # D with BatchNorm, called twice per D update
            dataclasses.replace(GAN_CFG, loss="non_saturating", ema_decay=0.0, d_steps=2),
            _split(64, 1), device=device, amp=False, tracker=t,
            checkpoint_path=out / "bce_gan.pt", artifacts_dir=out / "bce_gan", world=world)),
        ("judge", lambda t: train_judge(JUDGE_CFG, _split(64, 1), _split(16, 2), _split(16, 3),
                                        device=device, amp=False, tracker=t,
                                        checkpoint_path=out / "judge.pt", world=world)),
    ):
        tracker = RecordingTracker()
        summary = run(tracker)
        calls[name] = {"summary": summary, "metrics": {k: len(v) for k, v in
                                                       tracker.metrics.items()},
                       "artifacts": len(tracker.artifacts)}
    losses, weights = _judge_steps(world)
    (out / f"rank{world.rank}.json").write_text(json.dumps({**calls, "judge_losses": losses}))
    torch.save(weights, out / f"judge_rank{world.rank}.pt")


def _resume(world: World, out: Path) -> None:
    """The worker of :func:`test_two_processes_resume_from_their_epoch_states`: a 2-epoch VAE
    run whole, and one that crashes on every rank after its first epoch's save, then resumes."""
    cfg = dataclasses.replace(VAE_CFG, epochs=2)

    def vae(name: str, resume: Resume) -> dict[str, float]:
        torch.manual_seed(world.seed(cfg.seed))  # as the stage seeds each rank
        return train_vae(cfg, _split(64, 1), _split(16, 2), device=torch.device("cpu"),
                         amp=False, tracker=RecordingTracker(), world=world, resume=resume,
                         checkpoint_path=out / name / "vae.pt", artifacts_dir=out / name)

    vae("whole", Resume(out / "whole-state.pt", world=world))
    crash = Resume(out / "cut-state.pt", world=world)
    save = crash.save

    def save_then_crash(step: int) -> None:
        save(step)
        raise RuntimeError("planted crash after the first epoch")

    crash.save = save_then_crash
    try:
        vae("cut", crash)
    except RuntimeError:
        pass
    resumed = Resume(out / "cut-state.pt", world=world)
    vae("cut", resumed)
    (out / f"resumed{world.rank}.json").write_text(json.dumps(resumed.resumed_step))


def _worker(mode: str, out: Path) -> int:
    world = runtime.world_from_env(os.environ)

    def body() -> None:
        runtime.init_world(world, RT)
        try:
            if mode == "train":
                _train(world, out)
            elif mode == "resume":
                _resume(world, out)
            elif world.rank == 1 and mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
            elif world.rank == 1:
                raise DataError("a planted failure on rank 1")
            else:
                torch.distributed.barrier()  # rank 0 waits for rank 1, which never comes
        finally:
            runtime.close_world(world)

    return stage.run_stage(mode, body, world=world, record=False)


# ----------------------------------------------------------------- in-process: no workers
def test_the_shards_of_the_ranks_partition_each_global_batch_in_order() -> None:
    split, cpu = _split(50, 0), torch.device("cpu")
    whole = list(batches(split, 8, shuffle=True, generator=runtime.make_generator(5),
                         drop_last=True))
    parts = [list(loop.epoch_batches(split, 8, generator=runtime.make_generator(5), device=cpu,
                                     group=2, world=World(rank=r, size=2)))
             for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == loop.steps_per_epoch(50, 8, 2) == 3
    for step, (g0, g1) in enumerate(zip(*parts)):
        for j, ((x0, y0), (x1, y1)) in enumerate(zip(g0, g1)):
            x, y = whole[2 * step + j]
            assert x0.shape[0] == x1.shape[0] == 4
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


@pytest.mark.parametrize(("runtime_params", "message"), [
    ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"},
     "runtime.node_rank = 2 must be below runtime.nnodes = 2"),
    ({"nnodes": 2}, "runtime.nnodes = 2 needs runtime.rdzv_endpoint"),
    ({"nproc_per_node": 3}, "judge.batch_size = 128 is the global batch and must divide by "
                            "the 3 training processes"),
    ({"nproc_per_node": 0}, "runtime.nproc_per_node = 0 is below the minimum 1"),
])
def test_bad_runtime_params_fail_with_one_line(tmp_path, runtime_params, message) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"].update(runtime_params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message) as err:
        load_all(tmp_path / "params.yaml")
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------- 2 workers (gloo)
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """One launch of 2 workers running :func:`_train`; their output folder."""
    out = tmp_path_factory.mktemp("ddp")
    stage.launch("train", RT, __file__, ["train", str(out)])
    return out


@pytest.mark.e2e  # torchrun workers
def test_two_processes_train_and_rank_0_alone_writes(two_ranks: Path) -> None:
    ranks = [json.loads((two_ranks / f"rank{r}.json").read_text()) for r in range(2)]
    steps = {"vae": 64 // 16, "gan": 64 // 8, "bce_gan": 64 // 8 // 2, "judge": 64 // 16}
    for name, n in steps.items():
        if name.endswith("gan"):  # step statistics are all-reduced: the same means on each rank
            assert {k: ranks[0][name]["summary"][k] for k in STEP_KEYS} == pytest.approx(
                {k: ranks[1][name]["summary"][k] for k in STEP_KEYS}, rel=1e-12)
        assert ranks[0][name]["summary"]["steps"] == n
        logged = {"vae": "train/loss", "judge": "train/loss"}.get(name, "train/d_loss")
        assert ranks[0][name]["metrics"][logged] == n  # log_every = 1: a point per step
        assert ranks[1][name]["metrics"] == {} and ranks[1][name]["artifacts"] == 0
        ckpt = torch.load(two_ranks / f"{name}.pt", map_location="cpu", weights_only=True)
        assert ckpt["step"] == n and ckpt["epoch"] == 1
    files = sorted(p.relative_to(two_ranks).as_posix() for p in two_ranks.rglob("*")
                   if p.is_file())
    gan_files = ["epoch_samples.pt", "epochs.csv", "grids/samples_epoch001.png", "history.csv"]
    assert files == ["bce_gan.pt", *(f"bce_gan/{f}" for f in gan_files), "gan.pt",
                     *(f"gan/{f}" for f in gan_files), "judge.pt", "judge_rank0.pt",
                     "judge_rank1.pt", "rank0.json", "rank1.json", "vae.pt", "vae/epochs.csv",
                     "vae/grids/recon_epoch001.png", "vae/grids/samples_epoch001.png",
                     "vae/history.csv"]  # one checkpoint per model, no temporary file left


@pytest.mark.e2e  # torchrun workers
def test_two_processes_take_the_steps_of_one_on_the_same_global_batch(two_ranks: Path) -> None:
    torch.manual_seed(0)
    losses, weights = _judge_steps(runtime.ONE_PROCESS)
    for r in range(2):
        got = json.loads((two_ranks / f"rank{r}.json").read_text())["judge_losses"]
        assert got == pytest.approx(losses, rel=1e-5)
        assert torch.allclose(torch.load(two_ranks / f"judge_rank{r}.pt"), weights, atol=1e-5)
    assert losses[0] != pytest.approx(losses[-1], rel=1e-3)  # the steps did change the weights


@pytest.mark.e2e  # torchrun workers
def test_a_failing_rank_fails_the_launch_with_one_line(tmp_path, capfd) -> None:
    code = stage.run_stage("fail", lambda: stage.launch("fail", RT, __file__,
                                                        ["fail", str(tmp_path)]), record=False)
    err = capfd.readouterr().err
    assert code == 2  # the launcher's exit code, as a stage script returns it
    assert err.count("genduel fail (rank 1 of 2): error: a planted failure on rank 1\n") == 1
    assert err.count("genduel fail: error: rank 1 of 2 failed with exit code 2 ") == 1
    assert "Traceback" not in err  # rank 0, stopped by torchrun or by its lost peer: one line


@pytest.mark.e2e  # torchrun workers
def test_a_rank_killed_by_a_signal_is_named_with_it(tmp_path, capfd) -> None:
    code = stage.run_stage("kill", lambda: stage.launch("kill", RT, __file__,
                                                        ["kill", str(tmp_path)]), record=False)
    err = capfd.readouterr().err
    assert code == 2
    assert err.count("genduel kill: error: rank 1 of 2 was killed by signal 9 (SIGKILL): out of "
                     "memory (the kernel's OOM killer) or killed by hand, so it printed no "
                     "error; every rank was stopped\n") == 1, err
    assert "its error is above" not in err and "Traceback" not in err


@pytest.mark.parametrize(("exitcode", "line"), [
    (2, "rank 1 of 4 failed with exit code 2 (its error is above); every rank was stopped"),
    (-9, "rank 1 of 4 was killed by signal 9 (SIGKILL): out of memory (the kernel's OOM "
         "killer) or killed by hand, so it printed no error; every rank was stopped"),
    (-11, "rank 1 of 4 was killed by signal 11 (SIGSEGV): a crash in native code, so it "
          "printed no error; every rank was stopped"),
    (-99, "rank 1 of 4 was killed by signal 99, so it printed no error; every rank was stopped"),
])
def test_the_launcher_line_says_how_a_rank_ended(exitcode, line) -> None:
    assert stage.rank_failure(1, 4, exitcode) == line


# ----------------------------------------------------------------- the stage launcher
@pytest.mark.e2e  # torchrun workers
def test_a_stage_with_two_processes_relaunches_itself_under_torchrun(tmp_path) -> None:
    """``python pipeline/train_vae.py --seed 1`` (dvc.yaml's train_vae@1) with
    runtime.nproc_per_node = 2: one checkpoint, one MLflow stage run with world_size 2 and the
    seed (vae.seed + 1) that every worker trained with, the run record naming it."""
    from mlflow import MlflowClient

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"].update({**dataclasses.asdict(RT), "seeds": [0, 1]})
    params["vae"].update({k: v for k, v in dataclasses.asdict(VAE_CFG).items()
                          if k in ("latent_dim", "width", "batch_size", "epochs", "log_every",
                                   "grid_images")})
    params["judge"]["batch_size"] = params["gan"]["batch_size"] = 16
    params["tracking"].update({"uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                               "log_models": False, "experiment": "ddp"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    raw, g = tmp_path / "raw", torch.Generator().manual_seed(0)
    raw.mkdir()
    for prefix, n in (("train", 80), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte",
                  torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g).numpy())
        write_idx(raw / f"{prefix}-labels-idx1-ubyte",
                  (torch.arange(n) % 10).to(torch.uint8).numpy())
    prepare(DataConfig(val_size=16, verify_checksums=False, allow_download=False), raw,
            tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    out = subprocess.run([sys.executable, str(ROOT / "pipeline" / "train_vae.py"), "--seed", "1",
                          "--data", "data", "--checkpoint", "models/seeds/1/vae.pt",
                          "--artifacts", "art", "--metrics", "metrics.json",
                          "--runs-dir", "runs/seeds/1"], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "models" / "seeds" / "1").iterdir()) == ["vae.pt"]
    ckpt = torch.load(tmp_path / "models/seeds/1/vae.pt", weights_only=True)
    assert ckpt["step"] == 64 // 16
    run_id = json.loads((tmp_path / "runs/seeds/1/train_vae.json").read_text())["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ddp").experiment_id
    runs = client.search_runs([exp], "tags.`genduel.stage` = 'train_vae'")
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.run_name == "train_vae@1" and runs[0].data.tags["genduel.seed"] == "1"
    assert runs[0].data.params["world_size"] == "2"
    assert runs[0].data.params["runtime.nproc_per_node"] == "2"
    assert runs[0].data.params["vae.seed"] == str(params["vae"]["seed"] + 1)  # the seed's


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], Path(sys.argv[2])))


@pytest.mark.e2e  # torchrun workers
def test_two_processes_resume_from_their_epoch_states(tmp_path) -> None:
    """Each rank saves its own state at an epoch's end; after a crash both resume from it and
    the run ends as the uninterrupted one did (rank 0's checkpoint and CSVs, bit for bit)."""
    stage.launch("resume", RT, __file__, ["resume", str(tmp_path)])
    assert [json.loads((tmp_path / f"resumed{r}.json").read_text()) for r in range(2)] == [4, 4]
    assert sorted(p.name for p in tmp_path.glob("*-state-rank*.pt")) == [
        "cut-state-rank0.pt", "cut-state-rank1.pt", "whole-state-rank0.pt", "whole-state-rank1.pt"]
    for name in ("{}/vae.pt", "{}/history.csv", "{}/epochs.csv"):
        cut, whole = (tmp_path / name.format(n) for n in ("cut", "whole"))
        assert cut.read_bytes() == whole.read_bytes(), name
