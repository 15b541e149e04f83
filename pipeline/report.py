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
from genduel.workdir import staged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--eval", type=Path, default=Path("eval"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="run records shown for wall times, run ids and machines; not a "
                             "dependency (default: runs)")
    args = parser.parse_args(argv)

    def body() -> None:
        params = config.load_all()
        # Read and check every input before the MLflow run opens or anything is written; the
        # report appears whole at the end (genduel.workdir.staged), or the old one stays.
        inputs = load_inputs(args.metrics_dir, args.data, params["report"].title, args.eval,
                             commit=git_commit(Path.cwd()), artifacts_dir=args.artifacts,
                             runs_dir=args.runs_dir)
        logged = config.flat_params(params, "report")
        with (stage_run("report", params["tracking"], logged) as tracker,
              staged("report", [args.out]) as staging):
            path = write_report(inputs, eval_dir=args.eval, artifacts_dir=args.artifacts,
                                data_dir=args.data, out_dir=staging.path(args.out))
            tracker.log_artifact(path.parent, "report")

    return run_stage("report", body)


if __name__ == "__main__":
    sys.exit(main())
