"""The torchvision converter, checkpoints and the CLI, against torchvision itself.

Reference: each torchvision architecture with random weights and randomised
BatchNorm statistics (tests/torch_ref.py). Converted with
`weights_convert.from_torchvision`, the jaxsal model must give torchvision's
logits on the same images: within 1e-10 in float64, and within 1e-4 of the
logit scale in float32 (a float32 torch model against a float32 conversion).
The converter is strict (every missing, unexpected or misshapen tensor is
listed), `.pth` files and the `python -m weights_convert` CLI give the same
arrays, and neither the CLI nor `jaxsal.save` overwrites anything unasked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict
from torch_ref import no_inplace, to_nchw, torch_model, torchvision

import jaxsal
from weights_convert import ConversionError, from_torchvision

ARCHS = ("vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "densenet121", "mobilenet_v2")
SIZE = 72
NUM_CLASSES = 10
REPO = Path(__file__).resolve().parents[1]

logits = jax.jit(jaxsal.logits)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Two NHWC float64 images, normalised-input scale."""
    return np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3))


@pytest.fixture(scope="module", params=ARCHS)
def reference(request, images):
    """(arch, float64 torchvision model with random weights, its logits on `images`)."""
    model = torch_model(request.param, num_classes=NUM_CLASSES)
    with torch.no_grad():
        ref = model(to_nchw(images)).numpy()
    return request.param, model, ref


def float32_copy(arch: str, model: torch.nn.Module) -> torch.nn.Module:
    """`model` in float32, built on the meta device so VGG's weights are not copied twice."""
    sd = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    with torch.device("meta"):
        clone = getattr(torchvision().models, arch)(weights=None, num_classes=NUM_CLASSES)
    clone.load_state_dict(sd, assign=True)
    return no_inplace(clone).eval()


def dtypes(params: jaxsal.ModelParams) -> set:
    return {leaf.dtype for leaf in jax.tree.leaves(params.variables)}


def variables(params: jaxsal.ModelParams) -> dict:
    return {k: np.asarray(v) for k, v in flatten_dict(params.variables, sep="/").items()}


def test_float64_logits_match_torchvision(reference, images):
    arch, model, ref = reference
    params = from_torchvision(arch, model.state_dict(), dtype=jnp.float64)
    assert params.num_classes == NUM_CLASSES  # read off the classifier's weight
    assert dtypes(params) == {np.dtype(np.float64)}
    out = np.asarray(logits(params, images))
    assert out.dtype == np.float64 and out.shape == ref.shape == (2, NUM_CLASSES)
    err = float(np.abs(out - ref).max())
    print(f"{arch} float64: max |jaxsal - torch| = {err:.1e} (max |logit| {np.abs(ref).max():.2f})")
    assert np.abs(ref).std() > 1e-3  # non-trivial logits
    assert err < 1e-10


def test_float32_logits_match_torchvision(reference, images):
    arch, model, ref64 = reference
    model32 = float32_copy(arch, model)
    x = images.astype(np.float32)
    with torch.no_grad():
        ref = model32(to_nchw(x)).numpy()
    params = from_torchvision(arch, model32.state_dict(), dtype=jnp.float32)
    del model32
    assert dtypes(params) == {np.dtype(np.float32)}
    out = np.asarray(logits(params, x))
    assert out.dtype == np.float32  # no silent promotion to float64 on the way
    scale = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max())
    print(
        f"{arch} float32: max |jaxsal - torch| = {err:.1e}, relative {err / scale:.1e}; "
        f"torch float32 vs float64: {np.abs(ref - ref64).max() / scale:.1e}"
    )
    assert err / scale < 1e-4


# --- strictness, on resnet18 -------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18():
    """A float32 resnet18 with random weights (the converter's test subject)."""
    return torch_model("resnet18", num_classes=NUM_CLASSES, dtype=torch.float32)


def conversion_error(arch, state_dict, **kwargs) -> str:
    with pytest.raises(ConversionError) as info:
        from_torchvision(arch, state_dict, **kwargs)
    return str(info.value)


def test_missing_tensor_is_named(resnet18):
    sd = resnet18.state_dict()
    del sd["layer4.1.conv2.weight"]
    msg = conversion_error("resnet18", sd)
    assert "missing" in msg and "layer4.1.conv2.weight (512, 512, 3, 3)" in msg
    assert "(1 problem)" in msg


