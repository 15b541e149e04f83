"""train_gan stage: a DCGAN-style GAN trained with k discriminator steps per generator step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--init", type=Path, default=Path("models/gan_init.pt"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/gan.pt"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/train_gan"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_gan.json"))
    args = parser.parse_args(argv)

    def body() -> None:
        from genduel import stage as stages
        from genduel.data import splits as data
        from genduel.models import from_checkpoint
        from genduel.train.gan import train_gan
        from genduel.train.gan_init import load_init

        def train(ctx: stages.StageContext) -> dict[str, float]:
            cfg = ctx.params["gan"]
            return train_gan(cfg, data.load_split(args.data, "train"), device=ctx.device,
                             amp=ctx.amp, tracker=ctx.tracker, checkpoint_path=args.checkpoint,
                             artifacts_dir=args.artifacts, init_state=load_init(args.init, cfg))

        stages.run_training("train_gan", "gan", checkpoint=args.checkpoint, metrics=args.metrics,
                            kind="gan", train=train,
                            rebuild=lambda ckpt: from_checkpoint(ckpt, "generator"))

    from genduel.stage import run_stage

    return run_stage("train_gan", body)


if __name__ == "__main__":
    sys.exit(main())
