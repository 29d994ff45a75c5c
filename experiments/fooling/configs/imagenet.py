"""The paper's ImageNet foolings: VGG19, ResNet50, DenseNet121 x Location / Top-k / Center-mass /
Active x Grad-CAM / LRP_T, with the learning rates and lambdas of Heo et al.'s appendix table.

Convert torchvision weights first, then run one fooling per command:

    python -m weights_convert vgg19 vgg19-dcbb9e9d.pth ckpt/vgg19
    python -m experiments.fooling \
        --config experiments/fooling/configs/imagenet.py:vgg19,location,gradcam \
        --checkpoint ckpt/vgg19 --data-dir ~/tensorflow_datasets --workdir runs/vgg19-location-gradcam

The data is tfds `imagenet2012` in ArrayRecord format (`tfds build imagenet2012
--file_format=array_record`, the tar files in DATA_DIR/downloads/manual), read without
TensorFlow by `jaxsal.data.tfds_images`. Passive foolings: batch 8, Adam, `steps`
iterations on the training split (the paper ran ~300k; the default here is 30k,
override with `--steps`). Active fooling: batch 4 + 4 composites of classes 386
(African elephant) and 555 (fire engine), 1,100 training and 200 held-out
composites, 4,000 steps. FSR and Top-1 / Top-5 on the first 10,000 validation images; the test intervals are
calibrated on the 2,000 validation images after them (ImageNet's test labels are not public).

A small local variant for a laptop: `...imagenet.py:vgg19,location,gradcam,local`
(200 steps, 500 validation images, 64 training composites).
"""

from __future__ import annotations

from experiments.fooling.config import DataConfig, EvalConfig, RunConfig, StudyConfig

ARCHS = ("vgg19", "resnet50", "densenet121")
# (kind, method) -> {arch: (lr, lambda)}: Heo et al. 2019, appendix table (SPEC.md section 1).
TABLE = {
    ("location", "lrp_t"): {"vgg19": (1e-6, 1), "resnet50": (1e-6, 4), "densenet121": (2e-6, 2)},
    ("location", "gradcam"): {"vgg19": (1e-6, 1), "resnet50": (2e-6, 2), "densenet121": (2e-6, 2)},
    ("topk", "lrp_t"): {"vgg19": (5e-7, 1), "resnet50": (4e-7, 1.5), "densenet121": (1e-6, 1)},
    ("topk", "gradcam"): {"vgg19": (3e-7, 0.4), "resnet50": (3e-7, 4), "densenet121": (3e-6, 6)},
    ("center_mass", "lrp_t"): {"vgg19": (2e-6, 0.25), "resnet50": (6e-7, 0.5),
                               "densenet121": (5e-7, 0.25)},
    ("center_mass", "gradcam"): {"vgg19": (1e-6, 0.25), "resnet50": (1e-7, 1),
                                 "densenet121": (2e-6, 0.25)},
    ("active", "lrp_t"): {"vgg19": (2e-6, 2), "resnet50": (3e-6, 2), "densenet121": (4e-6, 15)},
    ("active", "gradcam"): {"vgg19": (2e-6, 2), "resnet50": (1e-6, 2), "densenet121": (6e-6, 15)},
}  # fmt: skip
CLASSES = (386, 555)


def get_config(arg: str | None) -> StudyConfig:
    """ARG = "ARCH,KIND,METHOD[,local]", e.g. "resnet50,topk,lrp_t"."""
    parts = (arg or "vgg19,location,gradcam").split(",")
    local = parts[-1] == "local"
    if local:
        parts = parts[:-1]
    if len(parts) != 3:
        raise ValueError(f'imagenet config wants "ARCH,KIND,METHOD[,local]", got {arg!r}')
    arch, kind, method = parts
    if arch not in ARCHS or (kind, method) not in TABLE:
        raise ValueError(
            f"unknown case {arch},{kind},{method}; archs {ARCHS}, cases "
            + ", ".join(f"{k},{m}" for k, m in TABLE)
        )
    lr, lam = TABLE[(kind, method)][arch]
    active = kind == "active"
    steps = 4000 if active else 30000
    run = RunConfig(kind, method, lam=float(lam), lr=lr, steps=steps,
                    batch_size=4 if active else 8, fool_batch=4)  # fmt: skip
    data = DataConfig(source="tfds", name="imagenet2012", train_split="train",
                      val_split="validation", test_split="validation", image_size=224,
                      n_val=2000, n_test=10000, classes=CLASSES, n_fool_train=1100,
                      n_fool_val=200, n_fool_test=200)  # fmt: skip
    ev = EvalConfig(methods=("gradcam", "lrp_t", "simple_grad_t"), batch_size=25,
                    aopc_images=1000, aopc_steps=None)  # fmt: skip
    config = StudyConfig(data=data, train=None, runs=(run,), eval=ev, checkpoint_every=500)
    if local:
        config = StudyConfig(
            data=DataConfig(**{**data.__dict__, "n_test": 500, "n_val": 200, "n_fool_train": 64,
                               "n_fool_val": 16, "n_fool_test": 16}),
            train=None, runs=(RunConfig(**{**run.__dict__, "steps": 200}),),
            eval=EvalConfig(**{**ev.__dict__, "aopc_images": 50}), checkpoint_every=50,
        )  # fmt: skip
    return config
