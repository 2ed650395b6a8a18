"""The Action Unit registry: FACS codes, names, muscles and the two AU points of every AU.

Every AU has exactly two *AU points*, the places on the face where the AU causes visible change
(DESIGN.md section 2). Both heatmap conventions rely on them: the SCC network (AAAI'20) predicts one map per
point, the BMVC'18 Hourglass draws both points into one map per AU. Keeping the number at two for every AU
keeps the tensors uniform: points are always ``(..., A, 2, 2)`` = (AU, point, xy).

An AU point is the mean of one or more iBUG-68 landmarks plus an offset ``(dx, dy)`` measured in units of
the inter-ocular distance (outer eye corners 36 -> 45) in the face's own frame: x along the eye line
36 -> 45, y perpendicular to it, pointing down the face. Because the offset rotates and scales with the
face, :func:`au_points` is a *linear* function of the landmarks and is the same on a frame or on an aligned
crop (up to the alignment transform itself).

Point order: for a bilateral AU, point 0 is on the image-left side (the side of landmark 36, i.e. the
subject's right) and point 1 is its mirror image; for a midline AU, point 0 is the upper and point 1 the
lower point, and neither moves under a horizontal flip. :func:`au_point_flip_permutation` gives the
resulting point (and SCC channel) permutation for flip augmentation.

The offsets of AUs 6, 10, 12, 14 and 17 were fitted so that, on the mean face of ``facskit.align`` aligned
with the BMVC'18 transform, the points land on the SCC paper's BP4D examples (DESIGN.md section 2) within a
few pixels; the other AUs follow the FACS manual's descriptions of where each AU changes the face.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facskit.errors import UsageError

__all__ = [
    "AU",
    "AUPoint",
    "AUS",
    "BP4D_AUS",
    "DISFA_AUS",
    "FLIP_PERMUTATION_68",
    "MAX_INTENSITY",
    "OCCURRENCE_THRESHOLD",
    "POINT_COLORS",
    "UnknownAUError",
    "au_column",
    "au_point_flip_permutation",
    "au_points",
    "draw_au_points",
    "get_au",
    "parse_au",
    "parse_aus",
]

# Outer eye corners: the inter-ocular distance and the face's x axis are measured between them.
EYE_CORNER_LEFT = 36
EYE_CORNER_RIGHT = 45
# Drawing colours (RGB) of point 0 (image-left / upper) and point 1 (image-right / lower).
POINT_COLORS: tuple[tuple[int, int, int], tuple[int, int, int]] = ((255, 60, 60), (40, 200, 255))

# Horizontal flip of the iBUG-68 scheme: after mirroring x, landmark i of the flipped face is landmark
# FLIP_PERMUTATION_68[i] of the original (jaw, brows, nose wing, eyes and mouth swap sides; the nose
# bridge 27-30 and the midline mouth points 51, 57, 62, 66 stay). Applying it twice is the identity.
FLIP_PERMUTATION_68: tuple[int, ...] = (
    *range(16, -1, -1),  # jaw 0..16
    *range(26, 16, -1),  # brows 17..26
    27, 28, 29, 30,  # nose bridge
    35, 34, 33, 32, 31,  # nose wings
    45, 44, 43, 42, 47, 46,  # left eye 36..41 <- right eye
    39, 38, 37, 36, 41, 40,  # right eye 42..47 <- left eye
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip 48..59
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lip 60..67
)  # fmt: skip


class UnknownAUError(UsageError, ValueError):
    """An AU code or column name that the registry does not know; the message lists the valid codes."""


@dataclass(frozen=True)
class AUPoint:
    """One AU point: the mean of ``landmarks`` (iBUG-68 indices) plus ``offset``.

    ``offset = (dx, dy)`` is in inter-ocular distances (outer eye corners 36-45) in the face frame: dx along
    the eye line 36 -> 45, dy perpendicular to it, positive towards the chin. Landmarks are kept sorted so
    that two definitions of the same point compare equal.
    """

    landmarks: tuple[int, ...]
    offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not self.landmarks or any(not 0 <= i < 68 for i in self.landmarks):
            raise ValueError(f"AU point landmarks must be iBUG-68 indices 0..67, got {self.landmarks}")
        object.__setattr__(self, "landmarks", tuple(sorted(self.landmarks)))
        object.__setattr__(self, "offset", (float(self.offset[0]), float(self.offset[1])))

    def mirrored(self) -> AUPoint:
        """The same point on the other side of the face: landmarks flipped, dx negated."""
        return AUPoint(
            tuple(FLIP_PERMUTATION_68[i] for i in self.landmarks), (0.0 - self.offset[0], self.offset[1])
        )


@dataclass(frozen=True)
class AU:
    """One Action Unit: FACS code, name, what it looks like, the muscle behind it and its two points."""

    code: int
    name: str
    description: str
    muscle: str
    points: tuple[AUPoint, AUPoint]

    @property
    def column(self) -> str:
        """The column name used in label files and result tables, e.g. ``"AU06"``."""
        return au_column(self.code)

    @property
    def bilateral(self) -> bool:
        """True for a left/right pair (points swap under a horizontal flip), False for upper/lower."""
        return self.points[1] == self.points[0].mirrored()


def _pair(left: AUPoint) -> tuple[AUPoint, AUPoint]:
    # A bilateral AU is defined by its image-left point; the right one is its mirror, so flips stay exact.
    return (left, left.mirrored())


def _p(*landmarks: int, dx: float = 0.0, dy: float = 0.0) -> AUPoint:
    return AUPoint(tuple(landmarks), (dx, dy))


_AU_LIST: tuple[AU, ...] = (
    AU(1, "Inner Brow Raiser", "inner ends of the eyebrows pulled up; forehead wrinkles in the middle",
       "frontalis, pars medialis", _pair(_p(21, dy=-0.12))),
    AU(2, "Outer Brow Raiser", "outer parts of the eyebrows pulled up; arched brows, lateral wrinkles",
       "frontalis, pars lateralis", _pair(_p(18, dy=-0.12))),
    AU(4, "Brow Lowerer", "brows lowered and drawn together; vertical wrinkles between the brows",
       "corrugator supercilii, depressor supercilii, procerus", _pair(_p(21, dx=0.04, dy=0.07))),
    AU(5, "Upper Lid Raiser", "upper eyelid raised, more of the eyeball shows above the iris",
       "levator palpebrae superioris", _pair(_p(37, 38, dy=-0.03))),
    AU(6, "Cheek Raiser", "cheeks raised, crow's feet at the outer eye corners, lower lid bagged",
       "orbicularis oculi, pars orbitalis", _pair(_p(36, dx=-0.23, dy=0.18))),
    AU(7, "Lid Tightener", "eyelids tightened, lower lid raised and straightened",
       "orbicularis oculi, pars palpebralis", _pair(_p(40, 41, dy=0.03))),
    AU(9, "Nose Wrinkler", "skin along the sides of the nose pulled up into wrinkles",
       "levator labii superioris alaeque nasi", _pair(_p(29, 39))),
    AU(10, "Upper Lip Raiser", "upper lip raised, deepened nasolabial furrow",
       "levator labii superioris", _pair(_p(49, dx=-0.06, dy=0.10))),
    AU(12, "Lip Corner Puller", "lip corners pulled up and back obliquely (smile)",
       "zygomaticus major", _pair(_p(48, dx=-0.10, dy=0.025))),
    AU(14, "Dimpler", "lip corners tightened and pulled inwards, dimples beside the corners",
       "buccinator", _pair(_p(48, dx=-0.31, dy=-0.06))),
    AU(15, "Lip Corner Depressor", "lip corners pulled down, skin below the corners wrinkled",
       "depressor anguli oris (triangularis)", _pair(_p(48, dy=0.12))),
    AU(17, "Chin Raiser", "chin boss pushed up, lower lip pushed up, chin wrinkled",
       "mentalis", (_p(57, dy=0.07), _p(8, dy=-0.18))),
    AU(20, "Lip Stretcher", "lip corners pulled laterally, mouth elongated and flattened",
       "risorius, platysma", _pair(_p(48, dx=-0.12, dy=0.04))),
    AU(23, "Lip Tightener", "lips tightened and narrowed, red parts of the lips thinned",
       "orbicularis oris", (_p(51), _p(57))),
    AU(24, "Lip Pressor", "lips pressed together, bulging above and below the red parts",
       "orbicularis oris", _pair(_p(49, 59))),
    AU(25, "Lips Part", "lips parted, teeth or gums may show",
       "depressor labii inferioris, relaxation of mentalis or orbicularis oris", (_p(62), _p(66))),
    AU(26, "Jaw Drop", "jaw lowered by relaxing the closing muscles, lips may part",
       "masseter relaxed; temporalis and internal pterygoid relaxed", _pair(_p(6, dx=0.08, dy=-0.08))),
    AU(45, "Blink", "eyelids close and reopen briefly",
       "relaxation of levator palpebrae superioris; orbicularis oculi, pars palpebralis",
       _pair(_p(37, 38, 40, 41))),
)  # fmt: skip

AUS: dict[int, AU] = {au.code: au for au in _AU_LIST}

# The AUs annotated with intensity in each dataset, in the order of their label columns (DESIGN.md 3).
BP4D_AUS: tuple[int, ...] = (6, 10, 12, 14, 17)
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)

# The FACS intensity scale: levels A..E are 1..5 and 0 is absent; every intensity facskit reads, predicts or
# draws lies in [0, MAX_INTENSITY].
MAX_INTENSITY = 5.0
# An AU occurs when its intensity is at least this, on the 0-5 scale: DISFA's and FERA 2015's convention
# (intensity >= 2, level "B"), used by the analysis tables and every occurrence metric.
OCCURRENCE_THRESHOLD = 2.0

_AU_TEXT = re.compile(r"^\s*(?:au)?\s*0*(\d+)\s*$", re.IGNORECASE)


def _unknown(value: object) -> UnknownAUError:
    valid = ", ".join(str(c) for c in sorted(AUS))
    return UnknownAUError(f"unknown Action Unit {value!r}; valid AU codes are {valid}")


def get_au(code: int | str) -> AU:
    """The registry entry for an AU code (``6``) or name (``"AU06"``, ``"au6"``, ``"6"``)."""
    return AUS[parse_au(code)]


def parse_au(text: int | str, known_only: bool = True) -> int:
    """Parse ``"AU6"``, ``"au06"``, ``"6"`` or ``6`` into the integer code ``6``.

    With ``known_only`` (the default) a code the registry does not know raises :class:`UnknownAUError`
    listing the valid codes; readers of arbitrary label files pass ``known_only=False`` to keep e.g. AU28.
    """
    if isinstance(text, bool):
        raise _unknown(text)
    if isinstance(text, int | np.integer):
        code = int(text)
    else:
        match = _AU_TEXT.match(str(text))
        if match is None:
            raise _unknown(text)
        code = int(match.group(1))
    if code <= 0 or (known_only and code not in AUS):
        raise _unknown(text)
    return code


def parse_aus(text: str | Iterable[int | str]) -> tuple[int, ...]:
    """Parse an AU list: ``"6,12, AU17"`` or ``[6, "AU12"]`` -> ``(6, 12, 17)`` (order kept, duplicates are
    an error because every AU owns one output map)."""
    items = (
        [t for t in text.replace(";", ",").split(",") if t.strip()] if isinstance(text, str) else list(text)
    )
    codes = tuple(parse_au(t) for t in items)
    if not codes:
        raise UsageError("empty AU list")
    if len(set(codes)) != len(codes):
        raise UsageError(f"duplicate AU in {codes}")
    return codes


def au_column(code: int | str) -> str:
    """The zero-padded column name of an AU: ``au_column(6) -> "AU06"``, ``au_column(45) -> "AU45"``."""
    return f"AU{parse_au(code, known_only=False):02d}"


def au_point_flip_permutation(codes: Sequence[int]) -> tuple[int, ...]:
    """Where each of the ``2A`` AU points goes under a horizontal image flip.

    Points are flattened AU-major (``2a`` = point 0 of AU ``a``, ``2a + 1`` = point 1), which is also the
    SCC channel order. After flipping the image (x -> W - 1 - x), point ``j`` of the flipped face is point
    ``perm[j]`` of the original: the two points of a bilateral AU swap, midline points stay.
    """
    perm: list[int] = []
    for a, code in enumerate(codes):
        swap = get_au(code).bilateral
        perm += [2 * a + 1, 2 * a] if swap else [2 * a, 2 * a + 1]
    return tuple(perm)


def _point_tables(codes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Landmark-averaging weights ``(2A, 68)`` and offsets ``(2A, 2)`` for the AUs, AU-major (read-only:
    they are built once per AU list, since the training loader asks for them for every sample)."""
    return _cached_point_tables(tuple(int(c) for c in codes))


