"""The README's Python blocks run, and what it points to exists.

Every ```python block of README.md runs, each in a fresh namespace and a
temporary working directory, except the blocks right after a line
`<!-- not run: REASON -->` (those that need a torchvision model, a .pth file
or a converted checkpoint); signatures are shown in fences without a
language and are not run. The quick start must write its PNG. The blocks run
under this suite's settings (tests/conftest.py: float64 enabled, rank
promotion raising, 8 CPU devices), so they create float32 arrays explicitly,
and the training block's batch of 8 splits over the 8 devices.

The blocks' models are created with `JAXSAL_CONV=xla` (the default backend
of new models, read by `jaxsal.init` and `jaxsal.wrap`): XLA's convolution
compiles ResNet18 about twice as fast as the CPU default ("matmul"), which
keeps this file under a minute on two shared cores. With the default
backend and JAX's default 32-bit mode, the blocks were run as they stand to
draw docs/quickstart_overlay.png.

The links and `python -m` modules the README names must exist, and the
flags it lists for each command must be in that command's `--help`, so that a
renamed module, page or flag shows up here rather than in a reader's shell.
"""

from __future__ import annotations

import importlib.util
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*not run:\s*(?P<reason>.+?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
QUICKSTART_PNG = "quickstart_overlay.png"


def python_blocks() -> list[tuple[str, str, str | None]]:
    """(heading above the block, code, skip reason or None) of every ```python block."""
    lines = README.read_text().splitlines()
    blocks, heading, skip, i = [], "", None, 0
    while i < len(lines):
        line = lines[i]
        if m := FENCE.match(line):
            end = i + 1
            while not lines[end].startswith("```"):
                end += 1
            if m.group("lang") == "python":
                blocks.append((heading, "\n".join(lines[i + 1 : end]), skip))
            skip, i = None, end + 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if m := SKIP.search(line):
            skip = m.group("reason")
        elif line.strip():
            skip = None  # a marker applies to the block right after it only
        i += 1
    return blocks


BLOCKS = python_blocks()
RUN = [(h, code) for h, code, skip in BLOCKS if skip is None]
IDS = [f"{i}-{re.sub(r'[^a-z0-9]+', '-', h.lower()).strip('-')}" for i, (h, _) in enumerate(RUN)]


def test_the_readme_has_the_blocks_this_file_expects():
    assert len(RUN) >= 6, [h for h, _ in RUN]
    assert any(QUICKSTART_PNG in code for _, code in RUN), "the quick start is not run"
    skipped = [(h, s) for h, _, s in BLOCKS if s is not None]
    assert all(reason for _, reason in skipped)
    # Only blocks that need files this repository does not hold may be left out.
    for _, code, reason in BLOCKS:
        if reason is None:
            assert ".pth" not in code and "state_dict" not in code, code


@pytest.mark.parametrize("code", [code for _, code in RUN], ids=IDS)
def test_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JAXSAL_CONV", "xla")
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    if QUICKSTART_PNG in code:
        png = tmp_path / QUICKSTART_PNG
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image

        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > image.shape[0], image.shape


def test_links_and_modules_exist(monkeypatch):
    text = README.read_text()
    links = re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", text)
    assert "docs/quickstart_overlay.png" in links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
    monkeypatch.syspath_prepend(str(ROOT))
    modules = sorted(set(re.findall(r"python -m ([A-Za-z_][\w.]*)", text)))
    assert {"experiments.main", "experiments.sanity", "benchmarks.throughput"} <= set(modules)
    unknown = [m for m in modules if importlib.util.find_spec(m) is None]
    assert not unknown, unknown


def help_text(module: str, capsys, monkeypatch) -> str:
    """`python -m module --help`, run in this process (no new interpreter to start)."""
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def studies_table() -> list[tuple[list[str], list[str]]]:
    """(modules, flags) of each row of the README's table of studies."""
    text = README.read_text()
    table = text[text.index("| study | command |") :].split("\n\n")[0]
    rows = []
    for row in table.splitlines()[2:]:
        modules = re.findall(r"python -m ([A-Za-z_][\w.]*)", row)
        rows.append((modules, re.findall(r"(--[a-z][a-z-]*)", row)))
    return rows


def test_study_flags_exist(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    text = README.read_text()
    common = re.findall(r"(--[a-z][a-z-]*)", text[text.index("Every study command takes") :]
                        .split("\n\n")[0])  # fmt: skip
    assert {"--workdir", "--models", "--quick", "--seeds"} <= set(common)
    rows = studies_table()
    assert len(rows) == 5 and all(modules for modules, _ in rows)
    for modules, flags in rows:
        helps = {m: help_text(m, capsys, monkeypatch) for m in modules}
        for flag in flags:
            assert any(re.search(rf"{flag}\b", h) for h in helps.values()), (modules, flag)
        for m in modules:
            if m.startswith("experiments."):
                missing = [f for f in common if not re.search(rf"{f}\b", helps[m])]
                assert not missing, (m, missing)
