"""Shared report fixtures: tiny metrics, model settings, diagnostics rows and a whole fake run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from genduel.evaluate import gan_diagnostics as diagnostics
from genduel.report.inputs import ReportInputs, load_inputs

VAE_PARAMS = {"latent_dim": 16, "width": 32, "epochs": 4, "batch_size": 128, "lr": 0.001,
              "beta": 1.0, "mc_samples": 1, "conditional": True, "log_every": 10}
GAN_PARAMS = {"latent_dim": 64, "width": 24, "epochs": 4, "batch_size": 128, "loss": "wgan_gp",
              "gp_weight": 10.0, "d_steps": 5, "optimizer": "adam", "lr_g": 0.0002,
              "lr_d": 0.0002, "beta1": 0.5, "beta2": 0.9, "momentum": 0.5,
              "conditional": False, "init_from_vae": True}


def _evals(vae_fid: float, gan_fid: float, vae_is: float, gan_is: float) -> dict:
    return {"vae": {"fid": vae_fid, "fid_std": 0.5, "inception_score": vae_is},
            "gan": {"fid": gan_fid, "fid_std": 0.0, "inception_score": gan_is},
            "real": {"fid": 1.0, "inception_score": 9.0},
            "class_gaussians": {"fid": 100.0, "inception_score": 7.5},
            "pixel_gaussian": {"fid": 200.0, "inception_score": 4.0}}


def _with_params(vae: dict | None = VAE_PARAMS, gan: dict | None = GAN_PARAMS) -> dict:
    ev = _evals(30, 20, 7, 5)
    for name, params in (("vae", vae), ("gan", gan)):
        if params is not None:
            ev[name]["model_params"] = params
    return ev


def _diag_rows(loss: str = "minimax") -> list[dict]:
    base = {"step": 10.0, "d_loss": 1.0, "g_loss": 1.5, "d_real": 0.7, "d_fake": 0.3, "gp": 0.0,
            "d_loss_std": 0.1, "g_loss_std": 0.2}
    rows = [{**base, "epoch": 1.0, "d_acc": 0.97}, {**base, "epoch": 2.0, "d_acc": 0.8}]
    logits = [np.eye(10)[np.arange(100) % 10] * 5, np.eye(10)[np.arange(100) % 2] * 5]
    return diagnostics.epoch_table(rows, logits, 10, loss)


TILE = 28  #: the fixture manifest's image size


def png(path: Path, rows: int = 2, cols: int = 2, seed: int = 0) -> None:
    """A grey PNG with save_grid's geometry: rows x cols tiles of TILE px, 2 px padding."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (rows * (TILE + 2) + 2,
                                                           cols * (TILE + 2) + 2), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


