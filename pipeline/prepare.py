"""Stage ``prepare``: find and verify the raw images, split them, write ``data/prepared``.

Usage: ``python pipeline/prepare.py --raw-dir data/raw --out data/prepared`` (paths as in
dvc.yaml); parameters come from the ``data`` section of ``params.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from genduel import config
from genduel.data.raw import load_source
from genduel.data.splits import prepare
from genduel.stage import run_stage
from genduel.tracking.base import dataset_refs
from genduel.tracking.mlflow_store import stage_run
from genduel.workdir import staged

log = logging.getLogger("genduel.prepare")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare the train/val/test splits.")
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"),
                        help="raw IDX files or cifar-10-batches-py (default: data/raw)")
    parser.add_argument("--out", type=Path, default=Path("data/prepared"),
                        help="output folder for {train,val,test}.pt (default: data/prepared)")
    args = parser.parse_args(argv)

    def body() -> None:
        params = config.load_all()
        # Read and check the raw files before the MLflow run opens or anything is written; the
        # outputs appear whole at the end (genduel.workdir.staged), or not at all.
        source = load_source(params["data"], args.raw_dir)
        with stage_run("prepare", params["tracking"], config.flat_params(params, "data")) as tr:
            with staged("prepare", [args.out]) as staging:
                manifest = prepare(params["data"], args.raw_dir, staging.path(args.out),
                                   source=source)
            # Published: the datasets are named by their final paths, as the training runs do.
            tr.log_inputs(dataset_refs(args.out))
            tr.log_metrics({f"{k}_images": v["count"] for k, v in manifest["splits"].items()})
            tr.log_artifact(args.out / "manifest.json", "data")
            tr.log_artifact(args.out / "real_grid.png", "data")
        counts = ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
        log.info("%s from %s (%s): %s images of shape %s -> %s", manifest["dataset"],
                 manifest["source"]["dir"], manifest["source"]["found_via"], counts,
                 tuple(manifest["image_shape"]), args.out)

    return run_stage("prepare", body)


if __name__ == "__main__":
    sys.exit(main())
