"""The scaffold every study shares: array caches, study start, the config a command line asks for."""

import argparse
import json

import numpy as np
import pytest

from experiments.common import (
    add_common_arguments,
    cached_arrays,
    flatten,
    output_names,
    setup,
    start_study,
)

CONFIG_FILE = """
import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    seeds: int = 1


def get_config(arg=None):
    return Config(name=arg or "default")
"""


def test_cached_arrays_reuses_and_never_overwrites(tmp_path):
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"a": {"b": np.arange(3) * value}, "hit/first": np.ones(2) * value}

        return run

    path = tmp_path / "parts" / "x.npz"
    first = cached_arrays(path, {"k": 1}, compute(1))
    again = cached_arrays(path, {"k": 1}, compute(99))  # same key: loaded, not computed
    assert calls == [1]
    np.testing.assert_array_equal(again["a"]["b"], [0, 1, 2])
    # Keys with "/" come back nested; flatten gives the flat names back.
    assert sorted(flatten(again)) == ["a/b", "hit/first"]
    np.testing.assert_array_equal(flatten(again)["hit/first"], flatten(first)["hit/first"])
    before = path.read_bytes()
    other = cached_arrays(path, {"k": 2}, compute(2))  # another key: a new file beside
    assert calls == [1, 2]
    assert path.read_bytes() == before
    assert json.loads((tmp_path / "parts" / "x-1.json").read_text()) == {"k": 2}
    np.testing.assert_array_equal(other["a"]["b"], [0, 2, 4])
    assert cached_arrays(path, {"k": 2}, compute(3))["a"]["b"][1] == 2  # found under x-1
    assert calls == [1, 2]


def test_a_half_written_piece_is_recomputed(tmp_path):
    path = tmp_path / "x.npz"
    cached_arrays(path, {"k": 1}, lambda: {"v": np.zeros(2)})
    (tmp_path / "x.json").unlink()  # killed before its key was written
    out = cached_arrays(path, {"k": 1}, lambda: {"v": np.ones(2)})
    np.testing.assert_array_equal(out["v"], [1, 1])


def test_start_study(tmp_path):
    workdir, elapsed = start_study(tmp_path / "new" / "run", 2)
    assert workdir.is_dir()
    times = elapsed()
    assert set(times) == {"wall_seconds", "cpu_seconds", "devices"}
    assert times["wall_seconds"] >= 0 and times["cpu_seconds"] >= 0
    with pytest.raises(ValueError, match="seeds must be at least 1, got 0"):
        start_study(tmp_path / "other", 0)
    assert not (tmp_path / "other").exists()


def _args(tmp_path, *argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(tmp_path / "cfg.py"))
    add_common_arguments(parser, workdir=str(tmp_path / "w"))
    return parser.parse_args([*argv, "--no-compile-cache"])


def test_setup_reads_the_config_quick_and_seeds(tmp_path):
    (tmp_path / "cfg.py").write_text(CONFIG_FILE)
    assert setup(_args(tmp_path)).name == "default"
    assert setup(_args(tmp_path, "--quick")).name == "quick"
    spec = f"{tmp_path / 'cfg.py'}:full"
    assert setup(_args(tmp_path, "--quick", "--config", spec)).name == "full"  # ARG wins
    assert setup(_args(tmp_path, "--seeds", "3")).seeds == 3
    with pytest.raises(SystemExit, match="--seeds must be at least 1, got 0"):
        setup(_args(tmp_path, "--seeds", "0"))
    bare = argparse.ArgumentParser()
    add_common_arguments(bare, workdir=str(tmp_path / "w"))
    args = bare.parse_args(["--no-compile-cache"])
    assert setup(args, default=str(tmp_path / "cfg.py")).name == "default"
    with pytest.raises(ValueError, match="no config"):
        setup(args)


def test_output_names_never_reuse_a_name(tmp_path):
    plain = output_names(tmp_path, ["results.json", "figures"], now=0.0)
    assert [p.name for p in plain] == ["results.json", "figures"]
    plain[0].write_text("{}")
    stamped = output_names(tmp_path, ["results.json", "figures"], now=0.0)
    assert all(not p.exists() for p in stamped)
    assert stamped[0].name.startswith("results-") and stamped[0].suffix == ".json"
