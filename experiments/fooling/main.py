"""Command line of the fooling study for any config file.

    python -m experiments.fooling --config experiments/fooling/configs/embedded.py \
        --workdir runs/fooling --seeds 3 --analyses all
    python -m experiments.fooling --config experiments/fooling/configs/imagenet.py:vgg19,location,gradcam \
        --checkpoint ckpt/vgg19 --data-dir ~/tensorflow_datasets --workdir runs/vgg19-loc-gc

An existing work directory is resumed: finished runs are loaded, an interrupted
run continues from its last checkpoint, results and report are written beside
earlier ones (time-stamped), never over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from experiments.common import add_common_arguments, setup
from experiments.fooling.config import ANALYSES, StudyConfig
from experiments.fooling.study import run_study


def parse_analyses(text: str | None) -> tuple[str, ...]:
    """ "all", "none" or a comma list of `ANALYSES`."""
    if not text or text == "none":
        return ()
    if text == "all":
        return ANALYSES
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in ANALYSES]
    if bad:
        raise SystemExit(
            f"unknown analyses {bad}; use all, none or a list of {', '.join(ANALYSES)}"
        )
    return names


def add_study_arguments(parser: argparse.ArgumentParser, workdir: str) -> None:
    add_common_arguments(parser, workdir=workdir)
    parser.add_argument("--analyses", default=None,
                        help=f"all, none or a comma list of {', '.join(ANALYSES)}")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="override every run's steps")


def apply_arguments(config: StudyConfig, args) -> StudyConfig:
    """The config with the command-line options applied."""
    if args.analyses is not None:
        config = dataclasses.replace(config, analyses=parse_analyses(args.analyses))
    if args.steps is not None:
        runs = tuple(dataclasses.replace(r, steps=args.steps) for r in config.runs)
        config = dataclasses.replace(config, runs=runs)
    return config


def run(args, config: StudyConfig) -> dict:
    """The study of `config` (from `experiments.common.setup`) with the options applied."""
    return run_study(args.workdir, apply_arguments(config, args), progress=not args.no_progress,
                     models=args.models)  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.fooling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", default=str(Path(__file__).parent / "configs" / "embedded.py"),
                        help="FILE.py[:ARG] (see experiments/fooling/configs)")  # fmt: skip
    parser.add_argument("--checkpoint", default=None, help="jaxsal checkpoint of the model")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    add_study_arguments(parser, "runs/fooling")
    args = parser.parse_args(argv)
    config = setup(args)
    if args.checkpoint:
        config = dataclasses.replace(config, checkpoint=args.checkpoint)
    if args.data_dir:
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, data_dir=args.data_dir)
        )
    return run(args, config)


def cli() -> None:
    """The console script: runs `main` on the command line's arguments (exit status 0)."""
    main()


if __name__ == "__main__":
    main()
