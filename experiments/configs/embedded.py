"""The embedded default of the fooling study: the small CNN on digit scenes with pixel noise.

    python -m experiments.main                       # this config, `default`
    python -m experiments.fooling --config experiments/configs/embedded.py:default \
        --workdir runs/default [--analyses all]
    python -m experiments.fooling --config experiments/configs/embedded.py:quick --workdir /tmp/q

`default`: the four foolings (Location, Top-k, Center-mass, Active with digits 3 and 8)
with Grad-CAM and LRP_T (8 runs), FSR with five interpreters (the transfer
matrix) and AOPC, on 200 test scenes; the noise, adversarial-training and
SmoothGrad analyses run with `--analyses all`. Scenes carry Gaussian pixel noise
(0.2): on blank backgrounds the target-layer activations are exactly zero and no
fooling gradient reaches the frame. `quick`: a 64-pixel model trained for two
epochs, Location / Grad-CAM and Active / LRP_T for three steps each (a smoke test). `tiny`: one
Location run only.
"""

from __future__ import annotations

import dataclasses

from experiments.fooling_data import DataConfig
from experiments.fooling_study import AnalysisConfig, EvalConfig, RunConfig, StudyConfig
from jaxsal.training import TrainConfig

NOISE = 0.2

# Tuned on the shared 2-core machine (see docs/fooling.md for the figures they reach).
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
    """`default`, `quick` or `tiny` (see the module docstring)."""
    arg = arg or "default"
    if arg == "default":
        return StudyConfig(
            data=DataConfig(source="embedded", noise=NOISE, n_test=200, classes=(3, 8)),
            train=TrainConfig(noise=NOISE),
            runs=RUNS,
            eval=EvalConfig(aopc_images=50, aopc_steps=24),
            analysis=AnalysisConfig(noise_run="location-lrp_t"),
        )
    if arg in ("quick", "tiny"):
        train = TrainConfig(size=64, n_train=512, n_eval=100, noise=NOISE, epochs=2,
                            batch_size=32, warmup_steps=5)  # fmt: skip
        runs = tuple(dataclasses.replace(r, steps=3, batch_size=8, fool_batch=4)
                     for r in (RUNS[0], RUNS[-1]))  # fmt: skip
        if arg == "tiny":
            runs = runs[:1]
        sg = RunConfig("location", "smoothgrad", lam=10.0, lr=1e-3, steps=2, batch_size=8,
                       samples=2)  # fmt: skip
        return StudyConfig(
            data=DataConfig(source="embedded", size=64, noise=NOISE, n_train=256, n_test=16,
                            n_fool_train=16, n_fool_test=8, classes=(3, 8)),
            train=train,
            runs=runs,
            eval=EvalConfig(methods=("gradcam", "lrp_t", "simple_grad"), batch_size=16,
                            aopc_runs=(runs[0].label,), aopc_images=8, aopc_steps=4,
                            sample_images=2),
            analysis=AnalysisConfig(noise_run=runs[0].label, noise_levels=(0.0, 0.1),
                                    adv_eps=0.5, adv_replays=2, adv_steps=2, adv_batch=8,
                                    adv_run=dataclasses.replace(runs[0], steps=2),
                                    smoothgrad_run=sg),
            checkpoint_every=2,
        )  # fmt: skip
    raise ValueError(f'unknown embedded config "{arg}"; use default, quick or tiny')
