"""The stage runner: what every ``pipeline/*.py`` script shares.

:func:`run_stage` gives a stage its logging, its wall-time record and its one-line errors;
:func:`run_training` is the common body of the three training stages (judge, train_vae,
train_gan): validate params, seed, pick the device, open the MLflow run (params under their
section's names and under the shared names of :data:`SHARED_PARAMS`, the data splits as inputs),
log the final model with an example of its call, and write the metrics JSON with the run id.

Data-parallel training: :func:`launch_training` starts a training stage. Launched plainly with
``runtime.nproc_per_node * runtime.nnodes > 1``, it re-launches the same script under
torchrun's launcher (:func:`torch.distributed.launcher.api.elastic_launch`, what
``python -m torch.distributed.run`` calls) and waits; each worker (or a worker that a user
started with ``torchrun`` directly) finds its rank in the environment, joins the process group
and trains its shard; rank 0 alone opens the MLflow run (with ``world_size``) and writes the
metrics JSON. A rank that fails ends every rank (torchrun stops them) and the launch with one
line naming the rank, after that rank's own error line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from genduel import config, interrupts, provenance, runtime, seedpool, timings, workdir
from genduel.checkpoint import load_checkpoint, rebuild
from genduel.data.pixels import to_model_range
from genduel.data.splits import load_split
from genduel.errors import ConfigError, GenDuelError, TrainingError
from genduel.io import atomic_write, read_json, write_json
from genduel.tracking.base import ModelExample, Tracker, dataset_refs
from genduel.tracking.mlflow_store import stage_run
from genduel.train.resume import Resume

log = logging.getLogger("genduel")

#: Params the model sections share, logged also under one name (``model.*``, ``train.*``) so that
#: MLflow's compare view puts the judge, the VAE and the GAN on one row: shared name -> field of
#: each section. The GAN's ``train.lr`` is the generator's (``lr_g``), the model it logs.
SHARED_PARAMS = {
    "model.latent_dim": {"vae": "latent_dim", "gan": "latent_dim"},
    "model.width": {"judge": "width", "vae": "width", "gan": "width"},
    "model.conditional": {"vae": "conditional", "gan": "conditional"},
    "train.epochs": {s: "epochs" for s in ("judge", "vae", "gan")},
    "train.batch_size": {s: "batch_size" for s in ("judge", "vae", "gan")},
    "train.lr": {"judge": "lr", "vae": "lr", "gan": "lr_g"},
    "train.seed": {s: "seed" for s in ("judge", "vae", "gan")},
    "train.log_every": {s: "log_every" for s in ("judge", "vae", "gan")},
}
#: Seconds a rank that lost a peer waits before it exits (torchrun then names the failed rank).
PEER_LOST_PAUSE_S = 5.0
#: Examples in a logged model's input example.
EXAMPLE_BATCH = 4


def setup_logging() -> None:
    level = os.environ.get("GENDUEL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "PIL", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(name: str, body: Callable[[], None], *,
              world: runtime.World = runtime.ONE_PROCESS, record: bool = True,
              resumable: bool = False) -> int:
    """Run a stage body; return the process exit code.

    ``GenDuelError`` becomes one line on stderr (``genduel <stage>: error: ...``, with the rank
    in a data-parallel ``world``) and exit code 2; SIGINT (Ctrl-C) and SIGTERM become one line
    and exit code 130 / 143 (:mod:`genduel.interrupts`) saying what a re-run does
    (:func:`interrupted_line`; ``resumable``: the body saves a resume state, as the training
    stages do). Stages stage their outputs (:mod:`genduel.workdir`), so a failure leaves the
    previous ones as they were. Ranks other than 0 log warnings only; the wall time is
    recorded when ``record`` (by rank 0 alone).
    """
    setup_logging()
    who = f"{name} (rank {world.rank} of {world.size})" if world.distributed else name
    if not world.is_main:
        logging.getLogger("genduel").setLevel(logging.WARNING)
    start = time.perf_counter()
    interrupts.install()
    try:
        # Log lines print above the progress bars instead of through them.
        with logging_redirect_tqdm():
            body()
    except GenDuelError as exc:
        sys.stderr.write(f"genduel {who}: error: {exc}\n")  # the one line a user reads
        return 2
    except RuntimeError as exc:
        if not (world.distributed and _peer_lost(exc)):
            raise
        # Another rank ended (its own error line says why): one line here, not a traceback,
        # after a pause that lets torchrun see that rank's exit first and name it.
        sys.stderr.write(f"genduel {who}: stopped: another rank failed "
                         f"({type(exc).__name__} in a collective)\n")
        with contextlib.suppress(KeyboardInterrupt):  # torchrun's SIGTERM ends the pause
            time.sleep(PEER_LOST_PAUSE_S)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGINT/SIGTERM as Interrupted
        signum = getattr(exc, "signum", signal.SIGINT)
        sys.stderr.write(f"genduel {who}: {interrupted_line(name, signum, resumable)}\n")
        return 128 + signum
    seconds = time.perf_counter() - start
    log.info("stage %s finished in %.1f s", name, seconds)
    if record and world.is_main:
        timings.record(name, seconds)
    return 0


def interrupted_line(name: str, signum: int, resumable: bool) -> str:
    """What an interrupted stage says: its outputs are as they were before it started (it
    publishes only when it succeeds), and what running it again does."""
    again = ("it continues from its saved state when run again" if resumable else
             f"{name} starts over when run again (it keeps no partial work)")
    return f"interrupted by {signal.Signals(signum).name}; its outputs are unchanged, {again}"


def _peer_lost(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a collective that failed because another rank went away."""
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        s in text for s in ("closed by peer", "reset by peer", "Connection refused"))


