"""Known-answer tests for the data package: IDX I/O, finding sources, splits and pixels."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genduel.config import DataConfig
from genduel.data import raw
from genduel.data.pixels import save_grid, to_model_range, to_uint8
from genduel.data.raw import IDX_FILES, load_source, read_idx, write_idx
from genduel.data.splits import Split, batches, load_split, prepare, split_indices
from genduel.errors import ConfigError, DataError

N_TRAIN, N_TEST = 300, 100
REPO = Path(__file__).resolve().parents[2]


def fake_cfg(**kw) -> DataConfig:
    base = dict(val_size=60, seed=0, verify_checksums=False, allow_download=False, grid_images=16)
    return DataConfig(**{**base, **kw})


def write_fake_fashion(directory: Path, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """Four tiny IDX files; every image is distinct random bytes, so content identifies it."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    for role, (stem, _) in IDX_FILES.items():
        write_idx(directory / (stem + (".gz" if gz else "")), arrays[role])
    return arrays


def image_hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha256(im.numpy().tobytes()).hexdigest() for im in images]


@pytest.fixture
def fake(tmp_path: Path) -> dict:
    raw = tmp_path / "data" / "raw"
    arrays = write_fake_fashion(raw)
    empty = tmp_path / "no-system"
    empty.mkdir()
    return {"raw": raw, "system": empty, "arrays": arrays, "tmp": tmp_path}


def run_prepare(fake: dict, out_name: str = "prepared", **kw) -> tuple[dict, Path]:
    out = fake["tmp"] / out_name
    return prepare(fake_cfg(**kw), fake["raw"], out, system_dir=fake["system"]), out


# ----------------------------------------------------------------------------- IDX I/O
@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    images = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    write_idx(tmp_path / name, images)
    got = read_idx(tmp_path / name, ndim=3)
    assert got.dtype == np.uint8 and np.array_equal(got, images)
    labels = np.array([0, 9, 255], dtype=np.uint8)
    write_idx(tmp_path / "l.gz", labels)
    assert np.array_equal(read_idx(tmp_path / "l.gz", ndim=1), labels)
    raw = (tmp_path / name).read_bytes()
    header = gzip.decompress(raw)[:16] if name.endswith(".gz") else raw[:16]
    assert header == bytes.fromhex("00000803" "00000002" "00000003" "00000005")


def test_wrong_magic_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"labels-idx1-ubyte.*0x00000801.*0x00000803"):
        read_idx(path, ndim=3)
    path.write_bytes(b"\x12\x34\x08\x01" + path.read_bytes()[4:])
    with pytest.raises(DataError, match="labels-idx1-ubyte.*magic"):
        read_idx(path)


