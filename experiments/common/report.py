"""Report pieces: Markdown tables and figures saved through `jaxsal.viz`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(fig, path: str | Path) -> Path:
    """Writes a matplotlib figure to PNG (never over an existing file; see `jaxsal.viz.save`)."""
    from jaxsal import viz

    return viz.save(fig, path)