def test_unexpected_tensor_is_named(resnet18):
    sd = resnet18.state_dict()
    sd["layer5.0.conv1.weight"] = torch.zeros(8, 4, 3, 3)
    msg = conversion_error("resnet18", sd)
    assert "unexpected" in msg and "layer5.0.conv1.weight (8, 4, 3, 3)" in msg


def test_wrong_shape_is_named_with_both_shapes(resnet18):
    sd = resnet18.state_dict()
    sd["layer1.0.bn1.running_var"] = torch.ones(65)
    msg = conversion_error("resnet18", sd)
    assert "wrong shape: layer1.0.bn1.running_var is (65,)" in msg and "(64,)" in msg


def test_every_problem_is_listed_at_once(resnet18):
    sd = resnet18.state_dict()
    del sd["conv1.weight"], sd["layer2.1.bn2.bias"]
    sd["head.weight"] = torch.zeros(3, 5)
    sd["layer3.0.downsample.0.weight"] = torch.zeros(256, 128, 3, 3)
    msg = conversion_error("resnet18", sd)
    assert "(4 problems)" in msg
    for line in (
        "missing (in model, not in checkpoint): conv1.weight (64, 3, 7, 7)",
        "missing (in model, not in checkpoint): layer2.1.bn2.bias (128,)",
        "unexpected (in checkpoint, not in model): head.weight (3, 5)",
        "wrong shape: layer3.0.downsample.0.weight is (256, 128, 3, 3) in the checkpoint, "
        "the model needs (256, 128, 1, 1)",
    ):
        assert line in msg


def test_explicit_num_classes_must_fit(resnet18):
    msg = conversion_error("resnet18", resnet18.state_dict(), num_classes=5)
    assert "fc.weight is (10, 512)" in msg and "(5, 512)" in msg and "fc.bias" in msg


def test_num_classes_is_read_off_the_classifier():
    model = torch_model("resnet18", num_classes=7, dtype=torch.float32)
    params = from_torchvision("resnet18", model.state_dict())
    assert params.num_classes == 7
    assert params.params["fc"]["kernel"].shape == (512, 7)
    np.testing.assert_array_equal(params.params["fc"]["kernel"], model.fc.weight.detach().numpy().T)


def test_training_checkpoint_gets_a_hint(resnet18):
    ckpt = {"epoch": 3, "state_dict": resnet18.state_dict(), "optimizer": {"lr": 0.1}}
    msg = conversion_error("resnet18", ckpt)
    assert "training checkpoint" in msg and "checkpoint['state_dict']" in msg


def test_dataparallel_prefix_gets_a_hint(resnet18):
    sd = {"module." + k: v for k, v in resnet18.state_dict().items()}
    msg = conversion_error("resnet18", sd)
    assert "unexpected (in checkpoint, not in model): module.fc.weight (10, 512)" in msg
    assert "strip" in msg and "'module.'" in msg


def test_unknown_architecture_lists_the_known_ones(resnet18):
    msg = conversion_error("resnet51", resnet18.state_dict())
    assert '"resnet51"' in msg
    for arch in ARCHS:
        assert arch in msg


def test_float64_without_x64_is_refused(resnet18):
    with jax.enable_x64(False), pytest.raises(ConversionError, match="jax_enable_x64"):
        from_torchvision("resnet18", resnet18.state_dict(), dtype=jnp.float64)


def test_pth_file_converts_like_the_mapping(resnet18, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18.state_dict(), path)
    from_file = from_torchvision("resnet18", path)
    from_str = from_torchvision("resnet18", str(path))
    from_mapping = from_torchvision("resnet18", resnet18.state_dict())
    assert from_file.module == from_mapping.module == from_str.module
    a, b, c = variables(from_file), variables(from_mapping), variables(from_str)
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype == np.float32
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])


