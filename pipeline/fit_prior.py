"""fit_prior stage: the VAE's second stage, a density fitted to its aggregate posterior."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from genduel import config
from genduel.checkpoint import load_checkpoint, rebuild
from genduel.data.splits import load_split
from genduel.io import write_json
from genduel.models.vae import build_vae
from genduel.provenance import write_run_record
from genduel.runtime import resolve_device, seed_everything
from genduel.stage import model_example, run_stage, seeded_name
from genduel.tracking.base import dataset_refs
from genduel.tracking.mlflow_store import stage_run
from genduel.train.prior import fit_prior, fit_summary, save_fitted
from genduel.workdir import staged

log = logging.getLogger("genduel.fit_prior")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--vae", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--out", type=Path, default=Path("models/vae_prior.pt"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/fit_prior.json"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--seed", type=int, default=None,
                        help="the training seed of this run (one of runtime.seeds; dvc.yaml's "
                             "foreach passes it); omitted: the section's seed as it is")
    args = parser.parse_args(argv)

    def body() -> None:
        start = time.perf_counter()
        params = config.load_all()
        if args.seed is not None:
            params = config.for_seed(params, args.seed)
        cfg, rt = params["prior"], params["runtime"]
        source = load_checkpoint(args.vae, "vae")  # checked before the MLflow run opens
        vae = rebuild(source, "vae", build_vae, args.vae)
        train, val = load_split(args.data, "train"), load_split(args.data, "val")
        seed_everything(cfg.seed)
        logged = {**config.flatten("prior", cfg), **config.flatten("runtime", rt)}
        record = args.runs_dir / "fit_prior.json"
        with (stage_run("fit_prior", params["tracking"], logged, seed=args.seed) as tracker,
              staged(name, [args.out, args.metrics, record]) as staging):
            tracker.log_inputs(dataset_refs(args.data, ("train", "val")))
            fits, sampled_val_ll = fit_prior(cfg, vae, train, val, device=resolve_device(rt))
            save_fitted(vae, source, staging.path(args.out), fits, cfg)
            summary = fit_summary(fits, sampled_val_ll)
            tracker.log_metrics(summary)
            model = rebuild(load_checkpoint(staging.path(args.out), "vae"), "vae", build_vae)
            # "vae_prior": in MLflow's model list beside train_vae's "vae", the same network
            tracker.log_model(model, "vae_prior", model_example(model, "vae", args.data))
            write_json(staging.path(args.metrics), summary)
            write_run_record("fit_prior", {
                "mlflow_run_id": tracker.run_id,
                "fit_seconds": round(time.perf_counter() - start, 2),
                **{f"em_seconds_k{f.components}": round(f.seconds, 2) for f in fits}},
                staging.path(record).parent)
        log.info("prior: %d-component GMM (validation latents %.2f nats)",
                 summary["components"], summary["val_ll_nats"])

    name = seeded_name("fit_prior", args.seed)
    return run_stage(name, body)


if __name__ == "__main__":
    sys.exit(main())
