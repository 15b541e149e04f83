"""The evaluate stage's memorization check flags a sampler that returns training images."""

from __future__ import annotations

import torch

from genduel.evaluate.memorization import memorization_rows
from genduel.evaluate.samples import embed


def test_a_model_returning_training_images_is_flagged_and_fresh_draws_are_not(banded,
                                                                               stub_judge,
                                                                               tmp_path):
    train, test, fresh = banded(400, 0), banded(200, 1), banded(200, 2)
    features = {name: embed(stub_judge, images, 64, torch.device("cpu")).features
                for name, images in (("copier", train.images[:200]), ("fresh", fresh.images))}
    rows = memorization_rows({"copier": (train.images[:200], features["copier"]),
                              "fresh": (fresh.images, features["fresh"])}, train, test,
                             judge=stub_judge, n=200, seed=0, batch_size=64,
                             device=torch.device("cpu"), out_dir=tmp_path)
    copier, novel = rows["copier"], rows["fresh"]
    assert copier["nn_ratio_pixels"] == 0 and copier["copy_share_pixels"] == 1
    assert copier["copy_share_features"] == 1
    assert 0.8 < novel["nn_ratio_pixels"] < 1.25 and novel["copy_share_pixels"] < 0.05
    assert (tmp_path / "memorization_copier.png").stat().st_size > 0
