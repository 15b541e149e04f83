"""The Inception-v3 metrics path, with a randomly initialised network the test writes itself.

No real weights exist offline, so the test builds torch-fidelity's ``FeatureExtractorInceptionV3``
with its weight loading stubbed out, re-initialises it (He-normal convolutions, so activations
neither vanish nor explode over ~90 layers and the features tell images apart), and saves its
state dict: exactly the layout of ``weights-inception-2015-12-05-6726825d.pth``. Every network
fetch is replaced by a function that fails, so a code path that tries to download fails loudly.
The forward at 299 x 299 is ~5.7 GFLOP per image, so the sets are kept at 4 images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch import nn

from genduel.config import EvalConfig
from genduel.data.splits import Split
from genduel.errors import DataError
from genduel.evaluate import inception as inception_module
from genduel.evaluate.inception import (
    FEATURE_DIM,
    NUM_LOGITS,
    InceptionOutputs,
    grayscale_to_rgb,
    inception_features,
    inception_metrics,
    inception_rows,
    load_inception,
)

N_IMAGES = 4


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a download was attempted: {args}")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any weight download fails; the torch hub cache points at an empty folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)


class _Unloaded(tf_inception.FeatureExtractorInceptionV3):
    """The library's network whose constructor skips loading weights (test only)."""

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False) -> None:
        assert state_dict == {}, "only the stubbed constructor load is skipped"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Inception-v3 state dict in torch-fidelity's layout, saved with torch.save."""
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        model = _Unloaded("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """``N_IMAGES`` random 28 x 28 grayscale uint8 images ``(N, 1, 28, 28)``."""
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (N_IMAGES, 1, 28, 28), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def model(weights_file: Path) -> Iterator[nn.Module]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tf_inception, "load_state_dict_from_url", _no_download)
        yield load_inception(weights_file, "cpu")


def test_grayscale_to_rgb_replicates_exactly(images: torch.Tensor) -> None:
    rgb = grayscale_to_rgb(images)
    assert rgb.shape == (N_IMAGES, 3, 28, 28) and rgb.dtype == torch.uint8
    for c in range(3):
        assert torch.equal(rgb[:, c], images[:, 0])
    three = images.repeat(1, 3, 1, 1)
    assert grayscale_to_rgb(three) is three


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 4, 4, dtype=torch.uint8),
                                 torch.zeros(2, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.uint8)])
def test_grayscale_to_rgb_refuses(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="grayscale_to_rgb"):
        grayscale_to_rgb(bad)


def test_missing_weights_is_a_data_error(tmp_path: Path, images: torch.Tensor) -> None:
    path = tmp_path / "pt_inception-2015-12-05.pth"
    with pytest.raises(DataError, match="pt_inception-2015-12-05.pth not found") as err:
        inception_metrics(path, images, {"vae": images}, batch_size=4)
    assert "\n" not in str(err.value) and "eval.inception_weights: ''" in str(err.value)


def test_unreadable_or_wrong_weights_are_data_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pth is not a readable PyTorch state dict"):
        load_inception(garbage, "cpu")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(DataError, match="wrong.pth does not match torch-fidelity's Inception"):
        load_inception(wrong, "cpu")


def test_load_inception_reads_the_file(model: nn.Module, weights_file: Path) -> None:
    expected = torch.load(weights_file, map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert set(state) == set(expected) and not model.training
    assert all(torch.equal(state[k], expected[k]) for k in expected)


@pytest.fixture(scope="module")
def outputs(model: nn.Module, images: torch.Tensor) -> InceptionOutputs:
    """Features and logits of ``images`` in batches of 3 (a full and a partial batch)."""
    return inception_features(model, images, batch_size=3, device="cpu")


def test_features_shapes_and_batch_independence(model: nn.Module, images: torch.Tensor,
                                                outputs: InceptionOutputs) -> None:
    assert outputs.features.shape == (N_IMAGES, FEATURE_DIM)
    assert outputs.logits.shape == (N_IMAGES, NUM_LOGITS)
    assert outputs.features.dtype == outputs.logits.dtype == np.float32
    assert np.isfinite(outputs.features).all() and np.isfinite(outputs.logits).all()
    # the random network is not degenerate: images get distinct features
    assert outputs.features.std(axis=0).mean() > 1e-2 * np.abs(outputs.features).mean()
    pair = inception_features(model, images[:2], batch_size=2, device="cpu")
    np.testing.assert_allclose(pair.features, outputs.features[:2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pair.logits, outputs.logits[:2], rtol=1e-4, atol=1e-5)


def test_inception_metrics(weights_file: Path, images: torch.Tensor, outputs: InceptionOutputs,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same images in reverse order: FID ~ 0, and the metric functions get the set's own
    features (reversed) first and the reference's second, as for the judge."""
    calls: dict[str, tuple] = {}
    for name in ("fid", "kid", "inception_score"):
        real = getattr(inception_module, name)

        def spy(*args: object, _name: str = name, _real: Callable = real,
                **kwargs: object) -> object:
            calls[_name] = args
            return _real(*args, **kwargs)

        monkeypatch.setattr(inception_module, name, spy)
    # The FID of 2048-d features from a handful of images runs two 2048 x 2048 eigenproblems
    # (singular covariance), ~10 s here: one set only.
    out = inception_metrics(weights_file, images, {"reversed": images.flip(0)},
                            batch_size=N_IMAGES, device="cpu", is_splits=2, kid_subsets=3,
                            kid_subset_size=3, seed=0)
    keys = {"inception_fid", "inception_kid", "inception_kid_subset_std", "inception_is",
            "inception_is_split_std"}
    assert set(out) == {"reversed"} and set(out["reversed"]) == keys
    metrics = out["reversed"]
    assert all(math.isfinite(v) for v in metrics.values())
    scale = np.trace(np.cov(outputs.features.astype(np.float64), rowvar=False))
    assert metrics["inception_fid"] == pytest.approx(0.0, abs=1e-6 * scale)
    assert 1.0 - 1e-9 <= metrics["inception_is"] <= N_IMAGES / 2  # at most the split size
    reversed_feat, reversed_logits = outputs.features[::-1], outputs.logits[::-1]
    for name, (sample, reference) in (("fid", calls["fid"]), ("kid", calls["kid"])):
        np.testing.assert_allclose(sample, reversed_feat, rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(reference, outputs.features, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    np.testing.assert_allclose(calls["inception_score"][0], reversed_logits, rtol=1e-4,
                               atol=1e-5)


def test_inception_rows_wire_every_set_through_the_weights_file(tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not really weights")
    seen = {}

    def fake_metrics(path, reference, sets, **kw):
        seen.update(path=path, n_ref=len(reference), sets={k: len(v) for k, v in sets.items()})
        return {k: {"inception_fid": 1.0} for k in sets}

    monkeypatch.setattr(inception_module, "inception_metrics", fake_metrics)
    images = torch.zeros(30, 1, 4, 4, dtype=torch.uint8)
    split = Split(images, torch.zeros(30, dtype=torch.int64), ["a"])
    cfg = EvalConfig(inception_weights=str(weights), inception_samples=10, num_samples=20)
    rows = inception_rows(cfg, {"vae": images[:20], "gan": images[:20]}, split, split,
                          torch.device("cpu"))
    assert seen["path"] == weights and seen["n_ref"] == 10
    assert seen["sets"] == {"vae": 10, "gan": 10, "real": 10}
    assert set(rows) == {"vae", "gan", "real"}
    assert "sha256" in rows["real"]["inception_protocol"]
