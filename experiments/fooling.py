"""Command line of the fooling study for any config file.

    python -m experiments.fooling --config experiments/configs/imagenet.py:vgg19,location,gradcam \
        --checkpoint ckpt/vgg19 --data-dir ~/tensorflow_datasets --workdir runs/vgg19-loc-gc
    python -m experiments.fooling --config experiments/configs/embedded.py:default \
        --workdir runs/default --analyses all

An existing work directory is resumed: finished runs are loaded, an interrupted
run continues from its last checkpoint, results and report are written beside
earlier ones (timestamped), never over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax

from experiments.configs import load_config
from experiments.fooling_study import ANALYSES, run_study


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


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options shared with `experiments.main`."""
    parser.add_argument("--analyses", default=None,
                        help=f"all, none or a comma list of {', '.join(ANALYSES)}")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="override every run's steps")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled XLA programs in WORKDIR/jax_cache")  # fmt: skip


def apply_common(config, args):
    """The config with the common options applied."""
    if args.analyses is not None:
        config = dataclasses.replace(config, analyses=parse_analyses(args.analyses))
    if args.steps is not None:
        runs = tuple(dataclasses.replace(r, steps=args.steps) for r in config.runs)
        config = dataclasses.replace(config, runs=runs)
    return config


def use_compile_cache(path: Path) -> None:
    """Keeps compiled programs on disk, so a rerun skips most of XLA's compile time."""
    jax.config.update("jax_compilation_cache_dir", str(path.absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.fooling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", required=True, help="FILE.py[:ARG], see experiments/configs")
    parser.add_argument("--workdir", required=True, help="work directory (resumed)")
    parser.add_argument("--checkpoint", default=None, help="jaxsal checkpoint of the model")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    add_common(parser)
    args = parser.parse_args(argv)
    config = apply_common(load_config(args.config), args)
    if args.checkpoint:
        config = dataclasses.replace(config, checkpoint=args.checkpoint)
    if args.data_dir:
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, data_dir=args.data_dir)
        )
    if not args.no_compile_cache:
        use_compile_cache(Path(args.workdir) / "jax_cache")
    return run_study(args.workdir, config, progress=not args.no_progress)


if __name__ == "__main__":
    main()
