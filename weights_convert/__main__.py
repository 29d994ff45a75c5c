"""`python -m weights_convert ARCH IN.pth OUT` (or `jaxsal-convert ...`): state_dict -> checkpoint.

`--help` lists the architectures. A state_dict that does not fit ARCH is
refused with its problems listed, after the architecture it does fit, if any.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxsal
from jaxsal.models.registry import TORCHVISION_ARCHITECTURES
from weights_convert.torchvision import ConversionError, from_torchvision


def parser(prog: str = "python -m weights_convert") -> argparse.ArgumentParser:
    """The command line: ARCH (one of the torchvision architectures), IN.pth, OUT."""
    archs = ", ".join(TORCHVISION_ARCHITECTURES)
    p = argparse.ArgumentParser(
        prog=prog,
        description="Convert a torchvision state_dict (.pth) into a jaxsal orbax checkpoint.",
        epilog=f"architectures: {archs}. Example: {prog} resnet50 resnet50.pth ckpt/resnet50",
    )
    p.add_argument(
        "arch",
        metavar="ARCH",
        choices=TORCHVISION_ARCHITECTURES,
        help=f"the torchvision architecture, one of: {archs}",
    )
    p.add_argument("input", metavar="IN", help="a .pth file holding the model's state_dict")
    p.add_argument("output", metavar="OUT", help="checkpoint directory to write (must not exist)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p


def main(argv=None) -> int:
    """Runs the converter; returns the exit status (0 written, 2 refused or failed)."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    prog = "jaxsal-convert" if script.startswith("jaxsal-convert") else "python -m weights_convert"
    args = parser(prog).parse_args(argv)
    # Refuse before the (slow) conversion, and name the CLI flag rather than save()'s argument.
    if Path(args.output).exists() and not args.overwrite:
        print(
            f"error: {args.output} exists; pass --overwrite to replace it or choose a new path",
            file=sys.stderr,
        )
        return 2
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # otherwise JAX silently keeps float32
    try:
        params = from_torchvision(args.arch, args.input, dtype=jnp.dtype(args.dtype))
        path = jaxsal.save(args.output, params, overwrite=args.overwrite)
    except (ConversionError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.arch}, {params.num_classes} classes); load with jaxsal.load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
