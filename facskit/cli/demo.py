"""``facskit demo``: the first thing a new user runs; it needs no data and no download.

It runs the face front end on the bundled sample (a real face from a Pexels stock video): detection,
68 landmarks, head pose and the BMVC'18 alignment, and writes an annotated picture of the frame beside the
aligned crop with every registry AU's two points, so a user sees at once what facskit measures and where.
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("facskit-demo"), help="output folder")
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
    if not args.quiet:
        for face in faces:
            pose = face.pose
            print(
                f"face {face.face_id}: box {tuple(round(v) for v in face.box)}, "
                f"yaw {pose.yaw:+.1f} pitch {pose.pitch:+.1f} roll {pose.roll:+.1f} degrees"
            )
        print(f"{len(faces)} face(s) found in the bundled sample; annotated picture:")
    print(target)
    return 0
