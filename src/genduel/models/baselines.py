"""Baselines that learn nothing but pixel statistics: the rungs of the report's baseline ladder.

A model worth comparing must beat these on the same protocol. :class:`PixelGaussian` fits one
multivariate Gaussian over all ``D = C * H * W`` pixels (mean and full D x D covariance, in the
model range [-1, 1]), or one per class together with the class frequencies, and samples from it.
It sees the training images only through their first two moments, so any sample metric it wins is
a metric that rewards pixel statistics, not learned structure.

Covariances are estimated in float64 (the unbiased ``1 / (N - 1)`` estimate). A pixel that is
constant in the data (the black border of Fashion-MNIST) makes the covariance singular, so the
sampling factor comes from the symmetric eigendecomposition ``Sigma = V diag(lambda) V^T`` with
negative round-off eigenvalues set to 0: ``x = mu + V diag(sqrt(lambda)) eps`` has exactly the
covariance Sigma, where a Cholesky factor would need a jitter that changes it.
"""

from __future__ import annotations

import torch
from torch import nn

from genduel.errors import DataError


def gaussian_factor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), factor (D, D)) of rows x (N, D), float64, with ``factor @ factor.T`` the
    unbiased sample covariance."""
    x = x.double()
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)  # (D, D)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    return mean, eigvecs * eigvals.clamp(min=0).sqrt()  # columns scaled: V diag(sqrt(lambda))


class PixelGaussian(nn.Module):
    """A full-covariance Gaussian over pixels, one per class (``per_class``) or one in all.

    Args:
        images: uint8 training images (N, C, H, W).
        labels: int64 labels (N,); used (and required) when ``per_class``.
        per_class: fit one Gaussian per class and sample classes at their training frequencies.

    Raises:
        DataError: a class (or the whole set) has fewer than 2 images, so no covariance exists.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 per_class: bool = False) -> None:
        super().__init__()
        self.image_shape = tuple(int(v) for v in images.shape[1:])
        x = images.flatten(1).double() / 127.5 - 1.0  # (N, D) in the model range
        groups = ([x[labels == k] for k in range(int(labels.max()) + 1)]
                  if per_class and labels is not None else [x])
        if per_class and labels is None:
            raise DataError("a per-class pixel Gaussian needs the training labels")
        small = [k for k, g in enumerate(groups) if len(g) < 2]
        if small:
            raise DataError(f"pixel Gaussian baseline: classes {small} have fewer than 2 training "
                            "images; raise data.train_limit")
        fits = [gaussian_factor(g) for g in groups]
        self.register_buffer("means", torch.stack([m for m, _ in fits]))  # (K, D)
        self.register_buffer("factors", torch.stack([f for _, f in fits]))  # (K, D, D)
        counts = torch.tensor([len(g) for g in groups], dtype=torch.float64)
        self.register_buffer("class_probs", counts / counts.sum())  # (K,)

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, C, H, W), float32, unclipped (the evaluation rounds them to 8 bits).

        Classes are drawn from the training frequencies with ``generator`` unless ``labels``
        (n,) are given; the Gaussian noise comes from the same generator.
        """
        device = self.means.device
        if labels is None:
            labels = torch.multinomial(self.class_probs.float().to(device), n, replacement=True,
                                       generator=generator)
        labels = labels.to(device)
        eps = torch.randn(n, self.means.shape[1], generator=generator, device=device,
                          dtype=torch.float64)  # (n, D)
        x = torch.empty_like(eps)
        for k in range(self.num_components):  # one matmul per class, not an (n, D, D) gather
            rows = labels == k
            x[rows] = self.means[k] + eps[rows] @ self.factors[k].T
        return x.float().view(n, *self.image_shape)
