"""Every input checked where it is read, no output half-written: a battery of bad inputs.

Each case damages one file (or param, or the disk) in a copy of a completed tiny pipeline and
runs one stage (prepare, gan_init, evaluate, report) in this process. Each must end with exit
code 2, exactly one ``error:`` line on stderr naming the file, no traceback, and every output of
the pipeline byte-identical to before (nothing half-written, no ``.tmp`` left, the stage's work
directory removed). The readers and ``atomic_write`` are also tested alone below.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from genduel.checkpoint import load_pt, save_checkpoint
from genduel.config import EvalConfig
from genduel.errors import DataError
from genduel.evaluate.protocol import reference_size
from genduel.io import atomic_write, read_csv, read_json, read_png


def _faults():
    name = "genduel_faults_fixture"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "faults_fixture.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


FAULTS = _faults()
tiny_pipeline, fresh_repo = FAULTS.tiny_pipeline, FAULTS.fresh_repo
#: Training seed 0's folders (dvc.yaml's per-seed stages; the judge and data are not per seed).
MODELS, METRICS, EVAL, ARTIFACTS, RUNS = (FAULTS.MODELS, FAULTS.METRICS, FAULTS.EVAL,
                                          FAULTS.ARTIFACTS, FAULTS.RUNS)


# ----------------------------------------------------------------------------- damage
def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        path = repo / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def delete(rel: str) -> Callable[[Path], None]:
    return lambda repo: (repo / rel).unlink()


def write(rel: str, text: str) -> Callable[[Path], None]:
    return lambda repo: (repo / rel).write_text(text)


def drop_key(rel: str, key: str) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        data = json.loads((repo / rel).read_text())
        del data[key]
        (repo / rel).write_text(json.dumps(data))
    return damage


def partial_last_row(rel: str) -> Callable[[Path], None]:
    """What a crash during an append leaves: the last row cut after its first cells."""
    def damage(repo: Path) -> None:
        path = repo / rel
        lines = path.read_text().splitlines()
        cells = lines[-1].split(",")
        path.write_text("\n".join([*lines[:-1], ",".join(cells[: len(cells) // 2])]))
    return damage


def drop_column(rel: str, column: str) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        path = repo / rel
        rows = [line.split(",") for line in path.read_text().splitlines()]
        i = rows[0].index(column)
        path.write_text("\n".join(",".join(r[:i] + r[i + 1:]) for r in rows) + "\n")
    return damage


def bad_magic(rel: str) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        path = repo / rel
        path.write_bytes(b"\x00\x00\x09\x03" + path.read_bytes()[4:])
    return damage


def fewer_labels(repo: Path) -> None:
    from genduel.data.raw import read_idx, write_idx

    path = repo / "data/raw/train-labels-idx1-ubyte"
    write_idx(path, read_idx(path)[:-1])


def copy_over(src: str, dst: str) -> Callable[[Path], None]:
    return lambda repo: (repo / dst).write_bytes((repo / src).read_bytes())


def init_from_vae(then: Callable[[Path], None]) -> Callable[[Path], None]:
    """gan.init_from_vae on (with params it accepts): gan_init reads the VAE checkpoint."""
    def damage(repo: Path) -> None:
        FAULTS.set_params(repo, gan={"init_from_vae": True, "g_arch": "deconv",
                                     "latent_dim": 32, "width": 48},
                          vae={"decoder_components": 1})
        then(repo)
    return damage


def inception(path: str, content: bytes | None) -> Callable[[Path], None]:
    """eval.inception_weights set to ``path`` (written with ``content`` unless None), and the
    judge checkpoint broken too: the weights must be checked first, before any other input."""
    def damage(repo: Path) -> None:
        FAULTS.set_params(repo, eval={"inception_weights": path})
        if content is not None:
            (repo / path).write_bytes(content)
        truncate("models/judge.pt")(repo)
    return damage


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``.tmp`` file written with ``Path.write_bytes`` gets half its bytes, then ENOSPC."""
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if not self.name.endswith(".tmp"):
            return real(self, data)
        real(self, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    damage: Callable[[Path], None] | None  # None: the disk fills up instead
    names: str  # what the error line must name (a file, or the disk)


CASES = [
    # prepare: the raw IDX files
    Case("raw-3-of-4-files", "prepare", delete("data/raw/t10k-labels-idx1-ubyte"),
         "t10k-labels-idx1-ubyte"),
    Case("raw-truncated", "prepare", truncate("data/raw/train-images-idx3-ubyte"),
         "train-images-idx3-ubyte"),
    Case("raw-wrong-magic", "prepare", bad_magic("data/raw/t10k-images-idx3-ubyte"),
         "t10k-images-idx3-ubyte"),
    Case("raw-wrong-count", "prepare", fewer_labels, "train-labels-idx1-ubyte"),
    Case("prepare-disk-full", "prepare", None, "no space left on device"),
    # gan_init: the VAE checkpoint
    Case("vae-missing-for-init", "gan_init", init_from_vae(delete(f"{MODELS}/vae.pt")),
         f"{MODELS}/vae.pt"),
    Case("vae-truncated-for-init", "gan_init", init_from_vae(truncate(f"{MODELS}/vae.pt")),
         f"{MODELS}/vae.pt"),
    Case("gan-init-disk-full", "gan_init", None, "no space left on device"),
    # evaluate: checkpoints, splits, train_gan's artifacts, inception weights
    Case("judge-truncated", "evaluate", truncate("models/judge.pt"), "models/judge.pt"),
    Case("gan-missing", "evaluate", delete(f"{MODELS}/gan.pt"), f"{MODELS}/gan.pt"),
    Case("vae-wrong-kind", "evaluate", copy_over("models/judge.pt", f"{MODELS}/vae.pt"),
         f"{MODELS}/vae.pt"),
    Case("split-truncated", "evaluate", truncate("data/prepared/test.pt"),
         "data/prepared/test.pt"),
    Case("epoch-samples-truncated", "evaluate",
         truncate(f"{ARTIFACTS}/train_gan/epoch_samples.pt"), "epoch_samples.pt"),
    Case("epochs-csv-partial-row", "evaluate",
         partial_last_row(f"{ARTIFACTS}/train_gan/epochs.csv"),
         f"{ARTIFACTS}/train_gan/epochs.csv"),
    Case("epochs-csv-missing-column", "evaluate",
         drop_column(f"{ARTIFACTS}/train_gan/epochs.csv", "d_acc"),
         f"{ARTIFACTS}/train_gan/epochs.csv"),
    Case("inception-weights-missing", "evaluate", inception("weights/nope.pt", None), "nope.pt"),
    Case("inception-weights-garbage", "evaluate", inception("inception.pt", b"not torch"),
         "inception.pt"),
    Case("evaluate-disk-full", "evaluate", None, "no space left on device"),
    # report: each seed's metrics JSON (the evaluate stages'; the report writes the gathered
    # metrics/eval_*.json), details, manifest, PNG grids, CSV histories, features, diagnostics
    Case("eval-json-truncated", "report", truncate(f"{METRICS}/eval_gan.json"),
         f"{METRICS}/eval_gan.json"),
    Case("eval-json-not-an-object", "report", write(f"{METRICS}/eval_vae.json", "[1, 2]"),
         f"{METRICS}/eval_vae.json"),
    Case("eval-json-missing-key", "report", drop_key(f"{METRICS}/eval_real.json", "fid"),
         f"{METRICS}/eval_real.json"),
    Case("train-json-truncated", "report", truncate(f"{METRICS}/train_gan.json"),
         f"{METRICS}/train_gan.json"),
    Case("judge-json-truncated", "report", truncate("metrics/judge.json"), "metrics/judge.json"),
    Case("details-missing", "report", delete(f"{EVAL}/details_vae.json"),
         f"{EVAL}/details_vae.json"),
    Case("manifest-truncated", "report", truncate("data/prepared/manifest.json"),
         "data/prepared/manifest.json"),
    Case("sample-grid-truncated", "report", truncate(f"{EVAL}/samples_gan.png"),
         f"{EVAL}/samples_gan.png"),
    Case("real-grid-truncated", "report", truncate("data/prepared/real_grid.png", 0.8),
         "data/prepared/real_grid.png"),
    Case("epoch-grid-truncated", "report",
         truncate(f"{ARTIFACTS}/train_gan/grids/samples_epoch001.png"), "samples_epoch001.png"),
    Case("history-csv-partial-row", "report",
         partial_last_row(f"{ARTIFACTS}/train_vae/history.csv"),
         f"{ARTIFACTS}/train_vae/history.csv"),
    Case("features-truncated", "report", truncate(f"{EVAL}/features_vae.npz"),
         f"{EVAL}/features_vae.npz"),
    Case("diagnostics-partial-row", "report", partial_last_row(f"{EVAL}/gan_diagnostics.csv"),
         f"{EVAL}/gan_diagnostics.csv"),
    Case("report-disk-full", "report", None, "no space left on device"),
]


def assert_one_line_and_nothing_changed(repo: Path, stage: str, names: str,
                                        before: dict[str, str]) -> str:
    """Run ``stage`` in ``repo``: exit 2, one error line naming ``names``, outputs untouched."""
    code, err = FAULTS.run_stage_in(repo, stage)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2, err[-3000:]
    assert len(lines) == 1 and names in lines[0], err[-3000:]
    assert "Traceback" not in err
    assert FAULTS.snapshot(repo) == before  # no output changed, none half-written, no .tmp
    assert not (repo / ".genduel" / "work" / FAULTS.stage_name(stage)).exists()
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_leaves_every_output_as_it_was(case, fresh_repo, monkeypatch):
    if case.damage is None:
        disk_full(monkeypatch)
    else:
        case.damage(fresh_repo)
    line = assert_one_line_and_nothing_changed(fresh_repo, case.stage, case.names,
                                               FAULTS.snapshot(fresh_repo))
    assert f"genduel {FAULTS.stage_name(case.stage)}: error: " in line  # evaluate@0: dvc's
    if case.damage is None:
        assert "free space and re-run" in line


def test_evaluate_interrupted_says_it_starts_over_and_leaves_every_output(fresh_repo,
                                                                           monkeypatch):
    import signal

    from genduel.errors import Interrupted
    from genduel.evaluate import run as evaluate_run

    def sigterm_midway(cfg, inputs, device, out_dir, phases=None):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "features_vae.npz").write_bytes(b"half of it")
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(evaluate_run, "evaluate_all", sigterm_midway)
    before = FAULTS.snapshot(fresh_repo)
    code, err = FAULTS.run_stage_in(fresh_repo, "evaluate")
    assert code == 143
    assert [line for line in err.splitlines() if line.startswith("genduel ")] == [
        "genduel evaluate@0: interrupted by SIGTERM; its outputs are unchanged, evaluate@0 "
        "starts over when run again (it keeps no partial work)"], err[-3000:]
    assert FAULTS.snapshot(fresh_repo) == before  # the previous evaluation, as it was
    assert not (fresh_repo / ".genduel" / "work" / "evaluate@0").exists()  # nothing kept


