"""The real-face pictures of docs/model_card.md: overlays of two models on the same real faces.

For a frame of the bundled laughing clip (Pexels licence) and two held-out London Set pairs (CC BY 4.0,
attributed in docs/model_card.md), each model's
``facskit analyze --overlay-video`` frame (heatmaps of the chosen AUs, intensity bars) is put side by side,
previous model on the left, new on the right, and written as one PNG per scene.

    python tools/make_realface_figures.py --old old.ckpt --new facskit/weights/default.ckpt --out docs/img
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
LONDON = SHARED / "realfaces" / "webmorphR.stim"
# (name, media, frame of the overlay video to show). Only media whose licence allows a derived picture in
# the repo: ../shared/media/multi_face.jpg has none recorded, so the group photo is measured, not drawn.
SCENES = [
    ("realface_laugh", REPO / "facskit" / "assets" / "sample_clip.mp4", 90),
    ("realface_london_001_neutral", LONDON / "london_neutral" / "001_03.jpg", 0),
    ("realface_london_001_smiling", LONDON / "london_smiling" / "001_08.jpg", 0),
    ("realface_london_004_neutral", LONDON / "london_neutral" / "004_03.jpg", 0),
    ("realface_london_004_smiling", LONDON / "london_smiling" / "004_08.jpg", 0),
]
AUS = "6,12,25"


def overlay_frame(model: str, media: Path, frame: int, work: Path) -> np.ndarray:
    out = work / Path(model).stem / media.stem
    subprocess.run(
        [sys.executable, "-m", "facskit", "analyze", str(media), "--model", model, "--out", str(out),
         "--overlay-video", "--overlay-aus", AUS, "--quiet"],
        check=True,
    )  # fmt: skip
    video = next(out.glob("*.overlay.mp4"))
    with av.open(str(video)) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if index == frame:
                return decoded.to_ndarray(format="rgb24")
    raise RuntimeError(f"{video} has no frame {frame}")


def side_by_side(left: np.ndarray, right: np.ndarray, labels: tuple[str, str]) -> Image.Image:
    height = max(left.shape[0], right.shape[0])
    canvas = Image.new("RGB", (left.shape[1] + right.shape[1] + 8, height + 24), "white")
    for x, (image, label) in zip(
        (0, left.shape[1] + 8), ((left, labels[0]), (right, labels[1])), strict=True
    ):
        canvas.paste(Image.fromarray(image), (x, 24))
        ImageDraw.Draw(canvas).text((x + 4, 4), label, fill="black")
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="previous model checkpoint (left)")
    parser.add_argument("--new", required=True, help="new model checkpoint (right)")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, media, frame in SCENES:
            if not media.is_file():
                print(f"skipped {name}: {media} is absent", file=sys.stderr)
                continue
            old = overlay_frame(args.old, media, frame, Path(tmp) / "old")
            new = overlay_frame(args.new, media, frame, Path(tmp) / "new")
            image = side_by_side(old, new, ("previous default (synthetic only)", "new default"))
            image.thumbnail((1400, 1400))
            image.save(out / f"{name}.png", optimize=True)
            print(f"wrote {out / f'{name}.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
