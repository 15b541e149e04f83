"""Report assembly: directions come from the metric table, both formats carry the same content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genduel.errors import DataError
from genduel.evaluate import gan_diagnostics as diagnostics
from genduel.report.build import (
    NO_ENCODER,
    Figure,
    Heading,
    Para,
    ReportInputs,
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
    write_report,
)
from genduel.report.sections import (
    DASH,
    Extras,
    diagnostics_blocks,
    diagnostics_rows,
    draw_extra_figures,
    load_extras,
    model_blocks,
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


VAE_PARAMS = {"latent_dim": 16, "width": 32, "epochs": 4, "batch_size": 128, "lr": 0.001,
              "beta": 1.0, "mc_samples": 1, "conditional": True, "log_every": 10}
GAN_PARAMS = {"latent_dim": 64, "width": 24, "epochs": 4, "batch_size": 128, "loss": "wgan_gp",
              "gp_weight": 10.0, "d_steps": 5, "optimizer": "adam", "lr_g": 0.0002,
              "lr_d": 0.0002, "beta1": 0.5, "beta2": 0.9, "momentum": 0.5,
              "conditional": False, "init_from_vae": True}


def with_params(vae: dict | None = VAE_PARAMS, gan: dict | None = GAN_PARAMS) -> dict:
    ev = evals(30, 20, 7, 5)
    for name, params in (("vae", vae), ("gan", gan)):
        if params is not None:
            ev[name]["model_params"] = params
    return ev


def test_models_table_shows_each_variants_settings_and_dashes_where_not_applicable():
    blocks = model_blocks(with_params())
    assert blocks[0] == Heading("Models compared")
    table = blocks[1]
    assert table.header == ["Setting", "VAE", "GAN"]
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows["Class-conditional"] == ["yes", "no"]
    assert rows["Objective"][0] == "ELBO (β = 1)" and rows["Objective"][1].startswith("WGAN-GP")
    assert rows["Gradient penalty weight λ"] == [DASH, "10"]
    assert rows["D (critic) steps per G step"] == [DASH, "5"]
    assert rows["Monte Carlo samples of z per image"] == ["1", DASH]
    assert rows["Optimizer"][1] == "Adam, β1 0.5, β2 0.9"
    assert rows["Learning rate"] == ["0.001", "G 0.0002, D 0.0002"]
    assert rows["Generator initialized from the VAE decoder"] == [DASH, "yes"]
    text = to_markdown(blocks)
    assert "logsumexp_y" in text and "uniform p(y) = 1/K" in text  # the CVAE's marginal bound
    assert "labels drawn uniformly" in text and "conditional VAE draws its samples" in text


def test_models_table_for_unconditional_bce_models_and_older_eval_files():
    vae = {**VAE_PARAMS, "conditional": False, "beta": 4.0}
    gan = {**GAN_PARAMS, "loss": "non_saturating", "optimizer": "sgd_momentum"}
    blocks = model_blocks(with_params(vae, gan))
    rows = {r[0]: r[1:] for r in blocks[1].rows}
    assert "Gradient penalty weight λ" not in rows  # λ only applies to WGAN-GP
    assert rows["Optimizer"][1] == "SGD, momentum 0.5"
    assert "not the ELBO" in rows["Objective"][0]
    assert len(blocks) == 2  # no conditional model: no notes
    assert model_blocks(with_params(None, None)) == []  # eval files without model_params
    only_gan = model_blocks(with_params(None, gan))[1]
    assert all(r[1] == DASH for r in only_gan.rows)


def diag_rows(loss: str = "minimax") -> list[dict]:
    base = {"step": 10.0, "d_loss": 1.0, "g_loss": 1.5, "d_real": 0.7, "d_fake": 0.3, "gp": 0.0,
            "d_loss_std": 0.1, "g_loss_std": 0.2, "seconds": 1.0}
    rows = [{**base, "epoch": 1.0, "d_acc": 0.97}, {**base, "epoch": 2.0, "d_acc": 0.8}]
    logits = [np.eye(10)[np.arange(100) % 10] * 5, np.eye(10)[np.arange(100) % 2] * 5]
    return diagnostics.epoch_table(rows, logits, 10, loss)


def test_diagnostics_rows_format_each_epoch():
    rows = diagnostics_rows(diag_rows())
    assert rows[0][:7] == ["1", "0.7", "0.3", "0.97", "1 ± 0.1", "1.5 ± 0.2", "10 / 10"]
    assert rows[0][7].startswith("discriminator saturated")
    assert rows[1][6] == "2 / 2" and rows[1][7].startswith("possible mode collapse")
    no_samples = diagnostics.epoch_table([{"epoch": 1.0, "d_acc": 0.8}], [], 10, "minimax")
    assert diagnostics_rows(no_samples)[0][6:] == ["n/a", DASH]


def test_diagnostics_section_labels_critic_scores_for_wgan():
    ev = with_params()
    md = to_markdown(diagnostics_blocks(Extras(diag_rows("wgan_gp")), ev, {}, 10))
    assert "| Epoch | critic f(x) | critic f(G(z)) | Critic accuracy |" in md
    assert "Epoch 1: critic separates real and fake almost perfectly" in md
    bce = to_markdown(diagnostics_blocks(Extras(diag_rows()), with_params(None, None), {}, 10))
    assert "| Epoch | D(x) | D(G(z)) | D accuracy |" in bce and "Reading the flags" in bce
    assert "Epoch 1: discriminator saturated (accuracy >= 0.95)." in bce
    assert diagnostics_blocks(Extras(), ev, {}, 10) == []


def test_study_index_entries_must_point_at_files(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "index.json").write_text(json.dumps(
        {"figures": [{"file": "missing.png", "title": "t", "caption": "c"}]}))
    extras = load_extras(tmp_path)
    with pytest.raises(DataError, match="missing.png"):
        draw_extra_figures(extras, tmp_path, 10)
    (tmp_path / "studies" / "index.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="index"):
        load_extras(tmp_path)


def png(path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.zeros((4, 4)), cmap="gray")


def fake_run(root: Path, *, extras: bool) -> ReportInputs:
    """The files write_report reads, tiny; with ``extras`` also the optional eval outputs."""
    data, ev, art = root / "data", root / "eval", root / "artifacts"
    for path in (data / "real_grid.png", ev / "samples_vae.png", ev / "samples_gan.png",
                 ev / "reconstructions_vae.png"):
        png(path)
    logits = np.eye(10)[np.arange(50) % 10]
    for name in ("vae", "gan"):
        np.savez(ev / f"features_{name}.npz", logits=logits)
    np.savez(ev / "features_real.npz", test_logits=logits)
    (art / "train_vae").mkdir(parents=True)
    (art / "train_gan").mkdir(parents=True)
    (art / "train_vae" / "history.csv").write_text("step,elbo_nats\n1,-3000\n2,-2500\n")
    (art / "train_vae" / "epochs.csv").write_text("epoch,val_elbo_nats\n1,-2100\n")
    (art / "train_gan" / "history.csv").write_text(
        "step,d_loss,g_loss,d_real,d_fake\n1,1.3,0.7,0.5,0.5\n2,1.0,1.0,0.6,0.4\n")
    if extras:
        diagnostics.write_table(diag_rows("wgan_gp"), ev / "gan_diagnostics.csv")
        png(ev / "studies" / "interp_vae.png")
        (ev / "studies" / "index.json").write_text(json.dumps({"figures": [
            {"file": "interp_vae.png", "title": "VAE interpolation", "caption": "Rows join x_a"}]}))
    proto = {"draws": 3, "num_samples": 50, "sample_seeds": [4, 5, 6], "reference": "r",
             "pixels": "p", "features": "f", "judge_sha256": "abc", "is_splits": 10,
             "kid_subsets": 2, "kid_subset_size": 10, "pr_k": 3, "libraries": {"torch": "2"}}
    ev_json = with_params() if extras else evals(30, 20, 7, 5)
    for values in ev_json.values():
        values["protocol"] = proto
    return ReportInputs(evals=ev_json, judge={"test_accuracy": 0.9},
                        training={"vae": {"epochs": 1}, "gan": {"epochs": 1}},
                        manifest={"dataset": "fashion_mnist", "classes": list("abcdefghij")},
                        title="GenDuel test")


def build(root: Path, inp: ReportInputs) -> tuple[str, str]:
    md = write_report(inp, eval_dir=root / "eval", artifacts_dir=root / "artifacts",
                      data_dir=root / "data", out_dir=root / "reports", commit="c0ffee")
    return md.read_text(), (root / "reports" / "report.html").read_text()


def test_report_has_the_optional_sections_and_figures_when_their_inputs_exist(tmp_path):
    md, page = build(tmp_path, fake_run(tmp_path, extras=True))
    heads = [line for line in md.splitlines() if line.startswith("#")]
    assert heads.index("## Models compared") < heads.index("## Sample quality and diversity "
                                                            "(judge features)")
    assert heads.index("## Samples") < heads.index("## Latent space")
    assert "### VAE interpolation" in heads and "## GAN training diagnostics" in heads
    assert "![Rows join x_a](figures/studies_interp_vae.png)" in md
    assert "figures/gan_diagnostics.png" in md and "critic f(x)" in md
    assert "Epoch 1: critic separates real and fake" in md
    for fig in ("studies_interp_vae.png", "gan_diagnostics.png"):
        assert (tmp_path / "reports" / "figures" / fig).stat().st_size > 0
    assert "<h2>GAN training diagnostics</h2>" in page and "<h3>VAE interpolation</h3>" in page


def test_report_builds_without_the_optional_inputs(tmp_path):
    md, page = build(tmp_path, fake_run(tmp_path, extras=False))
    for heading in ("Models compared", "GAN training diagnostics", "Latent space"):
        assert f"## {heading}" not in md and f"<h2>{heading}</h2>" not in page
    assert "## Samples" in md and "## Protocol" in md
    assert not (tmp_path / "reports" / "figures" / "gan_diagnostics.png").exists()


def test_load_inputs_merges_the_numbers_with_their_protocol_details(tmp_path):
    from genduel.evaluate.run import split_details
    from genduel.report.build import load_inputs

    row = {"fid": 3.5, "classes_covered": 10, "protocol": {"draws": 3},
           "model_params": {"loss": "minimax"}}
    numbers, details = split_details(row)
    assert numbers == {"fid": 3.5, "classes_covered": 10}
    assert details == {"protocol": {"draws": 3}, "model_params": {"loss": "minimax"}}
    metrics, ev, data = tmp_path / "metrics", tmp_path / "eval", tmp_path / "data"
    for d in (metrics, ev, data):
        d.mkdir()
    for m in ("vae", "gan", "real"):
        (metrics / f"eval_{m}.json").write_text(json.dumps(numbers))
        (ev / f"details_{m}.json").write_text(json.dumps(details))
    for name in ("judge", "train_vae", "train_gan"):
        (metrics / f"{name}.json").write_text("{}")
    (data / "manifest.json").write_text("{}")
    inp = load_inputs(metrics, data, "t", ev)
    assert inp.evals["gan"] == row
    assert load_inputs(metrics, data, "t").evals["gan"] == numbers
