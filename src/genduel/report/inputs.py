"""What the report reads: every metrics, eval and data file, parsed once into :class:`ReportInputs`.

Required inputs (the metrics JSON of every model, the judge and both trainings, each model's
protocol details, the data manifest) raise :class:`~genduel.errors.DataError` when missing or
unreadable. Optional ones are tolerated when absent: without ``eval/gan_diagnostics.csv`` the
report has no diagnostics section, without ``eval/studies/index.json`` no latent-space section,
and an eval JSON without ``model_params`` (older runs) drops the settings table.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from genduel.config import GAN_LOSSES
from genduel.errors import DataError
from genduel.evaluate import gan_diagnostics as diag
from genduel.io import read_bytes, read_csv, read_json, read_png
from genduel.metrics.seeds import gather_row
from genduel.provenance import read_run_record
from genduel.report.verdict import PER_SEED

#: The models' rows (the VAE twice, once per sampler), then real data scored the same way (the
#: floor of the baseline ladder).
MODELS = ("vae", "vae_prior", "gan", "real")
#: The sampled models, as the evaluate stage names their files (``samples_<model>.png``, ...).
SAMPLERS = MODELS[:3]
#: The rungs above the floor: samplers that learn only pixel statistics (evaluate's BASELINES).
BASELINES = ("class_gaussians", "pixel_gaussian")
#: Every row the evaluate stage writes, in the report's column order.
ROWS = (*MODELS, *BASELINES)
COLUMNS = {"vae": "VAE, z ~ N(0, I)", "vae_prior": "VAE, z ~ GMM fitted to q(z)", "gan": "GAN",
           "real": "Real data (test vs train)",
           "class_gaussians": "Per-class pixel Gaussians", "pixel_gaussian": "One pixel Gaussian"}


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows, already parsed; built by :func:`load_inputs`."""

    evals: dict[str, dict[str, Any]]  # row -> metrics/eval_<row>.json + its details (ROWS)
    judge: dict[str, Any]  # metrics/judge.json
    training: dict[str, dict[str, Any]]  # "vae"/"gan" -> metrics/train_<model>.json
    manifest: dict[str, Any]  # data/prepared/manifest.json
    title: str  # report.title of params.yaml
    commit: str  # the code's git commit
    diagnostics: list[dict[str, Any]] = field(default_factory=list)  # eval/gan_diagnostics.csv
    studies: list[dict[str, str]] = field(default_factory=list)  # eval/studies/index.json
    studies_dir: Path = Path("eval/studies")  # where the study figures are
    #: stage -> runs/<stage>.json (wall times, MLflow run ids, machine; {} when absent)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: metrics/fit_prior.json: the fitted prior's size and its candidates' fit
    prior_fit: dict[str, Any] = field(default_factory=dict)
    #: the training seeds of runtime.seeds; the figures are the first one's
    seeds: tuple[int, ...] = (0,)

    @property
    def protocol(self) -> dict[str, Any]:
        """The evaluation protocol (the same for every model; the VAE's copy is read)."""
        return self.evals["vae"]["protocol"]

    @property
    def gan_loss(self) -> str:
        """``gan.loss`` from the GAN's model_params; without them (older runs), critic scores
        outside [0, 1] in the diagnostics mean WGAN-GP (probabilities cannot leave it)."""
        loss = (self.evals["gan"].get("model_params") or {}).get("loss")
        if loss in GAN_LOSSES:
            return loss
        values = [diag.number(r, k) for r in self.diagnostics for k in ("d_real", "d_fake")]
        return "wgan_gp" if any(v < 0 or v > 1 for v in values) else "non_saturating"

    @property
    def classes(self) -> list[str]:
        """The class names of the manifest, or ``0`` ... ``9`` when it names none."""
        return self.manifest.get("classes") or [str(i) for i in range(10)]


#: Protocol entries the report's tables read (``eval/details_<row>.json``'s ``protocol``).
PROTOCOL_KEYS = ("libraries", "num_samples", "draws", "sample_seeds", "reference", "pixels",
                 "features", "judge_sha256", "is_splits", "kid_subsets", "kid_subset_size",
                 "pr_k", "dc_k")
#: CSV files of the training stages the plots read (under ``artifacts/``), with their columns.
TRAINING_CSV = {"train_vae/history.csv": ("step",),
                "train_vae/epochs.csv": ("epoch", "val_elbo_nats"),
                "train_gan/history.csv": ("step", "d_loss", "g_loss", "d_real", "d_fake")}
#: Run records shown (wall times, MLflow run ids, machines): informational, not DVC deps.
RUN_RECORDS = ("judge", "train_vae", "fit_prior", "train_gan", "evaluate")
#: The fix for a damaged output of an earlier stage (DVC caches it: checkout restores it).
_FIX = "restore it with `dvc checkout` or run the stages before report (dvc repro)"
#: The fix for a damaged metrics file (``cache: false``: only its stage rewrites it).
_METRICS_FIX = "re-run the stage that writes it (dvc repro)"


