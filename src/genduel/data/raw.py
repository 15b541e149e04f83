"""The raw dataset: IDX files, where to find them, and how they are verified.

:func:`load_source` looks for ``cfg.dataset`` in ``data/raw`` (also torchvision's layout under
it), then (Fashion-MNIST only) the Debian package's :data:`SYSTEM_DIR`, then downloads it
through torchvision when allowed; it checks md5 sums and image/label counts, and returns the
official train and test sets with their provenance. :mod:`genduel.data.splits` splits them.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genduel.config import DataConfig
from genduel.errors import DataError
from genduel.io import atomic_write, digest

log = logging.getLogger(__name__)

#: Where Debian's ``dataset-fashion-mnist`` package puts the four ``.gz`` files.
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: role -> IDX file stem, with the IDX rank (magic 0x0000080<rank>) each must have.
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}
EXPECTED_COUNTS = {"fashion_mnist": (60000, 10000), "mnist": (60000, 10000),
                   "cifar10": (50000, 10000)}
_TV_NAMES = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10"}
_PRETTY = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}
# md5 of the *decompressed* IDX files. torchvision publishes only the archives' md5, but
# Debian's dataset-fashion-mnist re-gzips them (new header timestamp), so an authentic copy
# fails the archive check; its content matches these (zalandoresearch/fashion-mnist values;
# MNIST: the extracted-file md5s of yann.lecun.com's archives).
RAW_MD5 = {
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}


# ----------------------------------------------------------------------------- IDX files
def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: not found") from exc
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: unreadable ({exc}); delete it and provide it again") from exc


def _parse_idx(raw: bytes, path: Path, ndim: int | None) -> np.ndarray:
    """Decode a uint8 IDX buffer: magic ``00 00 08 <ndim>``, ``ndim`` big-endian uint32 dims."""
    fix = f"{path}: corrupt or truncated IDX file; delete it and provide it again"
    magic = int.from_bytes(raw[:4].ljust(4, b"\xff"), "big")
    nd = magic & 0xFF
    if magic >> 8 != 0x08 or nd == 0 or (ndim is not None and nd != ndim):
        want = f"0x{0x800 + ndim:08x}" if ndim is not None else "0x0000080N"
        raise DataError(f"{fix} (magic number 0x{magic:08x}, expected {want})")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DataError(f"{fix} ({len(raw)} bytes, shorter than its header)")
    dims = struct.unpack(f">{nd}I", raw[4:header])
    if len(raw) != header + math.prod(dims):
        raise DataError(f"{fix} ({len(raw)} bytes; dims {dims} need {header + math.prod(dims)})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read a uint8 IDX file (optionally ``.gz``): images ``(N, H, W)``, labels ``(N,)``.

    Args:
        path: the file; gunzipped when its name ends in ``.gz``.
        ndim: required rank (3 for images, magic ``0x00000803``; 1 for labels, ``0x00000801``);
            ``None`` accepts any rank.

    Raises:
        DataError: missing file, bad magic number, or a size that disagrees with the header.
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path, ndim)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped, with a fixed mtime, when the name ends in ``.gz``)."""
    path, arr = Path(path), np.ascontiguousarray(array)
    if arr.dtype != np.uint8 or not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx needs uint8 of rank 1..255, got {arr.dtype} {arr.shape}")
    payload = struct.pack(f">HBB{arr.ndim}I", 0, 0x08, arr.ndim, *arr.shape) + arr.tobytes()
    atomic_write(path, gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)


# ----------------------------------------------------------------------------- finding data
@dataclass
class Source:
    """The raw dataset as loaded: official train and test sets plus provenance."""

    train_x: np.ndarray  # uint8 (N, C, H, W)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    directory: Path
    found_via: str
    files: dict[str, dict] = field(default_factory=dict)


def _find_idx(directory: Path) -> dict[str, Path] | None:
    """role -> path when all four IDX files (``.gz`` preferred) are in ``directory``."""
    found = {}
    for role, (stem, _) in IDX_FILES.items():
        hits = [p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()]
        if not hits:
            return None
        found[role] = hits[0]
    return found


