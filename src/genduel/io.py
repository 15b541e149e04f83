"""Files written whole or not at all, their checksums, and inputs checked where they are read.

Every file the pipeline produces goes through :func:`atomic_write`: the content is written to a
temporary file beside the target and moved over it with ``os.replace``, so a crash or Ctrl-C
never leaves a truncated file where DVC, a later stage or a user will read it; a full disk is
one :class:`~genduel.errors.DataError` line and leaves no temporary file behind.

Every file a stage reads goes through a reader here (:func:`read_json`, :func:`read_csv`,
:func:`read_png`) or :func:`genduel.checkpoint.load_pt`: a missing, truncated or malformed file
is one ``DataError`` line ``<file>: <what is wrong>; <fix>``, never a traceback.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from genduel.errors import DataError

#: The last 12 bytes of every whole PNG file: its IEND chunk (length 0, type, CRC).
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: What torch's archive writer says when the disk fills up under it (it raises RuntimeError).
_TORCH_DISK_FULL = ("unexpected pos", "file write failed", "No space left on device")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed because the disk (or quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_DISK_FULL)


def atomic_write(path: str | Path, payload: bytes | Callable[[Path], None]) -> None:
    """Write ``payload`` to ``path`` via ``<path>.tmp`` and ``os.replace``; create the parent.

    Args:
        path: the target file.
        payload: the bytes, or a function that writes the temporary file it is given (for
            writers that need a path, such as ``torch.save``: an archive saved to a path is
            named after that file, so the temporary name is fixed, not random, to keep the
            bytes reproducible).

    Raises:
        DataError: the disk is full (``ENOSPC``, or torch's ``unexpected pos`` / ``file write
            failed``); the temporary file is removed and ``path`` keeps what it held.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(payload, bytes | bytearray | memoryview):
            tmp.write_bytes(payload)
        else:
            payload(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if disk_full(exc):
            raise DataError(f"no space left on device writing {path}; free space and "
                            "re-run") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented, key-sorted JSON (atomically)."""
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def digest(data: bytes | str | Path, algo: str = "sha256") -> str:
    """Hex digest of bytes or of a file's content (read in 1 MiB blocks)."""
    h = hashlib.new(algo, usedforsecurity=False)
    if isinstance(data, bytes):
        h.update(data)
        return h.hexdigest()
    with open(data, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``values`` that are numbers (``bool`` excluded), as floats: what metrics
    files and MLflow metrics may hold."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


# ----------------------------------------------------------------------------- checked reads
def read_bytes(path: str | Path, fix: str) -> bytes:
    """The bytes of ``path``; ``DataError`` ``<path>: not found; <fix>`` when it is missing."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {fix}") from None
    except OSError as exc:  # a folder, no permission, an I/O error
        raise DataError(f"{path}: unreadable ({exc.strerror or exc.__class__.__name__}); "
                        f"{fix}") from None


def read_json(path: str | Path, fix: str, keys: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object from ``path`` holding every key of ``keys``.

    Raises:
        DataError: ``<path>: <what is wrong>; <fix>``: missing, not JSON (e.g. truncated), not
            an object, or a key missing.
    """
    path = Path(path)
    text = read_bytes(path, fix)
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise DataError(f"{path}: not valid JSON (truncated or corrupt{where}); {fix}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: holds a JSON {type(data).__name__}, not an object; {fix}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataError(f"{path}: missing key{'s' * (len(missing) > 1)} "
                        f"{', '.join(map(repr, missing))}; {fix}")
    return data


def _cell(path: Path, line: int, key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{path}: line {line}, column {key!r} is {value!r}, not a number "
                        "(a partial row?)") from None


def read_csv(path: str | Path, fix: str, columns: Iterable[str] = (),
             numbers: bool = True) -> list[dict[str, Any]]:
    """The rows of a CSV file with a header, each a dict (floats when ``numbers``).

    Every row must have as many cells as the header (what a crash during an append leaves
    does not) and the header every name of ``columns``; with ``numbers`` every cell must be a
    number (``nan`` and ``inf`` count; an empty cell reads as NaN).

    Raises:
        DataError: ``<path>: <what is wrong>; <fix>``.
    """
    path = Path(path)
    try:
        text = read_bytes(path, fix).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; {fix}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}: empty, no header row; {fix}")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing column{'s' * (len(missing) > 1)} "
                        f"{', '.join(missing)}; {fix}")
    rows = []
    for cells in reader:
        if len(cells) != len(header):
            raise DataError(f"{path}: line {reader.line_num} has {len(cells)} cells for "
                            f"{len(header)} columns (a partial row?); {fix}")
        if numbers:
            rows.append({k: (_cell(path, reader.line_num, k, v) if v.strip() else math.nan)
                         for k, v in zip(header, cells, strict=True)})
        else:
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def read_png(path: str | Path, fix: str) -> bytes:
    """The bytes of a PNG file, decoded once to prove it whole (a truncated file is refused).

    Raises:
        DataError: ``<path>: <what is wrong>; <fix>``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    data = read_bytes(path, fix)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise DataError(f"{path}: a {img.format} image, not a PNG; {fix}")
            img.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable PNG ({str(exc) or type(exc).__name__}); "
                        f"{fix}") from None
    if not data.endswith(_PNG_END):  # PIL decodes a file cut after its pixels without a word
        raise DataError(f"{path}: not a readable PNG (truncated: no IEND chunk); {fix}")
    return data
