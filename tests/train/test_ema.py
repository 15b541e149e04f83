"""EMA of weights: decay 0 is the raw net, parameters follow torch's AveragedModel EMA."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from genduel.train.ema import EMA


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _train_steps(net: nn.Module, n: int, hook) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for i in range(n):
        x = torch.randn(16, 3, generator=torch.Generator().manual_seed(i))
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
        hook(net)


def test_decay_zero_equals_the_raw_weights_and_buffers():
    net = _net()
    ema = EMA(net, 0.0)
    _train_steps(net, 5, ema.update)
    for a, b in zip(ema.model.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)


def test_warmup_decay_then_parameters_follow_averaged_model_and_buffers_are_averaged():
    net = _net()
    ema = EMA(net, 0.5)
    assert [ema.current_decay] == [0.1]  # (1 + 0) / (10 + 0)
    ema.updates = 8  # (1 + 8) / 18 = 0.5: the warm-up is over from here on
    assert ema.current_decay == 0.5
    reference = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.5))
    reference.update_parameters(net)  # AveragedModel's first update copies; EMA copied at init
    _train_steps(net, 6, lambda n: (ema.update(n), reference.update_parameters(n)))
    for a, b in zip(ema.model.parameters(), reference.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(next(ema.model.parameters()), next(net.parameters()))
    assert ema.updates == 14
    bn_ema, bn = ema.model[1], net[1]
    assert not torch.allclose(bn_ema.running_mean, bn.running_mean)  # averaged, not copied
    assert int(bn_ema.num_batches_tracked) == int(bn.num_batches_tracked) == 6  # copied


def test_the_average_is_frozen_and_decay_must_be_below_one():
    ema = EMA(_net(), 0.5)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EMA(_net(), 1.0)


def test_warmup_keeps_at_most_ten_over_ten_plus_t_of_the_initial_weights():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    ema = EMA(net, 0.999)  # the average starts at 0, the raw weight jumps to 1 and stays
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(1716):
        ema.update(net)
    share_of_init = 1 - ema.model.weight.item()
    assert share_of_init <= 10 / (10 + 1716) and share_of_init < 0.999 ** 1716 / 10
