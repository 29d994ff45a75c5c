"""Command line of the pointing study.

    python -m experiments.pointing                                   # embedded default, 1 seed
    python -m experiments.pointing --config experiments/pointing/configs/embedded.py:full \
        --seeds 3 --workdir runs/pointing                            # the documented figures
    python -m experiments.pointing --quick --workdir /tmp/q          # a smoke run
    python -m experiments.pointing --tune --workdir runs/pointing    # DSSR's theta, lambda_small
    python -m experiments.pointing --config experiments/pointing/configs/voc07.py \
        --checkpoint ckpt/vgg16_voc --data-dir ~/tensorflow_datasets --workdir runs/voc07

An existing work directory is resumed: finished parts are loaded, results,
report and figures are written beside earlier ones, never over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from experiments.common import add_common_arguments, setup

CONFIG = str(Path(__file__).parent / "configs" / "embedded.py")


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.pointing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", default=CONFIG, help="FILE.py[:ARG] (experiments/pointing/"
                        "configs: embedded.py:default|full|quick, voc07.py)")  # fmt: skip
    add_common_arguments(parser, workdir="runs/pointing")
    parser.add_argument("--checkpoint", default=None, help="jaxsal checkpoint of the model")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (VOC07)")
    parser.add_argument("--tune", action="store_true",
                        help="choose DSSR's theta and lambda_small on the validation split")  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    config = setup(args)
    if args.checkpoint:
        config = dataclasses.replace(config, checkpoint=args.checkpoint)
    if args.data_dir:
        config = dataclasses.replace(
            config, voc=dataclasses.replace(config.voc, data_dir=args.data_dir)
        )
    kw = {"cache_dir": args.models, "progress": not args.no_progress}
    if args.tune:
        from experiments.pointing.tune import tune

        return tune(args.workdir, config, **kw)
    from experiments.pointing.study import run_study

    return run_study(args.workdir, config, **kw)


def cli() -> None:
    """The console script: runs `main` on the command line's arguments (exit status 0)."""
    main()


if __name__ == "__main__":
    main()
