"""dvc.yaml with its ``foreach`` stages expanded, for tools that run the stages without DVC.

DVC names the stages of ``foreach: ${runtime.seeds}`` ``train_vae@0``, ``train_vae@1``, ...
and substitutes ``${item}`` in each; a driver that reads ``cmd`` lines itself (the GPU check of
``../shared/gpu``, which runs the stages where DVC is not installed) needs them spelled out::

    python -m genduel.dvcyaml > dvc.expanded.yaml   # or: --in-place, in a throw-away copy

Only what the per-seed stages use is resolved: ``${item}`` for each value of the ``foreach``
list, a list given literally or as ``${section.key}`` of params.yaml. The order is DVC's: the
stages in file order, each ``foreach`` stage's items in list order.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"^\$\{\s*([\w.]+)\s*\}$")


def _items(spec: Any, params: Mapping[str, Any], stage: str) -> list[Any]:
    if isinstance(spec, list):
        return spec
    match = _REFERENCE.match(str(spec))
    value: Any = params
    for part in (match.group(1).split(".") if match else ()):
        value = value.get(part) if isinstance(value, Mapping) else None
    if not match or not isinstance(value, list):
        raise ValueError(f"dvc.yaml stage {stage}: foreach {spec!r} is not a list or a "
                         "${section.key} of params.yaml holding one")
    return value


def _substitute(value: Any, item: Any) -> Any:
    if isinstance(value, str):
        return value.replace("${item}", str(item))
    if isinstance(value, list):
        return [_substitute(v, item) for v in value]
    if isinstance(value, dict):
        return {_substitute(k, item): _substitute(v, item) for k, v in value.items()}
    return value


def expand(dvc: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``dvc`` with each ``foreach``/``do`` stage replaced by one stage per item."""
    stages: dict[str, Any] = {}
    for name, spec in dvc["stages"].items():
        if "foreach" not in spec:
            stages[name] = spec
            continue
        for item in _items(spec["foreach"], params, name):
            stages[f"{name}@{item}"] = _substitute(spec["do"], item)
    return {**dvc, "stages": stages}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genduel.dvcyaml",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvc", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--in-place", action="store_true",
                        help="rewrite --dvc (for a copy of the repository without DVC)")
    args = parser.parse_args(argv)
    try:
        out = expand(yaml.safe_load(args.dvc.read_text()), yaml.safe_load(args.params.read_text()))
    except (OSError, yaml.YAMLError, ValueError, KeyError) as exc:
        sys.stderr.write(f"genduel dvcyaml: error: {exc}\n")
        return 2
    text = yaml.safe_dump(out, sort_keys=False, width=100)
    if args.in_place:
        args.dvc.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