def launch_training(name: str, script: str | Path, argv: Sequence[str] | None,
                    body: Callable[[], None]) -> int:
    """A training stage's exit code: :func:`run_stage` of ``body`` in this process, or, when
    started plainly and ``params.yaml`` asks for more than one process, ``script argv`` under
    torchrun (:func:`launch`).

    Args:
        name: the stage.
        script: the stage script (``__file__`` of ``pipeline/<stage>.py``).
        argv: its arguments (None = ``sys.argv[1:]``), passed on to every worker.
        body: the stage body (:func:`run_training`).
    """
    world = runtime.world_from_env(os.environ)
    if world is not None:  # a torchrun worker
        return run_stage(name, body, world=world, resumable=True)
    try:
        rt = config.load_all()["runtime"]
    except GenDuelError:
        rt = None  # the body fails on it too, with its one line
    if rt is None or rt.world_size == 1:
        return run_stage(name, body, resumable=True)
    args = list(sys.argv[1:] if argv is None else argv)
    return run_stage(name, lambda: launch(name, rt, script, args), record=False,
                     resumable=True)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the one-node rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(name: str, rt: config.RuntimeConfig, script: str | Path, args: Sequence[str]) -> None:
    """Run ``python script args`` in ``rt.nproc_per_node`` workers on this node, as
    ``python -m torch.distributed.run`` would, and wait for all of them.

    One node: c10d rendezvous on ``rt.rdzv_endpoint`` or, when empty, 127.0.0.1 with a free
    port. Several nodes: static rendezvous at ``rt.rdzv_endpoint`` (node 0's host:port), so that
    node ``rt.node_rank`` holds the global ranks ``node_rank * nproc_per_node ...``, and node 0
    rank 0, the writer. No restarts: a failed worker fails the stage.

    Raises:
        TrainingError: a worker failed; names the first failed rank and its exit code (its own
            error line is already on stderr), or the signal that killed it
            (:func:`rank_failure`).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    static = rt.nnodes > 1
    endpoint = rt.rdzv_endpoint or f"127.0.0.1:{free_port()}"
    launch_cfg = LaunchConfig(
        min_nodes=rt.nnodes, max_nodes=rt.nnodes, nproc_per_node=rt.nproc_per_node,
        run_id=f"genduel-{name}", rdzv_endpoint=endpoint,
        rdzv_backend="static" if static else "c10d",
        rdzv_configs={"rank": rt.node_rank} if static else {}, max_restarts=0)
    log.info("%s: %d training processes (%d per node, node %d of %d), rendezvous at %s", name,
             rt.world_size, rt.nproc_per_node, rt.node_rank, rt.nnodes, endpoint)
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # its multi-line failure report: ours is one line
    try:
        elastic_launch(launch_cfg, sys.executable)(str(script), *args)
    except ChildFailedError as exc:
        # The rank with a GenDuelError (exit code 2) first, then one killed by a signal: the
        # others only lost their peer (and may have noticed it before the killed one's end was).
        rank, failure = min(exc.failures.items(),
                            key=lambda kv: (_failure_order(kv[1].exitcode), kv[1].timestamp,
                                            kv[0]))
        raise TrainingError(rank_failure(rank, rt.world_size, failure.exitcode)) from None
    finally:
        elastic.setLevel(level)


#: Why a process may have been killed by a signal it did not choose.
_SIGNAL_CAUSES = {signal.SIGKILL: "out of memory (the kernel's OOM killer) or killed by hand",
                  signal.SIGSEGV: "a crash in native code", signal.SIGBUS: "a crash in native code",
                  signal.SIGTERM: "stopped by another process", signal.SIGINT: "Ctrl-C"}


def _failure_order(exitcode: int) -> int:
    """Which failed rank the launcher names: 0 for a GenDuelError (exit code 2), 1 for a rank
    ended by a signal (negative), 2 for the others (a rank that lost its peer exits with 1)."""
    return 0 if exitcode == 2 else 1 if exitcode < 0 else 2


def rank_failure(rank: int, world_size: int, exitcode: int) -> str:
    """The launcher's line for the failed ``rank``: its exit code, whose error line the rank
    printed above; or, for a negative ``exitcode`` (torchrun's report of a process ended by
    signal ``-exitcode``), that signal: a process killed so prints nothing itself."""
    if exitcode >= 0:
        return (f"rank {rank} of {world_size} failed with exit code {exitcode} (its error is "
                "above); every rank was stopped")
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        name, cause = f"signal {-exitcode}", ""
    else:
        name, cause = f"signal {sig.value} ({sig.name})", _SIGNAL_CAUSES.get(sig, "")
    return (f"rank {rank} of {world_size} was killed by {name}{': ' + cause if cause else ''}, "
            "so it printed no error; every rank was stopped")


@dataclass(frozen=True)
class StageContext:
    """What a training function gets from its stage."""

    params: dict[str, Any]  # every params.yaml section, validated
    device: torch.device
    amp: bool
    tracker: Tracker  # a NullTracker on ranks other than 0
    world: runtime.World = runtime.ONE_PROCESS
    checkpoint: Path = Path("model.pt")  # where to write the checkpoint (staged)
    artifacts: Path | None = None  # where to write the artifacts folder (staged)
    resume: Resume = field(default_factory=lambda: Resume(None))


def shared_params(section: str, cfg: Any) -> dict[str, Any]:
    """The :data:`SHARED_PARAMS` of one model section's config."""
    return {name: getattr(cfg, fields[section]) for name, fields in SHARED_PARAMS.items()
            if section in fields}


