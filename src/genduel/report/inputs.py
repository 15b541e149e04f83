"""What the report reads: every metrics, eval and data file, parsed once into :class:`ReportInputs`.

Required inputs (the metrics JSON of every model, the judge and both trainings, each model's
protocol details, the data manifest) raise :class:`~genduel.errors.DataError` when missing or
unreadable. Optional ones are tolerated when absent: without ``eval/gan_diagnostics.csv`` the
report has no diagnostics section, without ``eval/studies/index.json`` no latent-space section,
and an eval JSON without ``model_params`` (older runs) drops the settings table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genduel.config import GAN_LOSSES
from genduel.errors import DataError
from genduel.evaluate import gan_diagnostics as diag

#: The two models, then real data scored the same way (the floor of the baseline ladder).
MODELS = ("vae", "gan", "real")
#: The rungs above the floor: samplers that learn only pixel statistics (evaluate's BASELINES).
BASELINES = ("class_gaussians", "pixel_gaussian")
#: Every row the evaluate stage writes, in the report's column order.
ROWS = (*MODELS, *BASELINES)
COLUMNS = {"vae": "VAE", "gan": "GAN", "real": "Real data (test vs train)",
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is missing or unreadable ({exc.__class__.__name__}); run "
                        "the stages before report: dvc repro") from exc


def _read_studies(studies_dir: Path) -> list[dict[str, str]]:
    """The entries of ``studies_dir/index.json`` (``[]`` when absent), each naming a file that
    exists."""
    index = studies_dir / "index.json"
    if not index.is_file():
        return []
    try:
        studies = json.loads(index.read_text())["figures"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{index} is not a {{'figures': [...]}} index ({exc!r}); re-run "
                        "the evaluate stage") from exc
    for entry in studies:
        if not isinstance(entry, dict) or not entry.get("file"):
            raise DataError(f"{index}: entry {entry!r} has no 'file'")
        if not (studies_dir / entry["file"]).is_file():
            raise DataError(f"{index} lists {entry['file']!r} but {studies_dir / entry['file']} "
                            "does not exist; re-run the evaluate stage")
    return studies


def load_inputs(metrics_dir: Path, data_dir: Path, title: str, eval_dir: Path | None = None, *,
                commit: str) -> ReportInputs:
    """Read every input of the report.

    Args:
        metrics_dir: ``eval_<model>.json`` (the numbers), ``judge.json``, ``train_<model>.json``.
        data_dir: the prepared data, for ``manifest.json``.
        title: the report's title.
        eval_dir: the evaluate stage's outputs. When given, each model's numbers are merged with
            their protocol and settings (``details_<model>.json``, required) and the optional
            ``gan_diagnostics.csv`` and ``studies/index.json`` are read where present.
        commit: the code's git commit, shown in the report.

    Raises:
        DataError: a required file is missing or unreadable, or the studies index is malformed
            or lists a file that does not exist.
    """
    inputs = ReportInputs(
        evals={m: {**_read_json(metrics_dir / f"eval_{m}.json"),
                   **(_read_json(eval_dir / f"details_{m}.json") if eval_dir else {})}
               for m in ROWS},
        judge=_read_json(metrics_dir / "judge.json"),
        training={m: _read_json(metrics_dir / f"train_{m}.json") for m in ("vae", "gan")},
        manifest=_read_json(data_dir / "manifest.json"),
        title=title,
        commit=commit,
    )
    if eval_dir is None:
        return inputs
    csv_path = eval_dir / "gan_diagnostics.csv"
    return replace(inputs, diagnostics=diag.read_table(csv_path) if csv_path.is_file() else [],
                   studies=_read_studies(eval_dir / "studies"), studies_dir=eval_dir / "studies")
