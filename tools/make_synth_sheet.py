"""Draw docs/synth.png: one synthetic identity per row, an AU at intensity 0..5 across.

Run: python tools/make_synth_sheet.py [--out docs/synth.png] [--cell 160]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facskit.synth import FaceRenderer, Pose, Scene, sample_identity

# (AU code, identity seed, yaw): one row each; several AUs so each cue can be checked by eye.
ROWS = (
    (1, 1, 0.0),
    (2, 2, 0.0),
    (4, 3, 0.0),
    (5, 4, 0.0),
    (6, 5, 10.0),
    (9, 6, 0.0),
    (10, 7, 0.0),
    (12, 8, -10.0),
    (15, 9, 0.0),
    (17, 10, 0.0),
    (20, 11, 0.0),
    (25, 12, 0.0),
    (26, 13, 0.0),
    (45, 14, 0.0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/synth.png"))
    parser.add_argument("--cell", type=int, default=150, help="cell side in pixels")
    args = parser.parse_args()
    renderer = FaceRenderer(256)
    rows = []
    for code, seed, yaw in ROWS:
        identity = sample_identity(np.random.default_rng(seed), seed)
        scene = Scene(seed, (0.3, -0.35, 0.89), 0.5, 0.6, (1.0, 1.0, 1.0), 1.0, 0.0, (70.0, 90.0, 120.0))
        cells = []
        for intensity in range(6):
            image, _ = renderer.render(
                identity, {code: float(intensity)}, Pose(yaw=yaw, scale=1.15), np.random.default_rng(0), scene
            )
            crop = cv2.resize(image[30:246, 20:236], (args.cell, args.cell), interpolation=cv2.INTER_AREA)
            cv2.putText(
                crop,
                f"AU{code} {intensity}",
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
            cells.append(crop)
        rows.append(np.hstack(cells))
    sheet = np.vstack(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
