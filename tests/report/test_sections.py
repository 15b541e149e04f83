"""Report sections: directions come from the metric table, each section from its own inputs."""

from __future__ import annotations

from genduel.evaluate import gan_diagnostics as diagnostics
from genduel.report.document import Gallery, Heading, to_markdown
from genduel.report.figures import Figures, Image
from genduel.report.inputs import ReportInputs
from genduel.report.sections import (
    DASH,
    NO_ENCODER,
    coverage_note,
    inference_blocks,
    inference_rows,
    ladder_blocks,
    ladder_rows,
    ladder_summary,
    likelihood_blocks,
    likelihood_rows,
    memorization_blocks,
    metric_rows,
    model_blocks,
    verdict_row_note,
)
from genduel.report.visuals import diagnostics_blocks, diagnostics_rows


def inputs(ev: dict, judge: dict | None = None, diagnostics: list | None = None) -> ReportInputs:
    """Inputs around eval dicts: an empty protocol unless they carry one, no manifest."""
    ev = {**ev, "vae": {"protocol": {}, **ev["vae"]}}
    return ReportInputs(evals=ev, judge=judge or {}, training={}, manifest={}, title="t",
                        commit="c", diagnostics=diagnostics or [])


def test_winner_column_follows_each_metrics_direction_and_bolds_the_winner(evals):
    rows = {r[0]: r for r in metric_rows(evals(vae_fid=30, gan_fid=20, vae_is=7, gan_is=5))}
    # columns: VAE N(0, I), VAE with the fitted prior (absent here), GAN, winner
    assert rows["FID"][2:6] == ["30 ± 0.5", "n/a", "**20**", "**GAN**"]  # lower is better
    assert rows["Inception Score"][2:6] == ["**7**", "n/a", "5", "**VAE**"]  # higher is better


def test_the_verdict_compares_the_fitted_prior_row_when_there_is_one(evals):
    ev = evals(vae_fid=30, gan_fid=20, vae_is=7, gan_is=5)
    ev["vae_prior"] = {"fid": 10.0, "fid_std": 0.5, "inception_score": 4.0}
    rows = {r[0]: r for r in metric_rows(ev)}
    assert rows["FID"][2:6] == ["30 ± 0.5", "**10 ± 0.5**", "20", "**VAE**"]
    assert rows["Inception Score"][2:6] == ["7", "4", "**5**", "**GAN**"]
    note = verdict_row_note(ev)
    assert "compares the GAN with the second" in note and "vae_prior.pt" in note
    assert "no fitted-prior row" in verdict_row_note(evals(30, 20, 7, 5))


def test_winner_column_marks_a_gap_within_the_combined_std_as_a_tie(evals):
    ev = evals(30, 20, 7, 5)
    ev["vae"]["fid_std"], ev["gan"]["fid_std"] = 8.0, 6.0  # gap 10 = combined std 10: a win
    assert metric_rows(ev)[0][5] == "**GAN**"
    ev["gan"]["fid_std"] = 5.0  # combined 9.4 < gap 10: still a win
    assert metric_rows(ev)[0][5] == "**GAN**"
    ev["vae"]["fid_std"] = 9.0  # combined 10.3 > gap 10: a tie, nothing in bold
    assert metric_rows(ev)[0][2:6] == ["30 ± 9", "n/a", "20 ± 5", "tie"]
    del ev["gan"]["fid"]
    assert metric_rows(ev)[0][2:6] == ["30 ± 9", "n/a", "n/a", DASH]


def test_metric_rows_show_direction_and_std_and_skip_likelihood_keys(evals):
    ev = evals(30, 20, 7, 5)
    ev["vae"]["elbo_nats"] = -2000.0
    rows = metric_rows(ev)
    labels = [r[0] for r in rows]
    assert labels == ["FID", "Inception Score"]
    assert rows[0][1] == "↓\u00a0lower" and rows[1][1] == "↑\u00a0higher"
    assert rows[0][2:6] == ["30 ± 0.5", "n/a", "**20**", "**GAN**"]
    assert rows[0][6:] == ["1", "100", "200"]  # real data, then the two baseline rungs


def test_gan_likelihood_is_stated_as_absent():
    ev = {"vae": {"elbo_nats": -2000.0, "bits_per_dim": 3.68, "iwae_k10_nats": -1990.0},
          "gan": {}, "real": {}}
    rows = likelihood_rows(ev, [10])
    assert rows[0][2] == "-2000" and rows[0][3] == "n/a"  # no fitted-prior row here
    assert "no likelihood" in rows[0][4] and rows[0][5:] == ["-"] * 3
    ev["vae_prior"] = {"elbo_nats": -1995.0}
    assert likelihood_rows(ev, [10])[0][2:4] == ["-2000", "-1995"]
    assert rows[0][1] == "↑\u00a0higher" and rows[1][1] == "↓\u00a0lower"
    assert rows[2][0] == "IWAE k=10 (nats/image)" and rows[2][2] == "-1990"
    assert not any("Parzen" in r[0] for r in rows)  # no Parzen keys, no Parzen rows


