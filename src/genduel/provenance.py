"""What a reader needs to reproduce a number: library versions, the machine, the code's commit,
and the run records of ``runs/<stage>.json``.

A *run record* holds what changes from run to run although the results do not: wall times,
throughput, MLflow run ids, the machine. It is a DVC output of its stage (``cache: false``, shown
by ``dvc metrics show``) but no stage depends on it, so a bit-identical rerun of a stage does not
re-run the stages after it. Readers treat it as optional.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from genduel.io import write_json

log = logging.getLogger(__name__)

#: Distributions whose versions every metrics file and the report record.
LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "torchmetrics", "torch-fidelity",
             "scikit-learn", "mlflow", "dvc", "genduel")
#: Where run records live: ``runs/<stage>.json``.
RUNS_DIR = Path("runs")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine and torch build that computed a result: what explains a difference in the last
    bits between two hosts (CPU instruction sets and BLAS/oneDNN kernels, GPU model, CUDA)."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(), "os": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda or "none",
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "gpu": "none",
    }
    if torch.cuda.is_available():
        info["gpu"] = ", ".join(sorted({torch.cuda.get_device_name(i)
                                        for i in range(torch.cuda.device_count())}))
        info["cudnn"] = str(torch.backends.cudnn.version())
    return info


def write_run_record(stage: str, values: dict[str, Any], runs_dir: Path = RUNS_DIR) -> Path:
    """Write ``runs/<stage>.json``: ``values`` plus the host, the machine and the finish time."""
    path = Path(runs_dir) / f"{stage}.json"
    write_json(path, {**values, "host": socket.gethostname(), "machine": machine(),
                      "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return path


def read_run_record(stage: str, runs_dir: Path = RUNS_DIR) -> dict[str, Any]:
    """``runs/<stage>.json`` as a dict; ``{}`` with a warning when it is missing or unreadable
    (a run record is informational: nothing computed depends on it)."""
    path = Path(runs_dir) / f"{stage}.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); its wall times and run ids are not shown. "
                    "Re-run the stage to rewrite it", path, exc.__class__.__name__)
        return {}
    return record if isinstance(record, dict) else {}
