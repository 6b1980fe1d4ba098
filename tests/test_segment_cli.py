"""`utilegen segment train|predict|evaluate` through `add_cli` on a plain argparse parser."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from utilegen.datasets import sample_pair
from utilegen.io import read_mask, write_image, write_mask
from utilegen.segment import StarDist, StarDistConfig
from utilegen.segment._cli import add_cli

pytest.importorskip("torch")


def run(argv):
    parser = argparse.ArgumentParser(prog="utilegen")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def folder(tmp_path):
    for i in range(3):
        image, mask = sample_pair((96, 96), particles=6, rng=i)
        write_image(tmp_path / "images" / f"im{i}.tif", image)
        write_mask(tmp_path / "masks" / f"im{i}.tif", mask)
    return tmp_path


def test_predict_and_evaluate_with_a_saved_model(folder, tmp_path):
    model = StarDist(StarDistConfig(base_filters=4, feature_channels=8, unet_depth=1, n_rays=8))
    model.thresholds = {"prob": 0.4, "nms": 0.3}
    model.save(tmp_path / "model")
    assert run(["segment", "predict", str(folder / "images"), "--model", str(tmp_path / "model"),
                "--out", str(tmp_path / "labels")]) == 0
    written = sorted(p.name for p in (tmp_path / "labels").iterdir())
    assert written == ["im0.tif", "im1.tif", "im2.tif"]
    assert read_mask(tmp_path / "labels" / "im0.tif").shape == (96, 96)
    assert run(["segment", "evaluate", "--model", str(tmp_path / "model"), "--images",
                str(folder / "images"), "--masks", str(folder / "masks"), "--iou", "0.5",
                "--csv", str(tmp_path / "scores.csv")]) == 0
    df = pd.read_csv(tmp_path / "scores.csv")
    assert list(df.image) == ["im0", "im1", "im2", "all"] and np.all(df.iou == 0.5)


def test_train_writes_a_loadable_model(folder, tmp_path):
    assert run(["segment", "train", "--images", str(folder / "images"), "--masks",
                str(folder / "masks"), "--out", str(tmp_path / "m"), "--minutes", "0.1",
                "--init", "scratch", "--synthetic-per-real", "0", "--batch-size", "1",
                "--n-rays", "8"]) == 0
    model = StarDist.load(tmp_path / "m")
    assert model.config.n_rays == 8 and model.info["adaptation"]["base"] == "scratch"
    with pytest.raises(FileExistsError):
        run(["segment", "train", "--images", str(folder / "images"), "--masks",
             str(folder / "masks"), "--out", str(tmp_path / "m")])
    with pytest.raises(ValueError, match="--n-rays needs --init scratch"):
        run(["segment", "train", "--images", str(folder / "images"), "--masks",
             str(folder / "masks"), "--out", str(tmp_path / "m2"), "--n-rays", "8"])


def test_predict_rejects_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found"):
        run(["segment", "predict", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o")])


def test_scale_option_is_passed_to_the_model_and_checked(folder, tmp_path, monkeypatch):
    model = StarDist(StarDistConfig(base_filters=4, feature_channels=8, unet_depth=1, n_rays=8))
    model.save(tmp_path / "model")
    seen = []
    original = StarDist.predict

    def spy(self, image, **kwargs):
        seen.append(kwargs.get("scale", self.predict_scale))
        return original(self, image, **kwargs)

    monkeypatch.setattr(StarDist, "predict", spy)
    assert run(["segment", "predict", str(folder / "images" / "im0.tif"), "--model",
                str(tmp_path / "model"), "--out", str(tmp_path / "labels"), "--scale", "auto"]) == 0
    assert run(["segment", "evaluate", "--model", str(tmp_path / "model"), "--images",
                str(folder / "images"), "--masks", str(folder / "masks"), "--scale", "0.5"]) == 0
    assert seen == ["auto", 0.5, 0.5, 0.5]
    with pytest.raises(SystemExit):
        run(["segment", "predict", str(folder / "images"), "--out", str(tmp_path / "x"),
             "--scale", "big"])
    with pytest.raises(ValueError, match="scale"):
        run(["segment", "evaluate", "--model", str(tmp_path / "model"), "--images",
             str(folder / "images"), "--masks", str(folder / "masks"), "--scale", "9"])
