"""Seeds trained side by side: which seeds, what command, and the siblings' lifecycle (with a
stand-in stage script; the real pipeline runs them in tests/test_e2e.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from genduel import seedpool

DVC_YAML = {"stages": {"train_vae": {"foreach": "${runtime.seeds}", "do": {
    "cmd": "PYTHONPATH=src FOO=bar python tools/fake.py --seed ${item}\n  --out "
           "models/seeds/${item}/vae.pt"}}}}
PARAMS = {"runtime": {"device": "cpu"}, "vae": {"epochs": 4, "lr": 0.001}}


def _lock(tmp_path: Path, seeds: dict[int, dict]) -> Path:
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        f"train_vae@{s}": entry for s, entry in seeds.items()}}))
    return lock


def _entry(params: dict, deps: list[dict] | None = None) -> dict:
    return {"cmd": "x", "deps": deps or [], "params": {"params.yaml": params}, "outs": []}


def test_stale_seeds_are_the_later_ones_dvc_will_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = tmp_path / "train.py"
    code.write_text("print(1)\n")
    md5 = hashlib.md5(code.read_bytes()).hexdigest()
    same = _entry({"vae": PARAMS["vae"], "runtime.device": "cpu"},
                  [{"path": "train.py", "md5": md5}, {"path": "data", "md5": "abc.dir"}])
    lock = _lock(tmp_path, {0: same, 1: same, 2: same})
    # everything recorded as it is now: nothing to train beside seed 0
    assert seedpool.stale_seeds("train_vae", [0, 1, 2, 3], 0, PARAMS, lock) == [3]
    # the seeds after the current one first, then the earlier ones (DVC may run any first)
    assert seedpool.stale_seeds("train_vae", [3, 0, 1, 2], 1, PARAMS, lock) == [3]
    assert seedpool.stale_seeds("train_vae", [0, 1, 2, 3], 2, PARAMS, lock) == [3]
    changed = {**PARAMS, "vae": {**PARAMS["vae"], "lr": 0.002}}
    assert seedpool.stale_seeds("train_vae", [0, 1, 2], 0, changed, lock) == [1, 2]
    code.write_text("print(2)\n")  # the code changed since seed 1 and 2 were trained
    assert seedpool.stale_seeds("train_vae", [0, 1, 2], 0, PARAMS, lock) == [1, 2]
    assert seedpool.stale_seeds("train_vae", [0, 1], 0, PARAMS, tmp_path / "none") == [1]


def test_a_siblings_command_is_dvc_yamls_with_the_seed_put_in(tmp_path):
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(DVC_YAML))
    env, argv = seedpool.sibling_command("train_vae", 7, path)
    assert env == {"PYTHONPATH": "src", "FOO": "bar"}
    assert argv == [sys.executable, "tools/fake.py", "--seed", "7", "--out",
                    "models/seeds/7/vae.pt"]


def _fake_repo(tmp_path: Path, body: str) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "fake.py").write_text(textwrap.dedent(body))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))


def test_siblings_run_their_stage_under_its_dvc_name_and_are_waited_for(tmp_path, monkeypatch,
                                                                        caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENDUEL_WORK_DIR", str(tmp_path / "work"))
    _fake_repo(tmp_path, """
        import json, os, sys
        seed = sys.argv[sys.argv.index("--seed") + 1]
        os.makedirs("out", exist_ok=True)
        keys = ("DVC_STAGE", "GENDUEL_SIBLING", "FOO", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")
        json.dump({k: os.environ.get(k) for k in keys}, open(f"out/{seed}.json", "w"))
        sys.exit(3 if seed == "2" else 0)
    """)
    monkeypatch.setenv("DVC_STAGE", "train_vae@0")
    caplog.set_level(logging.INFO, "genduel.seedpool")
    with seedpool.beside("train_vae", 0, [0, 1, 2], 3, "cpu", PARAMS) as siblings:
        assert [s.seed for s in siblings] == [1, 2]
    assert all(s.process.returncode is not None for s in siblings)  # waited for
    seen = json.loads((tmp_path / "out" / "1.json").read_text())
    assert seen == {"DVC_STAGE": "train_vae@1", "GENDUEL_SIBLING": "1", "FOO": "bar",
                    "PYTHONPATH": "src", "CUDA_VISIBLE_DEVICES": None}
    assert "train_vae@2, trained beside this stage, failed with exit code 3" in caplog.text


def test_at_most_concurrent_minus_one_siblings_and_none_where_they_do_not_belong(tmp_path,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENDUEL_WORK_DIR", str(tmp_path / "work"))
    _fake_repo(tmp_path, "pass\n")
    dvc = {"DVC_STAGE": "train_vae@0"}
    with seedpool.beside("train_vae", 0, [0, 1, 2, 3], 2, "cpu", PARAMS, env=dvc) as siblings:
        assert [s.seed for s in siblings] == [1]
    for kwargs in ({"concurrent": 1, "env": dvc}, {"concurrent": 3, "env": {}},
                   {"concurrent": 3, "env": {**dvc, seedpool.SIBLING_ENV: "1"}},
                   {"concurrent": 3, "env": dvc, "distributed": True}):
        concurrent = kwargs.pop("concurrent")
        with seedpool.beside("train_vae", 0, [0, 1], concurrent, "cpu", PARAMS,
                             **kwargs) as siblings:
            assert siblings == [], kwargs
    with seedpool.beside("judge", None, [0, 1], 3, "cpu", PARAMS, env=dvc) as siblings:
        assert siblings == []


def test_gpus_are_dealt_round_robin_and_an_error_stops_the_siblings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENDUEL_WORK_DIR", str(tmp_path / "work"))
    _fake_repo(tmp_path, """
        import os, sys, time
        seed = sys.argv[sys.argv.index("--seed") + 1]
        os.makedirs("out", exist_ok=True)
        open(f"out/{seed}.gpu", "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
        time.sleep(0 if seed != "3" else 60)
    """)
    monkeypatch.setenv("DVC_STAGE", "train_vae@0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with pytest.raises(RuntimeError, match="own training failed"):
        with seedpool.beside("train_vae", 0, [0, 1, 2, 3], 4, "cuda", PARAMS) as siblings:
            for s in siblings[:2]:
                s.process.wait()
            raise RuntimeError("own training failed")
    assert [(tmp_path / "out" / f"{s}.gpu").read_text() for s in (1, 2)] == ["5", "4"]
    assert siblings[2].process.returncode is not None  # stopped, not left running


def test_siblings_on_the_cpu_share_the_cores(tmp_path, monkeypatch):
    """torch's default is every core per process; side by side they split them instead."""
    import torch

    assert seedpool.cpu_threads(2, cores=2) == 1 and seedpool.cpu_threads(3, cores=16) == 5
    assert seedpool.cpu_threads(4, cores=2) == 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENDUEL_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _fake_repo(tmp_path, """
        import os, sys
        seed = sys.argv[sys.argv.index("--seed") + 1]
        os.makedirs("out", exist_ok=True)
        open(f"out/{seed}.threads", "w").write(os.environ.get("OMP_NUM_THREADS", "unset"))
    """)
    before = torch.get_num_threads()
    try:
        with seedpool.beside("train_vae", 0, [0, 1], 2, "cpu", PARAMS,
                             env={"DVC_STAGE": "train_vae@0"}):
            assert torch.get_num_threads() == seedpool.cpu_threads(2)
        assert (tmp_path / "out" / "1.threads").read_text() == str(seedpool.cpu_threads(2))
        with seedpool.beside("train_vae", 0, [0, 1], 2, "cpu", PARAMS, num_threads=3,
                             env={"DVC_STAGE": "train_vae@0"}):
            pass  # runtime.num_threads set: each process keeps it
        assert (tmp_path / "out" / "1.threads").read_text() == "unset"
    finally:
        torch.set_num_threads(before)
