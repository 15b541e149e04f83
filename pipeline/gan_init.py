"""gan_init stage: the generator's starting weights (the VAE decoder when gan.init_from_vae)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from genduel import config
from genduel.stage import run_stage, seeded_name
from genduel.tracking.mlflow_store import stage_run
from genduel.train.gan_init import make_init, save_init
from genduel.workdir import staged

log = logging.getLogger("genduel.gan_init")
#: The params this stage depends on (dvc.yaml), and the only ones its MLflow run records.
LOGGED = ("gan.init_from_vae", "gan.latent_dim", "gan.width", "gan.conditional")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vae", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--out", type=Path, default=Path("models/gan_init.pt"))
    parser.add_argument("--seed", type=int, default=None,
                        help="the training seed of this run (one of runtime.seeds; dvc.yaml's "
                             "foreach passes it); omitted: the section's seed as it is")
    args = parser.parse_args(argv)

    def body() -> None:
        params = config.load_all()
        if args.seed is not None:
            params = config.for_seed(params, args.seed)
        cfg = params["gan"]
        logged = {k: v for k, v in config.flatten("gan", cfg).items() if k in LOGGED}
        content = make_init(cfg, args.vae)  # reads and checks the VAE before anything opens
        with (stage_run("gan_init", params["tracking"], logged, seed=args.seed) as tracker,
              staged(name, [args.out]) as staging):
            save_init(content, staging.path(args.out))
            tracker.log_metrics({"init_from_vae": float(content["init_from_vae"])})
        source = f"the VAE decoder ({args.vae})" if content["init_from_vae"] else "random init"
        log.info("generator starts from %s", source)

    name = seeded_name("gan_init", args.seed)
    return run_stage(name, body)


if __name__ == "__main__":
    sys.exit(main())
