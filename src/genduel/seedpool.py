"""Training seeds side by side from one ``dvc repro``: a per-seed training stage that DVC runs
starts the trainings of the next seeds beside its own (``runtime.concurrent_seeds``).

DVC runs one stage at a time, and a stage of these small networks leaves a GPU almost idle
(measured on one H200 for issue 19: the GAN step used 0.2 % of its bf16 peak, and three training
processes side by side ran within ~5 % of their time alone; this module itself has not run on a
GPU yet). So when ``train_vae@0`` runs with ``runtime.concurrent_seeds: 3``, it also starts
``train_vae@1`` and ``train_vae@2``'s commands (dvc.yaml's ``foreach`` command with the seed put
in) as *siblings*: one process each, on the same GPU, or one GPU each where several are visible
(round robin over ``CUDA_VISIBLE_DEVICES``), and waits for them before it ends. A sibling trains
in its own stage's work directory and keeps its finished record
(:meth:`genduel.workdir.Staging.reuse_finished`); when DVC then runs ``train_vae@1``, that stage
finds the record and publishes it without training (its MLflow run is the sibling's). Nothing
about the results changes: a sibling is the very command DVC would run, under the same key.

Which seeds: those after this one in ``runtime.seeds`` whose stage DVC will run
(:func:`stale_seeds`): no entry in ``dvc.lock``, or one whose params or file dependencies differ
from the workspace (folders are not hashed here: a change to the data alone runs those seeds one
after another, as without siblings). A sibling's failure is a warning with its log's path: its
stage, when DVC runs it, continues from the sibling's resume state and reports the error itself.
An interrupted stage stops its siblings (they save their resume states)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genduel.workdir import work_root

log = logging.getLogger(__name__)

#: Set in a sibling's environment: a sibling starts no siblings of its own.
SIBLING_ENV = "GENDUEL_SIBLING"
#: Seconds a stopped sibling gets to save its resume state before it is killed.
STOP_GRACE_S = 60.0


@dataclass
class Sibling:
    """A seed's training started beside this stage."""

    seed: int
    stage: str  # its DVC name, <stage>@<seed>
    process: subprocess.Popen
    log_path: Path


def _lookup(raw: Mapping[str, Any], dotted: str) -> Any:
    value: Any = raw
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _md5(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "md5").hexdigest()
    except OSError:
        return None


