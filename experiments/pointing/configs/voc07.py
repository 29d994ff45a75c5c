"""The pointing game on PASCAL VOC07 test with a VOC-finetuned model, the papers' 224 px constants.

    python -m weights_convert vgg16 vgg16_voc.pth ckpt/vgg16_voc   # 20 classes, read off the weights
    python -m experiments.pointing --config experiments/pointing/configs/voc07.py \
        --checkpoint ckpt/vgg16_voc --data-dir ~/tensorflow_datasets --workdir runs/voc07

`voc/2007` must be prepared in the data directory (`tfds build voc/2007`).
The model: TorchRay's VOC07-finetuned VGG16 or ResNet50 (the pointing
models of TorchRay's benchmark, whose published accuracies
`jaxsal.pointing.PUBLISHED` lists), converted to a `jaxsal.save` checkpoint.
Constants are the papers' at 224 px: RISE 8,000 masks of 7 x 7 cells,
Extremal areas 0.025-0.2 (step 7, sigma 21), MP mask 28, DSSR+ pools
(12, 6, 16), 300 steps, blur sigma 10 px, tolerance 15 px. `ARG = local`: the
first 20 images, 20 steps and 500 RISE masks, for a laptop.
"""

from __future__ import annotations

import dataclasses

from experiments.pointing.config import Settings, StudyConfig, VocConfig

SETTINGS = Settings(rise_masks=8000, occlusion_patch=32, occlusion_stride=16, mp_mask=28,
                    extremal_areas=(0.025, 0.05, 0.1, 0.2), extremal_step=7,
                    extremal_sigma=21.0, dssr_plus_pools=(12, 6, 16))  # fmt: skip


def get_config(arg: str | None = None) -> StudyConfig:
    """The full VOC07 test set, or `local` (see the module docstring)."""
    config = StudyConfig(source="voc07", voc=VocConfig(), settings=SETTINGS, blur_sigma=10.0,
                         part=16)  # fmt: skip
    if arg == "local":
        return dataclasses.replace(config, voc=VocConfig(images=20),
                                   settings=dataclasses.replace(SETTINGS, steps=20,
                                                                rise_masks=500))  # fmt: skip
    if arg not in (None, "default"):
        raise ValueError(f'unknown voc07 config "{arg}"; use default or local')
    return config