def _fake_run(root: Path, *, extras: bool) -> ReportInputs:
    """The files the report reads, tiny, loaded; with ``extras`` also the optional eval outputs."""
    data, ev, art, metrics = root / "data", root / "eval", root / "artifacts", root / "metrics"
    for seed, path in enumerate((data / "real_grid.png", ev / "samples_vae.png",
                                 ev / "samples_vae_prior.png", ev / "samples_gan.png",
                                 ev / "reconstructions_vae.png")):
        png(path, 8, 8, seed)
    png(ev / "prior_gap.png")
    logits = np.eye(10)[np.arange(50) % 10]
    for name in ("vae", "vae_prior", "gan"):
        np.savez(ev / f"features_{name}.npz", logits=logits)
    np.savez(ev / "features_real.npz", test_logits=logits)
    (art / "train_vae").mkdir(parents=True)
    (art / "train_gan").mkdir(parents=True)
    (art / "train_vae" / "history.csv").write_text(
        "step,elbo_nats,recon_nats,kl_nats\n1,-3000,2990,10\n2,-2500,2480,20\n")
    (art / "train_vae" / "epochs.csv").write_text("epoch,val_elbo_nats\n1,-2100\n")
    (art / "train_gan" / "history.csv").write_text(
        "step,d_loss,g_loss,d_real,d_fake\n1,1.3,0.7,0.5,0.5\n2,1.0,1.0,0.6,0.4\n")
    for model in ("vae", "gan"):  # the fixed-noise grids saved after each training epoch
        for epoch in (1, 2):
            png(art / f"train_{model}" / "grids" / f"samples_epoch{epoch:03d}.png", 8, 8,
                10 + epoch)
    if extras:
        diagnostics.write_table(_diag_rows("wgan_gp"), ev / "gan_diagnostics.csv")
        png(ev / "studies" / "interp_vae.png", 8, 12)
        png(ev / "studies" / "class_grid_vae.png", 10, 10)  # the conditional VAE's
        for name in ("vae", "vae_prior", "gan"):
            png(ev / f"memorization_{name}.png")
        (ev / "studies" / "index.json").write_text(json.dumps({"figures": [
            {"file": "class_grid_vae.png", "title": "VAE samples, one row per class",
             "caption": "Row k: label k"},
            {"file": "interp_vae.png", "title": "VAE interpolation", "caption": "Rows join x_a"}]}))
    proto = {"draws": 3, "num_samples": 50, "sample_seeds": [4, 5, 6], "reference": "r",
             "pixels": "p", "features": "f", "judge_sha256": "abc", "is_splits": 10,
             "kid_subsets": 2, "kid_subset_size": 10, "pr_k": 3, "dc_k": 5,
             "libraries": {"torch": "2"}}
    ev_json = _with_params() if extras else _evals(30, 20, 7, 5)
    if extras:
        for name, ratio in (("vae", 1.2), ("gan", 0.3)):
            ev_json[name].update({"nn_ratio_pixels": ratio, "copy_share_pixels": 0.01})
        # precision within noise (gap 0.02 < sqrt(0.05² + 0.04²)), recall and coverage not
        ev_json["vae"].update({"precision": 0.50, "precision_std": 0.05, "recall": 0.30,
                               "recall_std": 0.01, "classes_well_covered": 10.0})
        ev_json["gan"].update({"precision": 0.52, "precision_std": 0.04, "recall": 0.10,
                               "recall_std": 0.01, "classes_well_covered": 8.0})
    # The fitted-prior row: the same VAE's numbers, sampled from a 25-component GMM
    ev_json["vae_prior"] = {**json.loads(json.dumps(ev_json["vae"])), "latent_nn_ratio": 1.1}
    ev_json["vae"]["latent_nn_ratio"], ev_json["vae"]["active_units"] = 2.5, 12
    if "model_params" in ev_json["vae_prior"]:
        ev_json["vae_prior"]["model_params"]["prior"] = {
            "kind": "gmm", "components": [10, 25], "fit_on": "mean", "chosen_components": 25}
    metrics.mkdir()
    (metrics / "fit_prior.json").write_text(json.dumps(
        {"components": 25, "train_ll_nats": -10.0, "val_ll_nats": -12.0, "em_iterations": 30,
         "val_ll_nats_k10": -14.0, "val_ll_nats_k25": -12.0}))
    for name, values in ev_json.items():  # numbers in metrics/, protocol and settings in eval/
        details = {"protocol": proto, **({"model_params": values.pop("model_params")}
                                         if "model_params" in values else {})}
        (metrics / f"eval_{name}.json").write_text(json.dumps(values))
        (ev / f"details_{name}.json").write_text(json.dumps(details))
    (metrics / "judge.json").write_text(json.dumps({"test_accuracy": 0.9}))
    for name in ("vae", "gan"):
        (metrics / f"train_{name}.json").write_text(json.dumps({"epochs": 1}))
    (data / "manifest.json").write_text(json.dumps(
        {"dataset": "fashion_mnist", "classes": list("abcdefghij"),
         "image_shape": [1, TILE, TILE]}))
    return load_inputs(metrics, data, "GenDuel test", ev, commit="c0ffee")


@pytest.fixture
def evals() -> Callable[..., dict]:
    """(VAE FID, GAN FID, VAE IS, GAN IS) -> the three eval dicts."""
    return _evals


@pytest.fixture
def model_params() -> tuple[dict, dict]:
    """The settings of a conditional VAE and a WGAN-GP GAN, as eval files carry them."""
    return VAE_PARAMS, GAN_PARAMS


@pytest.fixture
def with_params() -> Callable[..., dict]:
    """Eval dicts whose VAE and GAN carry ``model_params`` (``None``: leave them out)."""
    return _with_params


@pytest.fixture
def diag_rows() -> Callable[..., list[dict]]:
    """loss -> two epochs of GAN diagnostics: saturated, then collapsed to two classes."""
    return _diag_rows


@pytest.fixture
def fake_run() -> Callable[..., ReportInputs]:
    """(root, extras=...) -> the loaded inputs of a tiny run written under ``root``."""
    return _fake_run


@pytest.fixture
def grid_png() -> Callable[..., None]:
    """(path, rows, cols, seed) -> a PNG with save_grid's geometry of TILE px tiles."""
    return png
