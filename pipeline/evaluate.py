"""evaluate stage: sample metrics (FID, KID, IS, precision/recall, coverage) and likelihood."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--judge", type=Path, default=Path("models/judge.pt"))
    parser.add_argument("--vae", type=Path, default=Path("models/vae.pt"))
    parser.add_argument("--gan", type=Path, default=Path("models/gan.pt"))
    parser.add_argument("--gan-artifacts", type=Path, default=Path("artifacts/train_gan"))
    parser.add_argument("--vae-metrics", type=Path, default=Path("metrics/train_vae.json"))
    parser.add_argument("--gan-metrics", type=Path, default=Path("metrics/train_gan.json"))
    parser.add_argument("--out", type=Path, default=Path("eval"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    args = parser.parse_args(argv)

    def body() -> None:
        from genduel import config, runtime
        from genduel import stage as cli
        from genduel.checkpoint import load_checkpoint
        from genduel.data import splits as data
        from genduel.evaluate import run as evaluate
        from genduel.models import from_checkpoint
        from genduel.tracking.mlflow_store import log_to_run, stage_run

        params = config.load_all()
        cfg = params["eval"]
        runtime.seed_everything(cfg.seed)
        device = runtime.resolve_device(params["runtime"])
        judge_ckpt = load_checkpoint(args.judge, "judge")
        ckpts = {"vae": load_checkpoint(args.vae, "vae"), "gan": load_checkpoint(args.gan, "gan")}
        inputs = evaluate.EvalInputs(
            judge=from_checkpoint(judge_ckpt, "judge"),
            vae=from_checkpoint(ckpts["vae"], "vae"),
            generator=from_checkpoint(ckpts["gan"], "generator"),
            train=data.load_split(args.data, "train"), val=data.load_split(args.data, "val"),
            test=data.load_split(args.data, "test"),
            judge_sha256=evaluate.sha256_file(args.judge),
            judge_accuracy=float(judge_ckpt["extra"]["test_accuracy"]),
            model_params={m: c["extra"].get("config", {}) for m, c in ckpts.items()},
            gan_artifacts=args.gan_artifacts)
        with stage_run("evaluate", params["tracking"],
                       config.flat_params(params, "runtime", "eval")) as tracker:
            results = evaluate.evaluate_all(cfg, inputs, device, args.out)
            for name, values in results.items():
                numbers, details = evaluate.split_details(values)
                cli.write_json(args.metrics_dir / f"eval_{name}.json", numbers)
                cli.write_json(args.out / f"details_{name}.json",
                               {**details, "mlflow_run_id": tracker.run_id})
                tracker.log_metrics({f"{name}/{k}": v for k, v in numbers.items()})
            tracker.log_artifact(args.out / "samples_vae.png", "grids")
            tracker.log_artifact(args.out / "samples_gan.png", "grids")
        series = evaluate.diagnostics_series(args.out / "gan_diagnostics.csv")
        for name, path in (("vae", args.vae_metrics), ("gan", args.gan_metrics)):
            run_id = json.loads(path.read_text()).get("mlflow_run_id", "")
            log_to_run(params["tracking"], run_id, results[name],
                       series=series if name == "gan" else ())

    from genduel.stage import run_stage

    return run_stage("evaluate", body)


if __name__ == "__main__":
    sys.exit(main())
