"""Report assembly: directions come from the metric table, both formats carry the same content."""

from __future__ import annotations

from genduel.report import (
    NO_ENCODER,
    Figure,
    Heading,
    Para,
    Table,
    fmt,
    inference_blocks,
    inference_rows,
    likelihood_blocks,
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
    ev = {"vae": {"elbo_nats": -2000.0, "bits_per_dim": 3.68, "iwae_k10_nats": -1990.0},
          "gan": {}, "real": {}}
    rows = likelihood_rows(ev, [10])
    assert rows[0][2] == "-2000" and "no likelihood" in rows[0][3] and rows[0][4] == "-"
    assert rows[0][1] == "↑ higher" and rows[1][1] == "↓ lower"
    assert rows[2][0] == "IWAE k=10 (nats/image)" and rows[2][2] == "-1990"
    assert not any("Parzen" in r[0] for r in rows)  # no Parzen keys, no Parzen rows


def parzen_evals() -> dict:
    return {"vae": {"elbo_nats": -2000.0, "parzen_ll_nats": 250.0, "parzen_ll_nats_sem": 4.0,
                    "parzen_sigma": 0.13, "probe_linear_accuracy": 0.78,
                    "probe_knn_accuracy": 0.81, "recon_mse": 0.012, "recon_mae_levels": 14.5},
            "gan": {"parzen_ll_nats": 300.0, "parzen_ll_nats_sem": 5.0, "parzen_sigma": 0.16},
            "real": {"parzen_ll_nats": 370.0, "parzen_ll_nats_sem": 3.0, "parzen_sigma": 0.16}}


def test_parzen_rows_fill_all_three_columns_of_the_likelihood_table():
    ev = parzen_evals()
    rows = {r[0]: r for r in likelihood_rows(ev, [])}
    parzen = rows["Parzen window log-likelihood (nats/image, pixels in [0, 1])"]
    assert parzen[1:] == ["↑ higher", "250 ± 4", "300 ± 5", "370 ± 3"]
    assert rows["Parzen σ (chosen on validation images)"][2:] == ["0.13", "0.16", "0.16"]
    assert "Parzen" not in " ".join(r[0] for r in metric_rows(ev))  # not a sample metric
    assert "Parzen" not in winners(ev)


def test_likelihood_section_has_a_real_column_and_states_the_parzen_weaknesses():
    md = to_markdown(likelihood_blocks(parzen_evals(), []))
    assert "| Quantity (test set) | Better | VAE | GAN | Real data (test vs train) |" in md
    caveat = md.split("Parzen window, read with care.")[1]
    for words in ("biased", "high variance", "pixel", "σ", "Theis et al. 2016",
                  "Goodfellow et al. (2014)", "not comparable"):
        assert words in caveat, words


def test_inference_table_has_directions_the_judge_ceiling_and_no_gan_encoder():
    rows = inference_rows(parzen_evals()["vae"], 0.92)
    assert [r[0] for r in rows] == [
        "Linear probe accuracy (true labels)", "k-NN probe accuracy (true labels)",
        "Reconstruction MSE (per pixel, [0, 1] units)",
        "Reconstruction MAE (8-bit levels per pixel)"]
    assert [r[1] for r in rows] == ["↑ higher", "↑ higher", "↓ lower", "↓ lower"]
    assert [r[2] for r in rows] == ["0.78", "0.81", "0.012", "14.5"]
    assert all(r[3] == NO_ENCODER == "no inference model (no encoder)" for r in rows)
    assert rows[0][4] == "judge: 0.92" and rows[2][4] == "0 (perfect)"
    md = to_markdown(inference_blocks(parzen_evals()["vae"], 0.92))
    assert "## Inference model" in md and "**true**" in md and "ceiling" in md


def test_fmt_handles_missing_and_non_finite():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(3) == "3"


def test_markdown_and_html_render_the_same_blocks():
    blocks = [Heading("Title", 1), Para("A **bold** `code` claim"),
              Table(["a", "b"], [["1", "![x](figures/x.png)"]]), Figure("figures/y.png", "cap")]
    md, page = to_markdown(blocks), to_html(blocks, "Title")
    assert "# Title" in md and "| a | b |" in md and "![cap](figures/y.png)" in md
    assert "<h1>Title</h1>" in page and "<b>bold</b>" in page and "<code>code</code>" in page
    assert '<img alt="x" src="figures/x.png">' in page and '<img src="figures/y.png"' in page