@functools.lru_cache(maxsize=64)
def _cached_point_tables(codes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    aus = [get_au(c) for c in codes]
    weights = np.zeros((2 * len(aus), 68), dtype=np.float64)  # (2A, 68)
    offsets = np.zeros((2 * len(aus), 2), dtype=np.float64)  # (2A, 2)
    for a, au in enumerate(aus):
        for j, point in enumerate(au.points):
            weights[2 * a + j, list(point.landmarks)] = 1.0 / len(point.landmarks)
            offsets[2 * a + j] = point.offset
    weights.flags.writeable = False
    offsets.flags.writeable = False
    return weights, offsets


def au_points(landmarks: Any, codes: Sequence[int]) -> Any:
    """The two AU points of every AU in ``codes`` from iBUG-68 landmarks.

    ``landmarks``: ``(..., 68, 2)`` pixel (x, y), numpy array or torch tensor, any leading dimensions.
    Returns ``(..., A, 2, 2)`` = (AU, point, xy) in the same pixel frame, type and float dtype as the input
    (integer numpy input gives float64). With ``e = landmarks[36 -> 45]`` (length = inter-ocular distance),
    a point is ``mean(landmarks[idx]) + dx * e + dy * perp(e)`` with ``perp(e) = (-e_y, e_x)``, i.e. the
    offset rotates and scales with the face; the map is linear, so it commutes with any affine warp that
    preserves angles (the similarity alignment exactly, the BMVC affine approximately).
    """
    shape = tuple(landmarks.shape) if hasattr(landmarks, "shape") else np.shape(landmarks)
    if shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must have shape (..., 68, 2), got {shape}")
    weights, offsets = _point_tables(codes)
    num_aus = len(codes)
    if type(landmarks).__module__.startswith("torch"):
        import torch

        lm = landmarks if landmarks.is_floating_point() else landmarks.double()
        w = torch.tensor(weights, dtype=lm.dtype, device=lm.device)  # a copy: the tables are read-only
        off = torch.tensor(offsets, dtype=lm.dtype, device=lm.device)
        anchors = torch.einsum("pk,...kd->...pd", w, lm)  # (..., 2A, 2)
        eye = lm[..., EYE_CORNER_RIGHT, :] - lm[..., EYE_CORNER_LEFT, :]  # (..., 2)
        perp = torch.stack((-eye[..., 1], eye[..., 0]), dim=-1)  # (..., 2)
    else:
        lm = np.asarray(landmarks)
        if not np.issubdtype(lm.dtype, np.floating):
            lm = lm.astype(np.float64)
        w, off = weights.astype(lm.dtype), offsets.astype(lm.dtype)
        anchors = np.einsum("pk,...kd->...pd", w, lm)  # (..., 2A, 2)
        eye = lm[..., EYE_CORNER_RIGHT, :] - lm[..., EYE_CORNER_LEFT, :]  # (..., 2)
        perp = np.stack((-eye[..., 1], eye[..., 0]), axis=-1)  # (..., 2)
    points = anchors + off[:, :1] * eye[..., None, :] + off[:, 1:] * perp[..., None, :]  # (..., 2A, 2)
    return points.reshape(*points.shape[:-2], num_aus, 2, 2)  # (..., A, 2, 2)


def draw_au_points(
    image: np.ndarray,
    points: np.ndarray,
    codes: Sequence[int] | None = None,
    colors: tuple[tuple[int, int, int], tuple[int, int, int]] = POINT_COLORS,
    radius: int = 3,
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with AU points ``(A, 2, 2)`` drawn as filled dots.

    ``colors`` are RGB for point 0 (image-left / upper) and point 1 (image-right / lower), so a figure
    shows which is which. With ``codes`` each point is labelled with its AU number. Coordinates are pixel
    centres (OpenCV's convention); 4 bits of sub-pixel precision put the dots where the float points are.
    """
    import cv2

    canvas = np.ascontiguousarray(image).copy()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2, 2)  # (A, 2, 2)
    shift = 4
    for a, pair in enumerate(pts):
        for (x, y), color in zip(pair, colors, strict=True):
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            centre = (round(x * (1 << shift)), round(y * (1 << shift)))
            # A dark rim keeps the dot visible on light and dark skin alike.
            cv2.circle(canvas, centre, (radius + 1) << shift, (0, 0, 0), -1, cv2.LINE_AA, shift)
            cv2.circle(canvas, centre, radius << shift, color, -1, cv2.LINE_AA, shift)
            if codes is not None:
                cv2.putText(
                    canvas, str(codes[a]), (round(x) + radius + 1, round(y) - radius - 1),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA,
                )  # fmt: skip
    return canvas
