"""Every study's command line parses: `--help` exits cleanly and lists the shared flags."""

import importlib

import pytest

COMMANDS = [
    "experiments.main",
    "experiments.fooling.main",
    "experiments.fooling.tune",
    "experiments.sanity.main",
    "experiments.pointing.main",
    "experiments.trust.main",
    "experiments.trust.tune",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_parses(name, capsys):
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--workdir" in out and "--models" in out


def test_console_scripts_resolve():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    scripts = project["project"]["scripts"]
    assert {"jaxsal-convert", "jaxsal-fooling", "jaxsal-sanity", "jaxsal-pointing",
            "jaxsal-trust"} <= set(scripts)  # fmt: skip
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_tuning_refuses_seeds():
    """Tuning trains seed 0 only: --seeds is refused, not silently ignored."""
    from experiments.trust.tune import main

    with pytest.raises(SystemExit, match="--seeds does not apply to tuning"):
        main(["--seeds", "3", "--no-compile-cache"])
