"""Face alignment: warp a frame into the square crop the AU networks see, and map points and maps back.

Pixel convention (everywhere in facskit, OpenCV's): pixel centres sit at integer coordinates, so pixel
``(i, j)`` of an image covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`` in (x, y). A ``(2, 3)`` matrix
``M`` maps frame pixels to crop pixels: ``[x', y'] = M[:, :2] @ [x, y] + M[:, 2]``. This is the matrix
``cv2.warpAffine(image, M, (S, S))`` uses, so crops and transformed landmarks always agree.

Two alignments (:class:`AlignSpec`):

* ``"bmvc"``: the BMVC'18 reference transform, bit-compatible with ESanchezLozano/Action-Units-Heatmaps:
  ``cv2.getAffineTransform`` of float32 landmarks 8 (chin), 36 and 45 (outer eye corners) onto
  :data:`BMVC_TEMPLATE_256`, then ``cv2.warpAffine`` with its defaults (bilinear, black border). Three
  points fix an affine exactly, so landmark noise on them becomes shear; that is what the released model
  was trained with.
* ``"similarity"``: the least-squares similarity (rotation, isotropic scale, translation; Umeyama's closed
  form) of all 68 landmarks onto :data:`MEAN_FACE_256`, the mean face placed in the same crop. No shear,
  and more robust to one bad landmark; use it for models trained from scratch.

Crop sizes other than 256 scale the templates so that a crop of size S covers the same face region:
``p_S = (p_256 + 0.5) * S / 256 - 0.5`` (pixel edges, not centres, are scaled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "BMVC_LANDMARKS",
    "BMVC_TEMPLATE_256",
    "MEAN_FACE_256",
    "AlignSpec",
    "AlignedFace",
    "align_face",
    "align_faces",
    "alignment_matrix",
    "crop_template",
    "heatmap_region",
    "heatmaps_to_frame",
    "points_to_crop",
    "points_to_frame",
    "rescale_points",
    "track_matrix",
]

REFERENCE_SIZE = 256

# BMVC'18 anchors: landmark indices and where they go in the 256 x 256 crop (DESIGN.md section 2).
BMVC_LANDMARKS: tuple[int, int, int] = (8, 36, 45)
BMVC_TEMPLATE_256 = np.array(
    [[127.6475, 227.8161], [79.1608, 87.0376], [176.8392, 87.0376]], dtype=np.float32
)  # (3, 2)

# Mean iBUG-68 face in the BMVC 256 crop (pixels). Built for facskit: dlib 68-point landmarks of the 8
# faces in the project's test media (82 detections), generalised Procrustes per face then across faces,
# averaged with its own mirror image (so it is exactly left/right symmetric before the final step), then
# placed with the BMVC transform, so its landmarks 8, 36, 45 are the BMVC template points.
MEAN_FACE_256 = np.array(
    [
        (47.2132, 89.8077), (47.9419, 112.8425), (49.6390, 135.2630), (53.4922, 157.4453),
        (60.8631, 178.9677), (73.2782, 197.5007), (89.1927, 212.8683), (107.5949, 224.6201),
        (127.6475, 227.8161), (147.7161, 224.6201), (166.1771, 212.8683), (182.1686, 197.5007),
        (194.6765, 178.9677), (202.1552, 157.4453), (206.1195, 135.2630), (207.9289, 112.8425),
        (208.7729, 89.8077), (62.5476, 70.3419), (71.8608, 58.8813), (86.0644, 54.5583),
        (100.8962, 55.9427), (114.5354, 62.1367), (141.5893, 62.1367), (155.2595, 55.9427),
        (170.0983, 54.5583), (184.2802, 58.8813), (193.5360, 70.3419), (128.0136, 81.6019),
        (127.9757, 96.7532), (127.9382, 111.7212), (127.9001, 126.9313), (111.1503, 136.4694),
        (119.3640, 138.9310), (127.8639, 141.4008), (136.3762, 138.9310), (144.6021, 136.4694),
        (79.1608, 87.0376), (88.1458, 82.3367), (97.6668, 82.4310), (106.9055, 88.0379),
        (97.3791, 89.2205), (87.6413, 89.2820), (149.0895, 88.0379), (158.3563, 82.4310),
        (167.8778, 82.3367), (176.8392, 87.0376), (168.3474, 89.2820), (158.6100, 89.2205),
        (92.9164, 161.5751), (105.5941, 155.9521), (118.4236, 153.4988), (127.8287, 155.4369),
        (137.2435, 153.4988), (150.0608, 155.9521), (162.7103, 161.5751), (150.5468, 176.5522),
        (137.7070, 183.0067), (127.7569, 184.1075), (117.8124, 183.0067), (105.0049, 176.5522),
        (96.7943, 162.7114), (118.1895, 160.0572), (127.8148, 161.0027), (137.4448, 160.0572),
        (158.8267, 162.7114), (137.7520, 172.4737), (127.7839, 173.3613), (117.8202, 172.4737),
    ],
    dtype=np.float64,
)  # (68, 2)  # fmt: skip


@dataclass(frozen=True)
class AlignSpec:
    """How faces are aligned: ``kind`` (``"bmvc"`` 3-point affine or ``"similarity"``) and crop ``size``."""

    kind: Literal["bmvc", "similarity"] = "bmvc"
    size: int = 256  # crop side in pixels; the templates scale with it (module docstring)

    def __post_init__(self) -> None:
        if self.kind not in ("bmvc", "similarity"):
            raise ValueError(f"unknown alignment kind {self.kind!r}; valid kinds are 'bmvc', 'similarity'")
        if int(self.size) != self.size or self.size < 16:
            raise ValueError(f"alignment crop size must be an integer >= 16, got {self.size!r}")


@dataclass(frozen=True)
class AlignedFace:
    """An aligned face: ``crop`` (S, S, 3) uint8 RGB, ``landmarks`` (68, 2) float32 crop pixels, ``matrix``
    (2, 3) float64 frame -> crop."""

    crop: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray


def rescale_points(points: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Map pixel coordinates between two square grids covering the same area (e.g. a 256 crop and its
    64 x 64 heatmap): ``(p + 0.5) * to / from - 0.5``, so pixel edges line up (a 4 x 4 block of the crop
    is one heatmap pixel whose centre is at the block's centre)."""
    scale = to_size / from_size
    return (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5


def crop_template(spec: AlignSpec) -> np.ndarray:
    """The target points of ``spec`` in crop pixels: BMVC anchors ``(3, 2)`` or the mean face ``(68, 2)``."""
    base = BMVC_TEMPLATE_256 if spec.kind == "bmvc" else MEAN_FACE_256
    if spec.size == REFERENCE_SIZE:
        return base.copy()
    return rescale_points(base, REFERENCE_SIZE, spec.size).astype(base.dtype)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``src -> dst`` (both (N, 2)) as a (2, 3) matrix (Umeyama 1991, eq. 40-42)."""
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_src, dst - mu_dst  # (N, 2)
    u, d, vt = np.linalg.svd(b.T @ a)  # cross-covariance (2, 2)
    sign = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # no reflection
    rotation = (u * sign) @ vt
    scale = (d * sign).sum() / (a**2).sum()
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_dst - scale * rotation @ mu_src
    return matrix


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return lm


def alignment_matrix(landmarks: np.ndarray, spec: AlignSpec = AlignSpec()) -> np.ndarray:
    """The (2, 3) float64 frame -> crop matrix for one face's landmarks (68, 2) frame pixels.

    ``"bmvc"`` is exactly the reference: ``cv2.getAffineTransform`` on float32 points (the float32 cast of
    the landmarks is part of the reference and kept for bit compatibility).
    """
    lm = _check_landmarks(landmarks)
    if spec.kind == "bmvc":
        src = np.ascontiguousarray(lm[list(BMVC_LANDMARKS)], dtype=np.float32)  # (3, 2)
        return cv2.getAffineTransform(src, crop_template(spec).astype(np.float32))
    return _similarity(lm.astype(np.float64), crop_template(spec))


def points_to_crop(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Frame pixels ``(..., 2)`` -> crop pixels ``(..., 2)`` (float64) through ``matrix`` (2, 3)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def points_to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop pixels ``(..., 2)`` -> frame pixels ``(..., 2)`` (float64): the inverse of ``matrix``."""
    return points_to_crop(points, cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64)))


