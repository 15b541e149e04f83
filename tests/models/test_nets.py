"""The shared conv blocks: the resize-convolution against its definition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genduel.config import GANConfig
from genduel.errors import ConfigError
from genduel.models.gan import Generator, build_generator
from genduel.models.nets import ConvDecoder, ResizeConv2d


@pytest.mark.parametrize("cin,cout,h,w,bias", [(3, 2, 5, 6, True), (8, 1, 7, 7, True),
                                               (4, 5, 1, 3, False)])
def test_resize_conv_equals_nearest_upsampling_then_a_3x3_conv(cin, cout, h, w, bias):
    torch.manual_seed(0)
    layer = ResizeConv2d(cin, cout, bias=bias).double()
    reference = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                              nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)).double()
    reference[1].load_state_dict(layer.state_dict())  # the same weight (and bias)
    x = torch.randn(3, cin, h, w, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=1e-12)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(layer(channels_last), reference(x), rtol=0, atol=1e-12)


def test_resize_conv_gradients_equal_the_definition():
    torch.manual_seed(1)
    layer = ResizeConv2d(4, 3).double()
    reference = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 3, 3, 1, 1)).double()
    reference[1].load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    target = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    ((layer(x) - target) ** 2).sum().backward()
    ((reference(x) - target) ** 2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, reference[1].weight.grad)
    torch.testing.assert_close(layer.bias.grad, reference[1].bias.grad)


def test_a_constant_image_stays_constant_inside_a_resize_conv_not_a_transposed_conv():
    """The checkerboard of Odena et al. (2016): a stride-2 4x4 transposed conv gives the four
    output phases different sums of its taps, so a constant input comes out as a 2x2 pattern;
    resizing first gives every interior pixel the same sum."""
    torch.manual_seed(2)
    x = torch.ones(1, 6, 6, 6)
    resized = ResizeConv2d(6, 1)(x)[0, 0, 2:-2, 2:-2]
    assert torch.allclose(resized, resized[0, 0].expand_as(resized), atol=1e-5)
    deconv = nn.ConvTranspose2d(6, 1, 4, 2, 1)(x)[0, 0, 2:-2, 2:-2]
    assert (deconv[0::2, 0::2] - deconv[1::2, 1::2]).abs().min() > 1e-4


def test_a_resize_generator_rebuilds_from_its_config_and_keeps_the_deconv_default():
    cfg = GANConfig(latent_dim=8, width=4, g_arch="resize")
    G = Generator(cfg, (1, 28, 28))
    assert isinstance(G.net.body[0], ResizeConv2d) and isinstance(G.net.body[3], ResizeConv2d)
    rebuilt = build_generator(G.model_config())
    rebuilt.load_state_dict(G.state_dict())
    z = torch.randn(5, 8)
    G.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(z), G(z))
    old = {k: v for k, v in Generator(GANConfig(latent_dim=8, width=4), (1, 28, 28))
           .model_config().items() if k != "g_arch"}  # a checkpoint from before g_arch
    assert isinstance(build_generator(old).net.body[0], nn.ConvTranspose2d)
    with pytest.raises(ConfigError, match="upsampling"):
        ConvDecoder(8, (1, 28, 28), 4, 1, upsample="bilinear")
