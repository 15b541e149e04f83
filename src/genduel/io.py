"""Files written whole or not at all, and their checksums.

Every file the pipeline produces goes through :func:`atomic_write`: the content is written to a
temporary file beside the target and moved over it with ``os.replace``, so a crash or Ctrl-C
never leaves a truncated file where DVC, a later stage or a user will read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, payload: bytes | Callable[[Path], None]) -> None:
    """Write ``payload`` to ``path`` via ``<path>.tmp`` and ``os.replace``; create the parent.

    Args:
        path: the target file.
        payload: the bytes, or a function that writes the temporary file it is given (for
            writers that need a path, such as ``torch.save``: an archive saved to a path is
            named after that file, so the temporary name is fixed, not random, to keep the
            bytes reproducible).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if isinstance(payload, bytes | bytearray | memoryview):
            tmp.write_bytes(payload)
        else:
            payload(tmp)
        os.replace(tmp, path)
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
