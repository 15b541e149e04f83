"""Stage work directories: outputs published whole or not at all, and resume keys that change
with what a stage's result depends on and nothing else."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

from genduel import workdir
from genduel.errors import DataError


def test_the_key_follows_params_inputs_and_loaded_code_only(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.pt").write_bytes(b"1")
    key = workdir.stage_key("train_vae", {"vae": {"lr": 1e-3}}, [data])
    assert key == workdir.stage_key("train_vae", {"vae": {"lr": 1e-3}}, [data])
    assert key != workdir.stage_key("train_vae", {"vae": {"lr": 2e-3}}, [data])
    assert key != workdir.stage_key("train_gan", {"vae": {"lr": 1e-3}}, [data])
    (data / "a.pt").write_bytes(b"2")
    changed = workdir.stage_key("train_vae", {"vae": {"lr": 1e-3}}, [data])
    assert changed != key
    # a module the stage imported is part of the key; a file it never imported is not
    code = tmp_path / "genduel_extra.py"
    code.write_text("x = 1\n")
    unloaded = tmp_path / "never_imported.py"
    unloaded.write_text("y = 1\n")
    module = types.ModuleType("genduel.extra")
    module.__file__ = str(code)
    monkeypatch.setitem(sys.modules, "genduel.extra", module)
    loaded = workdir.stage_key("train_vae", {"vae": {"lr": 1e-3}}, [data])
    assert loaded != changed
    unloaded.write_text("y = 2\n")
    assert workdir.stage_key("train_vae", {"vae": {"lr": 1e-3}}, [data]) == loaded
    code.write_text("x = 2\n")
    assert workdir.stage_key("train_vae", {"vae": {"lr": 1e-3}}, [data]) != loaded


def test_staged_outputs_are_published_on_success_and_never_on_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    (tmp_path / "m.json").write_text("old")
    with pytest.raises(RuntimeError), workdir.staged("s", ["out", "m.json"]) as st:
        st.path("out").mkdir()
        (st.path("out") / "new.txt").write_text("new")
        raise RuntimeError("stop")
    assert (tmp_path / "out" / "old.txt").exists() and (tmp_path / "m.json").read_text() == "old"
    assert not (tmp_path / ".genduel" / "work" / "s").exists()
    with workdir.staged("s", ["out", "m.json"]) as st:
        st.path("out").mkdir()
        (st.path("out") / "new.txt").write_text("new")
        st.path("m.json").write_text("new")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]
    assert (tmp_path / "m.json").read_text() == "new"
    assert not (tmp_path / ".genduel" / "work" / "s").exists()


def test_a_failed_training_keeps_its_work_dir_only_when_it_saved_a_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / ".genduel" / "work" / "t-k"
    with pytest.raises(RuntimeError), workdir.staged("t", ["m.pt"], key="k",
                                                     keep_on_error=True) as st:
        st.path("m.pt").write_bytes(b"partial")
        raise RuntimeError("before the first save")
    assert not root.exists()
    with pytest.raises(RuntimeError), workdir.staged("t", ["m.pt"], key="k",
                                                     keep_on_error=True) as st:
        (st.root / "resume").mkdir(parents=True)
        (st.root / "resume" / "state.pt").write_bytes(b"state")
        raise RuntimeError("after a save")
    assert (root / "resume" / "state.pt").read_bytes() == b"state"
    assert not (tmp_path / "m.pt").exists()


def _other_file_system(monkeypatch, folder: str) -> None:
    """Renames from the work directory into ``folder`` fail as across file systems (EXDEV)."""
    rename = os.replace

    def replace(src, dst):
        if ".genduel" in Path(src).parts and folder in Path(dst).parts:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))
        return rename(src, dst)

    monkeypatch.setattr(workdir.os, "replace", replace)


def _left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and ".genduel" not in p.parts)


def test_a_publish_across_file_systems_copies_beside_the_final_path_then_renames(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _other_file_system(monkeypatch, "models")
    (tmp_path / "models" / "grids").mkdir(parents=True)
    (tmp_path / "models" / "grids" / "old.png").write_bytes(b"old grid")
    (tmp_path / "models" / "m.pt").write_bytes(b"old model")
    copied = []
    copy = shutil.copy2
    monkeypatch.setattr(workdir.shutil, "copy2",
                        lambda src, dst: copied.append(Path(dst).name) or copy(src, dst))
    with workdir.staged("s", ["models/m.pt", "models/grids", "m.json"]) as st:
        st.path("models/m.pt").write_bytes(b"new model")
        st.path("models/grids").mkdir()
        (st.path("models/grids") / "new.png").write_bytes(b"new grid")
        st.path("m.json").write_text("{}")
    assert copied == ["m.pt.tmp"]  # written beside its final path, then renamed into place
    assert (tmp_path / "models" / "m.pt").read_bytes() == b"new model"
    assert _left(tmp_path) == ["m.json", "models/grids/new.png", "models/m.pt"]
    assert not (tmp_path / ".genduel" / "work" / "s").exists()


def test_a_full_disk_across_file_systems_leaves_the_old_output_and_no_partial_file(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _other_file_system(monkeypatch, "models")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vae.pt").write_bytes(b"old model")
    (tmp_path / "m.json").write_text("old")

    def half_then_full(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes()[:4])  # 3.8 of 7.5 MB, in the issue
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(workdir.shutil, "copy2", half_then_full)
    with pytest.raises(DataError) as exc, \
            workdir.staged("t", ["m.json", "models/vae.pt"], key="k") as st:
        st.path("m.json").write_text("new")  # same file system: renamed, then renamed back
        st.path("models/vae.pt").write_bytes(b"new model")
    assert str(exc.value) == (
        "no space left on device writing models/vae.pt; free space and re-run (the outputs at "
        "their final paths are unchanged, the stage's work waits in .genduel/work/t-k)")
    assert (tmp_path / "models" / "vae.pt").read_bytes() == b"old model"
    assert (tmp_path / "m.json").read_text() == "old"
    assert _left(tmp_path) == ["m.json", "models/vae.pt"]  # no vae.pt.tmp, no vae.pt.old
    out = tmp_path / ".genduel" / "work" / "t-k" / "out"  # the work, for the next run
    assert (out / "models" / "vae.pt").read_bytes() == b"new model"
    assert (out / "m.json").read_text() == "new"


def test_a_really_full_file_system_under_a_final_path(tmp_path, monkeypatch):
    """models/ on a real 64 kB tmpfs, the work directory on another file system: the copy
    fills the tmpfs, and the old model is still whole at its final path."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(models)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not permitted'})")
    try:
        (models / "vae.pt").write_bytes(b"old" * 10_000)
        with pytest.raises(DataError, match=r"^no space left on device writing models/vae\.pt; "):
            with workdir.staged("t", ["models/vae.pt"]) as st:
                st.path("models/vae.pt").write_bytes(b"new" * 30_000)  # 90 kB: does not fit
        assert (models / "vae.pt").read_bytes() == b"old" * 10_000
        assert sorted(p.name for p in models.iterdir()) == ["vae.pt"]
    finally:
        subprocess.run(["umount", str(models)], check=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_finished_record_is_published_again_until_dvc_records_it(tmp_path, monkeypatch):
    """A kill after the publish, before DVC wrote dvc.lock: DVC deletes the outputs and runs
    the stage again, which finds its finished record and publishes it instead of training."""
    monkeypatch.chdir(tmp_path)
    finals = ["models/m.pt", "art", "metrics.json"]
    with workdir.staged("t", finals, key="k1", keep_on_error=True, finished=True) as st:
        (st.root / "resume").mkdir(parents=True)
        (st.root / "resume" / "state.pt").write_bytes(b"final state")
        assert not st.reuse_finished("t")  # no record yet
        st.path("models/m.pt").write_bytes(b"model")
        st.path("art").mkdir()
        (st.path("art") / "grid.png").write_bytes(b"grid")
        st.path("metrics.json").write_text('{"elbo": 1.0}')
    root = tmp_path / ".genduel" / "work" / "t-k1"
    assert sorted(p.name for p in root.iterdir()) == ["done"]  # state and staging are gone
    published = {f: _files(tmp_path / f) if (tmp_path / f).is_dir() else (tmp_path / f)
                 .read_bytes() for f in finals}
    for final in finals:  # dvc repro: the stage changed, so DVC deletes its outputs
        workdir._remove(tmp_path / final)
    with workdir.staged("t", finals, key="k1", keep_on_error=True, finished=True) as st:
        assert st.reuse_finished("t")  # no dvc.lock records them: publish them again
    assert {f: _files(tmp_path / f) if (tmp_path / f).is_dir() else (tmp_path / f)
            .read_bytes() for f in finals} == published
    assert (root / "done" / workdir.DONE_MARK).is_file()

    # DVC recorded them this time: a forced re-run (dvc repro -f) trains, the record goes
    lock = {"stages": {"t": {"outs": [
        {"path": "models/m.pt", "md5": hashlib.md5(b"model").hexdigest()},
        {"path": "metrics.json", "md5": hashlib.md5(b'{"elbo": 1.0}').hexdigest()},
        {"path": "art", "md5": "0" * 32 + ".dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    with workdir.staged("t", finals, key="k1", keep_on_error=True, finished=True) as st:
        assert not st.reuse_finished("t") and not (root / "done").exists()
        st.path("models/m.pt").write_bytes(b"model, trained again")
        st.path("art").mkdir()
        st.path("metrics.json").write_text('{"elbo": 1.0}')
    assert (root / "done" / "models" / "m.pt").read_bytes() == b"model, trained again"

    # another key finishes: the stage keeps the record of its last finished key only
    with workdir.staged("t", ["models/m.pt"], key="k2", finished=True) as st:
        st.path("models/m.pt").write_bytes(b"other model")
    assert not root.exists()
    assert (tmp_path / ".genduel" / "work" / "t-k2" / "done" / "models" / "m.pt").exists()


def test_a_finished_record_is_kept_when_a_stage_fails_and_outside_dvc_none_is_made(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with workdir.staged("t", ["m.pt"], key="k", keep_on_error=True, finished=True) as st:
        st.path("m.pt").write_bytes(b"model")
    root = tmp_path / ".genduel" / "work" / "t-k"
    with pytest.raises(RuntimeError), workdir.staged("t", ["m.pt"], key="k",
                                                     keep_on_error=True, finished=True) as st:
        raise RuntimeError("before its first save")
    assert (root / "done" / "m.pt").read_bytes() == b"model"
    with workdir.staged("u", ["n.pt"], key="k", keep_on_error=True) as st:  # not under DVC
        st.path("n.pt").write_bytes(b"model")
    assert not (tmp_path / ".genduel" / "work" / "u-k").exists()
