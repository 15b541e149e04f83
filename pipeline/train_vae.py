"""train_vae stage: a convolutional VAE with a discretized-logistic likelihood on 8-bit pixels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/train_vae"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_vae.json"))
    args = parser.parse_args(argv)

    def body() -> None:
        from genduel import stage as stages
        from genduel.data import splits as data
        from genduel.models import from_checkpoint
        from genduel.train.vae import train_vae

        def train(ctx: stages.StageContext) -> dict[str, float]:
            train_split = data.load_split(args.data, "train")
            val = data.load_split(args.data, "val")
            return train_vae(ctx.params["vae"], train_split, val, device=ctx.device, amp=ctx.amp,
                             tracker=ctx.tracker, checkpoint_path=args.checkpoint,
                             artifacts_dir=args.artifacts)

        stages.run_training("train_vae", "vae", checkpoint=args.checkpoint, metrics=args.metrics,
                            kind="vae", train=train,
                            rebuild=lambda ckpt: from_checkpoint(ckpt, "vae"))

    from genduel.stage import run_stage

    return run_stage("train_vae", body)


if __name__ == "__main__":
    sys.exit(main())
