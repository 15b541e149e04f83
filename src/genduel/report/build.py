"""The comparison report: one Markdown document (and an HTML twin) that a person reads.

:func:`build_blocks` puts the sections of :mod:`genduel.report.sections` (text and tables),
:mod:`genduel.report.visuals` (figures) and :mod:`genduel.report.glossary` (how to read it) in
order; the one list of blocks is rendered to both formats (:mod:`genduel.report.document`,
:mod:`genduel.report.page`), so the two never disagree. :func:`write_report` draws the figures
into ``<out>/figures`` (:func:`genduel.report.figures.draw_all`), which ``report.md`` links to;
``report.html`` embeds them, so it works alone (e.g. in MLflow's artifact viewer).
"""

from __future__ import annotations

import logging
from pathlib import Path

from genduel.io import atomic_write
from genduel.report import sections, visuals
from genduel.report.document import Block, to_markdown
from genduel.report.figures import Figures, draw_all
from genduel.report.glossary import glossary_blocks
from genduel.report.inputs import ReportInputs
from genduel.report.page import to_html

log = logging.getLogger(__name__)


def build_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """The document, top to bottom; sections whose optional inputs are absent are left out.

    Args:
        inp: everything the report shows (:func:`genduel.report.inputs.load_inputs`).
        figs: the figures drawn for it (:func:`draw_all`).
    """
    return [
        *sections.header_blocks(inp),
        *sections.model_blocks(inp),
        *sections.sample_metric_blocks(inp),
        *sections.seed_blocks(inp, figs),
        *visuals.samples_blocks(inp, figs),
        *visuals.prior_blocks(inp, figs),
        *sections.ladder_blocks(inp),
        *sections.likelihood_blocks(inp),
        *sections.inference_blocks(inp),
        *sections.memorization_blocks(inp, figs),
        *visuals.latent_blocks(inp, figs),
        *visuals.training_blocks(inp, figs),
        *visuals.diagnostics_blocks(inp, figs),
        *glossary_blocks(),
        *sections.protocol_blocks(inp),
    ]


def write_report(inp: ReportInputs, *, eval_dir: Path, artifacts_dir: Path, data_dir: Path,
                 out_dir: Path) -> Path:
    """Write ``report.md`` (figures linked), ``report.html`` (figures embedded) and ``figures/``
    into ``out_dir``; returns the .md.

    Args:
        inp: the parsed inputs.
        eval_dir: the evaluate stage's outputs (sample grids, judge features, study figures).
        artifacts_dir: the training stages' artifacts (``train_vae/``, ``train_gan/``: histories
            and the sample grids saved after each epoch).
        data_dir: the prepared data (the grid of real images).
        out_dir: where the report goes.
    """
    figs = draw_all(inp, eval_dir=eval_dir, artifacts_dir=artifacts_dir, data_dir=data_dir,
                    fig_dir=out_dir / "figures")
    blocks = build_blocks(inp, figs)
    atomic_write(out_dir / "report.md", to_markdown(blocks).encode())
    atomic_write(out_dir / "report.html", to_html(blocks, inp.title, out_dir).encode())
    log.info("report written to %s", out_dir / "report.md")
    return out_dir / "report.md"
