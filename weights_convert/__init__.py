"""Conversion of torchvision weights into jaxsal parameters.

`from_torchvision(arch, state_dict)` returns `ModelParams`;
`python -m weights_convert ARCH IN.pth OUT` writes an orbax checkpoint that
`jaxsal.load(OUT)` reads back.
"""

from weights_convert.torchvision import (
    ConversionError,
    expected_tensors,
    from_torchvision,
    load_state_dict,
)

__all__ = ["ConversionError", "expected_tensors", "from_torchvision", "load_state_dict"]
