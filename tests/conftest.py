"""Test settings that catch mistakes: 8 fake CPU devices, float64, rank promotion raises."""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

sys.path.insert(0, os.path.dirname(__file__))

try:  # two pytest workers share two cores: one torch thread each
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is in the test extra
    pass
