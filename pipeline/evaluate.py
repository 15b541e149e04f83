"""evaluate stage: sample metrics (FID, KID, IS, precision/recall, coverage) and likelihood."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel import config
from genduel.evaluate.run import EvalPaths, run_evaluate
from genduel.stage import run_stage, seeded_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--judge", type=Path, default=Path("models/judge.pt"))
    parser.add_argument("--vae", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--vae-prior", type=Path, default=Path("models/vae_prior.pt"))
    parser.add_argument("--gan", type=Path, default=Path("models/gan.pt"))
    parser.add_argument("--gan-artifacts", type=Path, default=Path("artifacts/train_gan"))
    parser.add_argument("--out", type=Path, default=Path("eval"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="run records: the training runs' MLflow ids are read here and "
                             "evaluate.json is written here (default: runs)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the training seed of this run (one of runtime.seeds; dvc.yaml's "
                             "foreach passes it); omitted: the section's seed as it is")
    args = vars(parser.parse_args(argv))
    seed = args.pop("seed")
    paths = EvalPaths(**args)

    def body() -> None:
        params = config.load_all()
        if seed is not None:
            config.for_seed(params, seed)  # checks that runtime.seeds lists it
        run_evaluate(params["eval"], params["runtime"], params["tracking"], paths, seed=seed)

    return run_stage(seeded_name("evaluate", seed), body)


if __name__ == "__main__":
    sys.exit(main())
