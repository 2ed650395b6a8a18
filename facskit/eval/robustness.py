"""Robustness to landmark error: ICC against Gaussian landmark noise before alignment (BMVC'18, sec. 5.3).

The BMVC'18 paper perturbs the landmarks that drive the 3-point alignment with Gaussian noise of growing
sigma, re-aligns, and plots ICC against sigma: the Hourglass stays stable up to about 13 px. A prepared
cache holds aligned 256 crops and their landmarks in crop pixels, so the same experiment runs on the crop:

1. add ``sigma * z`` to the crop landmarks (``z`` standard normal, drawn once per frame from
   ``(seed, frame)`` and scaled by each sigma: common random numbers, so the curve is smooth and a larger
   sigma is the same error made larger);
2. recompute the alignment (the model's ``AlignSpec``: BMVC 3-point affine of landmarks 8, 36, 45 onto the
   template, or the similarity) from the noisy landmarks, i.e. the crop -> new-crop transform that the
   noisy landmarks would have produced;
3. warp the crop with it (``cv2.warpAffine``, the alignment's own interpolation and black border) and run
   the model; the AU labels are unchanged.

Sigma is in pixels of a 256 crop (the paper's unit) and scales with the crop size. Sigma 0 evaluates the
crops as they are, so its row equals ``facskit evaluate`` on the same frames. One difference from the
paper: warping an already aligned crop loses what lies outside it (black corners appear for large sigma)
where re-aligning the original frame would not; at the sigmas of the figure (<= 20 px) the face stays inside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from facskit.align import AlignSpec, alignment_matrix
from facskit.aus import OCCURRENCE_THRESHOLD
from facskit.errors import UsageError
from facskit.eval.evaluate import Split, load_evaluation, metrics_from_predictions, write_json
from facskit.eval.predict import CropTransform, predict_cache

__all__ = [
    "DEFAULT_NOISE",
    "NoisyRealignment",
    "RobustnessResult",
    "plot_robustness",
    "robustness",
    "robustness_markdown",
    "write_robustness",
]

DEFAULT_NOISE: tuple[float, ...] = (0.0, 3.0, 6.0, 9.0, 13.0, 20.0)  # px of a 256 crop, as the paper's axis
REFERENCE_CROP = 256


@dataclass(frozen=True)
class NoisyRealignment:
    """A :data:`CropTransform`: re-align a crop from landmarks with Gaussian noise of ``sigma`` pixels."""

    sigma: float  # standard deviation in pixels of a 256 crop
    kind: str = "bmvc"  # the model's alignment kind
    seed: int = 0

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, item: int) -> np.ndarray:
        if self.sigma == 0:
            return image
        size = image.shape[0]
        z = np.random.default_rng([self.seed, int(item)]).standard_normal((68, 2))  # (68, 2)
        noisy = landmarks.astype(np.float64) + self.sigma * (size / REFERENCE_CROP) * z
        matrix = alignment_matrix(noisy, AlignSpec(self.kind, size))  # crop -> re-aligned crop
        return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size))


@dataclass
class RobustnessResult:
    """ICC (and the other metrics) per noise level: ``table`` has one row per sigma."""

    table: pd.DataFrame  # columns: sigma, AUxx (ICC per AU), mean_icc, mean_mae, mean_pcc, mean_f1
    metrics: dict[str, Any]  # the JSON document: protocol and the full metrics per sigma


def _check_noise(noise: Sequence[float]) -> list[float]:
    levels = [float(s) for s in noise]
    if not levels:
        raise UsageError("give at least one noise level (e.g. --noise 0,3,6,9,13,20)")
    bad = [s for s in levels if not math.isfinite(s) or s < 0]
    if bad:
        raise UsageError(f"noise levels must be finite and >= 0 pixels, got {bad}")
    return levels


def robustness(
    model_path: str | Path,
    cache: Any,
    noise: Sequence[float] = DEFAULT_NOISE,
    *,
    seed: int = 0,
    split: Split = "test",
    fold: int | None = None,
    folds: int | None = None,
    threshold: float = OCCURRENCE_THRESHOLD,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 0,
) -> RobustnessResult:
    """Evaluate a run or checkpoint on ``cache`` once per noise level (module docstring).

    Frames are chosen as :func:`facskit.eval.evaluate.evaluate` chooses them (the run's held-out fold by
    default), so the sigma-0 row reproduces its numbers.
    """
    levels = _check_noise(noise)
    job = load_evaluation(model_path, cache, split=split, fold=fold, folds=folds)
    kind = job.model.spec.alignment
    per_sigma = []
    rows = []
    for sigma in levels:
        transform: CropTransform = NoisyRealignment(sigma, kind, seed)
        predictions = predict_cache(
            job.model, job.frames, batch_size=batch_size, device=device, workers=workers, transform=transform
        )
        metrics = metrics_from_predictions(predictions, threshold=threshold)
        per_sigma.append({"sigma": sigma, **metrics})
        row: dict[str, Any] = {"sigma": sigma}
        row.update({name: values["icc"] for name, values in metrics["per_au"].items()})
        row.update({f"mean_{key}": value for key, value in metrics["mean"].items()})
        rows.append(row)
    table = pd.DataFrame(rows).astype(float)
    document = {
        "protocol": {**job.describe(), "noise_px_256": levels, "seed": seed, "alignment": kind},
        "levels": per_sigma,
    }
    return RobustnessResult(table=table, metrics=document)


def robustness_markdown(result: RobustnessResult) -> str:
    """ICC per AU (columns) for each noise level (rows), Mean ICC last, as the paper's figure in numbers."""
    table = result.table
    aus = [c for c in table.columns if c.startswith("AU")]
    lines = [
        "| sigma (px) | " + " | ".join(aus) + " | Mean ICC | Mean MAE |",
        "|---:|" + "---:|" * (len(aus) + 2),
    ]
    for _, row in table.iterrows():
        cells = ["-" if pd.isna(row[c]) else f"{row[c]:.2f}" for c in [*aus, "mean_icc", "mean_mae"]]
        lines.append(f"| {row['sigma']:g} | " + " | ".join(cells) + " |")
    protocol = result.metrics["protocol"]
    lines += [
        "",
        f"Gaussian noise on the crop landmarks before {protocol['alignment']} re-alignment; sigma in px of a "
        f"256 crop; {protocol['held_out']}; seed {protocol['seed']}.",
    ]
    return "\n".join(lines) + "\n"


