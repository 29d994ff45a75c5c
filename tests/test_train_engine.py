"""The training engine: sharding invariance, two processes, kill and resume, one step, guards.

The objective (tests/multiprocess_training.py) is CE + lam * Location(Grad-CAM) on a
tiny small_cnn in float64: its gradient is second order. References are independent:
a mesh of one device, a single process, an uninterrupted run, a NumPy Adam update and
central finite differences.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import multiprocess_training as mf
import numpy as np
import optax
import pytest

import jaxsal
from jaxsal import train

STEPS = 6
SCRIPT = Path(__file__).with_name("multiprocess_training.py")
ROOT = SCRIPT.parent.parent


@pytest.fixture(scope="module")
def eight_devices():
    """Params and history of the run on the default mesh: all 8 fake CPU devices."""
    assert jax.device_count() == 8
    params, history = mf.run(steps=STEPS)
    return mf.flat_params(params), history


def _max_rel(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in a)


def _script(*args, devices, **popen):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, **popen)


def _load(out: Path):
    with np.load(out) as arrays:
        params = dict(arrays)
    return params, json.loads(Path(str(out) + ".json").read_text())


def test_eight_devices_match_one_device(eight_devices):
    sharded, history = eight_devices
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    params, history1 = mf.run(steps=STEPS, mesh=one)
    ref = mf.flat_params(params)
    err = _max_rel(sharded, ref)
    print(f"8 devices vs 1 device: max relative difference {err:.2e}")
    assert err < 1e-10
    assert len(history) == STEPS and set(history[0]) == {"loss", "ce", "penalty"}
    np.testing.assert_allclose(
        [h["loss"] for h in history], [h["loss"] for h in history1], rtol=1e-12
    )
    start = mf.flat_params(mf.tiny_params())
    assert max(float(np.abs(sharded[k] - start[k]).max()) for k in start) > 1e-3  # it trained


def test_two_processes_match_one_process(eight_devices, tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "mp.npz"
    args = ["--out", out, "--steps", STEPS, "--num-processes", 2, "--port", port]
    args += ["--workdir", tmp_path / "wd", "--checkpoint-every", 3]
    procs = [
        _script(
            *args, "--process-id", i, devices=4, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=300)[0].decode() for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    params, meta = _load(out)
    assert meta["devices"] == 8
    err = _max_rel(params, eight_devices[0])
    print(f"2 processes x 4 devices vs 1 process x 8 devices: max relative difference {err:.2e}")
    assert err < 1e-10
    assert sorted(os.listdir(tmp_path / "wd" / "checkpoints")) == ["3", "6"]


def test_killed_run_resumes_to_the_same_params(eight_devices, tmp_path):
    workdir = tmp_path / "wd"
    common = ["--steps", STEPS, "--workdir", workdir, "--checkpoint-every", 2]
    first = workdir / "checkpoints" / "2"
    killed = _script(
        "--out", tmp_path / "killed.npz", *common, "--sleep", 0.3, devices=8,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (first / "commit_success.txt").exists():
        assert killed.poll() is None, killed.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared within 240 s"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stderr.close()
    assert not (tmp_path / "killed.npz").exists()
    steps_saved = sorted(
        int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps_saved and max(steps_saved) < STEPS  # killed mid-run
    out = tmp_path / "resumed.npz"
    resumed = _script("--out", out, *common, devices=8, stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]
    params, meta = _load(out)
    assert meta["first_step"] == max(steps_saved) >= 2  # it resumed, not restarted
    diff = max(float(np.abs(params[k] - eight_devices[0][k]).max()) for k in params)
    print(f"killed at step >= {max(steps_saved)} and resumed: max abs difference {diff:.1e}")
    assert diff <= 1e-12
    got = [[h[k] for k in sorted(h)] for h in meta["history"]]
    want = [[h[k] for k in sorted(h)] for h in eight_devices[1]]
    np.testing.assert_allclose(got, want, rtol=1e-12)  # history restored from the checkpoint


def test_one_step_is_a_hand_done_adam_update(value_and_grad):
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    params = mf.tiny_params()
    tx = train.masked(optax.adam(lr, b1=b1, b2=b2, eps=eps), params)
    step = train.make_step(mf.fooling_loss, tx, mesh=one)
    opt_state = tx.init(params)
    ours = params
    hand = jax.tree.map(np.asarray, params.params)
    m = jax.tree.map(np.zeros_like, hand)
    v = jax.tree.map(np.zeros_like, hand)

    @jax.jit
    def value_and_grad(p, batch):
        return jax.value_and_grad(
            lambda p: mf.fooling_loss(params.replace(params=p), batch, params)[0]
        )(p)

    for t in (1, 2):
        batch = mf.batch_at(t)
        ours, opt_state, aux = step(ours, opt_state, batch, params)

        value, g = value_and_grad(hand, batch)
        assert float(aux["loss"]) == pytest.approx(float(value), rel=1e-12)
        g = jax.tree.map(np.asarray, g)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        hand = jax.tree.map(
            lambda p, m, v, t=t: p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps),
            hand,
            m,
            v,
        )
    err = max(
        float(np.abs(np.asarray(a) - b).max()) for a, b in zip(
            jax.tree.leaves(ours.params), jax.tree.leaves(hand), strict=True
        )
    )  # fmt: skip
    print(f"two jitted steps vs NumPy Adam: max abs difference {err:.1e}")
    assert err < 1e-12
    assert ours.state == params.state or jax.tree.all(
        jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), ours.state, params.state)
    )


@pytest.fixture(scope="module")
def value_and_grad():
    """The loss and its (second-order) gradient, jitted once, independently of the trainer."""
    params = mf.tiny_params()

    @jax.jit
    def value_and_grad(p, batch):
        return jax.value_and_grad(
            lambda p: mf.fooling_loss(params.replace(params=p), batch, params)[0]
        )(p)

    return value_and_grad


def test_second_order_gradient_matches_finite_differences(value_and_grad):
    params = mf.tiny_params()
    batch = mf.batch_at(0)

    def loss(p):
        return value_and_grad(p, batch)[0]

    grads = value_and_grad(params.params, batch)[1]
    leaves, treedef = jax.tree.flatten(params.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    direction = treedef.unflatten(
        [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    )
    h = 1e-6
    shift = lambda s: jax.tree.map(lambda a, d: a + s * h * d, params.params, direction)  # noqa: E731
    fd = (float(loss(shift(1.0))) - float(loss(shift(-1.0)))) / (2 * h)
    analytic = sum(
        float(jnp.vdot(g, d))
        for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    print(f"directional derivative: analytic {analytic:.10g}, finite differences {fd:.10g}")
    assert analytic == pytest.approx(fd, rel=1e-6)


def _weight_decay(params, batch, params0):
    """A loss without a forward pass (cheap to compile): the squared distance to params0."""
    sq = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), params.params, params0.params)
    value = sum(jax.tree.leaves(sq)) + 1e-3 * jnp.sum(batch["image"])
    return value, {}


def test_foreign_checkpoint_is_refused(tmp_path):
    workdir = tmp_path / "wd"
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    kw = dict(batch_fn=mf.batch_at, steps=4, workdir=workdir, mesh=one, progress=False)
    config = {"lam": 1.0}

    def run(params, tx, config, **more):
        return train.fit(_weight_decay, params, tx=tx, frozen=mf.tiny_params(), config=config,
                         **kw, **more)  # fmt: skip

    _, history = run(mf.tiny_params(), optax.sgd(0.1), config, checkpoint_every=2)
    assert len(history) == 4 and sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    with pytest.raises(ValueError, match="config differs"):
        run(mf.tiny_params(), optax.sgd(0.1), {"lam": 0.0})
    with pytest.raises(ValueError, match="different run"):
        run(mf.tiny_params(widths=(4, "M", 8)), optax.sgd(0.1), config)
    with pytest.raises(ValueError, match="different run"):
        run(mf.tiny_params(), optax.adam(0.1), config)
    with pytest.raises(ValueError, match="divisible by the 8 devices"):
        train.shard_batch({"image": np.zeros((4, 2))}, train.make_mesh())


def test_only_the_named_layers_train():
    """`trainable=` freezes every other parameter and every BatchNorm statistic exactly."""
    params = jaxsal.init("resnet18", jax.random.key(0), num_classes=4, dtype=jnp.float64)
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))

    def batch_fn(step):
        rng = np.random.default_rng(step)
        return {"image": rng.normal(size=(2, 32, 32, 3)), "label": rng.integers(0, 4, 2)}

    trained, _ = train.fit(train.classification_loss, params, batch_fn, tx=optax.adam(1e-2),
                           steps=2, trainable=("layer4.1.conv2", "fc"), mesh=one,
                           progress=False)  # fmt: skip
    names = lambda t: {jax.tree_util.keystr(k): v for k, v in  # noqa: E731
                       jax.tree_util.tree_flatten_with_path(t)[0]}  # fmt: skip
    before, after = names(params.params), names(trained.params)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {k for k in before if "'layer4'" in k and "'conv2'" in k and "'1'" in k
                       or "'fc'" in k}  # fmt: skip
    for a, b in zip(jax.tree.leaves(params.state), jax.tree.leaves(trained.state)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="hold no parameters"):
        train.trainable_mask(params, ("layer9",))


def test_chance_guard_stops_a_run_that_does_not_learn():
    """Labels independent of the images (random): the loss stays at log(4); the guard fires."""
    params = mf.tiny_params()
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    guard = train.chance_guard(mf.CLASSES, at_step=3, margin=0.5, window=3)
    with pytest.raises(train.TrainingStalled, match="still at chance level after 3 steps"):
        train.fit(train.classification_loss, params, mf.batch_at, tx=optax.sgd(1e-6), steps=6,
                  mesh=one, stop_if=guard, progress=False)  # fmt: skip
