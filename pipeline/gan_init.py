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
        from genduel.gan_init import write_init

        cfg = config.load_section("gan")
        content = write_init(cfg, args.vae, args.out)
        source = f"the VAE decoder ({args.vae})" if content["init_from_vae"] else "random init"
        logging.getLogger("genduel.gan_init").info("generator starts from %s", source)

    from genduel.cli import run_stage

    return run_stage("gan_init", body)


if __name__ == "__main__":
    sys.exit(main())
