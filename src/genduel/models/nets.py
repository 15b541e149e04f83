"""Convolutional building blocks shared by the VAE, the GAN and (in part) the judge.

Both halves downsample by 4 with two stride-2 convolutions, so any image whose height and width
are divisible by 4 works (28x28 Fashion-MNIST/MNIST: 28 -> 14 -> 7; 32x32 CIFAR-10: 32 -> 16 -> 8).
The VAE decoder and the GAN generator are the same :class:`ConvDecoder`, which is what lets a
generator start from a trained decoder.

Conditional models (CVAE, conditional GAN) pass a class code ``y`` of ``cond_dim`` values: a one-hot
label, or any mixture of one-hots (a soft label, for interpolating between classes). The encoder
(and so the discriminator) reads it as ``cond_dim`` constant input planes stacked on the image, so
every conv feature can depend on the pair (x, y); the decoder appends it to z before its first
linear layer (Sohn et al. 2015; Mirza & Osindero 2014). Appending y only to the features before a
linear head would not do for a discriminator: its logit would be ``w . h(x) + v_y``, a per-class
offset that cannot tell whether x matches y, so G would have no reason to honour the label. With
``cond_dim = 0`` the parameter names and shapes are those of the unconditional nets.
"""

from __future__ import annotations

import torch
from torch import nn

from genduel.errors import ConfigError


