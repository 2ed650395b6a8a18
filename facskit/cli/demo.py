"""``facskit demo``: the first thing a new user runs; it needs no data and no download.

On the bundled samples (a real face from a Pexels stock video: a 6-second clip and one frame of it) it runs
the whole analysis job with the shipped default model, exactly as the CLI does: faces, landmarks, head pose
and alignment (an annotated picture with every AU's two points), per-frame AU intensities (CSV), plots, an
overlay video with the heatmaps on the face, and the HTML report; then it prints where each one is.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from facskit.faces import TrackedFace

ASSETS = "facskit.assets"
SAMPLE_IMAGE = "sample_face.jpg"
SAMPLE_VIDEO = "sample_clip.mp4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("facskit-demo"), metavar="DIR", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="print only the paths written")


def sample_path(name: str) -> Path:
    """Path of a bundled sample file (a real file: wheels install package data unzipped)."""
    return Path(str(resources.files(ASSETS).joinpath(name)))


def annotated_faces_picture(image: np.ndarray, faces: list[TrackedFace], crop_size: int = 256) -> np.ndarray:
    """The frame with boxes, landmarks and pose, and beside it each aligned crop with the AU points.

    Returns an (H, W', 3) uint8 RGB image; the crops are scaled to the frame's height.
    """
    import cv2
    import numpy as np

    from facskit.align import AlignSpec, align_face
    from facskit.aus import AUS, au_points, draw_au_points

    frame = image.copy()
    panels = []
    codes = tuple(AUS)
    for face in faces:
        x, y, w, h = (int(round(v)) for v in face.box)
        cv2.rectangle(frame, (x, y), (x + w, y + h), (80, 220, 80), 2)
        for px, py in face.landmarks:
            cv2.circle(frame, (int(round(px)), int(round(py))), 2, (255, 230, 60), -1)
        pose = face.pose
        label = f"id {face.face_id}  yaw {pose.yaw:+.0f} pitch {pose.pitch:+.0f} roll {pose.roll:+.0f}"
        cv2.putText(frame, label, (x, max(14, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        aligned = align_face(image, face.landmarks, AlignSpec("bmvc", crop_size))
        crop = draw_au_points(aligned.crop, au_points(aligned.landmarks, codes), codes)
        panels.append(cv2.resize(crop, (frame.shape[0], frame.shape[0]), interpolation=cv2.INTER_LINEAR))
    return np.hstack([frame, *panels]) if panels else frame


def run(args: argparse.Namespace) -> int:
    import cv2

    from facskit.faces import FaceDetector, LandmarkPredictor, faces_in_image
    from facskit.io import read_image

    args.out.mkdir(parents=True, exist_ok=True)
    image = read_image(sample_path(SAMPLE_IMAGE))
    faces = [face for face in faces_in_image(image, FaceDetector(), LandmarkPredictor()) if face.success]
    picture = annotated_faces_picture(image, faces)
    target = args.out / "faces_and_au_points.png"
    temporary = target.with_suffix(".tmp.png")
    cv2.imwrite(str(temporary), picture[:, :, ::-1])
    temporary.replace(target)
    analysis = _analyse_samples(args.out, quiet=args.quiet)
    if not args.quiet:
        for face in faces:
            pose = face.pose
            print(
                f"face {face.face_id}: box {tuple(round(v) for v in face.box)}, "
                f"yaw {pose.yaw:+.1f} pitch {pose.pitch:+.1f} roll {pose.roll:+.1f} degrees"
            )
        print(f"{len(faces)} face(s) found in the bundled sample; annotated picture:")
    print(target)
    for label, path in analysis.items():
        print(f"{label}: {path}" if not args.quiet else path)
    return 0


def _analyse_samples(out: Path, quiet: bool) -> dict[str, Path]:
    """`facskit analyze`, `plot` and `report` on the bundled clip and image, through the CLI itself."""
    from facskit.cli import main
    from facskit.errors import FacskitError

    analysis = out / "analysis"
    clip, image = sample_path(SAMPLE_VIDEO), sample_path(SAMPLE_IMAGE)
    steps = [
        ["analyze", str(clip), str(image), "--out", str(analysis), "--overlay-video", "--quiet"],
        ["plot", str(analysis / "sample_clip.csv"), "--out", str(out / "plots")],
        ["report", str(analysis), "--out", str(out / "report.html")],
    ]
    for step in steps:
        if main(step) != 0:
            raise FacskitError(f"demo step `facskit {' '.join(step[:1])}` failed (see the message above)")
    return {
        "AU intensities per frame (CSV)": analysis / "sample_clip.csv",
        "summary per face": analysis / "summary.csv",
        "overlay video": analysis / "sample_clip.overlay.mp4",
        "plots": out / "plots",
        "HTML report": out / "report.html",
    }