def parzen_evals() -> dict:
    return {"vae": {"elbo_nats": -2000.0, "parzen_ll_nats": 250.0, "parzen_ll_nats_sem": 4.0,
                    "parzen_sigma": 0.13, "probe_linear_accuracy": 0.78,
                    "probe_knn_accuracy": 0.81, "recon_mse": 0.012, "recon_mae_levels": 14.5},
            "gan": {"parzen_ll_nats": 300.0, "parzen_ll_nats_sem": 5.0, "parzen_sigma": 0.16},
            "real": {"parzen_ll_nats": 370.0, "parzen_ll_nats_sem": 3.0, "parzen_sigma": 0.16},
            "class_gaussians": {"parzen_ll_nats": 120.0, "parzen_ll_nats_sem": 6.0}}


def test_parzen_rows_fill_all_three_columns_of_the_likelihood_table():
    ev = parzen_evals()
    rows = {r[0]: r for r in likelihood_rows(ev, [])}
    parzen = rows["Parzen window log-likelihood (nats/image, pixels in [0, 1])"]
    # gap 50 > sqrt(4² + 5²): the GAN's value in bold
    assert parzen[1:] == ["↑\u00a0higher", "250 ± 4", "n/a", "**300 ± 5**", "370 ± 3",
                          "120 ± 6", "n/a"]
    assert rows["Parzen σ (chosen on validation images)"][2:6] == ["0.13", "n/a", "0.16",
                                                                   "0.16"]
    assert "Parzen" not in " ".join(r[0] for r in metric_rows(ev))  # not a sample metric


def test_likelihood_section_has_a_real_column_and_states_the_parzen_weaknesses():
    md = to_markdown(likelihood_blocks(inputs(parzen_evals())))
    assert ("| Quantity (test set) | Better | VAE, z ~ N(0, I) | VAE, z ~ GMM fitted to q(z) | "
            "GAN | Real data (test vs train) | Per-class pixel Gaussians | One pixel Gaussian |"
            ) in md
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
    up, down = "↑\u00a0higher", "↓\u00a0lower"  # no-break spaces: the cell never wraps
    assert [r[1] for r in rows] == [up, up, down, down]
    assert [r[2] for r in rows] == ["0.78", "0.81", "0.012", "14.5"]
    assert all(r[3] == NO_ENCODER == "no inference model (no encoder)" for r in rows)
    assert rows[0][4] == "judge: 0.92" and rows[2][4] == "0 (perfect)"
    md = to_markdown(inference_blocks(inputs(parzen_evals(), judge={"test_accuracy": 0.92})))
    assert "## Inference model" in md and "**true**" in md and "ceiling" in md


def test_models_table_shows_each_variants_settings_and_dashes_where_not_applicable(with_params):
    blocks = model_blocks(inputs(with_params()))
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


def test_models_table_for_unconditional_bce_models_and_older_eval_files(with_params,
                                                                        model_params):
    vae_params, gan_params = model_params
    vae = {**vae_params, "conditional": False, "beta": 4.0}
    gan = {**gan_params, "loss": "non_saturating", "optimizer": "sgd_momentum"}
    blocks = model_blocks(inputs(with_params(vae, gan)))
    rows = {r[0]: r[1:] for r in blocks[1].rows}
    assert "Gradient penalty weight λ" not in rows  # λ only applies to WGAN-GP
    assert "R1 penalty weight γ (real images)" not in rows  # off
    r1 = {r[0]: r[1:] for r in model_blocks(inputs(with_params(
        vae, {**gan, "r1_weight": 1.0})))[1].rows}
    assert r1["R1 penalty weight γ (real images)"] == [DASH, "1"]
    assert rows["Optimizer"][1] == "SGD, momentum 0.5"
    assert "Generator upsampling (x2, twice)" not in rows  # params from before gan.g_arch
    resize = {r[0]: r[1:] for r in model_blocks(inputs(with_params(
        vae, {**gan, "g_arch": "resize", "g_extra_convs": 1})))[1].rows}
    assert resize["Generator upsampling (x2, twice)"] == [
        DASH, "nearest-neighbour resize + 3×3 conv, 1 more 3×3 conv between"]
    assert "not the ELBO" in rows["Objective"][0]
    assert len(blocks) == 2  # no conditional model: no notes
    assert model_blocks(inputs(with_params(None, None))) == []  # eval files without model_params
    only_gan = model_blocks(inputs(with_params(None, gan)))[1]
    assert all(r[1] == DASH for r in only_gan.rows)


