"""python -m weights_convert ARCH IN.pth OUT: torchvision state_dict -> jaxsal checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxsal
from weights_convert.torchvision import ConversionError, from_torchvision


def main(argv=None) -> int:
    """Runs the converter; returns the exit status (0 written, 2 refused or failed)."""
    p = argparse.ArgumentParser(
        prog="python -m weights_convert",
        description="Convert a torchvision state_dict (.pth) into a jaxsal orbax checkpoint.",
    )
    p.add_argument("arch", help="torchvision name, e.g. resnet50, vgg19, densenet121")
    p.add_argument("input", help="a .pth file holding the model's state_dict")
    p.add_argument("output", help="checkpoint directory to write (must not exist)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    args = p.parse_args(argv)
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
