"""An exponential moving average (EMA) of a network's weights, for sampling from a generator.

GAN generators oscillate around a good solution as G and D chase each other; the average of
G's recent weights samples better than any single iterate (Yazici et al. 2019; used by
ProGAN, BigGAN and StyleGAN). After every optimizer step of the raw network ``theta``::

    theta_ema <- decay * theta_ema + (1 - decay) * theta

with ``decay_t = min(decay, (1 + t) / (10 + t))`` at update t = 0, 1, ... (the warm-up of
TensorFlow's ``ExponentialMovingAverage(num_updates=t)``), for every parameter and every floating
buffer (BatchNorm running means and variances, so the
averaged net normalizes with statistics of averaged weights rather than of the last iterate);
integer buffers (``num_batches_tracked``) are copied. Without the warm-up the average of a
short run keeps a large share of the random initialisation: at decay 0.999, 0.999^1716 = 18 %
of it after the 1,716 G steps of the default 4 epochs (measured: judge FID 516 against 339 for
the raw G); with it, update t weighs the initial weights by at most 10 / (10 + t).
``decay = 0`` makes the copy equal the raw weights after each update. Once the warm-up is over
(``t >= (10 decay - 1) / (1 - decay)``) the update of the parameters is that of
``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` (tested against it).
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """A frozen copy of ``model`` that :meth:`update` moves toward ``model``'s weights.

    Args:
        model: the network being trained; copied now (same device, dtype, memory format).
        decay: weight of the old average per update, in [0, 1).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @property
    def current_decay(self) -> float:
        """The decay the next :meth:`update` applies (the warm-up's, then ``decay``)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One EMA step toward ``model`` (same architecture as the copy)."""
        decay = self.current_decay
        self.updates += 1
        pairs = [*zip(self.model.parameters(), model.parameters(), strict=True),
                 *zip(self.model.buffers(), model.buffers(), strict=True)]
        for avg, new in pairs:
            if decay == 0.0 or not avg.is_floating_point():
                avg.copy_(new)
            else:
                avg.lerp_(new, 1.0 - decay)

    def state_dict(self) -> dict:
        """The averaged weights and the update count (what a resumed run needs)."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
