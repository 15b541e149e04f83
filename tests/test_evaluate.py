"""Evaluate helpers: seeded sampling is reproducible, samples land on the 8-bit grid; Parzen,
latent probes and reconstruction errors give known answers."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genduel.config import EvalConfig, VAEConfig
from genduel.data.splits import Split
from genduel.errors import ConfigError
from genduel.evaluate.extra import (
    check_parzen_sigmas,
    inference_metrics,
    parzen_row,
    probe_accuracies,
    reconstruction_errors,
)
from genduel.evaluate.run import (
    EvalInputs,
    FeatureSet,
    draw_samples,
    evaluate_all,
    evaluate_real,
    likelihood_bounds,
    subset,
)
from genduel.models.vae import VAE


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.tanh(self.scale * torch.randn(n, 1, 4, 4, generator=generator))


def test_draw_samples_is_seeded_batch_independent_and_8bit():
    model, cpu = Tiny(), torch.device("cpu")
    a = draw_samples(model.sample, (model,), 10, 10, seed=3, device=cpu)
    b = draw_samples(model.sample, (model,), 10, 10, seed=3, device=cpu)
    c = draw_samples(model.sample, (model,), 10, 10, seed=4, device=cpu)
    assert a.dtype == torch.uint8 and a.shape == (10, 1, 4, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training  # eval mode is restored


def test_subset_is_seeded_and_whole_set_when_large():
    split = Split(torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1), torch.zeros(20,
                  dtype=torch.int64), ["a"])
    assert torch.equal(subset(split, 5, 0), subset(split, 5, 0))
    assert len(set(subset(split, 5, 0).flatten().tolist())) == 5
    assert subset(split, 50, 0) is split.images


def test_real_row_equal_draws_have_zero_spread(tmp_path):
    rng = torch.Generator().manual_seed(0)
    feats = torch.randn(60, 4, generator=rng).numpy()
    logits = torch.randn(60, 3, generator=rng).numpy()
    ref = FeatureSet(feats[:30], logits[:30])
    cfg = EvalConfig(num_samples=30, draws=2, kid_subsets=5, kid_subset_size=10, is_splits=2)
    out = evaluate_real(cfg, test=FeatureSet(feats[30:], logits[30:]), reference=ref,
                        num_classes=3, out_dir=tmp_path)
    assert out["draws"] == 2 and out["fid_std"] == 0.0 and out["fid"] > 0
    assert (tmp_path / "features_real.npz").exists()


def test_likelihood_bounds_are_ordered_and_consistent():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8))
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    test = Split(images, torch.zeros(16, dtype=torch.int64), ["a"])
    cfg = EvalConfig(iwae_k=[1, 50], batch_size=8, likelihood_images=0)
    out = likelihood_bounds(vae, test, cfg, torch.device("cpu"))
    # IWAE_1 is the ELBO estimator itself: same value up to Monte Carlo noise
    assert abs(out["elbo_nats"] - out["iwae_k1_nats"]) < 5 * out["elbo_nats_sem"] + 1.0
    assert abs(out["elbo_nats"] - (out["recon_log_px_z_nats"] - out["kl_nats"])) < 1e-4
    assert math.isclose(out["bits_per_dim"], -out["elbo_nats"] / (64 * math.log(2)))
    assert out["kl_nats"] >= 0 and out["likelihood_images"] == 16


def test_parzen_row_chooses_the_sigma_of_a_known_gaussian():
    # Every centre is the same grey image c, so the Parzen window is N(c, sigma^2 I) exactly;
    # val/test images are drawn from N(c, s^2 I) with s = 0.1 (in [0, 1] pixel units), so the
    # validation likelihood peaks at sigma = s and the test LL is the Gaussian's: D = 64,
    # E log N(x; c, s^2 I) = -D/2 log(2 pi s^2) - D/2.
    s, d = 0.1, 64
    rng = torch.Generator().manual_seed(0)
    centres = torch.full((3, 1, 8, 8), 128, dtype=torch.uint8)

    def noisy(n: int) -> torch.Tensor:
        x = 128 + 255 * s * torch.randn(n, 1, 8, 8, generator=rng)
        return x.round().clamp(0, 255).to(torch.uint8)

    out = parzen_row(centres, noisy(300), noisy(300), [0.05, 0.08, 0.1, 0.13, 0.2])
    assert out["parzen_sigma"] == 0.1
    want = -d / 2 * math.log(2 * math.pi * s**2) - d / 2
    assert abs(out["parzen_ll_nats"] - want) < 4 * out["parzen_ll_nats_sem"] + 1.0
    assert 0 < out["parzen_ll_nats_sem"] < 2.0


def test_reconstruction_errors_known_answers():
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(1)).double().numpy()
    assert reconstruction_errors(x, x) == {"recon_mse": 0.0, "recon_mae_levels": 0.0}
    out = reconstruction_errors(x, x + 0.1)  # a constant offset of 0.1 = 25.5 grey levels
    assert math.isclose(out["recon_mse"], 0.01, rel_tol=1e-9)
    assert math.isclose(out["recon_mae_levels"], 25.5, rel_tol=1e-9)


def banded(n: int, seed: int, shape: tuple[int, int, int] = (1, 4, 4)) -> Split:
    """Class k in 0..3 lights pixel k at 255 over noise in 0..60: linearly encoded labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 61, (n, *shape), generator=g, dtype=torch.uint8)
    images.view(n, -1)[torch.arange(n), labels] = 255
    return Split(images, labels, ["a", "b", "c", "d"])


