"""The pixel-Gaussian baselines reproduce the data's moments, per class and in all."""

from __future__ import annotations

import pytest
import torch

from genduel.errors import DataError
from genduel.models.baselines import PixelGaussian, gaussian_factor


def _data(n: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of correlated 2x2 images in uint8, class 1 brighter; pixel 3 constant."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 3 == 0).long()  # class 1 is a third of the data
    base = torch.randn(n, 1, generator=g) * 30 + 100 + 60 * labels[:, None]
    x = torch.cat([base, base + torch.randn(n, 1, generator=g) * 10,
                   torch.randn(n, 1, generator=g) * 20 + 80, torch.full((n, 1), 7.0)], dim=1)
    return x.round().clamp(0, 255).to(torch.uint8).view(n, 1, 2, 2), labels


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.flatten(1).double()
    return x.mean(0), torch.cov(x.T)


def test_factor_reproduces_the_sample_covariance_exactly_even_when_singular():
    x, _ = _data()
    rows = x.flatten(1).double()
    mean, factor = gaussian_factor(rows)
    _, cov = _moments(rows)
    torch.testing.assert_close(mean, rows.mean(0))
    torch.testing.assert_close(factor @ factor.T, cov, atol=1e-8, rtol=1e-9)  # pixel 3: var 0


@pytest.mark.parametrize("per_class", [False, True])
def test_samples_have_the_datas_mean_and_covariance(per_class):
    images, labels = _data()
    model = PixelGaussian(images, labels, per_class=per_class)
    assert model.num_components == (2 if per_class else 1)
    x = model.sample(200_000, torch.Generator().manual_seed(1))  # model range [-1, 1]
    data = images.double() / 127.5 - 1
    mean, cov = _moments(x)
    want_mean, want_cov = _moments(data)
    torch.testing.assert_close(mean, want_mean, atol=0.01, rtol=0)
    torch.testing.assert_close(cov, want_cov, atol=0.004, rtol=0)  # data variances ~0.06
    assert x.flatten(1)[:, 3].std() < 1e-6  # the constant pixel stays constant


def test_per_class_samples_keep_each_class_and_its_frequency():
    images, labels = _data()
    model = PixelGaussian(images, labels, per_class=True)
    torch.testing.assert_close(model.class_probs, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64),
                               atol=1e-3, rtol=0)
    ones = model.sample(50_000, torch.Generator().manual_seed(2),
                        labels=torch.ones(50_000, dtype=torch.long))
    want, _ = _moments(images[labels == 1].double() / 127.5 - 1)
    torch.testing.assert_close(_moments(ones)[0], want, atol=0.01, rtol=0)
    # one Gaussian over both classes has the mixture's (larger) variance in pixel 0
    pooled = PixelGaussian(images).sample(50_000, torch.Generator().manual_seed(2))
    assert pooled.flatten(1)[:, 0].var() > 1.3 * ones.flatten(1)[:, 0].var()


def test_seeded_sampling_repeats_and_classes_need_two_images():
    images, labels = _data(30)
    model = PixelGaussian(images, labels, per_class=True)
    a, b = (model.sample(8, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (8, 1, 2, 2) and a.dtype == torch.float32
    labels[:] = 0
    labels[0] = 1
    with pytest.raises(DataError, match="fewer than 2"):
        PixelGaussian(images, labels, per_class=True)