def test_diagnostics_rows_format_each_epoch(diag_rows):
    rows = diagnostics_rows(diag_rows())
    assert rows[0][:7] == ["1", "0.7", "0.3", "0.97", "1 ± 0.1", "1.5 ± 0.2", "10 / 10"]
    assert rows[0][7].startswith("discriminator saturated")
    assert rows[1][6] == "2 / 2" and rows[1][7].startswith("possible mode collapse")
    no_samples = diagnostics.epoch_table([{"epoch": 1.0, "d_acc": 0.8}], [], 10, "minimax")
    assert diagnostics_rows(no_samples)[0][6:] == ["n/a", DASH]


def test_diagnostics_section_labels_critic_scores_for_wgan(with_params, diag_rows):
    ev = with_params()
    md = to_markdown(diagnostics_blocks(inputs(ev, diagnostics=diag_rows("wgan_gp")), Figures()))
    assert "| Epoch | critic f(x) | critic f(G(z)) | Critic accuracy |" in md
    assert "Epoch 1: critic separates real and fake almost perfectly" in md
    bce = to_markdown(diagnostics_blocks(inputs(with_params(None, None),
                                                diagnostics=diag_rows()), Figures()))
    assert "| Epoch | D(x) | D(G(z)) | D accuracy |" in bce and "Reading the flags" in bce
    assert "Epoch 1: discriminator saturated (accuracy >= 0.95)." in bce
    assert diagnostics_blocks(inputs(ev), Figures()) == []


def test_ladder_marks_each_model_against_each_rung_in_the_metrics_direction(evals):
    ev = evals(vae_fid=30, gan_fid=150, vae_is=7, gan_is=5)  # rungs: FID 1/100/200, IS 9/7.5/4
    rows = {r[0]: r[2:] for r in ladder_rows(ev)}
    # VAE vs real, class G., pixel G.; the same for the fitted-prior VAE (absent here) and GAN
    assert rows["FID"] == ["✗", "✓", "✓", DASH, DASH, DASH, "✗", "✗", "✓"]
    assert rows["Inception Score"] == ["✗", "✗", "✓", DASH, DASH, DASH, "✗", "✗", "✓"]
    assert "KID" not in rows  # no row has it
    text = ladder_summary(ev, "gan")
    assert text == ("*GAN* beats the per-class pixel Gaussians on 0 of 2; the one pixel "
                    "Gaussian on 2 of 2: FID, Inception Score.")
    md = to_markdown(ladder_blocks(inputs(ev)))
    assert "## Against the baseline ladder" in md and "| GAN vs Pixel G. |" in md


def test_ladder_counts_ties_within_noise_and_skips_missing_values():
    ev = {"vae": {"fid": 100.0}, "gan": {}, "real": {}, "class_gaussians": {"fid": 100.0},
          "pixel_gaussian": {}}
    assert ladder_rows(ev) == [["FID", "↓\u00a0lower", DASH, "≈", DASH, *[DASH] * 6]]
    ev["class_gaussians"].update(fid=104.0, fid_std=3.0)
    ev["vae"]["fid_std"] = 4.0  # gap 4 < combined 5: a tie, not a win
    assert ladder_rows(ev)[0][3] == "≈"
    ev["class_gaussians"]["fid"] = 106.0
    assert ladder_rows(ev)[0][3] == "✓"


def test_memorization_section_lists_rows_with_the_keys_and_is_absent_without_them(evals):
    ev = evals(30, 20, 7, 5)
    assert memorization_blocks(inputs(ev), Figures()) == []
    ev["gan"].update({"nn_ratio_pixels": 0.3, "copy_share_pixels": 0.9})
    figs = Figures({"memorization_gan": Image("figures/m.png", True)})
    blocks = memorization_blocks(inputs(ev), figs)
    md = to_markdown(blocks)
    assert "| GAN | 0.3 | 0.9 |" in md and "VAE |" not in md
    assert isinstance(blocks[-1], Gallery) and blocks[-1].figures[0].scale == 3
    assert "![GAN: samples (odd rows) above their nearest training images (even rows)]" \
           "(figures/m.png)" in md


def test_coverage_note_explains_why_the_two_class_counts_differ(with_params, diag_rows):
    ev = with_params()
    ev["gan"]["model_params"] = {**ev["gan"]["model_params"], "diag_samples": 2000}
    ev["gan"]["classes_well_covered"] = 10.0
    ev["vae"]["protocol"] = {"num_samples": 10000, "draws": 3}
    inp = inputs(ev, diagnostics=diag_rows())  # the last epoch: 2 classes well covered
    note = coverage_note(inp)
    assert "10,000 samples" in note and "2,000 fixed-noise samples" in note
    assert "10 for the GAN here" in note and "(2 after the last one)" in note
