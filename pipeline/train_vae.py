"""train_vae stage: a convolutional VAE with a discretized-logistic likelihood on 8-bit pixels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel.data.splits import load_split
from genduel.models.vae import build_vae
from genduel.stage import StageContext, launch_training, run_training, seeded_name
from genduel.train.vae import train_vae


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/train_vae"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_vae.json"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="where the run record (wall times, MLflow run id) goes")
    parser.add_argument("--seed", type=int, default=None,
                        help="the training seed of this run (one of runtime.seeds; dvc.yaml's "
                             "foreach passes it); omitted: the section's seed as it is")
    args = parser.parse_args(argv)

    def train(ctx: StageContext) -> dict[str, float]:
        return train_vae(ctx.params["vae"], load_split(args.data, "train"),
                         load_split(args.data, "val"), device=ctx.device, amp=ctx.amp,
                         tracker=ctx.tracker, checkpoint_path=ctx.checkpoint,
                         artifacts_dir=ctx.artifacts, world=ctx.world, resume=ctx.resume)

    name = seeded_name("train_vae", args.seed)
    return launch_training(name, __file__, argv, lambda: run_training(
        "train_vae", "vae", data=args.data, splits=("train", "val"),
        checkpoint=args.checkpoint, metrics=args.metrics, kind="vae",
        part="vae", build=build_vae, train=train, artifacts=args.artifacts,
        runs_dir=args.runs_dir, seed=args.seed))


if __name__ == "__main__":
    sys.exit(main())
