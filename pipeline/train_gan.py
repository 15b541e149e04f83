"""train_gan stage: a DCGAN-style GAN trained with k discriminator steps per generator step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel.data.splits import load_split
from genduel.models.gan import build_generator
from genduel.stage import StageContext, launch_training, run_training, seeded_name
from genduel.train.gan import train_gan
from genduel.train.gan_init import load_init


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--init", type=Path, default=Path("models/gan_init.pt"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/gan.pt"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/train_gan"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_gan.json"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="where the run record (wall times, MLflow run id) goes")
    parser.add_argument("--seed", type=int, default=None,
                        help="the training seed of this run (one of runtime.seeds; dvc.yaml's "
                             "foreach passes it); omitted: the section's seed as it is")
    args = parser.parse_args(argv)

    def train(ctx: StageContext) -> dict[str, float]:
        cfg = ctx.params["gan"]
        return train_gan(cfg, load_split(args.data, "train"), device=ctx.device, amp=ctx.amp,
                         tracker=ctx.tracker, checkpoint_path=ctx.checkpoint,
                         artifacts_dir=ctx.artifacts, init_state=load_init(args.init, cfg),
                         world=ctx.world, resume=ctx.resume)

    name = seeded_name("train_gan", args.seed)
    return launch_training(name, __file__, argv, lambda: run_training(
        "train_gan", "gan", data=args.data, splits=("train",),
        checkpoint=args.checkpoint, metrics=args.metrics, kind="gan",
        part="generator", build=build_generator, train=train,
        artifacts=args.artifacts, inputs=(args.init,), runs_dir=args.runs_dir, seed=args.seed))


if __name__ == "__main__":
    sys.exit(main())