def test_partial_raw_dir_names_the_missing_files_and_both_ways_out(fresh_repo):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (fresh_repo / "data" / "raw" / name).unlink()
    line = assert_one_line_and_nothing_changed(fresh_repo, "prepare", "data/raw",
                                               FAULTS.snapshot(fresh_repo))
    assert "2 of the 4 IDX files" in line and "t10k-images-idx3-ubyte[.gz]" in line
    assert "add them, or empty data/raw" in line


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or 'not permitted'})")


def test_a_really_full_disk_under_the_work_dir_is_one_line(fresh_repo, tmp_path, monkeypatch):
    """A real 200 kB file system as the work directory: the report's figures do not fit."""
    full = tmp_path / "full"
    _tmpfs(full, "200k")
    try:
        monkeypatch.setenv("GENDUEL_WORK_DIR", str(full))
        before = FAULTS.snapshot(fresh_repo)
        code, err = FAULTS.run_stage_in(fresh_repo, "report")
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
        assert "no space left on device writing" in lines[0]
        assert FAULTS.snapshot(fresh_repo) == before
        assert list(full.rglob("*")) == []  # the partial work directory is gone, .tmp too
    finally:
        subprocess.run(["umount", str(full)], check=False)


# ----------------------------------------------------------------------------- the parts
def test_atomic_write_turns_a_full_disk_into_one_line_and_removes_the_tmp(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    def torch_full(tmp: Path) -> None:  # what torch.save raises when the disk fills up
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    with pytest.raises(DataError, match=f"no space left on device writing {target}; free"):
        atomic_write(target, torch_full)
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with pytest.raises(RuntimeError, match="something else"):  # other errors pass unchanged
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(RuntimeError("something else")))
    assert sorted(tmp_path.iterdir()) == [target]


