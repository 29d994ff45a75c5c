"""The main job: the fooling study (Heo et al. 2019) on the embedded default.

    python -m experiments.main [--workdir runs/default] [--quick] [--seeds N] [--analyses all]

Trains the small CNN on digits placed on photographs (or loads it from
`WORKDIR/models/`), fools Grad-CAM and LRP_T four ways (Location, Top-k,
Center-mass, Active), and writes `results.json`, `report.md` and `figures/`
into the work directory: Top-1 / Top-5 before and after, FSR with every
method (the transfer matrix) under intervals calibrated on validation data,
AOPC curves, maps before and after. `--seeds 3` repeats it with three base
models and fooling seeds and reports means with standard deviations;
`--analyses all` adds weight noise, an adversarially trained model and
SmoothGrad fooling. A rerun resumes: finished runs are loaded, interrupted
ones continue from their checkpoints. See docs/fooling.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.common import setup
from experiments.fooling.main import add_study_arguments, run

CONFIG = str(Path(__file__).parent / "fooling" / "configs" / "embedded.py")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_study_arguments(parser, "runs/default")
    args = parser.parse_args(argv)
    return run(args, setup(args, default=CONFIG))


def cli() -> None:
    """The console script: runs `main` on the command line's arguments (exit status 0)."""
    main()


if __name__ == "__main__":
    main()