def stale_seeds(stage: str, seeds: Sequence[int], current: int, raw_params: Mapping[str, Any],
                lock: Path = Path("dvc.lock")) -> list[int]:
    """The other seeds of ``seeds`` whose ``<stage>@<seed>`` DVC will run, those after
    ``current`` first: not in ``lock``, or recorded with params or file dependencies (md5) that
    are not the workspace's now. Folder dependencies are not compared (see the module's doc)."""
    import yaml

    try:
        recorded = (yaml.safe_load(lock.read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        recorded = {}
    order = list(seeds)
    i = order.index(current) if current in order else len(order)
    # the next seeds first, then the earlier ones: DVC need not run a group in list order (a
    # partial `dvc repro train_vae` walks its stages in set order)
    others = order[i + 1:] + order[:i]
    stale = []
    for seed in others:
        entry = recorded.get(f"{stage}@{seed}")
        if not isinstance(entry, dict):
            stale.append(seed)
            continue
        params = (entry.get("params") or {}).get("params.yaml") or {}
        if any(_lookup(raw_params, key) != value for key, value in params.items()):
            stale.append(seed)
            continue
        files = [d for d in entry.get("deps") or [] if isinstance(d, dict)
                 and d.get("md5") and not str(d["md5"]).endswith(".dir")]
        if any(_md5(Path(d["path"])) != d["md5"] for d in files):
            stale.append(seed)
    return stale


def sibling_command(stage: str, seed: int, dvc_yaml: Path = Path("dvc.yaml")
                    ) -> tuple[dict[str, str], list[str]]:
    """The environment assignments and argv of ``<stage>@<seed>``: dvc.yaml's ``foreach``
    command of ``stage`` with ``${item}`` = ``seed`` and ``python`` = this interpreter."""
    import yaml

    spec = yaml.safe_load(dvc_yaml.read_text())["stages"][stage]
    tokens = shlex.split(" ".join(str(spec["do"]["cmd"]).replace("${item}", str(seed)).split()))
    env = {}
    while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    if tokens and tokens[0] in ("python", "python3"):
        tokens[0] = sys.executable
    return env, tokens


def _devices(env: Mapping[str, str], device_type: str) -> list[str]:
    """The CUDA devices a sibling may get (round robin), [] on the CPU."""
    if device_type != "cuda":
        return []
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d for d in visible.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def cpu_threads(processes: int, cores: int | None = None) -> int:
    """Torch threads per process when ``processes`` trainings share the CPU's cores."""
    return max(1, (cores or os.cpu_count() or 1) // processes)


def start(stage: str, seeds: Sequence[int], device_type: str,
          threads: int = 0) -> list[Sibling]:
    """Start one sibling per seed of ``seeds`` (each ``<stage>@<seed>``'s command); the i-th
    gets the (i + 1)-th visible GPU, modulo their number (this stage keeps the first). On the
    CPU each sibling gets ``threads`` torch threads (``OMP_NUM_THREADS``; 0 = its default)."""
    devices = _devices(os.environ, device_type)
    out = []
    for i, seed in enumerate(seeds):
        name = f"{stage}@{seed}"
        assigned, argv = sibling_command(stage, seed)
        env = {**os.environ, **assigned, "DVC_STAGE": name, SIBLING_ENV: "1"}
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[(i + 1) % len(devices)]
        elif threads:
            env["OMP_NUM_THREADS"] = str(threads)
        root = work_root()
        root.mkdir(parents=True, exist_ok=True)
        log_path = root / f"{name}.sibling.log"
        with open(log_path, "wb") as fh:
            process = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        log.info("%s: training seed %d beside this one (pid %d%s; log %s)", stage, seed,
                 process.pid, f", GPU {env['CUDA_VISIBLE_DEVICES']}" if devices else "",
                 log_path)
        out.append(Sibling(seed, name, process, log_path))
    return out


def stop(siblings: Sequence[Sibling]) -> None:
    """SIGTERM each running sibling (it saves its resume state), SIGKILL after
    :data:`STOP_GRACE_S`."""
    for s in siblings:
        if s.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                s.process.send_signal(signal.SIGTERM)
    for s in siblings:
        try:
            s.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait()


def wait(siblings: Sequence[Sibling]) -> dict[int, int]:
    """Wait for every sibling; their exit codes by seed. A failed one is a warning naming its
    log (its stage, when DVC runs it, continues from its resume state and says why)."""
    codes = {}
    for s in siblings:
        codes[s.seed] = s.process.wait()
        if codes[s.seed] == 0:
            log.info("%s finished beside this stage: DVC's run of it publishes its outputs",
                     s.stage)
        else:
            tail = s.log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            log.warning("%s, trained beside this stage, failed with exit code %d (%s; log %s); "
                        "DVC runs it again in its turn", s.stage, codes[s.seed], tail[0],
                        s.log_path)
    return codes


@contextlib.contextmanager
def beside(stage: str, seed: int | None, seeds: Sequence[int], concurrent: int,
           device_type: str, raw_params: Mapping[str, Any], *, distributed: bool = False,
           num_threads: int = 0,
           env: Mapping[str, str] | None = None) -> Iterator[list[Sibling]]:
    """Around a per-seed training stage: start up to ``concurrent - 1`` siblings for the next
    stale seeds (:func:`stale_seeds`), yield them, and wait for them when the block ends; stop
    them when it is interrupted or fails. Nothing starts for a stage that is not per seed, not
    run by DVC, itself a sibling, data-parallel, or with ``concurrent`` 1."""
    env = os.environ if env is None else env
    if (seed is None or concurrent <= 1 or distributed or not env.get("DVC_STAGE")
            or env.get(SIBLING_ENV)):
        yield []
        return
    todo = stale_seeds(stage, seeds, seed, raw_params)[:concurrent - 1]
    threads = 0
    if todo and device_type == "cpu" and not num_threads:
        # torch's default is every core per process: N processes would spin against each
        # other (measured: x3-6 slower on 2 cores). They share the cores instead, this one too.
        import torch

        threads = cpu_threads(len(todo) + 1)
        torch.set_num_threads(threads)
    siblings = start(stage, todo, device_type, threads) if todo else []
    try:
        yield siblings
    except BaseException:
        stop(siblings)
        raise
    wait(siblings)
