"""The main job's entry point: the fooling study on the embedded digit scenes.

    python -m experiments.main [--workdir runs/default] [--quick] [--analyses all]

Trains the small CNN on noisy digit scenes (or loads it from `WORKDIR/models/`),
fools Grad-CAM and LRP_T four ways (Location, Top-k, Center-mass, Active), and
writes `results.json`, `report.md` and `figures/` into the work directory: FSR
with every interpreter (transfer matrix), Top-1 / Top-5 before and after, AOPC
curves, maps before and after. `--analyses all` adds the weight-noise,
adversarial-training and SmoothGrad analyses. A rerun resumes: finished runs
are loaded, interrupted ones continue from their checkpoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.config import get_config
from experiments.fooling import add_common, apply_common, use_compile_cache
from experiments.job import run_job


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", default="runs/default", help="work directory (resumed)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    add_common(parser)
    args = parser.parse_args(argv)
    if not args.no_compile_cache:
        use_compile_cache(Path(args.workdir) / "jax_cache")
    config = apply_common(get_config(quick=args.quick), args)
    return run_job(args.workdir, config, progress=not args.no_progress)


if __name__ == "__main__":
    main()
