"""Verified uint8 splits out of the raw images, preloaded and batched.

The prepare stage loads the raw dataset (:func:`genduel.data.raw.load_source`: ``data/raw``,
the Debian package, or a torchvision download), splits the official training set into train/val
by seed and writes ``{train,val,test}.pt`` with ``images`` uint8 ``(N, C, H, W)``, ``labels``
int64 ``(N,)`` and ``classes``. :func:`batches` converts them to the models' ``[-1, 1]`` range
(:mod:`genduel.data.pixels`) on the device.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genduel.config import DataConfig
from genduel.data.pixels import save_grid, to_model_range
from genduel.data.raw import Source, load_source
from genduel.errors import ConfigError, DataError
from genduel.io import atomic_write, digest

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- prepare
def split_indices(n: int, val_size: int, train_limit: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Disjoint sorted (train, val) positions in the official training set of ``n`` images.

    A seeded permutation; val is its first ``val_size`` entries, train the rest, cut to the
    first ``train_limit`` of them when ``train_limit > 0``.
    """
    if not 0 < val_size < n:
        raise ConfigError(f"params.yaml: data.val_size = {val_size} must be between 1 and "
                          f"{n - 1} (the official training set has {n} images)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train = perm[val_size:][:train_limit] if train_limit else perm[val_size:]
    return train.sort().values, perm[:val_size].sort().values


def _save_split(path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> str:
    """torch.save a split atomically; return its sha256 (bytes are deterministic)."""
    buf = io.BytesIO()  # an in-memory archive is named "archive", not after the tmp file
    torch.save({"images": torch.from_numpy(np.ascontiguousarray(images)),
                "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
                "classes": list(classes)}, buf)
    atomic_write(path, buf.getvalue())
    return digest(buf.getvalue(), "sha256")


def prepare(cfg: DataConfig, raw_dir: Path, out_dir: Path, system_dir: Path | None = None,
            source: Source | None = None) -> dict:
    """Write ``{train,val,test}.pt``, ``manifest.json`` and ``real_grid.png`` into ``out_dir``.

    train/val partition the official training set by ``cfg.seed`` (val = ``cfg.val_size``
    images, train cut to ``cfg.train_limit`` when non-zero); test is the official test set.
    ``system_dir`` overrides :data:`genduel.data.raw.SYSTEM_DIR` (see
    :func:`genduel.data.raw.load_source`). ``source``: the raw dataset already loaded by
    :func:`~genduel.data.raw.load_source` (a stage reads and checks its inputs before it opens
    its MLflow run or writes anything).

    Returns:
        The manifest (also written as JSON): dataset, source, per-split counts, class
        histograms and sha256, image shape ``[C, H, W]``, and the split parameters.
    """
    src = source if source is not None else load_source(cfg, raw_dir, system_dir)
    train_idx, val_idx = split_indices(len(src.train_x), cfg.val_size, cfg.train_limit, cfg.seed)
    parts = {"train": (src.train_x[train_idx.numpy()], src.train_y[train_idx.numpy()]),
             "val": (src.train_x[val_idx.numpy()], src.train_y[val_idx.numpy()]),
             "test": (src.test_x, src.test_y)}
    out_dir = Path(out_dir)
    splits = {}
    for name, (x, y) in parts.items():
        sha = _save_split(out_dir / f"{name}.pt", x, y, src.classes)
        hist = np.bincount(y, minlength=len(src.classes)).tolist()
        splits[name] = {"count": len(y), "class_histogram": hist, "sha256": sha}
    save_grid(torch.from_numpy(src.test_x[: cfg.grid_images]), out_dir / "real_grid.png")
    manifest = {
        "dataset": cfg.dataset, "classes": src.classes, "image_shape": list(src.train_x.shape[1:]),
        "source": {"dir": str(src.directory), "found_via": src.found_via, "files": src.files},
        "splits": splits, "seed": cfg.seed, "val_size": cfg.val_size,
        "train_limit": cfg.train_limit, "verify_checksums": cfg.verify_checksums,
    }
    atomic_write(out_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    log.info("prepared %s: %s", cfg.dataset, {k: v["count"] for k, v in splits.items()})
    return manifest


# ----------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    """One prepared split, preloaded (faster than a DataLoader on the CPU)."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]


def load_split(prepared_dir: str | Path, split: str) -> Split:
    """Load ``<prepared_dir>/<split>.pt`` written by :func:`prepare`. Raises :class:`DataError`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(prepared_dir) / f"{split}.pt"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro prepare`")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        images, labels, classes = d["images"], d["labels"], list(d["classes"])
    except Exception as exc:  # any unpickling/zip/key error means the same thing to the user
        why = type(exc).__name__
        raise DataError(f"{path}: unreadable ({why}); run `dvc repro prepare`") from exc
    ok = (images.dtype == torch.uint8 and images.ndim == 4 and labels.dtype == torch.int64
          and labels.shape == (images.shape[0],))
    if not ok:
        raise DataError(f"{path}: unexpected contents (images {images.dtype} "
                        f"{tuple(images.shape)}, labels {labels.dtype} {tuple(labels.shape)}); "
                        "run `dvc repro prepare`")
    return Split(images, labels, classes)


def batches(split: Split, batch_size: int, *, shuffle: bool,
            generator: torch.Generator | None = None, device: torch.device | str = "cpu",
            drop_last: bool = False, shard: int = 0,
            num_shards: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)``: x float32 ``(B, C, H, W)`` in ``[-1, 1]``, y int64 ``(B,)``, on ``device``.

    The order is a permutation from ``generator`` (a CPU generator) when ``shuffle``, else the
    stored order. Pixels travel as uint8 and are converted on ``device``. With ``num_shards`` > 1
    (data-parallel ranks) each batch of ``batch_size`` is cut into ``num_shards`` contiguous parts
    and part ``shard`` is yielded: every rank walks the same batches, and only its own pixels
    are read and moved.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        sl = slice(start, min(start + batch_size, n))
        idx = order[sl] if order is not None else sl
        if num_shards > 1:
            idx = torch.tensor_split(torch.arange(n)[idx], num_shards)[shard]
        x = split.images[idx].to(device, non_blocking=True)
        yield to_model_range(x), split.labels[idx].to(device, non_blocking=True)
