"""Figures of an analysis result, ready for a paper: time series, distributions, co-occurrence, overlay.

Figures are built with :class:`matplotlib.figure.Figure` directly (never pyplot), so nothing depends on a
display or on global state, and saving renders with Agg (PNG) or the SVG backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from facskit.analyze.schema import aus_from_columns, occurrence_column
from facskit.aus import MAX_INTENSITY, au_column
from facskit.errors import UsageError
from facskit.io.figures import write_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

MAX_PANELS = 12  # time-series panels per figure (file x face); more faces go to further calls
PLOT_FORMATS = ("png", "svg")
DPI = 150
INTENSITY_RANGE = (0.0, MAX_INTENSITY)


def _faces(result: pd.DataFrame) -> pd.DataFrame:
    return result[result["face_detected"].astype(bool)]


def _aus(result: pd.DataFrame, aus: Sequence[int] | None) -> tuple[int, ...]:
    available = aus_from_columns(result.columns)
    if aus is None:
        return available
    missing = [a for a in aus if a not in available]
    if missing:
        raise UsageError(f"the result has no AU {missing}; it has {list(available)}")
    return tuple(aus)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_timeseries(
    result: pd.DataFrame, face_id: int | None = None, aus: Sequence[int] | None = None
) -> Figure:
    """AU intensity over time: one panel per (file, face), one line per AU; x is seconds when the source has
    timestamps. Frames without the face are gaps in the lines, not zeros."""
    codes = _aus(result, aus)
    faces = _faces(result)
    if face_id is not None:
        faces = faces[faces["face_id"] == face_id]
    groups = list(faces.groupby(["file", "face_id"], sort=True, observed=True))[:MAX_PANELS]
    fig = _figure(10, 2.2 * max(1, len(groups)) + 0.6)
    if not groups:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no face detected", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(len(groups), 1, sharex=False, squeeze=False)[:, 0]
    for ax, ((file, fid), group) in zip(axes, groups, strict=True):
        # Reindex on every frame of the file so frames without the face break the line.
        frames = (
            result[result["file"] == file][["frame", "timestamp"]].drop_duplicates("frame").set_index("frame")
        )
        group = group.drop_duplicates("frame").set_index("frame").reindex(frames.index)
        x = frames["timestamp"].to_numpy()
        for code in codes:
            ax.plot(x, group[au_column(code)].to_numpy(dtype=float), label=au_column(code), linewidth=1.2)
        ax.set_ylim(*INTENSITY_RANGE)
        ax.set_ylabel("intensity")
        ax.set_title(f"{Path(str(file)).name} - face {int(fid)}", fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    axes[0].legend(ncol=min(len(codes), 8), fontsize=8, loc="upper right")
    return fig


def plot_distribution(result: pd.DataFrame, aus: Sequence[int] | None = None) -> Figure:
    """Intensity distribution per AU over all detected faces (box plots with the occurrence rate above)."""
    codes = _aus(result, aus)
    faces = _faces(result)
    fig = _figure(max(5, 0.8 * len(codes) + 2), 3.6)
    ax = fig.add_subplot()
    data = [faces[au_column(c)].dropna().to_numpy(dtype=float) for c in codes]
    if any(len(d) for d in data):
        ax.boxplot([d if len(d) else [np.nan] for d in data], tick_labels=[au_column(c) for c in codes])
        for n, code in enumerate(codes, start=1):
            rate = faces[occurrence_column(code)].astype("float64").mean() if len(faces) else np.nan
            if np.isfinite(rate):
                ax.text(n, INTENSITY_RANGE[1] - 0.2, f"{100 * rate:.0f}%", ha="center", va="top", fontsize=8)
    ax.set_ylim(*INTENSITY_RANGE)
    ax.set_ylabel("intensity (0-5)")
    ax.set_title("Intensity distribution (% frames active above)", fontsize=10)
    return fig


def cooccurrence(result: pd.DataFrame, aus: Sequence[int] | None = None) -> pd.DataFrame:
    """``P(column AU active | row AU active)`` over detected faces (diagonal = 1 where the AU occurs)."""
    codes = _aus(result, aus)
    active = (
        _faces(result)[[occurrence_column(c) for c in codes]].fillna(False).to_numpy(dtype=float)
    )  # (N, A)
    counts = active.T @ active  # (A, A)
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = counts / np.diag(counts)[:, None]
    names = [au_column(c) for c in codes]
    return pd.DataFrame(conditional, index=names, columns=names)


def plot_cooccurrence(result: pd.DataFrame, aus: Sequence[int] | None = None) -> Figure:
    """Heatmap of :func:`cooccurrence`."""
    table = cooccurrence(result, aus)
    size = max(4.0, 0.55 * len(table) + 2)
    fig = _figure(size, size * 0.85)
    ax = fig.add_subplot()
    image = ax.imshow(table.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(table)), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(table)), table.index)
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if np.isfinite(value):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value < 0.6 else "k"
            )
    ax.set_xlabel("AU j")
    ax.set_ylabel("given AU i active")
    ax.set_title("P(AU j active | AU i active)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_overlay(
    result: pd.DataFrame, frame: int, file: str | None = None, image: np.ndarray | None = None
) -> Figure:
    """One frame with each face's box, landmarks and AU points sized and coloured by intensity, and bars.

    AU points are the landmark-defined locations of :mod:`facskit.aus` (where the model's heatmaps peak);
    the network itself is not re-run. The image is decoded again from ``file`` unless given.
    """
    from facskit.aus import au_points

    files = result["file"].unique()
    if file is None:
        if len(files) != 1:
            raise UsageError(f"the result holds {len(files)} files; name one with file=")
        file = str(files[0])
    rows = result[(result["file"] == file) & (result["frame"] == frame)]
    if rows.empty:
        raise UsageError(f"frame {frame} of {file} is not in the result")
    if image is None:
        image = read_frame(file, frame)
    codes = aus_from_columns(result.columns)
    faces = rows[rows["face_detected"].astype(bool)]
    fig = _figure(11, 4.5)
    grid = fig.add_gridspec(1, 3)
    ax = fig.add_subplot(grid[0, :2])
    ax.imshow(image)
    ax.set_axis_off()
    ax.set_title(f"{Path(file).name} frame {frame}", fontsize=10)
    bars = fig.add_subplot(grid[0, 2])
    width = 0.8 / max(1, len(faces))
    for n, (_, row) in enumerate(faces.iterrows()):
        from matplotlib.patches import Rectangle

        ax.add_patch(
            Rectangle((row["x"], row["y"]), row["w"], row["h"], fill=False, color="lime", linewidth=1.5)
        )
        landmarks = np.stack(
            [
                row[[f"x_{k}" for k in range(68)]].to_numpy(float),
                row[[f"y_{k}" for k in range(68)]].to_numpy(float),
            ],
            axis=1,
        )  # (68, 2)
        ax.scatter(landmarks[:, 0], landmarks[:, 1], s=2, c="cyan")
        values = row[[au_column(c) for c in codes]].to_numpy(float)
        points = au_points(landmarks, codes)  # (A, 2, 2)
        for a in range(len(codes)):
            ax.scatter(points[a, :, 0], points[a, :, 1], s=20 + 40 * values[a], c=[[1.0, 0.3, 0.0, 0.8]])
        bars.barh(
            np.arange(len(codes)) + n * width, values, height=width, label=f"face {int(row['face_id'])}"
        )
    bars.set_yticks(np.arange(len(codes)) + 0.4 - width / 2, [au_column(c) for c in codes])
    bars.set_xlim(*INTENSITY_RANGE)
    bars.set_xlabel("intensity")
    if len(faces) > 1:
        bars.legend(fontsize=8)
    if faces.empty:
        bars.text(2.5, len(codes) / 2, "no face", ha="center")
    return fig


def read_frame(file: str, index: int) -> np.ndarray:
    """Frame ``index`` of ``file`` decoded again (RGB uint8), for overlays drawn after the analysis."""
    from facskit.io import iter_frames

    for frame in iter_frames(file):
        if frame.index == index:
            return frame.image
        if frame.index > index:
            break
    raise UsageError(f"{file} has no frame {index}")


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = PLOT_FORMATS) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` (atomically); returns the paths."""
    return [write_figure(fig, stem.with_name(f"{stem.name}.{fmt}"), DPI) for fmt in formats]


def save_plots(result: pd.DataFrame, out_dir: Path, prefix: str = "") -> list[Path]:
    """The standard figures of a result into ``out_dir``: time series, distribution, co-occurrence."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, fig in (
        ("timeseries", plot_timeseries(result)),
        ("distribution", plot_distribution(result)),
        ("cooccurrence", plot_cooccurrence(result)),
    ):
        paths += save_figure(fig, out_dir / f"{prefix}{name}")
    return paths
