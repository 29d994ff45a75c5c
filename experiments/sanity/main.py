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
from pathlib import Path

from experiments.common import add_common_arguments, setup
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
    config = setup(args)
    return run_study(args.workdir, config, models=args.models, progress=not args.no_progress)


def cli() -> None:
    """The console script: runs `main` on the command line's arguments (exit status 0)."""
    main()


if __name__ == "__main__":
    main()
