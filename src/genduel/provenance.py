"""What a reader needs to reproduce a number: library versions and the code's commit."""

from __future__ import annotations

import platform
from importlib import metadata

#: Distributions whose versions every metrics file and the report record.
LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "torchmetrics", "torch-fidelity",
             "scikit-learn", "mlflow", "dvc", "genduel")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
