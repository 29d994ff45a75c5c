"""Command line of the trustworthy-CNN study for any config file.

    python -m experiments.trust                                   # embedded default, 3 seeds
    python -m experiments.trust --quick --workdir /tmp/trust-q    # a smoke run (about a minute)
    python -m experiments.trust --config experiments/trust/configs/cats_vs_dogs.py \\
        --weights mobilenet_v2.pth --data-dir ~/tensorflow_datasets --workdir runs/trust-cvd

An existing work directory is resumed: finished heads are loaded, an
interrupted one continues from its last checkpoint, results and report are
written beside earlier ones (time-stamped), never over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from experiments.common import add_common_arguments, setup
from experiments.trust.study import run_study

CONFIGS = Path(__file__).parent / "configs"


def config_from(args):
    """The study config of the command line (config file, then the options that override it)."""
    config = setup(args)
    if args.weights:
        config = dataclasses.replace(config, weights=args.weights)
    if args.data_dir:
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, data_dir=args.data_dir)
        )
    return config


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.trust", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", default=str(CONFIGS / "embedded.py"),
                        help="FILE.py[:ARG] (see experiments/trust/configs)")  # fmt: skip
    parser.add_argument("--weights", default=None, help="backbone: torchvision .pth or jaxsal dir")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    add_common_arguments(parser, workdir="runs/trust")
    args = parser.parse_args(argv)
    config = config_from(args)
    return run_study(args.workdir, config, models_dir=args.models,
                     progress=not args.no_progress)  # fmt: skip


def cli() -> None:
    """The console script: runs `main` on the command line's arguments (exit status 0)."""
    main()


if __name__ == "__main__":
    main()