def track_matrix(landmarks: np.ndarray, spec: AlignSpec = AlignSpec()) -> np.ndarray:
    """One (2, 3) frame -> crop matrix for a whole track: ``spec``'s alignment of the per-point median of
    ``landmarks`` (N, 68, 2) frame pixels, frames with NaN points ignored.

    Why: a crop aligned per frame removes the head's in-plane motion (and much of the rest), which is
    exactly what TCAE's pose branch is meant to learn; one crop per track keeps it in the images, as in the
    paper's VoxCeleb face tracks, while still framing the face. The median, not the mean, so a few bad
    landmark frames do not move the crop.
    """
    lms = np.asarray(landmarks, dtype=np.float64)
    if lms.ndim != 3 or lms.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (N, 68, 2), got {lms.shape}")
    usable = np.isfinite(lms).all(axis=(1, 2))
    if not usable.any():
        raise ValueError("no frame of the track has usable landmarks")
    return alignment_matrix(np.median(lms[usable], axis=0), spec)


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    spec: AlignSpec = AlignSpec(),
    matrix: np.ndarray | None = None,
) -> AlignedFace:
    """Warp ``image`` (H, W, 3) uint8 RGB to the ``spec.size`` crop of the face with ``landmarks`` (68, 2).

    The warp is ``cv2.warpAffine(image, M, (S, S))`` with OpenCV's defaults (bilinear, constant 0 border),
    as in the BMVC'18 reference; the returned landmarks are the input landmarks through the same ``M``.
    ``matrix`` (2, 3) replaces the face's own alignment (e.g. one :func:`track_matrix` for a whole track).
    """
    if matrix is None:
        matrix = alignment_matrix(landmarks, spec)  # checks the landmarks
    else:
        _check_landmarks(landmarks)
        matrix = np.asarray(matrix, dtype=np.float64)
    crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, (spec.size, spec.size))
    crop_landmarks = points_to_crop(landmarks, matrix).astype(np.float32)  # (68, 2)
    return AlignedFace(crop=crop, landmarks=crop_landmarks, matrix=matrix)