def test_pickled_whole_model_is_refused_clearly(resnet18, tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(resnet18, path)
    with pytest.raises(ConversionError, match=r"model\.state_dict\(\)"):
        from_torchvision("resnet18", path)


# --- checkpoints and the CLI ----------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `root`: modification time and contents."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "weights_convert", *map(str, args)],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_same_model(loaded: jaxsal.ModelParams, expected: jaxsal.ModelParams, x) -> None:
    assert loaded.module == expected.module
    a, b = variables(loaded), variables(expected)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(logits(loaded, x), logits(expected, x))


def test_cli_writes_a_checkpoint_that_loads_back(resnet18, images, tmp_path):
    src, out = tmp_path / "in.pth", tmp_path / "ckpt"
    torch.save(resnet18.state_dict(), src)
    run = cli("resnet18", src, out)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout

    x = images.astype(np.float32)
    loaded = jaxsal.load(out)
    assert_same_model(loaded, from_torchvision("resnet18", resnet18.state_dict()), x)
    with torch.no_grad():
        ref = resnet18(to_nchw(x)).numpy()
    out_logits = np.asarray(logits(loaded, x))
    assert np.abs(out_logits - ref).max() / np.abs(ref).max() < 1e-4

    # A second run on the same OUT is refused and leaves it untouched.
    before = snapshot(out)
    again = cli("resnet18", src, out)
    assert again.returncode != 0
    assert "exists" in again.stderr and "--overwrite" in again.stderr
    assert snapshot(out) == before

    # --overwrite replaces it (with another model, so the replacement shows).
    other = torch_model("resnet18", num_classes=NUM_CLASSES, seed=1, dtype=torch.float32)
    src2 = tmp_path / "other.pth"
    torch.save(other.state_dict(), src2)
    replaced = cli("resnet18", src2, out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert_same_model(jaxsal.load(out), from_torchvision("resnet18", other.state_dict()), x)


def test_cli_reports_conversion_errors(resnet18, tmp_path):
    sd = resnet18.state_dict()
    del sd["fc.bias"]
    src, out = tmp_path / "in.pth", tmp_path / "ckpt"
    torch.save(sd, src)
    run = cli("resnet18", src, out)
    assert run.returncode == 2
    assert "missing (in model, not in checkpoint): fc.bias (10,)" in run.stderr
    assert not out.exists()


def test_save_refuses_to_overwrite(resnet18, tmp_path):
    params = from_torchvision("resnet18", resnet18.state_dict())
    path = jaxsal.save(tmp_path / "ckpt", params)
    before = snapshot(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        jaxsal.save(path, params)
    assert snapshot(path) == before

    # overwrite=True replaces a checkpoint, but never a directory that is not one.
    jaxsal.save(path, params.astype(jnp.float64), overwrite=True)
    assert dtypes(jaxsal.load(path)) == {np.dtype(np.float64)}
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a jaxsal checkpoint"):
        jaxsal.save(tmp_path / "notes", params, overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


# --- which architecture fits, the problem cap, the command line ---------------------------


def test_the_architecture_that_fits_is_named_before_the_problems(resnet18):
    msg = conversion_error("resnet34", resnet18.state_dict())
    head, *lines = msg.splitlines()
    assert head.startswith("the state_dict does not fit resnet34 (")
    assert "this state_dict fits resnet18: convert it as resnet18" in head
    problems = [line.strip() for line in lines]
    assert len(problems) == 21 and re.fullmatch(r"\.\.\. and \d+ more", problems[-1])
    total = int(re.search(r"\((\d+) problems\)", head).group(1))
    assert int(problems[-1].split()[2]) == total - 20


def test_wrong_num_classes_says_which_fits(resnet18):
    msg = conversion_error("resnet18", resnet18.state_dict(), num_classes=5)
    assert f"it fits resnet18 with num_classes={NUM_CLASSES}" in msg.splitlines()[0]


def test_no_fit_names_no_architecture(resnet18):
    sd = resnet18.state_dict()
    del sd["fc.bias"]
    assert "fits" not in conversion_error("resnet18", sd)


def test_cli_help_lists_the_architectures():
    run = cli("--help")
    assert run.returncode == 0, run.stderr
    for arch in ARCHS:
        assert arch in run.stdout
    bad = cli("resnet5", "in.pth", "out")
    assert bad.returncode == 2 and "invalid choice: 'resnet5'" in bad.stderr


def test_console_script_and_quiet_metadata():
    import importlib
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    target = meta["project"]["scripts"]["jaxsal-convert"]
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert meta["project"]["license"] == "Apache-2.0"  # SPDX: no setuptools deprecation
    assert "setuptools>=77" in meta["build-system"]["requires"]