def class_code(y: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor | None:
    """The class input of a conditional net: ``y`` as float (B, num_classes), or None.

    Args:
        y: int64 labels (B,), a float code (B, num_classes) (one-hot or a mixture), or None.
        num_classes: 0 for an unconditional net (``y`` is then ignored).
        like: a tensor whose device and dtype the code takes.

    Raises:
        ValueError: a conditional net got no labels, or labels out of range.
    """
    if num_classes == 0:
        return None
    if y is None:
        raise ValueError("this model is class-conditional: pass labels y")
    if y.dtype in (torch.int64, torch.int32, torch.uint8):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got {y.min()}..{y.max()}")
        y = torch.nn.functional.one_hot(y.long(), num_classes)  # (B, K)
    return y.to(device=like.device, dtype=like.dtype)


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
        norm: BatchNorm after the second conv (off for a WGAN-GP critic: the gradient penalty
            is per sample, which batch statistics would couple; Gulrajani et al. 2017, sec. 4).
        negative_slope: LeakyReLU slope (0 gives ReLU).
        cond_dim: size of the class code, stacked on the input as constant planes;
            0 = unconditional.
        spectral_norm: wrap every conv and linear layer in spectral normalization (Miyato et
            al. 2018), which bounds each layer's Lipschitz constant by 1; use with ``norm``
            off.
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int, out_dim: int,
                 norm: bool = True, negative_slope: float = 0.2, cond_dim: int = 0,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        c, h, w = check_image_shape(image_shape)
        self.body = nn.Sequential(
            nn.Conv2d(c + cond_dim, width, 4, 2, 1),  # (B, width, H/2, W/2)
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=not norm),  # (B, 2w, H/4, W/4)
            nn.BatchNorm2d(2 * width) if norm else nn.Identity(),
            nn.LeakyReLU(negative_slope),
            nn.Flatten(),  # (B, 2w * H/4 * W/4)
        )
        self.cond_dim = cond_dim
        self.head = nn.Linear(2 * width * (h // 4) * (w // 4), out_dim)
        if spectral_norm:
            for module in (self.body[0], self.body[2], self.head):
                nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), y labels (B,) or class code (B, cond_dim) (conditional only) ->
        (B, out_dim)."""
        code = class_code(y, self.cond_dim, x)
        if code is not None:
            planes = code[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, K, H, W)
            x = torch.cat([x, planes], dim=1)  # (B, C + K, H, W)
        return self.head(self.body(x))


#: How :class:`ConvDecoder` doubles the resolution (``gan.g_arch``).
UPSAMPLINGS = ("deconv", "resize")

# _PHASES[a, o, d]: whether tap d (offset d - 1) of a 3x3 kernel applied to a nearest-neighbour
# x2 upsampled image reads the input pixel at offset o - 1 when it computes an output pixel of
# phase a (a = output index mod 2): row 2i + a + (d - 1) of the upsampled image is row
# floor((2i + a + d - 1) / 2) = i + (o - 1) of the input.
_PHASES = torch.tensor([[[1., 0., 0.], [0., 1., 1.], [0., 0., 0.]],
                        [[0., 0., 0.], [1., 1., 0.], [0., 0., 1.]]])


class ResizeConv2d(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 convolution (padding 1), computed
    without forming the upsampled image.

    Each output pixel of phase (a, b) (its row and column mod 2) sees the input through a kernel
    made by summing the 3x3 taps that read the same input pixel, so the whole layer is one 3x3
    convolution of the input to 4 x out channels, with those phase kernels, and a pixel shuffle
    (Shi et al. 2016): the same function as ``Upsample(2) -> Conv2d(3, padding=1)`` with the same
    ``weight`` and ``bias``, and about 4x faster on the CPU than forming the upsampled image.
    Nearest-neighbour resizing before a conv cannot produce the checkerboard pattern of a strided
    transposed convolution (Odena et al. 2016).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        reference = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=bias)  # its init
        self.weight = reference.weight  # (out, in, 3, 3)
        self.bias = reference.bias
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in, H, W) -> (B, out, 2H, 2W)."""
        phases = _PHASES.to(device=self.weight.device, dtype=self.weight.dtype)
        # kernel[c, a, b, i] = P_a W[c, i] P_b^T: (out, 2, 2, in, 3, 3) -> (4 out, in, 3, 3),
        # channel c * 4 + a * 2 + b, the order PixelShuffle reads
        kernel = torch.einsum("aoy,bpx,ciyx->cabiop", phases, phases, self.weight)
        kernel = kernel.reshape(-1, *self.weight.shape[1:])
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            kernel = kernel.contiguous(memory_format=torch.channels_last)  # one layout: fast path
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        return self.shuffle(nn.functional.conv2d(x, kernel, bias, padding=1))


def _upsample(in_ch: int, out_ch: int, how: str, bias: bool) -> nn.Module:
    """One x2 upsampling layer: a 4x4 stride-2 transposed conv (``deconv``, DCGAN), or
    nearest-neighbour resizing and a 3x3 conv (``resize``, :class:`ResizeConv2d`)."""
    if how == "deconv":
        return nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=bias)
    if how == "resize":
        return ResizeConv2d(in_ch, out_ch, bias=bias)
    raise ConfigError(f"unknown upsampling {how!r}; use one of {', '.join(UPSAMPLINGS)}")


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> (B, out_channels, H, W) pre-activation outputs.

    A linear layer to (2w, H/4, W/4), then two x2 upsampling layers (``upsample``: stride-2
    transposed convs, or nearest-neighbour resizing + 3x3 convs), with ``extra_convs`` 3x3 conv
    layers at H/2 between them. No output activation: the GAN
    applies tanh, the VAE reads the channels as likelihood parameters. With ``cond_dim > 0`` the
    input is ``[z, y]``, (B, latent_dim + cond_dim).
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int,
                 out_channels: int, cond_dim: int = 0, upsample: str = "deconv",
                 extra_convs: int = 0) -> None:
        super().__init__()
        _, h, w = check_image_shape(image_shape)
        self.base = (2 * width, h // 4, w // 4)
        self.cond_dim = cond_dim
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, 2 * width * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(2 * width * (h // 4) * (w // 4)),
            nn.ReLU(),
        )
        self.body = nn.Sequential(
            _upsample(2 * width, width, upsample, bias=False),  # (B, w, H/2, W/2)
            nn.BatchNorm2d(width),
            nn.ReLU(),
            *[layer for _ in range(extra_convs)  # (B, w, H/2, W/2) each
              for layer in (nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                            nn.ReLU())],
            _upsample(width, out_channels, upsample, bias=True),  # (B, out, H, W)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim), y (B, cond_dim) class code (conditional only) -> (B, out, H, W)."""
        code = class_code(y, self.cond_dim, z)
        h = self.fc(z if code is None else torch.cat([z, code], dim=1))
        h = h.view(z.shape[0], *self.base)  # (B, 2w, H/4, W/4)
        return self.body(h)