def align_faces(
    image: np.ndarray, landmarks: np.ndarray, spec: AlignSpec = AlignSpec()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align every face of one frame into a batch ready for a network.

    ``landmarks`` (N, 68, 2) frame pixels -> ``crops`` (N, S, S, 3) uint8, ``landmarks`` (N, 68, 2) float32
    crop pixels, ``matrices`` (N, 2, 3) float64; each face exactly as :func:`align_face` does it, written
    straight into one preallocated batch array (no per-face copy).
    """
    lms = np.asarray(landmarks)
    if lms.ndim != 3 or lms.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (N, 68, 2), got {lms.shape}")
    src = np.ascontiguousarray(image)
    crops = np.empty((len(lms), spec.size, spec.size, *src.shape[2:]), dtype=src.dtype)  # (N, S, S, 3)
    matrices = np.empty((len(lms), 2, 3), dtype=np.float64)  # (N, 2, 3)
    for n, lm in enumerate(lms):
        matrices[n] = alignment_matrix(lm, spec)
        cv2.warpAffine(src, matrices[n], (spec.size, spec.size), dst=crops[n])
    crop_landmarks = np.einsum("nij,nkj->nki", matrices[:, :, :2], lms.astype(np.float64))
    crop_landmarks += matrices[:, None, :, 2]  # (N, 68, 2)
    return crops, crop_landmarks.astype(np.float32), matrices


def heatmaps_to_frame(
    maps: np.ndarray,
    matrix: np.ndarray,
    frame_shape: tuple[int, int],
    crop_size: int = 256,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Warp heatmaps ``(P, h, w)`` predicted on a crop back into the frame: ``(P, H, W)`` float32.

    ``matrix`` is the (2, 3) frame -> crop matrix of the crop (``crop_size`` pixels). A heatmap pixel
    covers a ``crop_size / h`` block of the crop (:func:`rescale_points`), so frame pixel ``q`` reads the
    map at ``A @ M @ q`` with ``A`` the crop -> map rescaling; one bilinear ``warpAffine`` with
    ``WARP_INVERSE_MAP`` per map, zero outside the crop. A peak at map pixel ``m`` lands where
    ``points_to_frame(rescale_points(m, h, crop_size), matrix)`` puts it.

    With ``origin`` (x, y), ``frame_shape`` is that of a window of the frame whose top-left pixel is frame
    pixel ``origin`` (see :func:`heatmap_region`): the maps are warped into that window only.
    """
    arr = np.asarray(maps, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"maps must have shape (P, h, w), got {arr.shape}")
    height, width = int(frame_shape[0]), int(frame_shape[1])
    h, w = arr.shape[1:]
    sx, sy = w / crop_size, h / crop_size
    crop_to_map = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    m = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    window = np.array([[1.0, 0.0, origin[0]], [0.0, 1.0, origin[1]], [0.0, 0.0, 1.0]])
    frame_to_map = (crop_to_map @ m @ window)[:2]  # (2, 3)
    out = np.empty((len(arr), height, width), dtype=np.float32)  # (P, H, W)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for p, heatmap in enumerate(arr):
        cv2.warpAffine(heatmap, frame_to_map, (width, height), dst=out[p], flags=flags)
    return out


def heatmap_region(
    matrix: np.ndarray, frame_shape: tuple[int, int], crop_size: int = 256, map_size: int = 64
) -> tuple[int, int, int, int] | None:
    """The frame pixels ``(x0, y0, x1, y1)`` (x1, y1 exclusive) that :func:`heatmaps_to_frame` can make
    non-zero for maps of ``map_size`` on the crop of ``matrix``: the crop's square grown by one map pixel
    (bilinear reads reach one pixel past the map), mapped into the frame, plus a pixel; None when it lies
    outside the frame. Outside it every warped value is 0."""
    pad = crop_size / map_size + 1.0
    far = crop_size + pad
    points = points_to_frame(np.array([[-pad, -pad], [far, -pad], [-pad, far], [far, far]]), matrix)
    height, width = int(frame_shape[0]), int(frame_shape[1])
    left, top = np.floor(points.min(axis=0)) - 1
    right, bottom = np.ceil(points.max(axis=0)) + 2
    x0, y0 = max(0, int(left)), max(0, int(top))
    x1, y1 = min(width, int(right)), min(height, int(bottom))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