def model_example(model: torch.nn.Module, part: str, data: Path) -> ModelExample:
    """How ``part`` is called, on :data:`EXAMPLE_BATCH` inputs: the judge on validation images,
    the VAE and the generator on latents ``z ~ N(0, I)`` (seed 0), with labels 0, 1, ... when
    conditional."""
    n, gen = EXAMPLE_BATCH, torch.Generator().manual_seed(0)
    with runtime.eval_mode(model):
        if part == "judge":
            x = to_model_range(load_split(data, "val").images[:n])  # (n, C, H, W)
            return ModelExample("model(images).logits", {"images": x},
                                {"logits": model(x).logits})
        inputs = {"z": torch.randn(n, model.latent_dim, generator=gen)}  # (n, latent_dim)
        if model.conditional:
            inputs["y"] = torch.arange(n) % model.num_classes  # (n,)
        args = ", ".join(inputs)
        if part == "vae":
            return ModelExample(f"model.image({args})", inputs,
                                {"images": model.image(*inputs.values())})
        return ModelExample(f"model({args})", inputs, {"images": model(*inputs.values())})


#: Summary values that change from run to run with identical results: they go to the run
#: record (runs/<stage>.json), not to the metrics file that later stages depend on.
VOLATILE = ("train_seconds", "train_images_per_s")
#: Runtime params that do not change what a training stage computes (left out of its resume key).
NOT_IN_KEY = ("checkpoint_every_s", "seeds", "concurrent_seeds")  # a stage's own seed is in
# its section; how many seeds train at once changes no result


