"""dvc.yaml's foreach stages expanded as DVC names and fills them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genduel.dvcyaml import expand, main

ROOT = Path(__file__).resolve().parents[1]


def test_the_pipeline_expands_to_one_stage_per_seed_in_dvcs_order():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"]["seeds"] = [0, 4]
    out = expand(dvc, params)["stages"]
    assert list(out)[:5] == ["validate", "prepare", "judge", "train_vae@0", "train_vae@4"]
    assert list(out)[-3:] == ["evaluate@0", "evaluate@4", "report"]
    cmd = out["train_gan@4"]["cmd"]
    assert "--seed 4" in cmd and "models/seeds/4/gan.pt" in cmd and "${item}" not in cmd
    assert "models/seeds/4/gan_init.pt" in out["train_gan@4"]["deps"]
    assert {"metrics/seeds/4/eval_gan.json": {"cache": False}} in out["evaluate@4"]["metrics"]
    assert out["judge"] == dvc["stages"]["judge"]


def test_a_literal_list_and_bad_references(tmp_path):
    dvc = {"stages": {"s": {"foreach": [1, 2], "do": {"cmd": "echo ${item}"}}}}
    assert expand(dvc, {})["stages"] == {"s@1": {"cmd": "echo 1"}, "s@2": {"cmd": "echo 2"}}
    with pytest.raises(ValueError, match="runtime.nope"):
        expand({"stages": {"s": {"foreach": "${runtime.nope}", "do": {}}}}, {"runtime": {}})
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"s": {"foreach": "${runtime.seeds}", "do": {"cmd": "x ${item}"}}}}))
    (tmp_path / "params.yaml").write_text("runtime:\n  seeds: [3]\n")
    assert main(["--dvc", str(tmp_path / "dvc.yaml"), "--params", str(tmp_path / "params.yaml"),
                 "--in-place"]) == 0
    assert yaml.safe_load((tmp_path / "dvc.yaml").read_text()) == {
        "stages": {"s@3": {"cmd": "x 3"}}}
    assert main(["--dvc", str(tmp_path / "missing.yaml")]) == 2