def _read_json(path: Path, keys: tuple[str, ...] = (), fix: str = _FIX) -> dict[str, Any]:
    return read_json(path, fix, keys)


def _read_studies(studies_dir: Path) -> list[dict[str, str]]:
    """The entries of ``studies_dir/index.json`` (``[]`` when absent), each naming a file that
    exists."""
    index = studies_dir / "index.json"
    if not index.is_file():
        return []
    studies = read_json(index, "re-run the evaluate stage", ("figures",))["figures"]
    if not isinstance(studies, list):
        raise DataError(f"{index}: 'figures' is not a list; re-run the evaluate stage")
    for entry in studies:
        if not isinstance(entry, dict) or not entry.get("file"):
            raise DataError(f"{index}: entry {entry!r} has no 'file'")
        if not (studies_dir / entry["file"]).is_file():
            raise DataError(f"{index} lists {entry['file']!r} but {studies_dir / entry['file']} "
                            "does not exist; re-run the evaluate stage")
    return studies


def _check_protocol(inputs: ReportInputs, eval_dir: Path) -> None:
    proto = inputs.evals["vae"].get("protocol")
    path = eval_dir / "details_vae.json"
    if not isinstance(proto, dict):
        raise DataError(f"{path}: no 'protocol' object; re-run the evaluate stage")
    missing = [k for k in PROTOCOL_KEYS if k not in proto]
    if missing:
        raise DataError(f"{path}: protocol lacks {', '.join(missing)}; re-run the evaluate stage")


def check_figure_inputs(inputs: ReportInputs, *, eval_dir: Path, artifacts_dir: Path,
                        data_dir: Path) -> None:
    """Read every image, table and array the figures are made of, so that a missing,
    truncated or malformed one stops the report before it writes anything.

    Raises:
        DataError: ``<file>: <what is wrong>; <fix>``.
    """
    pngs = [data_dir / "real_grid.png",
            *(eval_dir / f"samples_{m}.png" for m in SAMPLERS),
            eval_dir / "reconstructions_vae.png", eval_dir / "prior_gap.png",
            *(p for m in SAMPLERS if (p := eval_dir / f"memorization_{m}.png").is_file()),
            *(inputs.studies_dir / e["file"] for e in inputs.studies),
            *(p for m in ("vae", "gan")
              for p in sorted((artifacts_dir / f"train_{m}" / "grids").glob("samples_epoch*.png")))]
    for path in pngs:
        read_png(path, _FIX)
    for rel, columns in TRAINING_CSV.items():
        read_csv(artifacts_dir / rel, _FIX, columns)
    for name, key in (*((m, "logits") for m in SAMPLERS), ("real", "test_logits")):
        path = eval_dir / f"features_{name}.npz"
        data = read_bytes(path, _FIX)
        try:
            with np.load(io.BytesIO(data)) as npz:
                ok = key in npz.files and npz[key].ndim == 2
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable .npz archive (truncated or corrupt: "
                            f"{type(exc).__name__}); {_FIX}") from None
        if not ok:
            raise DataError(f"{path}: no 2-D array {key!r}; {_FIX}")


def load_inputs(metrics_dir: Path, data_dir: Path, title: str, eval_dir: Path | None = None, *,
                commit: str, artifacts_dir: Path | None = None,
                runs_dir: Path | None = None, judge_dir: Path | None = None,
                judge_runs_dir: Path | None = None) -> ReportInputs:
    """Read every input of the report.

    Args:
        metrics_dir: ``eval_<model>.json`` (the numbers), ``judge.json``, ``train_<model>.json``.
        data_dir: the prepared data, for ``manifest.json``.
        title: the report's title.
        eval_dir: the evaluate stage's outputs. When given, each model's numbers are merged with
            their protocol and settings (``details_<model>.json``, required) and the optional
            ``gan_diagnostics.csv`` and ``studies/index.json`` are read where present.
        commit: the code's git commit, shown in the report.
        artifacts_dir: the training stages' artifacts; when given (with ``eval_dir``), every
            file the figures are made of is read and checked too (:func:`check_figure_inputs`).
        runs_dir: the run records (``runs/<stage>.json``) of :data:`RUN_RECORDS`, shown where
            present; they are informational and not DVC dependencies of the report.
        judge_dir, judge_runs_dir: where the judge's ``judge.json`` and run record are, when
            not in ``metrics_dir`` and ``runs_dir``: the judge is trained once, the models per
            seed.

    Raises:
        DataError: a required file is missing, truncated or malformed (not JSON, not an
            object, a key or column missing, a partial CSV row, a truncated PNG), or the
            studies index is malformed or lists a file that does not exist.
    """
    inputs = ReportInputs(
        evals={m: {**_read_json(metrics_dir / f"eval_{m}.json", ("fid",), _METRICS_FIX),
                   **(_read_json(eval_dir / f"details_{m}.json", ("protocol",))
                      if eval_dir else {})}
               for m in ROWS},
        judge=_read_json((judge_dir or metrics_dir) / "judge.json", fix=_METRICS_FIX),
        training={m: _read_json(metrics_dir / f"train_{m}.json", fix=_METRICS_FIX)
                  for m in ("vae", "gan")},
        prior_fit=_read_json(metrics_dir / "fit_prior.json", ("components",), _METRICS_FIX),
        manifest=_read_json(data_dir / "manifest.json"),
        title=title,
        commit=commit,
        runs={s: read_run_record(s, judge_runs_dir if judge_runs_dir and s == "judge"
                                 else runs_dir)
              for s in RUN_RECORDS} if runs_dir else {},
    )
    if eval_dir is None:
        return inputs
    _check_protocol(inputs, eval_dir)
    csv_path = eval_dir / "gan_diagnostics.csv"
    inputs = replace(inputs,
                     diagnostics=diag.read_table(csv_path) if csv_path.is_file() else [],
                     studies=_read_studies(eval_dir / "studies"),
                     studies_dir=eval_dir / "studies")
    if artifacts_dir is not None:
        check_figure_inputs(inputs, eval_dir=eval_dir, artifacts_dir=artifacts_dir,
                            data_dir=data_dir)
    return inputs