@pytest.mark.parametrize("name", ["img-idx3-ubyte", "img-idx3-ubyte.gz"])
def test_truncated_file_names_the_file_and_the_fix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_idx(path, np.ones((3, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=rf"{name}.*delete it and provide it again"):
        read_idx(path, ndim=3)


# ----------------------------------------------------------------------------- pixels
def test_pixel_range_round_trips_exactly() -> None:
    u8 = torch.arange(256, dtype=torch.uint8)
    x = to_model_range(u8)
    assert x.dtype == torch.float32 and x[0] == -1.0 and x[-1] == 1.0
    assert torch.equal(to_uint8(x), u8)
    clamped = to_uint8(torch.tensor([-3.0, 3.0]))
    assert torch.equal(clamped, torch.tensor([0, 255], dtype=torch.uint8))


def test_batches_cover_each_image_once_in_seeded_order() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).clone()
    split = Split(images, torch.arange(10), ["a"])

    def epoch(seed: int, drop_last: bool = False) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [y for _, y in batches(split, 4, shuffle=True, generator=g, drop_last=drop_last)]

    ys = epoch(0)
    assert [len(y) for y in ys] == [4, 4, 2]
    assert sorted(torch.cat(ys).tolist()) == list(range(10))
    assert all(torch.equal(a, b) for a, b in zip(ys, epoch(0)))
    assert [len(y) for y in epoch(0, drop_last=True)] == [4, 4]
    x, y = next(batches(split, 10, shuffle=False))
    assert torch.equal(to_uint8(x[:, 0, 0, 0]), y.to(torch.uint8)) and x.dtype == torch.float32


def test_save_grid_accepts_uint8_and_model_range(tmp_path: Path) -> None:
    u8 = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    save_grid(u8, tmp_path / "a.png")
    save_grid(to_model_range(u8), tmp_path / "b.png", nrow=5)
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- prepare
def test_prepare_partitions_the_official_train_set(fake: dict) -> None:
    manifest, out = run_prepare(fake)
    train, val, test = (load_split(out, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (N_TRAIN - 60, 60, N_TEST)
    assert train.image_shape == (1, 28, 28) and train.num_classes == 10
    assert train.classes[0] == "T-shirt/top" and train.labels.dtype == torch.int64
    official = image_hashes(torch.from_numpy(fake["arrays"]["train_images"]))
    label_of = dict(zip(official, fake["arrays"]["train_labels"].tolist()))
    t, v = image_hashes(train.images), image_hashes(val.images)
    assert not set(t) & set(v) and sorted(t + v) == sorted(official)
    assert [label_of[h] for h in t + v] == torch.cat([train.labels, val.labels]).tolist()
    assert torch.equal(test.images[:, 0], torch.from_numpy(fake["arrays"]["test_images"]))
    assert manifest["image_shape"] == [1, 28, 28]
    assert manifest["source"]["found_via"] == "raw_dir"


def test_split_is_a_function_of_the_seed(fake: dict) -> None:
    _, a = run_prepare(fake, "a", seed=7)
    _, b = run_prepare(fake, "b", seed=7)
    _, c = run_prepare(fake, "c", seed=8)
    for name in ("train.pt", "val.pt", "test.pt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert not torch.equal(load_split(a, "val").images, load_split(c, "val").images)


def test_train_limit_cuts_train_only(fake: dict) -> None:
    manifest, out = run_prepare(fake, train_limit=25)
    assert [manifest["splits"][s]["count"] for s in ("train", "val", "test")] == [25, 60, N_TEST]
    full_train, _ = split_indices(N_TRAIN, 60, 0, 0)
    limited, val = split_indices(N_TRAIN, 60, 25, 0)
    assert set(limited.tolist()) <= set(full_train.tolist())
    assert not set(limited.tolist()) & set(val.tolist())


def test_manifest_and_outputs_agree(fake: dict) -> None:
    manifest, out = run_prepare(fake)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for name, info in manifest["splits"].items():
        assert sum(info["class_histogram"]) == info["count"]
        assert info["sha256"] == hashlib.sha256((out / f"{name}.pt").read_bytes()).hexdigest()
        labels = load_split(out, name).labels
        assert info["class_histogram"] == torch.bincount(labels, minlength=10).tolist()
    files = manifest["source"]["files"]
    assert set(files) == {f"{stem}.gz" for stem, _ in IDX_FILES.values()}
    for fname, rec in files.items():
        digest = hashlib.sha256((fake["raw"] / fname).read_bytes()).hexdigest()
        assert rec["sha256"] == digest and rec["md5_check"] == "skipped"
    assert (out / "real_grid.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob("*.tmp"))


def test_val_size_too_large_is_a_config_error(fake: dict) -> None:
    with pytest.raises(ConfigError, match="data.val_size"):
        run_prepare(fake, val_size=N_TRAIN)


# ----------------------------------------------------------------------------- finding data
def test_no_data_anywhere_lists_every_way_to_provide_it(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    with pytest.raises(DataError) as err:
        prepare(fake_cfg(), raw, tmp_path / "out", system_dir=tmp_path / "none")
    msg = str(err.value)
    assert "data/raw" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "network" in msg and "\n" not in msg


@pytest.mark.parametrize("gz", [True, False])
def test_plain_and_gz_files_are_found(tmp_path: Path, gz: bool) -> None:
    arrays = write_fake_fashion(tmp_path / "raw", gz=gz)
    src = load_source(fake_cfg(), tmp_path / "raw", system_dir=tmp_path / "none")
    assert np.array_equal(src.train_x[:, 0], arrays["train_images"])
    assert all(name.endswith(".gz") == gz for name in src.files)


def test_system_dir_and_torchvision_layout_are_searched(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path / "system")
    src = load_source(fake_cfg(), tmp_path / "raw", system_dir=tmp_path / "system")
    assert src.found_via.startswith("system package")
    write_fake_fashion(tmp_path / "raw" / "FashionMNIST" / "raw", gz=False)
    src = load_source(fake_cfg(), tmp_path / "raw", system_dir=tmp_path / "system")
    assert src.found_via == "raw_dir (torchvision layout)"


def test_checksum_mismatch_is_a_data_error(fake: dict) -> None:
    with pytest.raises(DataError, match="md5 does not match.*verify_checksums"):
        run_prepare(fake, verify_checksums=True)


def test_images_and_labels_must_agree(fake: dict) -> None:
    write_idx(fake["raw"] / "train-labels-idx1-ubyte.gz", np.zeros(N_TRAIN - 1, np.uint8))
    with pytest.raises(DataError, match="300 train images but .* has 299 labels"):
        run_prepare(fake)


@pytest.mark.skipif(not (raw.SYSTEM_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_debian_copy_passes_published_checksums(tmp_path: Path) -> None:
    src = load_source(DataConfig(allow_download=False), tmp_path / "empty")
    assert (len(src.train_x), len(src.test_x)) == (60000, 10000)
    assert all("md5 matches" in rec["md5_check"] for rec in src.files.values())


# ----------------------------------------------------------------------------- load_split
def test_load_split_errors_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train.pt: not found; run `dvc repro prepare`"):
        load_split(tmp_path, "train")
    (tmp_path / "val.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="val.pt: unreadable.*dvc repro prepare"):
        load_split(tmp_path, "val")
    torch.save({"images": torch.zeros(2, 1, 2, 2), "labels": torch.zeros(2), "classes": []},
               tmp_path / "test.pt")
    with pytest.raises(DataError, match="test.pt: unexpected contents"):
        load_split(tmp_path, "test")


def test_split_is_frozen() -> None:
    split = Split(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.classes = ["x"]  # type: ignore[misc]
    assert len(split) == 3 and split.image_shape == (1, 2, 2)


# ----------------------------------------------------------------------------- stage script
def load_stage_script():
    spec = importlib.util.spec_from_file_location("prepare_stage", REPO / "pipeline/prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must not run anything
    return module


def test_stage_script_writes_outputs_and_reports_errors(fake: dict, monkeypatch, capsys) -> None:
    stage = load_stage_script()
    monkeypatch.chdir(fake["tmp"])
    monkeypatch.setattr(raw, "SYSTEM_DIR", fake["system"])
    Path("params.yaml").write_text(
        "data:\n  val_size: 50\n  verify_checksums: false\n  allow_download: false\n"
    )
    assert stage.main(["--raw-dir", "data/raw", "--out", "data/prepared"]) == 0
    assert load_split("data/prepared", "val").images.shape == (50, 1, 28, 28)
    assert stage.main(["--raw-dir", "elsewhere/data/raw", "--out", "p2"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # logging also goes to stderr
    assert last.startswith("genduel prepare: error: no Fashion-MNIST data found")