class PixelVAE(torch.nn.Module):
    """A perfect autoencoder: mu(x) = the pixels, decoder mean at mu = x itself."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape

    conditional = False

    def encode(self, x: torch.Tensor, y: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x.flatten(1)  # (B, C*H*W)
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor, y: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = z.view(len(z), *self.shape)  # (B, C, H, W)
        return mean, torch.zeros_like(mean)


def test_probes_read_a_linearly_encoded_class_and_perfect_recon_is_zero():
    train, test = banded(300, 0), banded(200, 1)
    cfg = EvalConfig(probe_train_images=200, probe_knn_k=5, batch_size=64)
    out = inference_metrics(PixelVAE((1, 4, 4)), train, test, cfg, torch.device("cpu"))
    assert out["probe_linear_accuracy"] == 1.0 and out["probe_knn_accuracy"] == 1.0
    assert out["recon_mse"] < 1e-12 and out["recon_mae_levels"] < 1e-4
    assert out["probe_train_images"] == 200


def test_probe_on_labels_unrelated_to_the_codes_is_near_chance():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((800, 4)), rng.integers(0, 4, 800)
    out = probe_accuracies(z[:400], y[:400], z[400:], y[400:], k=5)
    assert out["probe_linear_accuracy"] < 0.4 and out["probe_knn_accuracy"] < 0.4


class StubJudge(torch.nn.Module):
    """Features = the first 6 pixels, logits = the first 4 (one per class of :func:`banded`)."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        flat = x.flatten(1)  # (B, C*H*W)
        return SimpleNamespace(features=flat[:, :6], logits=flat[:, :4])


