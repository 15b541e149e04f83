"""The report's one loader: numbers merged with their details, optional inputs checked."""

from __future__ import annotations

import json
import math

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


def _seeded_repo(tmp_path, fake_run, seeds=(0, 3), gan_fids=(20.0, 24.0)):
    """The fixture run's files laid out per training seed, as dvc.yaml's foreach stages write
    them (metrics/seeds/<s>/, eval/seeds/<s>/, artifacts/seeds/<s>/), the GAN's FID per seed."""
    import shutil

    flat, repo = tmp_path / "flat", tmp_path / "repo"
    fake_run(flat, extras=True)
    shutil.copytree(flat / "data", repo / "data")
    (repo / "metrics").mkdir(parents=True)
    shutil.copy(flat / "metrics" / "judge.json", repo / "metrics" / "judge.json")
    for seed, fid in zip(seeds, gan_fids, strict=True):
        for part in ("eval", "artifacts"):
            shutil.copytree(flat / part, repo / part / "seeds" / str(seed))
        shutil.copytree(flat / "metrics", repo / "metrics" / "seeds" / str(seed),
                        ignore=shutil.ignore_patterns("judge.json"))
        gan = repo / "metrics" / "seeds" / str(seed) / "eval_gan.json"
        gan.write_text(json.dumps({**json.loads(gan.read_text()), "fid": fid}))
    return repo


def test_seeded_inputs_gather_the_model_rows_and_keep_the_first_seeds_files(tmp_path, fake_run):
    from genduel.report.inputs import load_seeded_inputs
    from genduel.report.verdict import PER_SEED

    repo = _seeded_repo(tmp_path, fake_run)
    inputs, gathered = load_seeded_inputs(
        repo / "metrics", repo / "data", "t", repo / "eval", seeds=(0, 3), commit="c",
        artifacts_dir=repo / "artifacts", runs_dir=repo / "runs")
    gan = gathered["gan"]
    assert gan["seeds"] == 2 and gan["fid"] == pytest.approx(22.0)
    assert gan["fid_std"] == pytest.approx(math.sqrt(8.0))  # std of 20 and 24, ddof 1
    draws = json.loads((repo / "metrics/seeds/0/eval_gan.json").read_text())["fid_std"]
    assert gan["fid_draw_std"] == pytest.approx(draws)  # both seeds have the fixture's
    first_real = json.loads((repo / "metrics/seeds/0/eval_real.json").read_text())
    assert gathered["real"] == first_real  # the baselines do not depend on the seed
    assert inputs.seeds == (0, 3) and inputs.judge == {"test_accuracy": 0.9}
    assert inputs.evals["gan"][PER_SEED]["fid"] == [20.0, 24.0]
    assert inputs.evals["gan"]["fid"] == pytest.approx(22.0)
    assert "model_params" in inputs.evals["gan"]  # the first seed's details, merged
    assert PER_SEED not in gathered["gan"]  # the metrics files hold numbers only
    (repo / "metrics/seeds/3/eval_vae.json").unlink()
    with pytest.raises(DataError, match=r"eval_vae.json.*dvc repro evaluate@3"):
        load_seeded_inputs(repo / "metrics", repo / "data", "t", repo / "eval", seeds=(0, 3),
                           commit="c", artifacts_dir=repo / "artifacts",
                           runs_dir=repo / "runs")


def test_the_report_of_two_seeds_says_so_and_draws_each_seed(tmp_path, fake_run):
    from genduel.report.build import write_report
    from genduel.report.inputs import load_seeded_inputs, seed_dir

    repo = _seeded_repo(tmp_path, fake_run)
    inputs, _ = load_seeded_inputs(
        repo / "metrics", repo / "data", "t", repo / "eval", seeds=(0, 3), commit="c",
        artifacts_dir=repo / "artifacts", runs_dir=repo / "runs")
    path = write_report(inputs, eval_dir=seed_dir(repo / "eval", 0),
                        artifacts_dir=seed_dir(repo / "artifacts", 0), data_dir=repo / "data",
                        out_dir=tmp_path / "reports")
    md = path.read_text()
    assert "(2 training seeds)" in md.split("\n\n")[1]
    assert "no test across seeds is possible" in md
    assert "| FID | GAN | 20, 24 | 22 ± 2.8 |" in md
    assert (tmp_path / "reports" / "figures" / "seeds.png").stat().st_size > 10_000
