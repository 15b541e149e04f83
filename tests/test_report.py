"""Report assembly: directions come from the metric table, both formats carry the same content."""

from __future__ import annotations

from genduel.report import (
    Figure,
    Heading,
    Para,
    Table,
    fmt,
    likelihood_rows,
    metric_rows,
    to_html,
    to_markdown,
    winners,
)


def evals(vae_fid: float, gan_fid: float, vae_is: float, gan_is: float) -> dict:
    return {"vae": {"fid": vae_fid, "fid_std": 0.5, "inception_score": vae_is},
            "gan": {"fid": gan_fid, "fid_std": 0.0, "inception_score": gan_is},
            "real": {"fid": 1.0, "inception_score": 9.0}}


def test_winner_follows_each_metrics_direction():
    text = winners(evals(vae_fid=30, gan_fid=20, vae_is=7, gan_is=5))
    assert "FID: **GAN**" in text  # lower is better
    assert "Inception Score: **VAE**" in text  # higher is better


def test_metric_rows_show_direction_and_std_and_skip_likelihood_keys():
    ev = evals(30, 20, 7, 5)
    ev["vae"]["elbo_nats"] = -2000.0
    rows = metric_rows(ev)
    labels = [r[0] for r in rows]
    assert labels == ["FID", "Inception Score"]
    assert rows[0][1] == "↓ lower" and rows[1][1] == "↑ higher"
    assert rows[0][2] == "30 ± 0.5" and rows[0][3] == "20"


def test_gan_likelihood_is_stated_as_absent():
    rows = likelihood_rows({"elbo_nats": -2000.0, "bits_per_dim": 3.68,
                            "iwae_k10_nats": -1990.0}, [10])
    assert rows[0][2] == "-2000" and "no likelihood" in rows[0][3]
    assert rows[2][0] == "IWAE k=10 (nats/image)" and rows[2][2] == "-1990"


def test_fmt_handles_missing_and_non_finite():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(3) == "3"


def test_markdown_and_html_render_the_same_blocks():
    blocks = [Heading("Title", 1), Para("A **bold** `code` claim"),
              Table(["a", "b"], [["1", "![x](figures/x.png)"]]), Figure("figures/y.png", "cap")]
    md, page = to_markdown(blocks), to_html(blocks, "Title")
    assert "# Title" in md and "| a | b |" in md and "![cap](figures/y.png)" in md
    assert "<h1>Title</h1>" in page and "<b>bold</b>" in page and "<code>code</code>" in page
    assert '<img alt="x" src="figures/x.png">' in page and '<img src="figures/y.png"' in page