def test_evaluate_all_writes_every_new_key_for_every_row(tmp_path):
    import dataclasses

    from genduel.config import GANConfig
    from genduel.evaluate import gan_diagnostics as diagnostics
    from genduel.models import load_trained
    from genduel.tracking.base import RecordingTracker
    from genduel.train.gan import train_gan

    torch.manual_seed(0)
    shape = (1, 8, 8)
    cfg = EvalConfig(num_samples=40, draws=1, batch_size=20, is_splits=2, kid_subsets=2,
                     kid_subset_size=10, iwae_k=[1], likelihood_images=8, parzen_samples=30,
                     parzen_val_images=10, parzen_test_images=12, parzen_sigmas=[0.1, 0.3],
                     probe_train_images=50)
    train = banded(60, 0, shape)
    gan_cfg = GANConfig(latent_dim=4, width=4, batch_size=20, epochs=2, diag_samples=12)
    train_gan(gan_cfg, train, device=torch.device("cpu"), amp=False, tracker=RecordingTracker(),
              checkpoint_path=tmp_path / "gan.pt", artifacts_dir=tmp_path / "art")
    inputs = EvalInputs(judge=StubJudge(), vae=VAE(VAEConfig(latent_dim=2, width=4), shape),
                        generator=load_trained(tmp_path / "gan.pt", "gan"), train=train,
                        val=banded(20, 1, shape), test=banded(40, 2, shape),
                        judge_sha256="0" * 64, judge_accuracy=0.9,
                        model_params={"gan": dataclasses.asdict(gan_cfg)},
                        gan_artifacts=tmp_path / "art")
    out = evaluate_all(cfg, inputs, torch.device("cpu"), tmp_path / "eval")
    for name in ("vae", "gan", "real"):
        assert math.isfinite(out[name]["parzen_ll_nats"])
        assert out[name]["parzen_sigma"] in (0.1, 0.3)
        assert "30 VAE / 30 GAN samples of draw 0, 30 train" in out[name]["protocol"]["parzen"]
    for key in ("probe_linear_accuracy", "probe_knn_accuracy", "recon_mse", "recon_mae_levels"):
        assert math.isfinite(out["vae"][key]) and key not in out["gan"]
    assert out["gan"]["model_params"]["loss"] == "non_saturating"
    assert "model_params" not in out["vae"]  # none given for it
    rows = diagnostics.read_table(tmp_path / "eval" / "gan_diagnostics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(1 <= r["classes_covered"] <= 4 for r in rows)  # the stub judge has 4 classes
    index = json.loads((tmp_path / "eval" / "studies" / "index.json").read_text())
    assert all((tmp_path / "eval" / "studies" / f["file"]).is_file() for f in index["figures"])
    assert any("manifold" in f["file"] for f in index["figures"])  # latent_dim 2


def test_a_bad_parzen_grid_is_refused_before_any_sampling():
    for bad in ([], [0.1, 0.0], [0.1, True]):
        with pytest.raises(ConfigError, match="eval.parzen_sigmas"):
            check_parzen_sigmas(bad)
    check_parzen_sigmas([0.1, 1])


def test_inception_rows_wire_every_set_through_the_weights_file(tmp_path, monkeypatch):
    import genduel.evaluate.inception

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not really weights")
    seen = {}

    def fake_metrics(path, reference, sets, **kw):
        seen.update(path=path, n_ref=len(reference), sets={k: len(v) for k, v in sets.items()})
        return {k: {"inception_fid": 1.0} for k in sets}

    monkeypatch.setattr(genduel.evaluate.inception, "inception_metrics", fake_metrics)
    images = torch.zeros(30, 1, 4, 4, dtype=torch.uint8)
    split = Split(images, torch.zeros(30, dtype=torch.int64), ["a"])
    cfg = EvalConfig(inception_weights=str(weights), inception_samples=10, num_samples=20)
    from genduel.evaluate.extra import inception_rows

    rows = inception_rows(cfg, {"vae": images[:20], "gan": images[:20]}, split, split,
                          torch.device("cpu"))
    assert seen["path"] == weights and seen["n_ref"] == 10
    assert seen["sets"] == {"vae": 10, "gan": 10, "real": 10}
    assert set(rows) == {"vae", "gan", "real"}
    assert "sha256" in rows["real"]["inception_protocol"]


def test_judge_features_do_not_depend_on_the_batch_size():
    from genduel.config import JudgeConfig
    from genduel.evaluate.run import embed
    from genduel.models.judge import Judge

    torch.manual_seed(0)
    judge = Judge(JudgeConfig(width=4, feature_dim=16), (1, 28, 28), 10)
    images = torch.randint(0, 256, (23, 1, 28, 28), dtype=torch.uint8)
    a = embed(judge, images, 5, torch.device("cpu"))
    b = embed(judge, images, 23, torch.device("cpu"))
    assert a.features.shape == (23, 16) and a.logits.shape == (23, 10)
    assert abs(a.features - b.features).max() < 1e-5
    assert abs(a.logits - b.logits).max() < 1e-5


class LabelPainter(torch.nn.Module):
    """A 'conditional model' whose sample lights pixel y (what StubJudge's logits read), or, when
    ``ignore``, always pixel 0."""

    conditional = True

    def __init__(self, ignore: bool) -> None:
        super().__init__()
        self.ignore = ignore

    def sample(self, n: int, generator: torch.Generator, labels: torch.Tensor) -> torch.Tensor:
        x = -torch.ones(n, 1, 4, 4)
        x.view(n, -1)[torch.arange(n), torch.zeros_like(labels) if self.ignore else labels] = 1
        return x


def test_label_accuracy_is_one_for_a_model_that_honours_labels_and_chance_otherwise():
    from genduel.evaluate.run import label_accuracy

    args = (StubJudge(), 4, 40, 16, 0, torch.device("cpu"))
    assert label_accuracy(LabelPainter(ignore=False), *args) == 1.0
    assert label_accuracy(LabelPainter(ignore=True), *args) == 0.25  # only class 0 is right
