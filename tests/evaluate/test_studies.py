"""Latent-space studies: interpolation maths, class-conditioned grids, class-mean arithmetic,
the 2-D manifold grid, PCA of posterior means, and the figures + index.json writer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genduel.config import GANConfig, VAEConfig
from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.evaluate.studies import (
    choose_pairs,
    choose_sources,
    class_grid,
    class_latent_means,
    class_mean_arithmetic,
    encode_means,
    gan_interpolation,
    label_swap,
    lerp,
    manifold_latents,
    scatter_coords,
    slerp,
    vae_interpolation,
    vae_manifold,
)
from genduel.evaluate.study_figures import write_studies
from genduel.models.gan import Generator
from genduel.models.vae import VAE
from genduel.runtime import eval_mode

SHAPE = (1, 8, 8)
K = 3
PHI_INV_005 = -1.6448536269514722  # Phi^-1(0.05)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_vae(latent_dim: int, conditional: bool, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(latent_dim=latent_dim, width=4, conditional=conditional), SHAPE, K)


def make_gen(conditional: bool, seed: int = 1) -> Generator:
    torch.manual_seed(seed)
    return Generator(GANConfig(latent_dim=4, width=4, conditional=conditional), SHAPE, K)


@pytest.fixture(scope="module")
def split() -> Split:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, *SHAPE), dtype=torch.uint8, generator=g)
    return Split(images, torch.arange(60) % K, ["tee", "bag", "boot"])


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- interpolation
def test_slerp_endpoints_exact_and_norm_kept_for_equal_norms():
    z0 = torch.randn(5, 64, generator=rng(0))
    z1 = torch.randn(5, 64, generator=rng(1))
    z1 = z1 * (z0.norm(dim=1) / z1.norm(dim=1)).unsqueeze(1)  # equal norms per pair
    t = torch.linspace(0, 1, 11)
    out = slerp(z0, z1, t)
    assert out.shape == (5, 11, 64)
    assert torch.equal(out[:, 0], z0) and torch.equal(out[:, -1], z1)
    norms = out.norm(dim=2)  # (5, 11)
    torch.testing.assert_close(norms, z0.norm(dim=1, keepdim=True).expand_as(norms))


def test_slerp_keeps_orthogonal_midpoint_on_the_circle_where_lerp_shrinks_it():
    z0, z1 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    t = torch.tensor([0.5])
    torch.testing.assert_close(slerp(z0, z1, t)[0, 0], torch.tensor([3.0, 3.0]) / math.sqrt(2))
    assert lerp(z0, z1, t)[0, 0].norm().item() == pytest.approx(3 / math.sqrt(2))


def test_slerp_stays_on_the_gaussian_shell_between_random_draws():
    d = 256
    z0, z1 = torch.randn(50, d, generator=rng(2)), torch.randn(50, d, generator=rng(3))
    t = torch.linspace(0, 1, 9)
    n_slerp = slerp(z0, z1, t).norm(dim=2)  # (50, 9)
    lo = torch.minimum(z0.norm(dim=1), z1.norm(dim=1)).unsqueeze(1)
    hi = torch.maximum(z0.norm(dim=1), z1.norm(dim=1)).unsqueeze(1)
    assert bool((n_slerp >= lo * 0.999).all() and (n_slerp <= hi * 1.001).all())
    mid_lerp = lerp(z0, z1, torch.tensor([0.5]))[:, 0].norm(dim=1)  # ~ sqrt(d / 2)
    assert mid_lerp.mean().item() == pytest.approx(math.sqrt(d / 2), rel=0.05)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    z0 = torch.tensor([[1.0, 2.0]])
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(slerp(z0, 2 * z0, t), lerp(z0, 2 * z0, t))


def test_lerp_endpoints_exact():
    z0, z1 = torch.randn(4, 3, generator=rng(4)), torch.randn(4, 3, generator=rng(5))
    out = lerp(z0, z1, torch.linspace(0, 1, 7))
    assert torch.equal(out[:, 0], z0) and torch.equal(out[:, -1], z1)


def test_choose_pairs_pick_different_classes_deterministically(split):
    a, b = choose_pairs(split.labels, 8, rng(7))
    a2, b2 = choose_pairs(split.labels, 8, rng(7))
    assert torch.equal(a, a2) and torch.equal(b, b2) and len(a) == 8
    assert bool((split.labels[a] != split.labels[b]).all())


@pytest.mark.parametrize("conditional", [False, True])
def test_vae_interpolation_ends_are_reconstructions_and_midpoint_is_mean_code(split, conditional):
    vae = make_vae(3, conditional)
    x = to_model_range(split.images[:4])
    x_a, x_b, y_a, y_b = x[:2], x[2:], split.labels[:2], split.labels[2:4]
    out = vae_interpolation(vae, x_a, y_a, x_b, y_b, steps=3)
    assert out.shape == (2, 3, *SHAPE)
    with eval_mode(vae):
        mu_a, mu_b = vae.encode(x_a, y_a)[0], vae.encode(x_b, y_b)[0]
        torch.testing.assert_close(out[:, 0], vae.decode(mu_a, y_a)[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(out[:, 2], vae.decode(mu_b, y_b)[0], rtol=0, atol=1e-6)
        half = (torch.nn.functional.one_hot(y_a, K) + torch.nn.functional.one_hot(y_b, K)) / 2
        mid = vae.decode((mu_a + mu_b) / 2, half.float())[0]
    torch.testing.assert_close(out[:, 1], mid, rtol=0, atol=1e-6)
    if conditional:  # the class code really moves: midpoint differs from a fixed label
        with eval_mode(vae):
            fixed = vae.decode((mu_a + mu_b) / 2, y_a)[0]
        assert not torch.allclose(out[:, 1], fixed)


@pytest.mark.parametrize("conditional", [False, True])
def test_gan_interpolation_ends_and_row_labels(conditional):
    gen = make_gen(conditional)
    seen: list[torch.Tensor | None] = []
    forward = gen.forward

    def recording(z, y=None):
        seen.append(None if y is None else y.clone())
        return forward(z, y)

    gen.forward = recording
    out = gan_interpolation(gen, 5, rng(9), steps=4)
    assert out.shape == (5, 4, *SHAPE)
    g = rng(9)
    z_a, z_b = gen.sample_latent(5, g), gen.sample_latent(5, g)
    labels = torch.arange(5) % K if conditional else None
    if conditional:
        assert torch.equal(seen[0], labels.repeat_interleave(4))
    else:
        assert seen[0] is None
    with eval_mode(gen):
        torch.testing.assert_close(out[:, 0], forward(z_a, labels), rtol=0, atol=1e-6)
        torch.testing.assert_close(out[:, -1], forward(z_b, labels), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- class studies
def test_class_grid_row_i_is_label_i_with_a_label_only_generator():
    gen = make_gen(True)
    with torch.no_grad():
        gen.net.fc[0].weight[:, : gen.latent_dim] = 0  # output now depends on the label only
    grid = class_grid(gen, 4, rng(0)).view(K, 4, *SHAPE)
    with eval_mode(gen):
        for c in range(K):
            expected = gen(torch.randn(1, gen.latent_dim), torch.tensor([c]))[0]
            for j in range(4):
                torch.testing.assert_close(grid[c, j], expected, rtol=0, atol=1e-6)
    assert not torch.allclose(grid[0, 0], grid[1, 0]) and not torch.allclose(grid[1, 0], grid[2, 0])


def test_class_grid_labels_per_row_and_shared_noise_per_column():
    vae = make_vae(2, True)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    decode = vae.decode

    def recording(z, y=None):
        calls.append((z.clone(), y.clone()))
        return decode(z, y)

    vae.decode = recording
    grid = class_grid(vae, 5, rng(1))
    assert grid.shape == (K * 5, *SHAPE)
    z, y = calls[0]
    assert torch.equal(y, torch.tensor([0] * 5 + [1] * 5 + [2] * 5))
    assert torch.equal(z[:5], z[5:10]) and torch.equal(z[:5], z[10:])
    with pytest.raises(ValueError, match="conditional"):
        class_grid(make_vae(2, False), 5, rng(1))


def test_class_latent_means_equal_direct_means_and_nan_for_empty_class():
    mu = torch.randn(30, 4, generator=rng(3))
    labels = torch.tensor([0, 2] * 15)
    means = class_latent_means(mu, labels, 4)
    torch.testing.assert_close(means[0], mu[labels == 0].mean(0))
    torch.testing.assert_close(means[2], mu[labels == 2].mean(0))
    assert bool(means[1].isnan().all() and means[3].isnan().all())


@pytest.mark.parametrize("conditional", [False, True])
def test_encode_means_match_encoder_and_ignore_batch_size(split, conditional):
    vae = make_vae(3, conditional)
    mu = encode_means(vae, split.images[:20], split.labels[:20], batch_size=7)
    with eval_mode(vae):
        direct = vae.encode(to_model_range(split.images[:20]), split.labels[:20])[0]
    assert mu.shape == (20, 3)
    torch.testing.assert_close(mu, direct, rtol=0, atol=1e-6)


def test_class_mean_arithmetic_reproduces_reconstruction_for_own_class(split):
    vae = make_vae(3, False)
    mu = encode_means(vae, split.images, split.labels)
    means = class_latent_means(mu, split.labels, K)
    x, y = to_model_range(split.images[:2]), split.labels[:2]  # classes 0 and 1
    out = class_mean_arithmetic(vae, x, y, means, [0, 1, 2])
    assert out.shape == (2, 3, *SHAPE)
    with eval_mode(vae):
        recon = vae.reconstruct(x)
        moved = vae.decode(vae.encode(x)[0] + means[2] - means[y], None)[0]
    torch.testing.assert_close(out[0, 0], recon[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1, 1], recon[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 2], moved, rtol=0, atol=1e-5)
    assert not torch.allclose(out[0, 0], out[0, 2])


def test_label_swap_decodes_the_same_z_with_each_label(split):
    vae = make_vae(3, True)
    x, y = to_model_range(split.images[:2]), split.labels[:2]
    out = label_swap(vae, x, y, [0, 1, 2])
    with eval_mode(vae):
        mu = vae.encode(x, y)[0]
        torch.testing.assert_close(out[1, 1], vae.reconstruct(x, y)[1], rtol=0, atol=1e-6)
        for b in range(K):
            expected = vae.decode(mu, torch.full((2,), b))[0]
            torch.testing.assert_close(out[:, b], expected, rtol=0, atol=1e-6)


def test_choose_sources_returns_one_image_of_each_requested_class(split):
    idx = choose_sources(split.labels, [2, 0, 1], rng(5))
    assert split.labels[idx].tolist() == [2, 0, 1]
    assert torch.equal(idx, choose_sources(split.labels, [2, 0, 1], rng(5)))


# ----------------------------------------------------------------------------- 2-D latents
def test_manifold_grid_corners_are_the_5_and_95_percent_prior_quantiles():
    z = manifold_latents(20)
    assert z.shape == (400, 2)
    q = -PHI_INV_005
    corners = {0: (-q, q), 19: (q, q), 380: (-q, -q), 399: (q, -q)}  # row-major, z2 up
    for i, (z1, z2) in corners.items():
        assert z[i].tolist() == pytest.approx([z1, z2], abs=1e-5)
    assert torch.equal(z[:20, 1], z[:1, 1].expand(20))  # a grid row shares z2


def test_vae_manifold_only_for_2d_latent_and_uses_label_0():
    with pytest.raises(ValueError, match="latent_dim 2"):
        vae_manifold(make_vae(16, False), size=4)
    vae = make_vae(2, True)
    out = vae_manifold(vae, size=4)
    with eval_mode(vae):
        expected = vae.decode(manifold_latents(4), torch.zeros(16, dtype=torch.int64))[0]
    assert out.shape == (16, *SHAPE)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_scatter_coords_pca_has_known_variance_ratio():
    pts = torch.tensor([[3.0, 0, 0], [-3, 0, 0], [0, 2, 0], [0, -2, 0], [0, 0, 1], [0, 0, -1]])
    coords, ratio = scatter_coords(pts + 5.0)  # an offset must not matter (centred)
    assert ratio == pytest.approx([18 / 28, 8 / 28])
    np.testing.assert_allclose(np.abs(coords[:4]), [[3, 0], [3, 0], [0, 2], [0, 2]], atol=1e-12)
    coords2, ratio2 = scatter_coords(pts[:, :2])
    assert ratio2 is None and np.array_equal(coords2, pts[:, :2].double().numpy())


# ----------------------------------------------------------------------------- writer
def read_index(out_dir) -> list[dict[str, str]]:
    figures = json.loads((out_dir / "index.json").read_text())["figures"]
    for fig in figures:
        assert set(fig) == {"file", "title", "caption"} and fig["title"] and fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == PNG_SIGNATURE
    return figures


def test_write_studies_unconditional_uses_pca_and_skips_class_grids(split, tmp_path):
    vae, gen = make_vae(16, False), make_gen(False)
    index = write_studies(vae, gen, split, tmp_path / "s", seed=0, device=torch.device("cpu"))
    assert read_index(tmp_path / "s") == index
    assert [f["file"] for f in index] == ["interp_vae.png", "interp_gan.png",
                                          "arithmetic_vae.png", "latent_scatter_vae.png"]
    assert "principal components" in index[-1]["caption"] and "%" in index[-1]["caption"]
    with Image.open(tmp_path / "s" / "interp_vae.png") as im:  # 8 rows x (10 + 2) columns
        assert im.size == (12 * 10 + 2, 8 * 10 + 2)
    assert vae.training and gen.training  # eval_mode restored the modes


def test_write_studies_conditional_2d_is_deterministic(split, tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        write_studies(make_vae(2, True), make_gen(True), split, d, seed=3,
                      device=torch.device("cpu"))
    index = read_index(dirs[0])
    files = [f["file"] for f in index]
    assert files == ["class_grid_vae.png", "class_grid_gan.png", "interp_vae.png",
                     "interp_gan.png", "arithmetic_vae.png", "manifold_vae.png",
                     "latent_scatter_vae.png"]
    assert "tee, 1 bag, 2 boot" in index[0]["caption"]
    assert "label 0 (tee)" in index[5]["caption"]
    with Image.open(dirs[0] / "class_grid_gan.png") as im:  # K rows x 10 columns of 8x8
        assert im.size == (10 * 10 + 2, K * 10 + 2)
    with Image.open(dirs[0] / "manifold_vae.png") as im:
        assert im.size == (20 * 10 + 2, 20 * 10 + 2)
    for name in [*files, "index.json"]:
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
