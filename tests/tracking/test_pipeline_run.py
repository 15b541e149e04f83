"""The pipeline run: its key, the dirty check, and one parent per run under races and retries."""

from __future__ import annotations

import mlflow
import pytest

from genduel.config import TrackingConfig
from genduel.tracking.mlflow_store import experiment_id, stage_run
from genduel.tracking.pipeline_run import (
    KEY_TAG,
    KIND_TAG,
    LAST_STAGE_TAG,
    PID_TAG,
    describe,
    git_commit,
    open_parent,
    pipeline_key,
)


def _pipeline_writes(root) -> None:
    """What `dvc repro` / `dvc exp run` rewrite between and before stages."""
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (root / "metrics" / "train_vae.json").write_text('{"steps": 4}\n')
    (root / "metrics" / "eval_vae.json").write_text('{"fid": 3.0}\n')  # new, untracked


def test_commit_is_clean_after_the_pipeline_wrote_its_own_files(checkout, git):
    head = git(checkout, "rev-parse", "HEAD")
    assert git_commit(checkout) == head
    _pipeline_writes(checkout)
    (checkout / "params.yaml").write_text("vae:\n  epochs: 5\n")  # dvc exp run -S vae.epochs=5
    assert git_commit(checkout) == head
    (checkout / "src" / "code.py").write_text("X = 2\n")
    assert git_commit(checkout) == head + "-dirty"


def test_commit_outside_a_work_tree_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_key_ignores_pipeline_outputs_and_follows_code_params_and_experiment(checkout):
    key = pipeline_key(checkout, "workspace")
    _pipeline_writes(checkout)
    assert pipeline_key(checkout, "workspace") == key  # stable between the stages of a run
    assert pipeline_key(checkout, "exp-a") != key
    (checkout / "README.md").write_text("# docs, edited while the pipeline runs\n")
    assert pipeline_key(checkout, "workspace") == key  # the stages run the same code
    assert git_commit(checkout).endswith("-dirty")  # but the commit is not what ran
    (checkout / "params.yaml").write_text("vae:\n  epochs: 5\n")
    with_params = pipeline_key(checkout, "workspace")
    assert with_params != key
    (checkout / "src" / "code.py").write_text("X = 2\n")
    assert pipeline_key(checkout, "workspace") not in (key, with_params)


def _parents(client, exp_id):
    return client.search_runs([exp_id], filter_string=f"tags.`{KIND_TAG}` = 'pipeline'")


