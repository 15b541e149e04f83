"""Stage work directories: outputs published whole or not at all, and resume keys that change
with what a stage's result depends on and nothing else."""

from __future__ import annotations

import sys
import types

import pytest

from genduel import workdir


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
