"""gan_init stage: the generator's starting weights (the VAE decoder when gan.init_from_vae)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vae", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--out", type=Path, default=Path("models/gan_init.pt"))
    args = parser.parse_args(argv)

    def body() -> None:
        import logging

        from genduel import config
        from genduel.tracking.mlflow_store import stage_run
        from genduel.train.gan_init import write_init

        params = config.load_all()
        cfg = params["gan"]
        logged = {k: v for k, v in config.flatten("gan", cfg).items()
                  if k.split(".")[1] in ("init_from_vae", "latent_dim", "width", "conditional")}
        with stage_run("gan_init", params["tracking"], logged) as tracker:
            content = write_init(cfg, args.vae, args.out)
            tracker.log_metrics({"init_from_vae": float(content["init_from_vae"])})
        source = f"the VAE decoder ({args.vae})" if content["init_from_vae"] else "random init"
        logging.getLogger("genduel.gan_init").info("generator starts from %s", source)

    from genduel.stage import run_stage

    return run_stage("gan_init", body)


if __name__ == "__main__":
    sys.exit(main())
