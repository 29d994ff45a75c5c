"""The main job: the fooling study of Heo et al. (2019) on the embedded default.

See `experiments.fooling_study.run_study` for what it writes into the work directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from experiments.fooling_study import StudyConfig, run_study


def run_job(
    workdir: str | Path,
    config: StudyConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs (or resumes) the main job in `workdir`; returns the results (see `run_study`)."""
    return run_study(workdir, config, progress=progress, log=log)