def plot_robustness(result: RobustnessResult, path: str | Path, title: str | None = None) -> Path:
    """ICC against landmark noise: one thin line per AU and the mean in bold (PNG/SVG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facskit.io.figures import write_figure

    table = result.table
    aus = [c for c in table.columns if c.startswith("AU")]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name in aus:
        ax.plot(table["sigma"], table[name], marker="o", markersize=3, linewidth=1, alpha=0.8, label=name)
    ax.plot(table["sigma"], table["mean_icc"], marker="s", color="black", linewidth=2.5, label="Mean")
    ax.set_xlabel("landmark noise sigma (px, 256 crop)")
    ax.set_ylabel("ICC(3,1)")
    ax.set_title(title or f"Robustness to landmark noise ({result.metrics['protocol']['model']})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(aus) > 6 else 1, loc="best")
    fig.tight_layout()
    path = write_figure(fig, path)
    plt.close(fig)
    return path


def write_robustness(result: RobustnessResult, out: str | Path) -> dict[str, Path]:
    """``robustness.json``, ``robustness.csv``, ``robustness.md`` and ``robustness.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(result.metrics, out / "robustness.json"),
        "csv": out / "robustness.csv",
        "markdown": out / "robustness.md",
        "plot": plot_robustness(result, out / "robustness.png"),
    }
    result.table.to_csv(paths["csv"], index=False)
    paths["markdown"].write_text(robustness_markdown(result))
    return paths
