"""Fit the teacher's blendshape -> AU intensity maps, and measure them on renders of known intensity.

Each AU's map is linear between two anchors, both measured rather than chosen:

* **zero**: the teacher's 95th percentile on real neutral faces (``--neutral``: a teach cache of neutral
  portraits, e.g. the London and Canada sets' neutral photos). A coefficient at or below what a neutral
  face produces reads as intensity 0, which removes the teacher's noise floor (eyeBlink reads 0.1-0.3 on
  open eyes, browDown up to 0.4 on neutral brows).
* **five**: the coefficient's full scale, read as intensity 5 (FACS E, maximum): 1.0 for a blendshape
  (ARKit's definition of the extreme pose); for the lips' gap, 0.25 of the eye-corner distance, the widest
  opening measured on the real training faces (maximum 0.27, 99th percentile 0.20 over 1,475 faces).

Why not fit the scale on synthetic renders alone (``--textures`` renders, known intensities): the teacher
reads them with weaker coefficients than real faces (a strong synthetic blink gives eyeBlink 0.21, a real
one 0.6-0.9), so a regression or quantile match on them maps real faces' ordinary readings to 4-5 (every
smiling face's narrowed eyes would read as a blink). The renders still measure the maps: the report gives,
per AU, the agreement of the raw coefficient, of the chosen map and of a quantile match fitted on the
renders themselves (their best case), with known intensities.

    facskit synth --out tex --format folder --subjects 24 --frames 50 --seed 11 --activity 2.5 --textures T
    facskit teach tex/media --out tex_teach        # any map; the raw coefficients are in the cache
    facskit teach NEUTRAL_PHOTOS --out neutral_teach
    python tools/fit_teacher_map.py --neutral neutral_teach --cache tex_teach --labels tex/labels.csv \
        --out facskit/teacher/au_map.json --report benchmarks/results/teacher_map.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from facskit.aus import au_column
from facskit.metrics import pcc
from facskit.teacher.au_map import (
    AU_SOURCES,
    LIPS_APART,
    MAX_INTENSITY,
    AUMap,
    MonotoneMap,
    table_coefficients,
)

QUANTILES = np.linspace(0.0, 1.0, 41)
NEUTRAL_QUANTILE = 0.95
FULL_SCALE = {LIPS_APART: 0.25}  # coefficient read as intensity 5; 1.0 for every blendshape


def quantile_map(x: np.ndarray, y: np.ndarray) -> MonotoneMap:
    """Knots (x quantile, y quantile); equal x quantiles keep their largest y, so x strictly increases."""
    xq, yq = np.quantile(x, QUANTILES), np.clip(np.quantile(y, QUANTILES), 0.0, MAX_INTENSITY)
    knots: dict[float, float] = {}
    for a, b in zip(np.round(xq, 5), np.round(yq, 4), strict=True):
        knots[float(a)] = max(knots.get(float(a), 0.0), float(b))
    xs = sorted(knots)
    ys = np.maximum.accumulate([knots[a] for a in xs])
    if len(xs) == 1:
        xs, ys = [xs[0], xs[0] + 1e-3], [ys[0], ys[0]]
    return MonotoneMap(tuple(xs), tuple(float(v) for v in ys))


def anchored_map(neutral: np.ndarray, names: tuple[str, ...]) -> MonotoneMap:
    """0 up to the neutral faces' NEUTRAL_QUANTILE, then linear to 5 at the coefficient's full scale."""
    top = max(FULL_SCALE.get(name, 1.0) for name in names)
    zero = float(np.round(np.quantile(neutral, NEUTRAL_QUANTILE), 4))
    if zero <= 0:
        return MonotoneMap((0.0, top), (0.0, MAX_INTENSITY))
    return MonotoneMap((0.0, zero, max(top, zero + 1e-3)), (0.0, 0.0, MAX_INTENSITY))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--neutral", required=True, help="facskit teach cache of real neutral faces")
    parser.add_argument("--cache", required=True, help="facskit teach cache of the textured renders")
    parser.add_argument("--labels", required=True, help="the renders' labels.csv (folder layout)")
    parser.add_argument("--out", required=True, help="au_map.json to write")
    parser.add_argument("--report", help="Markdown table of the agreement per AU")
    args = parser.parse_args()

    from sklearn.isotonic import IsotonicRegression

    neutral = pd.read_parquet(Path(args.neutral) / "index.parquet")
    neutral = neutral[neutral["skip_reason"] == ""]
    index = pd.read_parquet(Path(args.cache) / "index.parquet")
    index = index[index["skip_reason"] == ""].copy()
    index["key"] = index["source"].map(lambda s: Path(s).name) + ":" + index["frame"].astype(str)
    labels = pd.read_csv(args.labels)
    labels["key"] = labels["file"].map(lambda s: Path(s).name) + ":" + labels["frame"].astype(str)
    # One face per render; keep the largest (face_id order is left to right, the render has one person).
    index = index.drop_duplicates("key")
    joined = index.merge(labels, on="key", suffixes=("", "_truth"))
    maps, lines = {}, []
    for au, names in sorted(AU_SOURCES.items()):
        truth_column = au_column(au) + "_truth"
        if truth_column not in joined:
            continue
        x, y = table_coefficients(joined, names), joined[truth_column].to_numpy(dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        maps[au] = anchored_map(table_coefficients(neutral, names), names)
        mapped, matched = maps[au](x), quantile_map(x, y)(x)
        iso = IsotonicRegression(y_min=0, y_max=MAX_INTENSITY, out_of_bounds="clip").fit(x, y).predict(x)
        zero = maps[au].x[-2] if len(maps[au].x) == 3 else 0.0
        lines.append(
            f"| AU{au:02d} | {' + '.join(names)} | {zero:.3f} | {(y > 0).mean():.2f} | {pcc(x, y):.2f} | "
            f"{pcc(mapped, y):.2f} | {np.abs(mapped - y).mean():.2f} | "
            f"{mapped.mean():.2f} / {y.mean():.2f} | "
            f"{pcc(matched, y):.2f} / {np.abs(matched - y).mean():.2f} | "
            f"{pcc(iso, y):.2f} / {np.abs(iso - y).mean():.2f} |"
        )
    about = (
        "facskit teacher map: MediaPipe blendshape coefficient -> FACS intensity, per AU: 0 up to the "
        f"{NEUTRAL_QUANTILE:.0%} quantile on {len(neutral)} real neutral faces, linear to 5 at full scale; "
        "fitted by tools/fit_teacher_map.py"
    )
    Path(args.out).write_text(json.dumps({"about": about, "maps": AUMap(maps).to_json()}, indent=1) + "\n")
    table = [
        f"Agreement with known intensities on {len(joined)} textured synthetic renders (the AU's frames).",
        "",
        "| AU | coefficient | zero at | active | PCC raw | PCC map | MAE map | mean map / truth "
        "| quantile match PCC / MAE | isotonic PCC / MAE |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
        *lines,
    ]
    print("\n".join(table))
    if args.report:
        Path(args.report).write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
