"""Figures out: one atomic writer for every matplotlib figure facskit saves (analysis plots, evaluation and
robustness charts), so that no layer has to reach up into :mod:`facskit.analyze` to save a chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from facskit.io.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def write_figure(fig: Figure, path: str | Path, dpi: float | str = "figure") -> Path:
    """Save ``fig`` to ``path`` atomically, creating its folder; the format is the suffix's (PNG without
    one) and ``dpi="figure"`` keeps the figure's own resolution."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi), parents=True)


__all__ = ["write_figure"]
