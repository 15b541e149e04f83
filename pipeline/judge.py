"""judge stage: train the classifier whose features and class probabilities feed FID and IS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/judge.pt"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/judge.json"))
    args = parser.parse_args(argv)

    def body() -> None:
        from genduel import stage as stages
        from genduel.data import splits as data
        from genduel.models import from_checkpoint
        from genduel.train.judge import train_judge

        def train(ctx: stages.StageContext) -> dict[str, float]:
            splits = [data.load_split(args.data, s) for s in ("train", "val", "test")]
            return train_judge(ctx.params["judge"], *splits, device=ctx.device, amp=ctx.amp,
                               tracker=ctx.tracker, checkpoint_path=args.checkpoint)


        stages.run_training("judge", "judge", checkpoint=args.checkpoint, metrics=args.metrics,
                            kind="judge", train=train,
                            rebuild=lambda ckpt: from_checkpoint(ckpt, "judge"))

    from genduel.stage import run_stage

    return run_stage("judge", body)


if __name__ == "__main__":
    sys.exit(main())
