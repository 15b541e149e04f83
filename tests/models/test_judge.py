"""The judge classifier and its training loop."""

from __future__ import annotations

import torch

from genduel.config import JudgeConfig
from genduel.models.judge import Judge, JudgeOutput, build_judge
from genduel.runtime import eval_mode

CPU = torch.device("cpu")
SMALL = JudgeConfig(epochs=3, batch_size=32, lr=5e-3, width=8, feature_dim=32, dropout=0.1)


def test_forward_shapes_and_feature_dim():
    cfg = JudgeConfig(width=4, feature_dim=40)
    model = Judge(cfg, (3, 32, 32), num_classes=7)
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with eval_mode(model):
        out = model(x)
        assert isinstance(out, JudgeOutput)
        assert out.logits.shape == (5, 7) and out.features.shape == (5, 40)
        assert out.features.min() >= 0  # after the ReLU
        torch.testing.assert_close(model.features(x), out.features)
    rebuilt = build_judge(model.model_config())
    assert rebuilt.model_config() == model.model_config()