def seeded_name(stage: str, seed: int | None) -> str:
    """The DVC name of ``stage`` for training seed ``seed``: ``train_vae@1`` (dvc.yaml's
    ``foreach`` over ``runtime.seeds``), or ``stage`` itself when it is not per seed."""
    return stage if seed is None else f"{stage}@{seed}"


def resume_key(stage: str, params: dict[str, Any], section: str,
               inputs: Sequence[Path]) -> str:
    """The key of a training stage's work directory: its params (runtime and its section), its
    input files and the code (:func:`genduel.workdir.stage_key`)."""
    rt = {k: v for k, v in dataclasses.asdict(params["runtime"]).items() if k not in NOT_IN_KEY}
    return workdir.stage_key(stage, {"runtime": rt, section: dataclasses.asdict(params[section])},
                             inputs)


def run_training(stage: str, section: str, *, data: Path, splits: tuple[str, ...],
                 checkpoint: Path, metrics: Path, kind: str, part: str,
                 build: Callable[[dict[str, Any]], torch.nn.Module],
                 train: Callable[[StageContext], dict[str, float]],
                 artifacts: Path | None = None, inputs: Sequence[Path] = (),
                 runs_dir: Path = provenance.RUNS_DIR,
                 seed: int | None = None) -> dict[str, float]:
    """Train one model under a tracked MLflow run; publish its outputs when it succeeds.

    Args:
        stage: DVC stage name (also the MLflow run name).
        section: the params.yaml section of the model (``judge``, ``vae``, ``gan``).
        data: the prepared splits; ``splits``: those the training reads (the run's inputs).
        checkpoint: the model file; the final model is rebuilt from it and logged to MLflow as
            ``part``, which proves the file alone rebuilds the model.
        metrics: the metrics JSON (results only: what is volatile goes to ``runs/<stage>.json``).
        kind: the checkpoint's ``kind``.
        part: the network of the checkpoint to log (``judge``, ``vae``, ``generator``).
        build: that model's builder (``model_config`` -> untrained network).
        train: the library training function, given a :class:`StageContext` whose
            ``checkpoint``/``artifacts`` are where to write and whose ``resume`` to use.
        artifacts: the stage's artifacts folder, if it has one.
        inputs: files besides ``data`` that the result depends on (the GAN's init weights).
        runs_dir: where the run record ``<stage>.json`` goes (:mod:`genduel.provenance`).
        seed: the training seed (one of ``runtime.seeds``) of a per-seed stage: the section's
            seed is offset by it (:func:`genduel.config.for_seed`), the work directory, the
            ``dvc.lock`` entry and the MLflow run are ``<stage>@<seed>``'s, and the run carries
            the seed as a param and a tag; None for the judge (trained once).

    Outputs are staged (:mod:`genduel.workdir`) in a work directory keyed by the params, the
    inputs and the code, and moved into place at the end: an error, a signal or a kill leaves
    the previous outputs as they were and the work directory with the resume state, from which
    a re-run with the same key continues (and continues the same MLflow run). Under DVC the
    work directory keeps a finished record of the published outputs, so that a kill after they
    were published but before DVC recorded them costs no training: the next run of the same key
    publishes them again (no MLflow run: the finished one stands).

    With ``runtime.concurrent_seeds`` > 1, a per-seed stage that DVC runs also trains the next
    seeds whose stages DVC will run, side by side (:mod:`genduel.seedpool`); their stages then
    publish what was trained.

    In a torchrun worker every rank trains; rank 0 alone opens the MLflow run (param
    ``world_size``), logs the model and writes the outputs. The global RNGs are seeded per rank
    (:meth:`~genduel.runtime.World.seed`: rank 0 with the section's seed), so dropout masks
    differ between ranks; weights are rank 0's (DistributedDataParallel broadcasts them).
    """
    world = runtime.world_from_env(os.environ) or runtime.ONE_PROCESS
    params = config.load_all()
    if seed is not None:
        params = config.for_seed(params, seed)
    name, stage = stage, seeded_name(stage, seed)  # the script's name, the DVC stage's
    cfg, rt = params[section], params["runtime"]
    if cfg.batch_size % world.size:
        raise ConfigError(f"params.yaml: {section}.batch_size = {cfg.batch_size} is the global "
                          f"batch and must divide by the {world.size} training processes")
    runtime.seed_everything(world.seed(cfg.seed))
    key = resume_key(stage, params, section, [data, *inputs])
    record = Path(runs_dir) / f"{name}.json"
    finals = [checkpoint, metrics, record,
              *([artifacts] if artifacts is not None else [])]
    device = runtime.init_world(world, rt)
    under_dvc = bool(os.environ.get("DVC_STAGE"))  # DVC records the outputs after we exit
    try:
        with (seedpool.beside(name, seed, rt.seeds, rt.concurrent_seeds, device.type,
                              config.read_params(), distributed=world.distributed,
                              num_threads=rt.num_threads),
              workdir.staged(stage, finals, key=key, keep_on_error=True, owner=world.is_main,
                             finished=under_dvc) as out):
            if _finished_before(stage, out, world, device, under_dvc):
                return read_json(out.path(metrics), "a bug: please report it") \
                    if world.is_main else {}
            resume = Resume(out.root / "resume" / "state.pt", rt.checkpoint_every_s, world)
            ctx = StageContext(params, device, rt.amp, runtime.NullTracker(), world,
                               out.path(checkpoint),
                               None if artifacts is None else out.path(artifacts), resume)
            if not world.is_main:
                summary = train(ctx)
            else:
                summary = _train_tracked(name, section, ctx, out, data=data, splits=splits,
                                         metrics=metrics, record=record, kind=kind, part=part,
                                         build=build, train=train, seed=seed)
            if not world.is_main:  # rank 0's state goes with its work directory, once published
                resume.remove()
        return summary
    finally:
        runtime.close_world(world)


