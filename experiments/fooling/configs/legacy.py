"""Version 1 of the embedded study (blank canvases with pixel noise), kept to compare with it.

    python -m experiments.fooling --config experiments/fooling/configs/legacy.py \
        --workdir runs/legacy

The settings of the main job before the photo scenes: the small CNN trained
on blank 96x96 canvases with pixel noise 0.2 (XLA's convolution), eight
foolings of 150 steps (70 for Top-k / Grad-CAM), 200 test scenes, two-digit
composites of 3 and 8, the paper's FSR intervals (no calibration), one seed.
Its figures are dominated by the scenes (see docs/fooling.md); it exists to
show that the study's code reproduces the version-1 table.
"""

from __future__ import annotations

from experiments.fooling.config import (
    AnalysisConfig,
    DataConfig,
    EvalConfig,
    RunConfig,
    StudyConfig,
)
from jaxsal.train import TrainConfig

NOISE = 0.2
RUNS = (
    RunConfig("location", "gradcam", lam=10.0, lr=2e-3, steps=150, batch_size=16),
    RunConfig("location", "lrp_t", lam=30.0, lr=2e-3, steps=150, batch_size=16),
    RunConfig("topk", "gradcam", lam=10.0, lr=1e-3, steps=70, batch_size=16),
    RunConfig("topk", "lrp_t", lam=10.0, lr=1e-3, steps=150, batch_size=16),
    RunConfig("center_mass", "gradcam", lam=0.3, lr=1e-3, steps=150, batch_size=16),
    RunConfig("center_mass", "lrp_t", lam=0.3, lr=1e-3, steps=150, batch_size=16),
    RunConfig("active", "gradcam", lam=10.0, lr=1e-3, steps=150, batch_size=16, fool_batch=8),
    RunConfig("active", "lrp_t", lam=10.0, lr=1e-3, steps=150, batch_size=16, fool_batch=8),
)


def get_config(arg: str | None = None) -> StudyConfig:
    """The version-1 main job."""
    del arg
    return StudyConfig(
        data=DataConfig(source="embedded", scenes="blank", noise=NOISE, n_train=4000, n_val=200,
                        n_test=200, classes=(3, 8), n_fool_train=1100, n_fool_val=200,
                        n_fool_test=200),
        train=TrainConfig(noise=NOISE),
        runs=RUNS,
        eval=EvalConfig(methods=("gradcam", "lrp_t", "lrp", "simple_grad", "simple_grad_t"),
                        batch_size=50, calibrate=False, aopc_images=50, aopc_steps=24),
        analysis=AnalysisConfig(noise_run="location-lrp_t", adv_eps=1.0),
    )  # fmt: skip