#: The rows trained once per seed, gathered over the seeds; the others (real data and the
#: pixel baselines) do not depend on the seed and come from the first seed's evaluation.
SEEDED_ROWS = SAMPLERS
#: Where the per-seed stages write, under each of metrics/, eval/, artifacts/ and runs/.
SEEDS_DIR = "seeds"


def seed_dir(root: Path, seed: int) -> Path:
    """``<root>/seeds/<seed>``: a per-seed stage's folder (dvc.yaml's ``foreach``)."""
    return Path(root) / SEEDS_DIR / str(seed)


def read_seed_rows(metrics_dir: Path, seeds: tuple[int, ...]) -> dict[str, list[dict[str, Any]]]:
    """Each row's ``eval_<row>.json`` of every seed, in seed order.

    Raises:
        DataError: a seed's file is missing or malformed (the fix names its stage).
    """
    rows: dict[str, list[dict[str, Any]]] = {row: [] for row in ROWS}
    for seed in seeds:
        for row in ROWS:
            path = seed_dir(metrics_dir, seed) / f"eval_{row}.json"
            rows[row].append(read_json(path, f"run its stage: dvc repro evaluate@{seed}",
                                       ("fid",)))
    return rows


def gather_seeds(seed_rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The metrics file of each row over the seeds: the models' rows gathered
    (:func:`genduel.metrics.seeds.gather_row`), the others as the first seed has them."""
    return {row: gather_row(values) if row in SEEDED_ROWS else dict(values[0])
            for row, values in seed_rows.items()}


def load_seeded_inputs(metrics_dir: Path, data_dir: Path, title: str, eval_dir: Path, *,
                       seeds: tuple[int, ...], commit: str, artifacts_dir: Path,
                       runs_dir: Path) -> tuple[ReportInputs, dict[str, dict[str, Any]]]:
    """The report's inputs over the training seeds, and the gathered metrics files.

    The numbers of every model row are the mean over ``seeds`` with the spread over them
    (:func:`gather_seeds`), each row also holding its per-seed values under
    :data:`genduel.report.verdict.PER_SEED` for the tie rule and the strip plots; pictures,
    training curves and details are the first seed's (``<dir>/seeds/<first>``). The judge's
    files are at the top of ``metrics_dir`` / ``runs_dir``.

    Raises:
        DataError: an input of any seed is missing or malformed.
    """
    first = seeds[0]
    inputs = load_inputs(seed_dir(metrics_dir, first), data_dir, title, seed_dir(eval_dir, first),
                         commit=commit, artifacts_dir=seed_dir(artifacts_dir, first),
                         runs_dir=seed_dir(runs_dir, first), judge_dir=metrics_dir,
                         judge_runs_dir=runs_dir)
    seed_rows = read_seed_rows(metrics_dir, seeds)
    gathered = gather_seeds(seed_rows)
    evals = {}
    for row, numbers in gathered.items():
        details = {k: v for k, v in inputs.evals[row].items()
                   if k not in seed_rows[row][0] and k not in numbers}
        per_seed = ({k: [r.get(k) for r in seed_rows[row]] for k in numbers}
                    if row in SEEDED_ROWS else {})
        evals[row] = {**numbers, **details, PER_SEED: per_seed}
    return replace(inputs, evals=evals, seeds=tuple(seeds)), gathered