def _finished_before(stage: str, out: workdir.Staging, world: runtime.World,
                     device: torch.device, under_dvc: bool) -> bool:
    """Whether rank 0 staged the outputs of a finished run of this key again (its work
    directory's finished record, :meth:`~genduel.workdir.Staging.reuse_finished`): a kill
    landed after it published them, before DVC recorded them. Every rank gets the answer."""
    reused = world.is_main and under_dvc and out.reuse_finished(stage)
    if world.distributed:
        reused = runtime.all_mean({"reused": float(reused)}, world, device)["reused"] > 0
    if reused:
        log.info("%s was trained with these params, inputs and code already (beside another "
                 "seed's stage, runtime.concurrent_seeds, or before a kill) and DVC has not "
                 "recorded it: publishing those outputs instead of training", stage)
    return reused


def _train_tracked(stage: str, section: str, ctx: StageContext, out: workdir.Staging, *,
                   data: Path, splits: tuple[str, ...], metrics: Path, record: Path, kind: str,
                   part: str,
                   build: Callable[[dict[str, Any]], torch.nn.Module],
                   train: Callable[[StageContext], dict[str, float]],
                   seed: int | None = None) -> dict[str, float]:
    """The body of :func:`run_training` on rank 0: the MLflow run around ``train``, continuing
    the interrupted run's when the work directory holds a resume state and its run id."""
    params, world = ctx.params, ctx.world
    cfg = params[section]
    logged = {**config.flat_params(params, "runtime", "data", section),
              **shared_params(section, cfg), "world_size": world.size,
              **({} if seed is None else {"seed": seed})}
    run_id_file = out.root / "mlflow_run_id"
    previous = (run_id_file.read_text().strip() or None
                if ctx.resume.path is not None and ctx.resume.path.exists()
                and run_id_file.exists() else None)
    with stage_run(stage, params["tracking"], logged, resume_run_id=previous,
                   seed=seed) as tracker:
        atomic_write(run_id_file, tracker.run_id.encode())
        tracker.log_inputs(dataset_refs(data, splits))
        summary = train(dataclasses.replace(ctx, tracker=tracker))
        steps = int(summary.get("steps", 0))
        tracker.log_metrics(summary, step=steps)  # the last epoch's point, where it has history
        model = rebuild(load_checkpoint(ctx.checkpoint, kind), part, build)
        tracker.log_model(model, part, model_example(model, part, data), step=steps)
        results = {k: v for k, v in summary.items() if k not in VOLATILE}
        write_json(out.path(metrics), results)
        provenance.write_run_record(
            stage, {**{k: v for k, v in summary.items() if k in VOLATILE},
                    "mlflow_run_id": tracker.run_id, "resumed_from_step": ctx.resume.resumed_step},
            runs_dir=out.path(record).parent)
    return summary
