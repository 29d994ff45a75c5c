"""Command line of the sanity study.

    python -m experiments.sanity --workdir runs/sanity                 # default, one seed
    python -m experiments.sanity --workdir runs/sanity-full \
        --config experiments/sanity/configs/embedded.py:full --seeds 3  # the documented run
    python -m experiments.sanity --workdir /tmp/q --quick               # smoke run
    python -m experiments.sanity --models runs/default/models ...      # reuse base models

An existing work directory is resumed: finished pieces (models, maps, attacks)
are loaded; results, report and figures are written beside earlier ones
(time-stamped), never over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from experiments.common import add_common_arguments, load_config, use_compile_cache
from experiments.sanity.study import run_study

CONFIGS = Path(__file__).parent / "configs"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sanity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=str(CONFIGS / "embedded.py"),
        help="FILE.py[:ARG] (see experiments/sanity/configs)",
    )
    add_common_arguments(parser, workdir="runs/sanity")
    args = parser.parse_args(argv)
    spec = args.config
    if args.quick and ":" not in spec:
        spec += ":quick"
    config = load_config(spec)
    if args.seeds is not None:
        if args.seeds < 1:
            raise SystemExit(f"--seeds must be at least 1, got {args.seeds}")
        config = dataclasses.replace(config, seeds=args.seeds)
    if not args.no_compile_cache:
        use_compile_cache(Path(args.workdir) / "jax_cache")
    return run_study(args.workdir, config, models=args.models, progress=not args.no_progress)


def cli() -> None:
    """The console script: runs `main` on the command line's arguments (exit status 0)."""
    main()


if __name__ == "__main__":
    main()