def _check_complete(directory: Path, system_dir: Path) -> None:
    """Refuse a ``directory`` holding some but not all of the four IDX files: a silent fallback
    to another copy would train on data the user did not mean."""
    present = {role: any((directory / f"{stem}{ext}").is_file() for ext in (".gz", ""))
               for role, (stem, _) in IDX_FILES.items()}
    if any(present.values()) and not all(present.values()):
        missing = ", ".join(f"{IDX_FILES[r][0]}[.gz]" for r, ok in present.items() if not ok)
        raise DataError(f"{directory}: holds {sum(present.values())} of the 4 IDX files, "
                        f"missing {missing}; add them, or empty {directory} to use another copy "
                        f"({system_dir} or a download)")


def _download(dataset: str, raw_dir: Path) -> bool:
    """Fetch the dataset through torchvision into ``raw_dir``; False (logged) on failure."""
    import torchvision

    cls = getattr(torchvision.datasets, _TV_NAMES[dataset])
    log.info("downloading %s through torchvision into %s", _PRETTY[dataset], raw_dir)
    try:
        for train in (True, False):
            cls(root=str(raw_dir), train=train, download=True)
    except (RuntimeError, OSError) as exc:  # torchvision wraps URLError in RuntimeError
        log.warning("torchvision download failed: %s", " ".join(str(exc).split())[:400])
        return False
    return True


def _not_found(cfg: DataConfig, raw_dir: Path, looked: list[Path]) -> DataError:
    """One line listing where we looked and every way to provide the data."""
    stems = ", ".join(f"{s}[.gz]" for s, _ in IDX_FILES.values())
    ways = [f"put the IDX files ({stems}) in {raw_dir}/"]
    if cfg.dataset == "cifar10":
        ways = [f"unpack cifar-10-python.tar.gz into {raw_dir}/ (cifar-10-batches-py/)"]
    if cfg.dataset == "fashion_mnist":
        ways.append(f"`apt-get install dataset-fashion-mnist` (installs {SYSTEM_DIR}/)")
    dl = "" if cfg.allow_download else " with data.allow_download: true"
    ways.append(f"run on a machine with network access{dl} (torchvision download)")
    where = ", ".join(str(p) for p in looked)
    download = "download failed" if cfg.allow_download else "download disabled"
    return DataError(f"no {_PRETTY[cfg.dataset]} data found (looked in {where}; {download}); "
                     "provide it by: "
                     + "; or ".join(f"({i}) {w}" for i, w in enumerate(ways, 1)))


def _locate(cfg: DataConfig, raw_dir: Path, system_dir: Path) -> tuple[Path, str, dict | None]:
    """(directory, how it was found, role -> IDX path; None for CIFAR-10)."""
    tv_dir = raw_dir / _TV_NAMES[cfg.dataset] / "raw"  # where torchvision's download puts them
    if cfg.dataset == "cifar10":
        candidates = [(raw_dir / "cifar-10-batches-py", "raw_dir")]
    else:
        candidates = [(raw_dir, "raw_dir"), (tv_dir, "raw_dir (torchvision layout)")]
    if cfg.dataset == "fashion_mnist":
        candidates.append((system_dir, "system package dataset-fashion-mnist"))
    for directory, how in candidates:
        if cfg.dataset == "cifar10" and (directory / "batches.meta").is_file():
            return directory, how, None
        if cfg.dataset == "cifar10":
            continue
        if directory != system_dir:
            _check_complete(directory, system_dir)
        if files := _find_idx(directory):
            return directory, how, files
    if cfg.allow_download and _download(cfg.dataset, raw_dir):
        directory = candidates[0][0] if cfg.dataset == "cifar10" else tv_dir
        files = None if cfg.dataset == "cifar10" else _find_idx(directory)
        if cfg.dataset == "cifar10" or files:
            return directory, "torchvision download", files
    raise _not_found(cfg, raw_dir, [d for d, _ in candidates])


# ----------------------------------------------------------------------------- verification
def _check_md5(cfg: DataConfig, path: Path, stem: str, content: bytes) -> str:
    """How ``path`` was verified: its archive md5 (torchvision's), its content md5, or skipped."""
    if not cfg.verify_checksums:
        return "skipped"
    import torchvision

    published = dict(getattr(torchvision.datasets, _TV_NAMES[cfg.dataset]).resources)
    if path.suffix == ".gz" and digest(path, "md5") == published.get(path.name):
        return "archive md5 matches torchvision's published value"
    if digest(content, "md5") == RAW_MD5[cfg.dataset][stem]:
        return "decompressed md5 matches the published value"
    raise DataError(f"{path}: md5 does not match the published {_PRETTY[cfg.dataset]} file; "
                    "delete it and provide it again, or set data.verify_checksums: false")


