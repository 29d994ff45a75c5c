"""End-to-end smoke runs of experiments/trustworthy.py (tiny models, seconds).

The embedded experiment on digit scenes, and the full-scale plumbing (transfer
head, frozen backbone, TFDS batches) on `tfds.testing.mock_data`.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import trustworthy
from experiments.trustworthy_config import embedded, mobilenet_cats_dogs, smoke_config, vgg16_grid
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.params import init_module
from jaxsal.trust import transfer_model


def test_embedded_smoke(tmp_path):
    cfg = smoke_config()
    result = trustworthy.run(tmp_path / "w", cfg, progress=False)
    data = json.loads((tmp_path / "w" / "results.json").read_text())
    assert list(data["models"]) == list(result["models"])
    assert list(data["models"]) == ["pretrained", "baseline", "gradcam", "guided_gradcam",
                                    "gradcam pwce"]  # fmt: skip
    for name, row in data["models"].items():
        keys = ["accuracy", "precision", "recall", "pointing_gradcam", "mass_in_box_gradcam",
                "pointing_guided_gradcam", "mass_in_box_guided_gradcam"]  # fmt: skip
        keys += [] if name == "baseline" else ["ssim_gradcam", "ssim_guided_gradcam"]
        for k in keys:
            assert 0.0 <= row[k] <= 1.0 + 1e-9, (name, k)
    assert "| baseline |" in (tmp_path / "w" / "report.md").read_text()
    assert (tmp_path / "w" / "maps.png").stat().st_size > 0
    again = trustworthy.run(tmp_path / "w", cfg, progress=False)  # resumed, not overwritten
    assert again["resumed"] and again["models"] == data["models"]
    paths, done = trustworthy.output_names(tmp_path / "w", {"another": "config"})
    assert done is None and paths["results"].name.startswith("results-")  # written beside


def test_tfds_transfer_smoke_on_mock_data(tmp_path):
    """The MobileNetV2 cats-vs-dogs configuration's plumbing, with a tiny backbone."""
    cfg = mobilenet_cats_dogs(image_size=32, epochs=1, batch_size=8, num_train=16, num_test=8,
                              filters=8, ablate=(), methods=("gradcam",), train_split="train",
                              test_split="train")  # fmt: skip
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.lam) == (1, 8, 0.01, 0.9)
    backbone = init_module(SmallCNN(in_channels=3), jax.random.key(0))
    start = transfer_model(backbone, jax.random.key(1), num_classes=2, filters=cfg.filters)
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
        result = trustworthy.run_tfds(tmp_path / "t", cfg, progress=False, params=start)
    assert list(result["models"]) == ["baseline", "gradcam"]
    assert "ssim_gradcam" in result["models"]["gradcam"]
    assert result["steps"] == 2
    for row in result["models"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["n"] == 8
    saved = sorted((tmp_path / "t" / "finetuned").glob("*.npz"))
    assert len(saved) == 2
    head = np.load(saved[0])
    assert any("head.0" in k for k in head.files)


def test_embedded_variants():
    names = list(embedded().variants())
    assert names == ["baseline", "gradcam", "guided_gradcam", "gradcam r1=0", "gradcam r2=0",
                     "gradcam pwce"]  # fmt: skip
    v = embedded().variants()
    assert not v["gradcam r1=0"].use_r1 and v["gradcam r1=0"].use_r2
    assert v["gradcam r2=0"].use_r1 and not v["gradcam r2=0"].use_r2
    assert v["gradcam pwce"].ground_truth and v["baseline"].method is None


def test_paper_grid():
    grid = vgg16_grid()
    assert sorted({(c.learning_rate, c.lam) for c in grid}) == sorted(
        (lr, lam) for lr in (0.01, 0.1, 0.3) for lam in (0.9, 0.7, 0.5)
    )
    assert all(c.trainable == ("features.28",) and c.num_train == 30_000 for c in grid)
    with pytest.raises(ValueError, match="lambda"):
        dataclasses.replace(grid[0], lam=2.0).variants()
