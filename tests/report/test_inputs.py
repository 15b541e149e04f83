"""The report's one loader: numbers merged with their details, optional inputs checked."""

from __future__ import annotations

import json

import pytest

from genduel.errors import DataError
from genduel.evaluate.run import split_details
from genduel.report.inputs import PROTOCOL_KEYS, ROWS, load_inputs


def test_study_index_entries_must_point_at_files(tmp_path, fake_run):
    fake_run(tmp_path, extras=False)
    dirs = (tmp_path / "metrics", tmp_path / "data", "t", tmp_path / "eval")
    (tmp_path / "eval" / "studies").mkdir()
    (tmp_path / "eval" / "studies" / "index.json").write_text(json.dumps(
        {"figures": [{"file": "missing.png", "title": "t", "caption": "c"}]}))
    with pytest.raises(DataError, match="missing.png"):
        load_inputs(*dirs, commit="c")
    (tmp_path / "eval" / "studies" / "index.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="index"):
        load_inputs(*dirs, commit="c")


def test_load_inputs_merges_the_numbers_with_their_protocol_details(tmp_path):
    protocol = {**dict.fromkeys(PROTOCOL_KEYS, "x"), "draws": 3}
    row = {"fid": 3.5, "classes_covered": 10, "protocol": protocol,
           "model_params": {"loss": "minimax"}}
    numbers, details = split_details(row)
    assert numbers == {"fid": 3.5, "classes_covered": 10}
    assert details == {"protocol": protocol, "model_params": {"loss": "minimax"}}
    metrics, ev, data = tmp_path / "metrics", tmp_path / "eval", tmp_path / "data"
    for d in (metrics, ev, data):
        d.mkdir()
    for m in ROWS:
        (metrics / f"eval_{m}.json").write_text(json.dumps(numbers))
        (ev / f"details_{m}.json").write_text(json.dumps(details))
    for name in ("judge", "train_vae", "train_gan"):
        (metrics / f"{name}.json").write_text("{}")
    (metrics / "fit_prior.json").write_text(json.dumps({"components": 10}))
    (data / "manifest.json").write_text("{}")
    inp = load_inputs(metrics, data, "t", ev, commit="c")
    assert inp.evals["gan"] == row
    assert load_inputs(metrics, data, "t", commit="c").evals["gan"] == numbers