def _check_counts(cfg: DataConfig, src: Source) -> None:
    """Images agree with labels; with checksums on, the official split sizes too."""
    for name, x, y in (("train", src.train_x, src.train_y), ("test", src.test_x, src.test_y)):
        if len(x) != len(y):
            stems = [IDX_FILES[f"{name}_{part}"][0] for part in ("images", "labels")]
            files = [n for n in src.files if n.removesuffix(".gz") in stems] or stems
            raise DataError(f"{src.directory}/{files[0]}: {len(x)} {name} images but "
                            f"{src.directory}/{files[-1]} has {len(y)} labels; delete the files "
                            "and provide them again")
        if len(y) and y.max() >= len(src.classes):
            raise DataError(f"{src.directory}: {name} label {y.max()} is not below "
                            f"{len(src.classes)} classes; delete the files and provide them again")
    want = EXPECTED_COUNTS[cfg.dataset]
    if cfg.verify_checksums and (len(src.train_x), len(src.test_x)) != want:
        got = f"{len(src.train_x)} train / {len(src.test_x)} test images"
        raise DataError(f"{src.directory}: {got}, expected {want[0]} / {want[1]}; "
                        "provide the complete dataset")


def _load_idx(cfg: DataConfig, directory: Path, how: str, files: dict[str, Path]) -> Source:
    """Read and verify the four IDX files; images become ``(N, 1, H, W)``."""
    import torchvision

    arrays, records = {}, {}
    for role, path in files.items():
        stem, ndim = IDX_FILES[role]
        content = _read_bytes(path)
        arr = _parse_idx(content, path, ndim)
        arrays[role] = arr[:, None] if ndim == 3 else arr.astype(np.int64)  # (N, 1, H, W)
        records[path.name] = {"sha256": digest(path, "sha256"),
                              "md5_check": _check_md5(cfg, path, stem, content)}
    classes = ([str(d) for d in range(10)] if cfg.dataset == "mnist"
               else list(torchvision.datasets.FashionMNIST.classes))
    return Source(arrays["train_images"], arrays["train_labels"], arrays["test_images"],
                   arrays["test_labels"], classes, directory, how, records)


def _load_cifar(cfg: DataConfig, directory: Path, how: str) -> Source:
    """CIFAR-10 through torchvision, which always checks every batch file's md5."""
    import torchvision

    root = str(directory.parent)
    try:
        train = torchvision.datasets.CIFAR10(root=root, train=True, download=False)
        test = torchvision.datasets.CIFAR10(root=root, train=False, download=False)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{directory}: CIFAR-10 batches are corrupt ({exc}); delete the folder "
                        "and provide it again") from exc
    names = [n for n, _ in train.train_list + train.test_list] + ["batches.meta"]
    records = {n: {"sha256": digest(directory / n, "sha256"),
                   "md5_check": "torchvision checked every batch file"} for n in names}
    return Source(train.data.transpose(0, 3, 1, 2).copy(), np.asarray(train.targets, np.int64),
                   test.data.transpose(0, 3, 1, 2).copy(), np.asarray(test.targets, np.int64),
                   list(train.classes), directory, how, records)


def load_source(cfg: DataConfig, raw_dir: Path, system_dir: Path | None = None) -> Source:
    """Find, read and verify the official train and test sets of ``cfg.dataset``.

    Looks in ``raw_dir``, then torchvision's layout under it, then (Fashion-MNIST only)
    ``system_dir`` (default :data:`SYSTEM_DIR`), then downloads if ``cfg.allow_download``.
    """
    system_dir = Path(SYSTEM_DIR if system_dir is None else system_dir)
    directory, how, files = _locate(cfg, Path(raw_dir), system_dir)
    log.info("reading %s from %s (%s)", _PRETTY[cfg.dataset], directory, how)
    src = (_load_cifar(cfg, directory, how) if files is None
           else _load_idx(cfg, directory, how, files))
    _check_counts(cfg, src)
    return src
