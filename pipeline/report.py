"""report stage: one Markdown + HTML document comparing the VAE and the GAN."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel import config
from genduel.report.build import write_report
from genduel.report.inputs import load_inputs
from genduel.stage import run_stage
from genduel.tracking.mlflow_store import git_commit, stage_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--eval", type=Path, default=Path("eval"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)

    def body() -> None:
        params = config.load_all()
        # Read every input before the MLflow run opens: a missing file leaves no failed run.
        inputs = load_inputs(args.metrics_dir, args.data, params["report"].title, args.eval,
                             commit=git_commit(Path.cwd()))
        logged = config.flat_params(params, "report")
        with stage_run("report", params["tracking"], logged) as tracker:
            path = write_report(inputs, eval_dir=args.eval, artifacts_dir=args.artifacts,
                                data_dir=args.data, out_dir=args.out)
            tracker.log_artifact(path.parent, "report")

    return run_stage("report", body)


if __name__ == "__main__":
    sys.exit(main())
