"""`jaxsal.save` / `jaxsal.load`: one self-verifying format for every model.

Round trips restore every array bit for bit, the spec and beta, for jaxsal's
architectures, a registered class (`TransferNet`, a user's class), and user
models from `jaxsal.wrap` (Linen, NNX, function) loaded with `like=`. Every
corruption (bad JSON, truncated or deleted array files, metadata that does not
fit its arrays, a float64 checkpoint without 64-bit JAX, an unknown format
version) raises a `CheckpointError` that says what to do; a failed `save`
leaves nothing behind, and `overwrite=True` never removes a user's directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import jaxsal
from jaxsal.checkpoint import CheckpointError, register_model
from jaxsal.models import build_module
from jaxsal.models.small_cnn import SmallCNN

REPO = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 3)


def random_variables(module: nn.Module, seed: int, channels: int = 3) -> dict:
    """Random float32 variables of `module.init`'s shapes (`jax.eval_shape`: nothing compiled)."""
    x = jax.ShapeDtypeStruct((1, 16, 16, channels), jnp.result_type(float))
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)
    weights = lambda s: (0.1 * rng.normal(size=s.shape)).astype(np.float32)  # noqa: E731
    stats = lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32)  # noqa: E731 (variances > 0)
    return {c: jax.tree.map(weights if c == "params" else stats, v) for c, v in shapes.items()}


def random_model(module: nn.Module, seed: int = 0) -> jaxsal.ModelParams:
    """A jaxsal-style module (`num_classes`, `in_channels`) with random arrays."""
    variables = random_variables(module, seed, module.in_channels)
    return jaxsal.ModelParams(module=module, params=variables.pop("params"), state=variables)


