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


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops XLA's compiled programs and live buffers after each test module.

    A worker runs hundreds of tests; without this its compilation caches grow to
    about 10 GB, and two workers then exhaust a 24 GB CI machine.
    """
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def float32():
    """Runs a test with float32 defaults (as users run the studies), not the suite's float64.

    For the end-to-end study runs: they check the pipeline, not numerics, and
    float32 halves their time.
    """
    with jax.enable_x64(False):
        yield
