"""The whole report from a tiny run: optional sections and figures appear when their inputs do,
both formats come from the same blocks, and the HTML stands alone."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from genduel.report.build import build_blocks, write_report
from genduel.report.document import Table
from genduel.report.figures import draw_all
from genduel.report.inputs import ReportInputs


def build(root: Path, inp: ReportInputs) -> tuple[str, str]:
    md = write_report(inp, eval_dir=root / "eval", artifacts_dir=root / "artifacts",
                      data_dir=root / "data", out_dir=root / "reports")
    return md.read_text(), (root / "reports" / "report.html").read_text()


def test_report_has_the_optional_sections_and_figures_when_their_inputs_exist(tmp_path, fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=True))
    heads = [line for line in md.splitlines() if line.startswith("#")]
    assert heads.index("## Models compared") < heads.index("## Sample quality and diversity "
                                                            "(judge features)")
    assert heads.index("## Samples") < heads.index("## Latent space")
    assert "### VAE interpolation" in heads and "## GAN training diagnostics" in heads
    assert "![Rows join x_a](figures/studies_interp_vae.png)" in md
    assert "figures/gan_accuracy.png" in md and "critic f(x)" in md
    assert "Epoch 1: critic separates real and fake" in md
    assert heads.index("## Against the baseline ladder") < heads.index("## Memorization check")
    for fig in ("studies_interp_vae.png", "gan_accuracy.png", "gan_coverage.png",
                "memorization_gan.png", "vae_curves.png", "vae_validation.png"):
        assert (tmp_path / "reports" / "figures" / fig).stat().st_size > 0
    assert '<h2 id="gan-training-diagnostics">GAN training diagnostics</h2>' in page
    assert '<h3 id="vae-interpolation">VAE interpolation</h3>' in page


def test_report_opens_with_the_verdict_and_explains_every_table(tmp_path, fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=True))
    assert md.split("\n\n")[1].startswith("**In short, for these trained models (one training "
                                           "seed): the VAE is ahead.**")
    assert "## How sure is the verdict?" in md and "figures/seeds.png" in md
    assert "- **Distance to the data** (FID): the **GAN** is better." in md
    assert "<ul><li><b>Distance to the data</b> (FID): the <b>GAN</b> is better." in page
    assert "## How to read this" in md and '<h2 id="how-to-read-this">' in page
    inp = fake_run(tmp_path / "again", extras=True)
    figs = draw_all(inp, eval_dir=tmp_path / "again" / "eval", data_dir=tmp_path / "again" / "data",
                    artifacts_dir=tmp_path / "again" / "artifacts", fig_dir=tmp_path / "figs")
    tables = [b for b in build_blocks(inp, figs) if isinstance(b, Table)]
    assert len(tables) >= 9
    assert all("(#how-to-read-this)" in t.caption for t in tables)
    for anchor in set(re.findall(r'href="#([^"]+)"', page)):
        assert f'id="{anchor}"' in page, anchor  # every link lands on a heading


def test_conditional_model_gets_one_labelled_row_per_class_and_training_a_strip(tmp_path,
                                                                                fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=True))  # the fixture VAE is conditional
    assert "VAE samples, one row per class" in md and "class_grid_vae.png" in md
    for k, name in enumerate("abcdefghij"):
        assert f"| {name} | ![{name}](figures/classes_vae_{k:02d}.png) |" in md
    assert "### VAE samples, one row per class" not in md  # not repeated under Latent space
    assert "GAN samples, one row per class" not in md  # the GAN is not conditional
    for model in ("vae", "gan"):
        for epoch in (1, 2):
            assert f"| epoch {epoch} | ![epoch {epoch}](figures/epochs_{model}_{epoch:03d}.png)" \
                in md


def test_html_embeds_every_figure_the_markdown_links(tmp_path, fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=True))
    linked = re.findall(r"\]\((figures/[^)]+)\)", md)
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(srcs) == len(linked) > 20 and not re.search(r'src="(?!data:)', page)
    figures = tmp_path / "reports"
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert embedded == [(figures / p).read_bytes() for p in linked]  # same images, same order


def test_report_builds_without_the_optional_inputs(tmp_path, fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=False))
    for heading in ("Models compared", "GAN training diagnostics", "Latent space",
                    "Memorization check"):
        assert f"## {heading}" not in md and f">{heading}</h2>" not in page
    assert "## Samples" in md and "## Protocol" in md
    assert not (tmp_path / "reports" / "figures" / "gan_accuracy.png").exists()


def test_why_the_prior_matters_shows_the_gap_the_ratios_and_the_chosen_size(tmp_path, fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=True))
    section = md.split("## Why the prior matters")[1].split("\n## ")[0]
    assert "figures/prior_gap.png" in section
    assert "Draws from N(0, I) lie 2.5 × as far" in section and "fitted prior 1.1 ×" in section
    assert "| 10 | -14 |  |" in section and "| 25 | -12 | ✓ |" in section  # K by validation LL
    assert "12 of the 16 latent dimensions" in section and "noise the decoder ignores" in section
    assert (tmp_path / "reports" / "figures" / "vae_prior.png").stat().st_size > 0
    assert "VAE, z ~ GMM fitted to q(z)" in md.split("## Samples")[1]  # its grid is shown
    assert '<a href="#why-the-prior-matters">' in page  # the verdict's note links to it
