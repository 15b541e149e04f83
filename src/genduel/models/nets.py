"""Convolutional building blocks shared by the VAE, the GAN and (in part) the judge.

Both halves downsample by 4 with two stride-2 convolutions, so any image whose height and width
are divisible by 4 works (28x28 Fashion-MNIST/MNIST: 28 -> 14 -> 7; 32x32 CIFAR-10: 32 -> 16 -> 8).
The VAE decoder and the GAN generator are the same :class:`ConvDecoder`, which is what lets a
generator start from a trained decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from genduel.errors import ConfigError


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in image_shape)
    if h % 4 or w % 4:
        raise ConfigError(f"image size {h}x{w} is not divisible by 4; the conv nets need it")
    return c, h, w


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> (B, out_dim) via two stride-2 convs and a linear layer.

    Args:
        image_shape: (C, H, W) of the input.
        width: channels after the first conv; the second has ``2 * width``.
        out_dim: size of the output vector.
        norm: BatchNorm after the second conv (off for a WGAN critic, on elsewhere).
        negative_slope: LeakyReLU slope (0 gives ReLU).
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int, out_dim: int,
                 norm: bool = True, negative_slope: float = 0.2) -> None:
        super().__init__()
        c, h, w = check_image_shape(image_shape)
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1),  # (B, width, H/2, W/2)
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=not norm),  # (B, 2w, H/4, W/4)
            nn.BatchNorm2d(2 * width) if norm else nn.Identity(),
            nn.LeakyReLU(negative_slope),
            nn.Flatten(),  # (B, 2w * H/4 * W/4)
        )
        self.head = nn.Linear(2 * width * (h // 4) * (w // 4), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> (B, out_channels, H, W) pre-activation outputs.

    A linear layer to (2w, H/4, W/4), then two stride-2 transposed convs. No output activation:
    the GAN applies tanh, the VAE reads the channels as likelihood parameters.
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int,
                 out_channels: int) -> None:
        super().__init__()
        _, h, w = check_image_shape(image_shape)
        self.base = (2 * width, h // 4, w // 4)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(2 * width * (h // 4) * (w // 4)),
            nn.ReLU(),
        )
        self.body = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),  # (B, w, H/2, W/2)
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, out_channels, 4, 2, 1),  # (B, out, H, W)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], *self.base)  # (B, 2w, H/4, W/4)
        return self.body(h)
