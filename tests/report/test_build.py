"""The whole report from a tiny run: optional sections and figures appear when their inputs do."""

from __future__ import annotations

from pathlib import Path

from genduel.report.build import write_report
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
    assert "figures/gan_diagnostics.png" in md and "critic f(x)" in md
    assert "Epoch 1: critic separates real and fake" in md
    assert heads.index("## Against the baseline ladder") < heads.index("## Memorization check")
    for fig in ("studies_interp_vae.png", "gan_diagnostics.png", "memorization_gan.png"):
        assert (tmp_path / "reports" / "figures" / fig).stat().st_size > 0
    assert "<h2>GAN training diagnostics</h2>" in page and "<h3>VAE interpolation</h3>" in page


def test_report_builds_without_the_optional_inputs(tmp_path, fake_run):
    md, page = build(tmp_path, fake_run(tmp_path, extras=False))
    for heading in ("Models compared", "GAN training diagnostics", "Latent space",
                    "Memorization check"):
        assert f"## {heading}" not in md and f"<h2>{heading}</h2>" not in page
    assert "## Samples" in md and "## Protocol" in md
    assert not (tmp_path / "reports" / "figures" / "gan_diagnostics.png").exists()