def test_two_stages_creating_the_parent_at_once_end_under_the_oldest(checkout, tracking,
                                                                     monkeypatch):
    client = mlflow.MlflowClient(tracking.uri)
    exp_id = experiment_id(client, tracking.experiment, checkout, local=True)
    pipeline = describe(checkout, "", "")
    first = open_parent(client, exp_id, pipeline, checkout)
    # The second stage searched before the first one's parent existed: it creates its own.
    from genduel.tracking import pipeline_run

    real = pipeline_run._candidates
    calls = []

    def late(*args):
        calls.append(1)
        return [] if len(calls) == 1 else real(*args)

    monkeypatch.setattr(pipeline_run, "_candidates", late)
    second = open_parent(client, exp_id, pipeline, checkout)
    assert second == first and len(calls) == 2
    assert [r.info.run_id for r in _parents(client, exp_id)] == [first]  # the duplicate deleted
    deleted = client.search_runs([exp_id], run_view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert len(deleted) == 1 and deleted[0].data.tags[KEY_TAG] == pipeline.key


def test_stages_nest_under_one_parent_running_only_while_a_stage_runs(checkout, tracking,
                                                                      monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    client = mlflow.MlflowClient(tracking.uri)
    with stage_run("train_vae", tracking, {"vae.epochs": 2}) as tracker:
        parent = tracker.parent_id
        assert client.get_run(parent).info.status == "RUNNING"
    # `dvc repro -s train_vae` ends here: nothing runs, so nothing is RUNNING
    top = client.get_run(parent)
    assert top.info.status == "FINISHED" and top.data.tags[LAST_STAGE_TAG] == "train_vae"
    _pipeline_writes(checkout)  # dvc.lock and metrics change between the stages
    with stage_run("report", tracking, {}) as tracker:  # the next stage reopens it
        assert tracker.parent_id == parent
        assert client.get_run(parent).info.status == "RUNNING"
    exp = client.get_experiment_by_name(tracking.experiment)
    runs = client.search_runs([exp.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"exp-a", "train_vae", "report"}
    top = by_name["exp-a"]
    assert top.info.run_id == parent and top.info.status == "FINISHED"
    assert top.data.params["vae.epochs"] == "2" and top.data.params["gan.epochs"] == "3"
    assert top.data.params["judge.epochs"] == "3"  # defaults too: every section, validated
    for stage in ("train_vae", "report"):
        run = by_name[stage]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["mlflow.source.name"] == f"pipeline/{stage}.py"
        assert run.info.end_time <= top.info.end_time
    assert by_name["train_vae"].data.params == {"vae.epochs": "2"}  # the stage's own params
    assert exp.tags["mlflow.note.content"].startswith("GenDuel")


def test_a_failed_stage_fails_the_parent_and_a_retry_reopens_it(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    with pytest.raises(RuntimeError):
        with stage_run("train_gan", tracking, {}) as tracker:
            parent, failed = tracker.parent_id, tracker.run_id
            raise RuntimeError("boom")
    assert client.get_run(failed).info.status == "FAILED"
    assert client.get_run(parent).info.status == "FAILED"
    with stage_run("train_gan", tracking, {}) as tracker:  # same code, same params: same run
        assert tracker.parent_id == parent
        assert client.get_run(parent).info.status == "RUNNING"
    assert client.get_run(parent).info.status == "FINISHED"  # the last stage's end
    with stage_run("evaluate", tracking, {}) as tracker:
        assert tracker.parent_id == parent  # a FINISHED parent before the report: reopened
    with stage_run("report", tracking, {}):
        pass
    assert client.get_run(parent).info.status == "FINISHED"
    with stage_run("report", tracking, {}) as tracker:  # `dvc repro -f`: a new pipeline run
        assert tracker.parent_id != parent


def test_a_stage_ending_while_another_runs_leaves_the_parent_running(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    with stage_run("train_vae", tracking, {}) as vae:  # `dvc queue start -j 2`, one key
        with pytest.raises(RuntimeError), stage_run("judge", tracking, {}) as judge:
            assert judge.parent_id == vae.parent_id
            raise RuntimeError("boom")
        parent = client.get_run(vae.parent_id)
        assert parent.info.status == "RUNNING" and parent.data.tags[LAST_STAGE_TAG] == "judge"
    parent = client.get_run(vae.parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[LAST_STAGE_TAG] == "train_vae"


def test_a_stage_left_running_by_a_dead_process_does_not_keep_the_parent_open(checkout,
                                                                              tracking):
    client = mlflow.MlflowClient(tracking.uri)
    with stage_run("judge", tracking, {}) as judge:
        pass
    with stage_run("train_vae", tracking, {}) as vae:
        # meanwhile the judge's process died with SIGKILL and left its run RUNNING
        client.update_run(judge.run_id, "RUNNING")
        client.set_tag(judge.run_id, PID_TAG, str(2 ** 22 + 1))  # beyond pid_max: no process
    assert client.get_run(vae.parent_id).info.status == "FINISHED"


def test_changed_params_start_a_new_parent(checkout, tracking, git):
    with stage_run("train_vae", tracking, {}) as tracker:
        first = tracker.parent_id
    (checkout / "params.yaml").write_text("vae:\n  epochs: 3\n")
    with stage_run("train_vae", tracking, {}) as tracker:
        assert tracker.parent_id != first
    client = mlflow.MlflowClient(tracking.uri)
    head = git(checkout, "rev-parse", "HEAD")
    assert client.get_run(first).info.run_name == f"workspace@{head[:7]}"


def test_an_experiment_without_description_gets_one(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    exp_id = client.create_experiment(tracking.experiment)
    assert experiment_id(client, tracking.experiment, checkout, local=True) == exp_id
    tags = client.get_experiment(exp_id).tags
    assert "One parent run per pipeline run" in tags["mlflow.note.content"]
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs


def test_the_experiment_is_of_the_custom_model_kind_unless_set_otherwise(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    with stage_run("prepare", tracking, {}):
        pass
    exp = client.get_experiment_by_name(tracking.experiment)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind", "genai_development")
    assert experiment_id(client, tracking.experiment, checkout, local=True) == exp.experiment_id
    assert client.get_experiment(exp.experiment_id).tags["mlflow.experimentKind"] == \
        "genai_development"  # set by hand: kept


def test_unreadable_params_are_one_config_error(checkout, tracking):
    (checkout / "params.yaml").write_text("vae: [\n")
    from genduel.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid YAML"):
        with stage_run("prepare", TrackingConfig(uri=tracking.uri, experiment="bad"), {}):
            pass
