"""The fault battery for the training stages (judge, train_vae, train_gan): bad inputs, a full
disk, divergence and a broken tracking store each end the stage with exit code 2 and one line,
and leave every output of the pipeline byte-identical (training writes to its work directory and
publishes only when it succeeds). The cases for the other stages are in tests/test_faults.py."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _load(name: str, file: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / file)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


FAULTS = _load("genduel_faults_fixture", "faults_fixture.py")
BATTERY = _load("genduel_test_faults", "test_faults.py")  # its damage helpers
tiny_pipeline, fresh_repo = FAULTS.tiny_pipeline, FAULTS.fresh_repo


def params(**sections: dict) -> Callable[[Path], None]:
    return lambda repo: FAULTS.set_params(repo, **sections)


CASES = [  # (id, stage, damage, what the one line must say)
    ("gan-diverges", "train_gan", params(gan={"lr_d": 1e6, "lr_g": 1e6, "max_loss": 100.0}),
     "gan diverged"),
    ("vae-bound", "train_vae", params(vae={"max_loss": 1.0}), "vae diverged: loss"),
    ("judge-bound", "judge", params(judge={"max_loss": 0.01}), "judge diverged: loss"),
    ("vae-train-split-truncated", "train_vae", BATTERY.truncate("data/prepared/train.pt"),
     "data/prepared/train.pt"),
    ("judge-val-split-missing", "judge", BATTERY.delete("data/prepared/val.pt"),
     "data/prepared/val.pt"),
    ("gan-init-truncated", "train_gan", BATTERY.truncate(f"{FAULTS.MODELS}/gan_init.pt"),
     f"{FAULTS.MODELS}/gan_init.pt"),
    ("vae-nan-param", "train_vae", params(vae={"beta": float("nan")}), "not a finite number"),
    ("judge-disk-full", "judge", None, "no space left on device"),
    ("gan-mlflow-db-garbage", "train_gan",
     lambda repo: (repo / "mlflow.db").write_bytes(b"this is not sqlite" * 100), "mlflow.db"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_training_fault_is_one_line_and_leaves_every_output(case, fresh_repo, monkeypatch):
    _, stage, damage, says = case
    if damage is None:
        BATTERY.disk_full(monkeypatch)
    else:
        damage(fresh_repo)
    before = FAULTS.snapshot(fresh_repo)
    code, err = FAULTS.run_stage_in(fresh_repo, stage)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2, err[-3000:]
    # train_vae@0: a per-seed stage speaks under its DVC name, the judge under its own
    assert len(lines) == 1 and lines[0].startswith(
        f"genduel {FAULTS.stage_name(stage)}: error: "), err[-3000:]
    assert says in lines[0] and "Traceback" not in err
    assert FAULTS.snapshot(fresh_repo) == before  # the trained model and all else: untouched
