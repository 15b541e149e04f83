"""judge stage: the classifier whose features and class probabilities feed FID, IS and friends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel.data.splits import load_split
from genduel.models.judge import build_judge
from genduel.stage import StageContext, launch_training, run_training
from genduel.train.judge import train_judge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/judge.pt"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/judge.json"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="where the run record (wall times, MLflow run id) goes")
    args = parser.parse_args(argv)

    def train(ctx: StageContext) -> dict[str, float]:
        splits = [load_split(args.data, s) for s in ("train", "val", "test")]
        return train_judge(ctx.params["judge"], *splits, device=ctx.device, amp=ctx.amp,
                           tracker=ctx.tracker, checkpoint_path=ctx.checkpoint,
                           world=ctx.world, resume=ctx.resume)

    return launch_training("judge", __file__, argv, lambda: run_training(
        "judge", "judge", data=args.data, splits=("train", "val", "test"),
        checkpoint=args.checkpoint, metrics=args.metrics, kind="judge",
        part="judge", build=build_judge, train=train, runs_dir=args.runs_dir))


if __name__ == "__main__":
    sys.exit(main())
