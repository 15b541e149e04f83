"""Sample metrics: seeded sampling is reproducible and lands on the 8-bit grid, judge features do
not depend on the batch size, the real row and the label accuracy give known answers."""

from __future__ import annotations

import torch

from genduel.config import EvalConfig, JudgeConfig
from genduel.data.splits import Split
from genduel.evaluate.samples import (
    FeatureSet,
    draw_samples,
    embed,
    evaluate_real,
    label_accuracy,
    subset,
)
from genduel.metrics import density_coverage
from genduel.models.judge import Judge


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


def test_real_row_density_and_coverage_use_eval_dc_k(tmp_path):
    rng = torch.Generator().manual_seed(1)
    feats = torch.randn(60, 4, generator=rng).numpy()
    logits = torch.randn(60, 3, generator=rng).numpy()
    test, ref = FeatureSet(feats[30:], logits[30:]), FeatureSet(feats[:30], logits[:30])
    for dc_k in (2, 5):
        cfg = EvalConfig(num_samples=30, draws=1, kid_subsets=5, kid_subset_size=10,
                         is_splits=2, dc_k=dc_k)
        out = evaluate_real(cfg, test=test, reference=ref, num_classes=3, out_dir=tmp_path)
        assert (out["density"], out["coverage"]) == density_coverage(ref.features,
                                                                     test.features, k=dc_k)


def test_judge_features_do_not_depend_on_the_batch_size():
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


def test_label_accuracy_is_one_for_a_model_that_honours_labels_and_chance_otherwise(stub_judge):
    args = (stub_judge, 4, 40, 16, 0, torch.device("cpu"))
    assert label_accuracy(LabelPainter(ignore=False), *args) == 1.0
    assert label_accuracy(LabelPainter(ignore=True), *args) == 0.25  # only class 0 is right
