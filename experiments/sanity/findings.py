"""Whether a method passes the sanity checks, and whether that matches the paper.

A method *passes* a randomisation test when its maps after the randomisation
are as dissimilar to the trained model's maps as unrelated maps are. For every
metric and region (Spearman abs and signed, SSIM, HOG; whole image and box) the
*retained similarity* is

    r = (S - floor) / (1 - floor),

with S the mean similarity between the trained model's maps and the randomised
(fully cascaded, or shuffled-label) model's maps, and floor the mean similarity
between the trained model's maps of two different scenes (`other_scene`): r = 0
when the randomised maps are as unrelated as another scene's, r = 1 when they
are identical. A method is called *insensitive* when the mean r over the eight
metric-regions is at least `INSENSITIVE` and *sensitive* when it is below
`SENSITIVE`; in between, *partly*. Both thresholds are this project's
constants, not the paper's (Adebayo et al. judge visually and by the curves).

`PAPER` records what Adebayo et al. found for each method (sections 4 and 5,
figures 2-5; as summarised in the review in `/work/shared/papers`): Guided
Backprop and Guided Grad-CAM are insensitive to both randomisations; gradient
x input and Integrated Gradients keep the input's structure (partly); the
gradient, SmoothGrad, VarGrad and Grad-CAM change (sensitive).
"""

from __future__ import annotations

import numpy as np

from jaxsal.sanity import METRICS

INSENSITIVE = 0.5  # this project's constant
SENSITIVE = 0.2  # this project's constant

PAPER = {
    "model": {"simple_grad": "sensitive", "smoothgrad": "sensitive", "vargrad": "sensitive",
              "integrated_gradients": "partly", "input_x_grad": "partly",
              "guided_backprop": "insensitive", "gradcam": "sensitive",
              "guided_gradcam": "insensitive"},
    "data": {"simple_grad": "sensitive", "smoothgrad": "sensitive", "vargrad": "sensitive",
             "integrated_gradients": "partly", "input_x_grad": "partly",
             "guided_backprop": "insensitive", "gradcam": "sensitive",
             "guided_gradcam": "insensitive"},
}  # fmt: skip
REGIONS = ("whole", "box")


def retained(similar: dict, floor: dict) -> dict[str, float]:
    """r per "region/metric" from summaries {region: {metric: summary}} of S and of the floor."""
    out = {}
    for region in REGIONS:
        for metric in METRICS:
            s, f = similar[region][metric]["mean"], floor[region][metric]["mean"]
            ok = np.isfinite(s) and np.isfinite(f) and f < 1
            out[f"{region}/{metric}"] = float((s - f) / (1 - f)) if ok else float("nan")
    return out


def verdict(r: dict[str, float]) -> tuple[float, str]:
    """(mean r, "insensitive" / "partly" / "sensitive")."""
    values = np.array([v for v in r.values() if np.isfinite(v)])
    if not values.size:
        return float("nan"), "undetermined"
    mean = float(values.mean())
    if mean >= INSENSITIVE:
        return mean, "insensitive"
    return mean, "sensitive" if mean < SENSITIVE else "partly"


def _why(r: dict[str, float], ours: str, paper: str) -> str:
    """A pointer to where the metrics disagree (the report's note; the docs explain)."""
    whole = np.nanmean([v for k, v in r.items() if k.startswith("whole/")])
    box = np.nanmean([v for k, v in r.items() if k.startswith("box/")])
    high = max(r, key=lambda k: -np.inf if not np.isfinite(r[k]) else r[k])
    text = f"r whole {whole:.2f}, box {box:.2f}; highest {high} {r[high]:.2f}"
    if ours == paper:
        return text
    return text + (" (more sensitive than reported)" if _rank(ours) < _rank(paper)
                   else " (less sensitive than reported)")  # fmt: skip


def _rank(v: str) -> int:
    return {"sensitive": 0, "partly": 1, "insensitive": 2}.get(v, 1)


def findings(results: dict) -> dict:
    """Per test ("model", "data") and method: r per metric, mean r, verdict, paper, match."""
    out = {"model": {}, "data": {}}
    for name, m in results["methods"].items():
        floor = m["other_scene"]
        cascade_end = {reg: {k: v[-1] for k, v in m["cascading"][reg].items()} for reg in REGIONS}
        for test, similar in (("model", cascade_end), ("data", m["shuffled_labels"])):
            r = retained(similar, floor)
            mean, ours = verdict(r)
            paper = PAPER[test].get(name, "not tested")
            out[test][name] = {"r": r, "mean_r": mean, "verdict": ours, "paper": paper,
                               "reproduced": None if paper == "not tested" else ours == paper,
                               "note": _why(r, ours, paper)}  # fmt: skip
    return out
