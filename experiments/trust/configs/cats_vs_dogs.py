"""The paper's full-size transfer set-up (section 4.1): MobileNetV2 + a new 1x1 conv + softmax.

    tfds build cats_vs_dogs --file_format=array_record --data_dir=DIR    # once, with a network
    python -m experiments.trust --config experiments/trust/configs/cats_vs_dogs.py \
        --weights mobilenet_v2.pth --data-dir DIR --workdir runs/trust-cvd
    python -m experiments.trust --config experiments/trust/configs/cats_vs_dogs.py:local \
        --weights mobilenet_v2.pth --data-dir DIR --workdir runs/trust-cvd-local

`default`: torchvision's ImageNet MobileNetV2 (`--weights`: its state dict
.pth, converted on load, or a `jaxsal.save` directory), frozen; a new 1x1
conv with 256 filters (stride 1, ReLU) and a dense softmax layer trained from
scratch on TFDS `cats_vs_dogs` (23,262 images; train[:70%] for training,
train[70%:80%] for validation, train[80%:] for the reported figures; 224 px,
torchvision's evaluation transform) for 50 epochs, batch 32, SGD lr 0.01,
lambda 0.9 (all the paper's), for the baseline, a second baseline, eq. 7 with
Grad-CAM and with Guided Grad-CAM, and each method's R1 = 0 and R2 = 0
ablations (the paper's Table 1); three head seeds. Cats vs dogs has no boxes:
accuracy, precision, recall and SSIM only. The whole model runs every step
(7x7x1280 features of 16,000 images do not fit in memory).
`local`: 2,000 training and 1,000 test images, 5 epochs, one seed.

Not run here (no network, no GPU); `tests/test_trust_experiment.py` runs its
plumbing on `tfds.testing.mock_data` with a tiny backbone. Tuning: none (the
paper's values).
"""

from __future__ import annotations

import dataclasses

from experiments.trust.config import DataConfig, HeadConfig, StudyConfig

LR = 0.01


def heads(lr: float = LR) -> tuple[HeadConfig, ...]:
    out = [HeadConfig("baseline", None, lr), HeadConfig("baseline (2nd init)", None, lr, init=1)]
    for m in ("gradcam", "guided_gradcam"):
        out += [HeadConfig(f"trust {m}", m, lr),
                HeadConfig(f"trust {m} R1=0", m, lr, use_r1=False),
                HeadConfig(f"trust {m} R2=0", m, lr, use_r2=False)]  # fmt: skip
    return tuple(out)


def get_config(arg: str | None = None) -> StudyConfig:
    """`default` (the paper's run) or `local` (a small part of it)."""
    arg = arg or "default"
    data = DataConfig(source="tfds", name="cats_vs_dogs", num_classes=2, image_size=224)
    config = StudyConfig(data=data, arch="mobilenet_v2", filters=256, lam=0.9, epochs=50,
                         batch_size=32, heads=heads(), seeds=3, cache_features=False,
                         checkpoint_every=500, tuned="none: the paper's lr 0.01 and lambda 0.9")  # fmt: skip
    if arg == "default":
        return config
    if arg == "local":
        data = dataclasses.replace(data, num_train=2000, num_val=500, num_test=1000)
        return dataclasses.replace(config, data=data, epochs=5, seeds=1)
    raise ValueError(f'unknown cats_vs_dogs config "{arg}"; use default or local')
