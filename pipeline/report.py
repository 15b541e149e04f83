"""report stage: the training seeds gathered (mean and spread over seeds, the metrics files
``metrics/eval_<row>.json``) and one Markdown + HTML document comparing the VAE and the GAN."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel import config
from genduel.io import write_json
from genduel.report.build import write_report
from genduel.report.inputs import ROWS, load_seeded_inputs, seed_dir
from genduel.stage import run_stage
from genduel.tracking.evaluation import log_seed_summary
from genduel.tracking.mlflow_store import git_commit, stage_run
from genduel.workdir import staged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"),
                        help="judge.json, seeds/<seed>/ of each training seed, and where the "
                             "gathered eval_<row>.json go")
    parser.add_argument("--eval", type=Path, default=Path("eval"),
                        help="the evaluate stages' folders, seeds/<seed>/")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                        help="the training stages' artifacts, seeds/<seed>/")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="run records shown for wall times, run ids and machines; not a "
                             "dependency (default: runs)")
    args = parser.parse_args(argv)

    def body() -> None:
        params = config.load_all()
        seeds = tuple(params["runtime"].seeds)
        # Read and check every input of every seed before the MLflow run opens or anything is
        # written; the outputs appear whole at the end (genduel.workdir.staged), or the old
        # ones stay.
        inputs, gathered = load_seeded_inputs(
            args.metrics_dir, args.data, params["report"].title, args.eval, seeds=seeds,
            commit=git_commit(Path.cwd()), artifacts_dir=args.artifacts, runs_dir=args.runs_dir)
        files = {row: args.metrics_dir / f"eval_{row}.json" for row in ROWS}
        logged = {**config.flat_params(params, "report"), "runtime.seeds": list(seeds)}
        with (stage_run("report", params["tracking"], logged) as tracker,
              staged("report", [args.out, *files.values()]) as staging):
            for row, path in files.items():
                write_json(staging.path(path), gathered[row])
            path = write_report(inputs, eval_dir=seed_dir(args.eval, seeds[0]),
                                artifacts_dir=seed_dir(args.artifacts, seeds[0]),
                                data_dir=args.data, out_dir=staging.path(args.out))
            tracker.log_artifact(path.parent, "report")
            log_seed_summary(tracker, gathered)

    return run_stage("report", body)


if __name__ == "__main__":
    sys.exit(main())
