"""The torchvision reference models, shared with the benchmarks (weights_convert)."""

from weights_convert.torch_reference import (  # noqa: F401
    no_inplace,
    randomize_bn,
    to_nchw,
    to_nhwc,
    torch_model,
    torchvision,
)
