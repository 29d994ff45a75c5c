"""The pointing study's configuration: scenes, methods and their constants, references, seeds.

Every constant is given at the canvas size the study runs at (96 px for the
embedded scenes). Constants the papers give at 224 px are scaled by
`size / 224` (`scaled`); those that are not in any paper are marked so in
their field's description (docs/perturbation.md lists them).
"""

from __future__ import annotations

import dataclasses

from jaxsal.train import TrainConfig

METHODS = ("gradcam", "gradient", "occlusion", "rise", "meaningful_perturbation",
           "extremal_perturbation", "dssr", "dssr_plus", "centre", "random")  # fmt: skip
# Methods that perturb the input towards a reference; each runs once per reference.
REFERENCED = ("occlusion", "rise", "meaningful_perturbation", "extremal_perturbation", "dssr",
              "dssr_plus")  # fmt: skip
REFERENCES = ("black", "blur", "noise")
TIES = ("centroid", "random", "first")


def scaled(value: float, size: int, *, base: int = 224) -> float:
    """A pixel constant given for `base`-pixel images, scaled to `size` pixels."""
    return value * size / base


@dataclasses.dataclass(frozen=True)
class ScenesConfig:
    """The explained images (version-2 embedded scenes, `jaxsal.data.photo_scenes`).

    Attributes:
      split: "test" for the study, "validation" for tuning.
      size: canvas side (the base model's, 96).
      singles: single-digit scenes, each explained for its digit's class.
      composites: 2x2 composites (two digits of class a, two of b), each explained for both.
      pairs: the class pairs (a, b) of the composites, cycled through.
      seed: scene seed of study seed 0; study seed s explains scenes of seed `seed + s`.
    """

    split: str = "test"
    size: int = 96
    singles: int = 100
    composites: int = 50
    pairs: tuple[tuple[int, int], ...] = ((3, 8), (1, 7), (0, 6), (2, 5), (4, 9))
    seed: int = 0

    @property
    def explanations(self) -> int:
        return self.singles + 2 * self.composites


@dataclasses.dataclass(frozen=True)
class Settings:
    """Method constants at the study's size; (paper) marks the published value, scaled.

    Attributes:
      steps: iterations of every optimised mask (300: DSSR's and MP's papers).
      lr: Adam's learning rate of MP and DSSR (0.1, both papers).
      rise_masks: RISE masks (paper: 8,000; fewer for CPU time).
      rise_cells: RISE grid side (paper: 7).
      occlusion_patch: occlusion window side (not from the DSSR paper: half a digit).
      occlusion_stride: occlusion step (half the window).
      mp_mask: Meaningful Perturbation's mask side (Gu et al.: 28 at 224 px, so 12 at 96).
      mp_mode: "deletion" (SDR, the method's default) or "preservation" (SSR).
      extremal_areas: Extremal Perturbation's areas, masks summed (TorchRay's pointing set-up
        sums 0.025, 0.05, 0.1, 0.2; a digit's box covers about 3.5% of the canvas, so its two
        smallest, for CPU time).
      extremal_step: pixels per Extremal mask parameter (7 at 224 px).
      extremal_sigma: Extremal mask smoothing (21 px at 224 px).
      dssr_lam: DSSR's lambda times H * W (the paper's lambda = 10 / 224^2 at 224 px:
        the same lambda per share of the image at any size). Not in the paper at 96 px.
      dssr_lam_small: the small lambda of the two-stage schedule as a share of lambda
        (not in the paper; tuned on validation).
      dssr_theta: the threshold on f(x(1 - m))_c below which the small lambda is used
        (not in the paper; tuned on validation).
      dssr_plus_pools: DSSR+'s (k1, p1, k2) (the paper's 12, 6, 16 at 224 px).
    """

    steps: int = 300
    lr: float = 0.1
    rise_masks: int = 1000
    rise_cells: int = 7
    occlusion_patch: int = 14
    occlusion_stride: int = 7
    mp_mask: int = 12
    mp_mode: str = "deletion"
    extremal_areas: tuple[float, ...] = (0.025, 0.05)
    extremal_step: int = 3
    extremal_sigma: float = 9.0
    dssr_lam: float = 10.0
    dssr_lam_small: float = 0.1
    dssr_theta: float = 0.5
    dssr_plus_pools: tuple[int, int, int] = (5, 3, 7)


@dataclasses.dataclass(frozen=True)
class VocConfig:
    """The PASCAL VOC07 pointing game (`jaxsal.data.voc`; needs a 20-class checkpoint).

    Attributes:
      data_dir: TFDS data directory holding a prepared `voc/2007`.
      split: the tfds split ("test": 4,952 images).
      images: how many images (None: all).
      size: image side (224).
      skip_difficult: explain only classes with a non-difficult object.
    """

    data_dir: str | None = None
    split: str = "test"
    images: int | None = None
    size: int = 224
    skip_difficult: bool = False


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The whole study.

    Attributes:
      source: "embedded" (the version-2 scenes and the shared base model) or "voc07".
      scenes: the embedded scenes.
      train: the base model's recipe (`experiments.common.models.EMBEDDED`); seed s of the
        study uses base model seed s.
      checkpoint: a `jaxsal.save` checkpoint instead (VOC: a 20-class model).
      voc: the VOC07 settings.
      methods: the methods and baselines, in table order (`METHODS`).
      references: the references of the perturbation methods, a study variable.
      blur_sigma: the blur reference's sigma (Fong and Vedaldi: 10 px at 224 px).
      settings: the methods' constants.
      tolerance: pointing tolerance in pixels (None: 15 px at 224 px, scaled).
      ties: the tie rules reported; the first is the headline rule.
      seeds: study seeds (base model and explainer seed s = 0 .. seeds - 1).
      part: explanations per cached part (resumable unit).
      figure_rows: explanations in the maps figure (half single digits, half composites).
      tuned: what was tuned, on which split, and the outcome (a record for the report).
    """

    source: str = "embedded"
    scenes: ScenesConfig = ScenesConfig()
    train: TrainConfig | None = None
    checkpoint: str | None = None
    voc: VocConfig = VocConfig()
    methods: tuple[str, ...] = METHODS
    references: tuple[str, ...] = REFERENCES
    blur_sigma: float = 4.3
    settings: Settings = Settings()
    tolerance: float | None = None
    ties: tuple[str, ...] = TIES
    seeds: int = 1
    part: int = 50
    figure_rows: int = 4
    tuned: str = ""

    def __post_init__(self):
        bad = sorted(set(self.methods) - set(METHODS))
        if bad:
            raise ValueError(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
        bad = sorted(set(self.references) - set(REFERENCES))
        if bad:
            raise ValueError(f"unknown references {bad}; choose from {', '.join(REFERENCES)}")
        bad = sorted(set(self.ties) - set(TIES))
        if bad or not self.ties:
            raise ValueError(
                f"ties must be a non-empty choice of {', '.join(TIES)}, got {self.ties}"
            )
        if self.source not in ("embedded", "voc07"):
            raise ValueError(f'unknown source "{self.source}"; use "embedded" or "voc07"')
