"""Configuration of the main job: the embedded fooling study (`experiments/configs/embedded.py`).

python -m experiments.main --workdir runs/default           # default
python -m experiments.main --workdir runs/quick --quick     # smoke run (a minute)
"""

from __future__ import annotations

from experiments.configs.embedded import get_config as _embedded
from experiments.fooling_study import StudyConfig


def get_config(*, quick: bool = False) -> StudyConfig:
    """The default study (about 15 CPU minutes on 2 cores) or the quick smoke-test one."""
    return _embedded("quick" if quick else "default")
