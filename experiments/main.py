"""The main job's entry point.

    python -m experiments.main [--workdir runs/default] [--quick] [--scenes N]

Trains the small CNN on the embedded digit scenes (or loads it from
`WORKDIR/models/`), evaluates it, and writes every interpreter's map on
held-out scenes as `WORKDIR/saliency_grid.png` with scores in
`WORKDIR/results.json` (timestamped names when those exist already).
Compiled XLA programs are kept in `WORKDIR/jax_cache` for faster reruns.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax

from experiments.config import get_config
from experiments.job import run_job


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", default="runs/default", help="work directory (reused)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    parser.add_argument("--scenes", type=int, default=None, help="held-out scenes to show")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled XLA programs in WORKDIR/jax_cache")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.no_compile_cache:
        use_compile_cache(Path(args.workdir) / "jax_cache")
    config = get_config(quick=args.quick)
    if args.scenes is not None:
        config = dataclasses.replace(config, scenes=args.scenes)
    return run_job(args.workdir, config, progress=not args.no_progress)


def use_compile_cache(path: Path) -> None:
    """Keeps compiled programs on disk, so a rerun skips most of XLA's compile time."""
    jax.config.update("jax_compilation_cache_dir", str(path.absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


if __name__ == "__main__":
    main()