def test_torch_save_on_a_really_full_disk_is_a_data_error(tmp_path):
    full = tmp_path / "full"
    _tmpfs(full, "64k")
    try:
        with pytest.raises(DataError, match="no space left on device writing"):
            save_checkpoint(full / "ckpt.pt", {"kind": "vae", "w": torch.zeros(100_000)})
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_readers_name_the_file_and_what_is_wrong(tmp_path):
    fix = "re-run it"
    j = tmp_path / "a.json"
    for text, why in (('{"a": 1', "not valid JSON"), ("[1]", "holds a JSON list"),
                      ('{"b": 1}', "missing key 'a'")):
        j.write_text(text)
        with pytest.raises(DataError, match=f"^{j}: {why}.*; re-run it$"):
            read_json(j, fix, ("a",))
    with pytest.raises(DataError, match=f"^{tmp_path / 'no.json'}: not found; re-run it$"):
        read_json(tmp_path / "no.json", fix)
    c = tmp_path / "a.csv"
    c.write_text("epoch,loss\n1,0.5\n2,")
    assert read_csv(c, fix, ("epoch",))[1]["epoch"] == 2.0  # an empty cell is NaN, not an error
    c.write_text("epoch,loss\n1,0.5\n2\n")
    with pytest.raises(DataError, match="line 3 has 1 cells for 2 columns"):
        read_csv(c, fix)
    c.write_text("epoch,loss\n1,0.5x\n")
    with pytest.raises(DataError, match="line 2, column 'loss' is '0.5x'"):
        read_csv(c, fix)
    with pytest.raises(DataError, match="missing column step"):
        read_csv(c, fix, ("step",))
    p = tmp_path / "a.png"
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(p)
    whole = p.read_bytes()
    assert read_png(p, fix) == whole
    for cut in (len(whole) // 2, len(whole) - 12):  # in the pixels; only the IEND chunk lost
        p.write_bytes(whole[:cut])
        with pytest.raises(DataError, match=f"^{p}: not a readable PNG"):
            read_png(p, fix)
    t = tmp_path / "a.pt"
    torch.save({"x": torch.ones(3)}, t)
    assert load_pt(t, fix)["x"].sum() == 3
    t.write_bytes(t.read_bytes()[:100])
    with pytest.raises(DataError, match=f"^{t}: not a readable PyTorch file"):
        load_pt(t, fix)


def test_num_samples_beyond_the_splits_is_clamped_with_a_warning(caplog):
    cfg = EvalConfig(num_samples=1000)
    with caplog.at_level(logging.WARNING, logger="genduel.evaluate.protocol"):
        assert reference_size(cfg, 600, 200) == (600, 200)
    text = caplog.text
    assert "eval.num_samples = 1000 is larger than the 600 images" in text and "using 600" in text
    assert "200 images of the test split; using 200" in text
    caplog.clear()
    assert reference_size(cfg, 5000, 5000) == (1000, 1000) and not caplog.text


def test_evaluate_records_its_run_and_reads_the_training_runs_from_run_records(tiny_pipeline):
    runs = {s: json.loads((tiny_pipeline / RUNS / f"{s}.json").read_text())
            for s in ("train_vae", "fit_prior", "train_gan", "evaluate")}
    assert runs["evaluate"]["training_run_ids"] == {
        m: runs[stage]["mlflow_run_id"]
        for m, stage in (("vae", "train_vae"), ("vae_prior", "fit_prior"), ("gan", "train_gan"))}
    assert len(runs["evaluate"]["mlflow_run_id"]) == 32 and runs["evaluate"]["machine"]["cpu"]
    details = json.loads((tiny_pipeline / EVAL / "details_vae.json").read_text())
    assert "mlflow_run_id" not in details  # volatile: only in runs/*.json
    proto = details["protocol"]
    assert proto["reference_images"] == proto["num_samples"] == 200
    assert proto["machine"]["torch"] == torch.__version__
    report = (tiny_pipeline / "reports" / "report.md").read_text()
    assert "| Machine, evaluate |" in report and runs["evaluate"]["mlflow_run_id"] in report
    assert "not a DVC dependency of the report" in report
