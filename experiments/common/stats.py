"""Statistics of reported figures: means over seeds with standard deviations, bootstrap intervals.

Every figure a study reports is a mean over seeds (N) of a per-seed value
computed on n items; `summarize` gives the mean, the standard deviation over
seeds (ddof 1) and a percentile-bootstrap 95% interval of the mean over the
pooled items, with N and n, and `fmt` writes it for a table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(values, *, level: float = 0.95, resamples: int = 2000, seed: int = 0):
    """Percentile-bootstrap interval of the mean of `values` (NaNs dropped); (lo, hi)."""
    v = _finite(values)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (resamples, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def _finite(values) -> np.ndarray:
    """The finite entries of `values`, flattened, as float64."""
    v = np.asarray(values, np.float64).ravel()
    return v[np.isfinite(v)]


def nan_mean(values) -> float:
    """The mean of the finite entries of `values`; NaN (without a warning) when there are none."""
    v = _finite(values)
    return float(v.mean()) if v.size else float("nan")


def summarize(per_seed: Sequence[float], items: Sequence | None = None) -> dict:
    """A figure over seeds: {"mean", "sd", "N" (seeds), "n" (items per seed), "ci", "values"}.

    Args:
      per_seed: the figure of each seed.
      items: optional per-item values of every seed (a list of arrays), pooled
        for the bootstrap interval of the mean; without them the interval is
        taken over the seeds.
    """
    values = np.asarray(per_seed, np.float64)
    out = {
        "mean": nan_mean(values),
        "sd": _nan_sd(values),
        "N": int(values.size),
        "values": values.tolist(),
    }
    if items is not None:
        pooled = np.concatenate([np.asarray(i, np.float64).ravel() for i in items])
        out["n"] = int(len(np.asarray(items[0]).ravel()))
        out["ci"] = bootstrap_ci(pooled)
    else:
        out["ci"] = bootstrap_ci(values)
    return out


def _nan_sd(values) -> float:
    v = _finite(values)
    return float(np.std(v, ddof=1)) if v.size > 1 else float("nan")


def fmt(summary: dict, digits: int = 3, *, scale: float = 1.0) -> str:
    """ "0.912 ± 0.004" (mean ± sd over seeds), or the mean alone for one seed."""
    mean = summary["mean"] * scale
    if summary.get("N", 1) > 1 and np.isfinite(summary.get("sd", np.nan)):
        return f"{mean:.{digits}f} ± {summary['sd'] * scale:.{digits}f}"
    return f"{mean:.{digits}f}"