def named_arrays(params: jaxsal.ModelParams) -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_flatten_with_path({"p": params.params, "s": params.state})[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def assert_same(loaded: jaxsal.ModelParams, saved: jaxsal.ModelParams) -> None:
    """Same spec, beta and arrays (dtype and every bit)."""
    assert loaded.spec == saved.spec
    assert (loaded.beta is None) == (saved.beta is None)
    if saved.beta is not None:
        assert float(loaded.beta) == float(saved.beta)
    a, b = named_arrays(loaded), named_arrays(saved)
    assert a.keys() == b.keys() and a
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def edit_meta(path: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads((path / "jaxsal.json").read_text())
    change(meta)
    (path / "jaxsal.json").write_text(json.dumps(meta))


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# ---------------------------------------------------------------- models


@pytest.fixture(scope="module")
def small_cnn() -> jaxsal.ModelParams:
    return random_model(build_module("small_cnn")).with_beta(5.0).with_conv("xla")


@pytest.fixture(scope="module")
def resnet18() -> jaxsal.ModelParams:
    return random_model(build_module("resnet18", num_classes=10), seed=1)


@pytest.fixture(scope="module")
def saved_small(small_cnn, tmp_path_factory) -> Path:
    return jaxsal.save(tmp_path_factory.mktemp("ckpt") / "small", small_cnn)


@pytest.fixture
def small_copy(saved_small, tmp_path) -> Path:
    """A fresh copy of the small CNN's checkpoint, to corrupt."""
    import shutil

    return Path(shutil.copytree(saved_small, tmp_path / "copy"))


@register_model(name="tests.Act")
class Act(nn.Module):
    slope: float = 0.1

    def __call__(self, x):
        return nn.leaky_relu(x, self.slope)


@register_model(name="tests.TinyNet")
class TinyNet(nn.Module):
    """A user's registered class: tuple, float, class-reference and nested-module fields."""

    num_classes: int = 3
    widths: tuple = (4, 8)
    act: type = Act
    scale: float = 0.5
    extra: nn.Module | None = None

    @nn.compact
    def __call__(self, x):
        for i, w in enumerate(self.widths):
            x = self.act()(nn.Conv(w, (3, 3), name=f"conv{i}")(x))
        return nn.Dense(self.num_classes, name="fc")(x.mean(axis=(1, 2)) * self.scale)


class LinenNet(nn.Module):
    """A user's unregistered Linen module, with BatchNorm and a `train` flag."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(4, (3, 3), name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
        return nn.Dense(5, name="fc")(nn.relu(x).mean(axis=(1, 2)))


class NnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.fc = nnx.Linear(4, 5, rngs=rngs)

    def __call__(self, x):
        return self.fc(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


def function_net(w, x):
    return x.mean(axis=(1, 2)) @ w["dense"]["kernel"] + w["dense"]["bias"][None]


def linen_model(seed: int) -> jaxsal.ModelParams:
    params = jaxsal.wrap(LinenNet(), random_variables(LinenNet(), seed), input_shape=SHAPE,
                         call_kwargs={"train": False}, aliases={"target": "conv"}, conv="xla")  # fmt: skip
    return params.with_beta(3.0)


def nnx_model(seed: int) -> jaxsal.ModelParams:
    return jaxsal.wrap(NnxNet(nnx.Rngs(seed)), input_shape=SHAPE)


def function_model(seed: int) -> jaxsal.ModelParams:
    rng = np.random.default_rng(seed)
    w = {"dense": {"kernel": rng.normal(size=(3, 4)).astype(np.float32),
                   "bias": rng.normal(size=4).astype(np.float32)}}  # fmt: skip
    return jaxsal.wrap(function_net, jax.tree.map(jnp.asarray, w), input_shape=SHAPE)


USER_MODELS = {"linen": linen_model, "nnx": nnx_model, "function": function_model}


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("which", ["small_cnn", "resnet18"])
def test_architecture_round_trip(which, request, tmp_path):
    params = request.getfixturevalue(which)
    path = jaxsal.save(tmp_path / which, params)
    meta = json.loads((path / "jaxsal.json").read_text())
    assert meta["format"] == "jaxsal.checkpoint" and meta["version"] == 2
    assert meta["model"] == {"arch": which, "num_classes": params.num_classes}
    loaded = jaxsal.load(path)
    assert loaded.module == params.module
    assert_same(loaded, params)
    assert loaded.spec.conv == params.spec.conv and loaded.spec.aliases  # the spec travels


def test_architecture_logits_survive(small_cnn, saved_small):
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(jaxsal.logits(jaxsal.load(saved_small), x),
                                  jaxsal.logits(small_cnn, x))  # fmt: skip


@pytest.mark.parametrize("backbone", ["arch", "class"])
def test_transfer_net_round_trip(backbone, tmp_path):
    if backbone == "arch":  # the backbone is described by name
        base = random_model(build_module("small_cnn"), seed=2)
    else:  # a non-default SmallCNN: described by its class and fields
        base = random_model(SmallCNN(in_channels=3, widths=(4, "M", 8)), seed=2)
    params = jaxsal.trust.transfer_model(base, jax.random.key(3), num_classes=2, filters=8)
    path = jaxsal.save(tmp_path / "transfer", params.with_beta(2.0))
    model = json.loads((path / "jaxsal.json").read_text())["model"]
    assert model["class"] == "transfer_net"
    inner = model["fields"]["backbone"]["module"]
    assert ("arch" in inner) == (backbone == "arch")
    loaded = jaxsal.load(path)
    assert loaded.module == params.module
    assert_same(loaded, params.with_beta(2.0))


def test_registered_user_class_round_trip(tmp_path):
    module = TinyNet(widths=(4, 6), act=Act, scale=0.25, extra=SmallCNN(widths=(2,)))
    params = jaxsal.wrap(module, random_variables(module, 4), input_shape=SHAPE)
    path = jaxsal.save(tmp_path / "tiny", params)
    fields = json.loads((path / "jaxsal.json").read_text())["model"]["fields"]
    assert fields["widths"] == {"tuple": [4, 6]} and fields["act"] == {"type": "tests.Act"}
    loaded = jaxsal.load(path)  # rebuilt from its fields: no template needed
    assert loaded.module == module and loaded.module.widths == (4, 6)
    assert_same(loaded, params)


@pytest.mark.parametrize("kind", sorted(USER_MODELS))
def test_user_model_round_trip_with_like(kind, tmp_path):
    params = USER_MODELS[kind](0)
    path = jaxsal.save(tmp_path / kind, params)
    assert json.loads((path / "jaxsal.json").read_text())["model"] is None
    template = USER_MODELS[kind](1)  # same structure, other values
    loaded = jaxsal.load(path, like=template)
    assert_same(loaded, params)
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype(np.float32)
    np.testing.assert_array_equal(jaxsal.logits(loaded, x), jaxsal.logits(params, x))


@pytest.mark.parametrize("kind", sorted(USER_MODELS))
def test_user_model_without_like_says_how(kind, tmp_path):
    path = jaxsal.save(tmp_path / kind, USER_MODELS[kind](0))
    with pytest.raises(CheckpointError, match=rf"user's {kind} model .*like=jaxsal\.wrap"):
        jaxsal.load(path)


def test_parameter_free_function(tmp_path):
    params = jaxsal.wrap(lambda x: x.mean(axis=(1, 2)), input_shape=SHAPE)
    path = jaxsal.save(tmp_path / "fn", params)
    assert not (path / "arrays").exists()
    loaded = jaxsal.load(path, like=params)
    assert loaded.spec == params.spec and loaded.params is None


def test_like_works_for_architectures_too(small_cnn, saved_small):
    assert_same(jaxsal.load(saved_small, like=small_cnn), small_cnn)


def test_like_of_another_structure_is_refused(saved_small, small_cnn):
    other = random_model(SmallCNN(widths=(16, "M", 32, "M", 64, "M", 64, 32)))
    with pytest.raises(CheckpointError, match=r"(?s)do not fit the template like .*wrong shape: "
                       r"params/features/11/kernel is \(3, 3, 64, 64\)"):  # fmt: skip
        jaxsal.load(saved_small, like=other)
    with pytest.raises(CheckpointError, match=r"wrong dtype: .* is float32 in the checkpoint"):
        jaxsal.load(saved_small, like=small_cnn.astype(jnp.float64))
    cast = jaxsal.load(saved_small, like=small_cnn.astype(jnp.float64), dtype=jnp.float64)
    assert {a.dtype for a in named_arrays(cast).values()} == {np.dtype(np.float64)}
    with pytest.raises(CheckpointError, match=r"another kind of model .*kind 'linen'"):
        jaxsal.load(saved_small, like=function_model(0))


def test_version_1_checkpoints_still_load(small_cnn, tmp_path):
    path = tmp_path / "v1"
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path / "arrays", {"params": small_cnn.params, "state": small_cnn.state})
    old = {"arch": "small_cnn", "num_classes": 10, "beta": 5.0, "dtype": "float32"}
    (path / "jaxsal.json").write_text(json.dumps(old))
    loaded = jaxsal.load(path)
    assert loaded.module == small_cnn.module and float(loaded.beta) == 5.0
    assert_same(loaded.with_conv("xla"), small_cnn)


# ---------------------------------------------------------------- corruption


def test_bad_json(small_copy):
    (small_copy / "jaxsal.json").write_text('{"format": "jaxsal.checkpoint", "vers')
    with pytest.raises(CheckpointError, match=r"copy/jaxsal\.json is not valid JSON .*corrupt.*"
                       r"Re-save the model"):  # fmt: skip
        jaxsal.load(small_copy)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no stray traces
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_array_file(damage, small_copy):
    files = [p for p in (small_copy / "arrays").rglob("*") if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    if damage == "truncate":
        os.truncate(biggest, biggest.stat().st_size // 2)
    else:
        biggest.unlink()
    with pytest.raises(CheckpointError, match=r"copy: the array files under .*copy/arrays cannot "
                       r"be read .*truncated, missing or corrupt: re-save") as info:  # fmt: skip
        jaxsal.load(small_copy)
    assert len(str(info.value)) < 700 and "tensorstore_spec" not in str(info.value)


def test_missing_array_directory(small_copy):
    import shutil

    shutil.rmtree(small_copy / "arrays")
    with pytest.raises(CheckpointError, match=r"array directory .* is missing"):
        jaxsal.load(small_copy)


def test_architecture_that_does_not_fit_its_arrays(resnet18, tmp_path):
    path = jaxsal.save(tmp_path / "r18", resnet18)

    def to_resnet34(meta):
        meta["model"]["arch"] = meta["spec"]["arch"] = "resnet34"

    edit_meta(path, to_resnet34)
    with pytest.raises(CheckpointError, match=r"do not fit the module that jaxsal\.json describes "
                       r"\(\d+ problems\):\n  missing \(in the module that jaxsal\.json "
                       r"describes, not in the checkpoint\): params/layer1/2/"):  # fmt: skip
        jaxsal.load(path)


def test_num_classes_that_does_not_fit(small_copy):
    def seven(meta):
        meta["model"]["num_classes"] = meta["spec"]["num_classes"] = 7

    edit_meta(small_copy, seven)
    with pytest.raises(CheckpointError, match=r"wrong shape: params/classifier/kernel is \(64, 10\) "
                       r"in the checkpoint, the module that jaxsal\.json describes needs \(64, 7\)"):  # fmt: skip
        jaxsal.load(small_copy)
    edit_meta(small_copy, lambda m: m["model"].update(num_classes=10))
    with pytest.raises(CheckpointError, match=r"inconsistent: its spec's num_classes differ"):
        jaxsal.load(small_copy)


def test_arrays_that_do_not_match_the_manifest(small_copy):
    def tamper(meta):
        meta["arrays"]["params/classifier/bias"]["crc32"] ^= 1
        meta["arrays"]["params/classifier/kernel"]["shape"] = [64, 11]

    edit_meta(small_copy, tamper)
    # the manifest no longer fits the module: caught before the arrays are read
    with pytest.raises(
        CheckpointError, match=r"wrong shape: params/classifier/kernel is \(64, 11\)"
    ):
        jaxsal.load(small_copy)
    edit_meta(small_copy, lambda m: m["arrays"]["params/classifier/kernel"].update(shape=[64, 10]))
    with pytest.raises(CheckpointError, match=r"(?s)do not match the manifest .*\n  wrong contents: "
                       r"params/classifier/bias differs from what was saved"):  # fmt: skip
        jaxsal.load(small_copy)


def test_unknown_format_version(small_copy):
    edit_meta(small_copy, lambda m: m.update(version=99))
    with pytest.raises(CheckpointError, match=r"format version 99; this jaxsal reads versions 1 "
                       r"to 2\. Load it with the jaxsal that wrote it"):  # fmt: skip
        jaxsal.load(small_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, r"is not jaxsal checkpoint metadata"),
        ({"beta": "high"}, r"lacks or garbles the fields beta: the file is corrupt"),
        ({"arrays": {"params/x": {"shape": "3"}}}, r"garbles the fields arrays"),
        ({"spec": {"kind": "keras"}}, r"jaxsal\.json is corrupt: its spec .* is not a ModelSpec"),
    ],
)
def test_garbled_metadata(change, message, small_copy):
    edit_meta(small_copy, lambda m: m.update(change))
    with pytest.raises(CheckpointError, match=message):
        jaxsal.load(small_copy)


def test_unregistered_class_at_load(small_copy):
    edit_meta(small_copy, lambda m: m.update(model={"class": "tests.Gone", "fields": {}}))
    with pytest.raises(CheckpointError, match=r'cannot rebuild .*"tests\.Gone", which is not '
                       r"registered.*like="):  # fmt: skip
        jaxsal.load(small_copy)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a jaxsal checkpoint"):
        jaxsal.load(tmp_path)


def test_float64_without_x64(small_cnn, tmp_path):
    """In a fresh interpreter with 64-bit JAX off (this one has it on: conftest)."""
    path = jaxsal.save(tmp_path / "f64", small_cnn.astype(jnp.float64))
    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp, numpy as np, pytest
        import jaxsal
        from jaxsal.checkpoint import CheckpointError
        assert jax.dtypes.canonicalize_dtype(np.float64) == np.float32  # 64-bit JAX is off
        with pytest.raises(CheckpointError, match=r"holds float64 arrays, but 64-bit JAX is off.*"
                           r'jax_enable_x64", True.*load\\(path, dtype=jnp\\.float32\\)'):
            jaxsal.load({str(path)!r})
        with pytest.raises(CheckpointError, match="dtype=float64 needs 64-bit JAX"):
            jaxsal.load({str(path)!r}, dtype=jnp.float64)
        p = jaxsal.load({str(path)!r}, dtype=jnp.float32)
        assert {{a.dtype for a in jax.tree.leaves(p.variables)}} == {{np.dtype(np.float32)}}
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**env, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


# ---------------------------------------------------------------- save: validate, then write


@register_model(name="tests.FnField")
class FnField(nn.Module):
    num_classes: int = 2
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes)(self.act(x).mean(axis=(1, 2)))


def test_unsupported_model_leaves_nothing_and_retry_works(small_cnn, tmp_path):
    module = FnField()
    bad = jaxsal.wrap(module, random_variables(module, 0), input_shape=SHAPE)
    target = tmp_path / "deep" / "ckpt"
    with pytest.raises(CheckpointError, match=r"cannot save .*ckpt: FnField\.act is "
                       r"\w+ .*cannot describe.*Nothing was written"):  # fmt: skip
        jaxsal.save(target, bad)
    assert leftovers(tmp_path) == []
    mixed = small_cnn.replace(state={"extra": {"x": jnp.zeros(2, jnp.float64)}})
    with pytest.raises(
        CheckpointError, match=r"mix dtypes float32 \(params/.*\), float64 \(state/extra/x"
    ):
        jaxsal.save(target, mixed)
    assert leftovers(tmp_path) == []
    jaxsal.save(target, small_cnn, overwrite=True)
    assert_same(jaxsal.load(target), small_cnn)
    assert leftovers(target.parent) == ["ckpt"]


def test_failed_write_leaves_nothing(small_cnn, tmp_path, monkeypatch):
    path = jaxsal.save(tmp_path / "ckpt", small_cnn)
    before = sorted(str(p) for p in tmp_path.rglob("*"))

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # after the arrays are written
    with pytest.raises(OSError, match="disk full"):
        jaxsal.save(path, small_cnn.with_beta(1.0), overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        jaxsal.save(tmp_path / "new" / "ckpt", small_cnn)
    monkeypatch.undo()
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # the old one untouched
    assert float(jaxsal.load(path).beta) == 5.0


def test_overwrite_replaces_only_checkpoints(small_cnn, tmp_path):
    path = jaxsal.save(tmp_path / "ckpt", small_cnn)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        jaxsal.save(path, small_cnn)
    jaxsal.save(path, small_cnn.with_beta(None), overwrite=True)
    assert jaxsal.load(path).beta is None and leftovers(tmp_path) == ["ckpt"]

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine too")
    for other in ("notes", "file.txt"):
        with pytest.raises(FileExistsError, match="not a jaxsal checkpoint"):
            jaxsal.save(tmp_path / other, small_cnn, overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "file.txt").read_text() == "mine too"


def test_register_model_refuses_clashes():
    with pytest.raises(ValueError, match='"tests.TinyNet" is taken'):
        register_model(LinenNet, "tests.TinyNet")
    with pytest.raises(ValueError, match="is a jaxsal architecture"):
        register_model(LinenNet, "resnet18")
    with pytest.raises(ValueError, match='already registered as "tests.TinyNet"'):
        register_model(TinyNet, "tests.Other")
    with pytest.raises(TypeError, match="flax.linen.Module class"):
        register_model(NnxNet)
    assert register_model(TinyNet, "tests.TinyNet") is TinyNet  # again: a no-op
