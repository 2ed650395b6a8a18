"""The per-face table: one row per face per frame, and one row with face_detected=False for a frame
without a face (never a gap). Defined once here; `facskit faces` writes it and the analyze module
extends it with AU columns."""

from __future__ import annotations

import math
from typing import Any

from facskit.faces.track import TrackedFace

N_LANDMARKS = 68
LANDMARK_X_COLUMNS = [f"x_{i}" for i in range(N_LANDMARKS)]
LANDMARK_Y_COLUMNS = [f"y_{i}" for i in range(N_LANDMARKS)]
FACE_COLUMNS: list[str] = [
    "file",  # path as given on the command line / found in the folder
    "frame",  # 0-based frame index in decode order (0 for an image)
    "timestamp",  # seconds from the stream start, from the frame's pts (0.0 for an image)
    "face_id",  # stable per video while tracked; 0.. left to right in an image; -1 when no face
    "face_detected",  # False: no face in this frame, every face column below is NaN
    "x", "y", "w", "h",  # HOG-detector-like box implied by the landmarks, pixels
    "score",  # dlib HOG score of the supporting detection (> 0 confident)
    "yaw", "pitch", "roll",  # head pose, degrees, see facskit.faces.pose for signs
    *LANDMARK_X_COLUMNS,
    *LANDMARK_Y_COLUMNS,
]  # fmt: skip

NO_FACE_ID = -1


def face_rows(file: str, frame: int, timestamp: float, faces: list[TrackedFace]) -> list[dict[str, Any]]:
    """Rows (dicts keyed by FACE_COLUMNS) for one frame: one per successfully fitted face, or exactly one
    face_detected=False row with NaNs when there is none."""
    rows = []
    for face in faces:
        if not face.success:
            continue
        row: dict[str, Any] = {
            "file": file,
            "frame": frame,
            "timestamp": timestamp,
            "face_id": face.face_id,
            "face_detected": True,
            "x": face.box.x,
            "y": face.box.y,
            "w": face.box.w,
            "h": face.box.h,
            "score": face.score,
            "yaw": face.pose.yaw,
            "pitch": face.pose.pitch,
            "roll": face.pose.roll,
        }
        row.update(zip(LANDMARK_X_COLUMNS, face.landmarks[:, 0].tolist(), strict=True))
        row.update(zip(LANDMARK_Y_COLUMNS, face.landmarks[:, 1].tolist(), strict=True))
        rows.append(row)
    if not rows:
        row = dict.fromkeys(FACE_COLUMNS, math.nan)
        row.update(file=file, frame=frame, timestamp=timestamp, face_id=NO_FACE_ID, face_detected=False)
        rows.append(row)
    return rows
