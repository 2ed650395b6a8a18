"""Inspection grids: what a trained TCAE does to a pair of frames.

One row per pair, nine panels: source, target, AU-changed face tau_A(I_s), pose-changed face tau_P(I_s),
reconstruction tau(I_s), the AU (gated by alpha_A where the mix has a sigmoid AU gate, since that is the
AU motion in tau) and the pose displacement fields in flow colours, and the two attention
masks alpha_A, alpha_P (white = 1; for ``pose_decoder="head"``, whose field applies in full, the head's
support instead). A good model shows the head motion in the pose field (smooth, the whole face), the
expression change in the AU field (local: mouth, brows, eyes) and an AU mask that is bright only where the
AUs moved. Where the target's landmarks are known (every pair from a cache or a video), each row's title
and ``{stem}-shares.csv`` say it in numbers: each field's share of the mobile parts, the rest of the face
and the outside, next to those regions' share of the area (:mod:`facskit.tcae.regions`).

Flow colours (the Middlebury convention, simplified): hue = direction of the displacement, value =
magnitude / the panel's largest magnitude; a zero field is black. Each flow panel has its own scale,
written on it in pixels of the model's input: a confined AU field is a small fraction of the head's
motion, and on one shared scale it would be black wherever it is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from facskit.io.atomic import atomic_write
from facskit.models.tcae import TCAE, TCAEOutput
from facskit.tcae.pairs import image_to_tensor
from facskit.tcae.regions import REGIONS, face_regions, field_shares

__all__ = [
    "GridPair",
    "flow_to_rgb",
    "mask_to_rgb",
    "pair_grid",
    "pairs_from_cache",
    "pairs_from_video",
    "share_fields",
    "write_grids",
]

# the fields whose shares of each region (facskit.tcae.regions) a grid reports, as named in its CSV
SHARED_FIELDS = ("AU", "gated AU", "pose")


def share_fields(out: TCAEOutput) -> dict[str, torch.Tensor]:
    """:data:`SHARED_FIELDS` of one TCAE pass, each ``(B, 2, S, S)``: the AU field tau_A, the gated AU field
    alpha_A tau_A (the AU motion that is in tau) and the pose field."""
    return {"AU": out.field_au, "gated AU": out.alpha_au * out.field_au, "pose": out.field_pose}


class GridPair(NamedTuple):
    """One row of a grid: aligned crops ``(H, W, 3) uint8`` RGB, a caption, and the target's 68 landmarks
    ``(68, 2)`` in crop pixels when known (then the row reports where each field lies on the face)."""

    source: np.ndarray
    target: np.ndarray
    title: str
    landmarks: np.ndarray | None = None


PANELS = (
    "source",
    "target",
    "AU-changed",
    "pose-changed",
    "reconstruction",
    "AU flow",
    "pose flow",
    "AU mask",
    "pose mask",
)


def flow_to_rgb(field: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """``field (2, H, W)`` -> ``(H, W, 3) uint8`` RGB: angle -> hue, magnitude -> value, full saturation."""
    dx, dy = field[0].astype(np.float32), field[1].astype(np.float32)
    magnitude = np.hypot(dx, dy)
    scale = max_magnitude if max_magnitude and max_magnitude > 0 else max(float(magnitude.max()), 1e-8)
    angle = (np.degrees(np.arctan2(dy, dx)) % 360.0) / 2.0  # OpenCV hue is 0..180
    hsv = np.stack(
        [angle, np.full_like(angle, 255.0), np.clip(magnitude / scale, 0.0, 1.0) * 255.0], axis=-1
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def mask_to_rgb(alpha: np.ndarray) -> np.ndarray:
    """``alpha (H, W)`` in [0, 1] -> grey ``(H, W, 3) uint8``."""
    grey = (np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _image(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    """Cell with a caption bar on top (white text on black)."""
    bar = np.zeros((18, cell.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, cell], axis=0)


@torch.no_grad()
def pair_grid(
    model: TCAE,
    source: np.ndarray,
    target: np.ndarray,
    cell: int = 128,
    title: str = "",
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One labelled row of the nine panels for a pair of aligned crops ``(H, W, 3) uint8`` RGB, and where
    its fields lie on the face.

    With the target's ``landmarks (68, 2)`` (crop pixels) the shares of the AU field, the gated AU field
    alpha_A tau_A and the pose field in the mobile parts / rest of the face / outside it
    (:mod:`facskit.tcae.regions`) are returned (``{"area": (3,), "AU": (3,), ...}``) and written in the
    row's title; without them the dict is empty.
    """
    model.eval()
    device = next(model.parameters()).device
    size = model.spec.input_size
    s = image_to_tensor(source, size)[None].to(device)  # (1, 3, S, S)
    t = image_to_tensor(target, size)[None].to(device)
    out = model(s, t)
    # with the sigmoid AU gate (field_mix "au_gate") the AU motion that moves the face in tau is
    # alpha_A tau_A; tau_A where the gate is shut does nothing, so the panel shows the gated field
    gated = model.spec.field_mix == "au_gate"
    au_name = "gated AU" if gated else "AU"
    named = share_fields(out)
    au_field, pose_field = (named[name][0].float().cpu().numpy() for name in (au_name, "pose"))
    to_pixels = (size - 1) / 2.0  # normalised displacement -> input pixels (align_corners=True)
    au_largest = max(float(np.hypot(*au_field).max()), 1e-8)
    pose_largest = max(float(np.hypot(*pose_field).max()), 1e-8)
    # the "head" pose decoder's field is applied in full (alpha_P = 1); where it moves the head is its
    # support, carried in its mask logit, which is what the pose panel shows for it
    head = model.spec.pose_decoder == "head"
    pose_mask = torch.sigmoid(out.mask_pose) if head else out.alpha_pose
    panels = [
        _image(s[0]),
        _image(t[0]),
        _image(out.au_changed[0].float()),
        _image(out.pose_changed[0].float()),
        _image(out.reconstruction[0].float()),
        flow_to_rgb(au_field, au_largest),
        flow_to_rgb(pose_field, pose_largest),
        mask_to_rgb(out.alpha_au[0, 0].float().cpu().numpy()),
        mask_to_rgb(pose_mask[0, 0].float().cpu().numpy()),
    ]
    au_pixels, pose_pixels = au_largest * to_pixels, pose_largest * to_pixels
    captions = {
        "AU flow": f"gated AU flow {au_pixels:.1f}px" if gated else f"AU flow (max {au_pixels:.1f}px)",
        "pose flow": f"pose flow {pose_pixels:.1f}px",
    }
    if head:
        captions["pose mask"] = "head support"
    cells = []
    for name, panel in zip(PANELS, panels, strict=True):
        panel = cv2.resize(
            panel, (cell, cell), interpolation=cv2.INTER_NEAREST if size < cell else cv2.INTER_AREA
        )
        cells.append(_label(np.ascontiguousarray(panel), captions.get(name, name)))
    shares: dict[str, np.ndarray] = {}
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=np.float64)[None] * (size / target.shape[1])
        regions = face_regions(points, size)
        for name in SHARED_FIELDS:
            share, area = field_shares(named[name].float().norm(dim=1).cpu().numpy(), regions)
            shares[name], shares["area"] = share[0], area[0]
        title = (
            f"{title} | mobile parts {shares['area'][0]:.0%} of the area, {au_name} flow "
            f"{shares[au_name][0]:.0%}, pose flow {shares['pose'][0]:.0%}; outside the face "
            f"{shares['area'][2]:.0%}, {shares[au_name][2]:.0%}, {shares['pose'][2]:.0%}"
        )
    row = np.concatenate(cells, axis=1)
    if title:
        row = _label(row, title)
    return row, shares


def pairs_from_cache(cache, count: int, gap: int, seed: int = 0) -> Iterator[GridPair]:
    """``count`` pairs ``gap`` frames apart (or the closest available), spread over the cache's tracks."""
    from facskit.tcae.pairs import sample_pairs, tracks_from_index

    tracks = tracks_from_index(cache.index)
    pairs = sample_pairs(tracks, count, max(1, gap // 2), gap, np.random.default_rng(seed))
    for i, j in pairs:
        a, b = cache[int(i)], cache[int(j)]
        title = f"{a['subject']}/{a['sequence']} frame {a['frame']} -> {b['frame']}"
        yield GridPair(a["image"], b["image"], title, b["landmarks"])


def pairs_from_video(
    path: str | Path, count: int, gap: int, crop_size: int = 256, crop: str = "aligned"
) -> Iterator[GridPair]:
    """``count`` pairs ``gap`` frames apart, sources spread evenly over the video, the first tracked face.

    ``crop="aligned"`` aligns each frame on its own landmarks (as ``facskit analyze``); ``"track"`` crops
    both frames of a pair with the source frame's alignment, so the head's motion between them stays in
    the images (what a model pretrained on a ``facskit prepare --crop track`` cache saw). The video is
    streamed once; only the wanted frames' faces are kept (constant memory).
    """
    from facskit.align import AlignSpec, align_face, alignment_matrix
    from facskit.data.index import video_frame_count
    from facskit.faces import FaceTracker
    from facskit.io import iter_frames

    if crop not in ("aligned", "track"):
        raise ValueError(f"crop must be 'aligned' or 'track', got {crop!r}")
    total = video_frame_count(Path(path))
    if total <= gap:
        raise ValueError(f"{path}: {total} frames, too short for a gap of {gap}")
    sources = np.unique(np.linspace(0, total - 1 - gap, count).round().astype(int))
    wanted = set(sources.tolist()) | set((sources + gap).tolist())
    tracker = FaceTracker(detect_every=5)
    faces: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> (image, landmarks (68, 2))
    for frame in iter_frames(Path(path)):
        tracked = [f for f in tracker.update(frame.image) if getattr(f, "success", True)]  # every frame
        if frame.index in wanted and tracked:
            faces[frame.index] = (frame.image, np.asarray(tracked[0].landmarks))
        if frame.index > max(wanted):
            break
    spec = AlignSpec(kind="bmvc", size=crop_size)
    for s in sources:
        if s in faces and s + gap in faces:
            (image_s, points_s), (image_t, points_t) = faces[s], faces[s + gap]
            matrix = alignment_matrix(points_s, spec) if crop == "track" else None
            aligned_t = align_face(image_t, points_t, spec, matrix)
            yield GridPair(
                align_face(image_s, points_s, spec).crop,
                aligned_t.crop,
                f"{Path(path).name} frame {s} -> {s + gap}",
                aligned_t.landmarks,
            )


def write_grids(
    model: TCAE,
    pairs: Sequence[GridPair | tuple[np.ndarray, np.ndarray, str]],
    out: str | Path,
    stem: str,
    cell: int = 128,
) -> list[Path]:
    """One PNG per pair (``{stem}-NN.png``), one with all rows (``{stem}.png``) and, for pairs with
    landmarks, ``{stem}-shares.csv``: per pair and field, its shares of the mobile parts / rest of the face
    / outside, next to the regions' shares of the area (the last row: their means over the pairs)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, paths, table = [], [], []
    for n, pair in enumerate(pairs):
        pair = GridPair(*pair)
        row, shares = pair_grid(model, pair.source, pair.target, cell, pair.title, pair.landmarks)
        if shares:
            table.append((pair.title, shares))
        rows.append(row)
        path = out / f"{stem}-{n:02d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
        paths.append(path)
    if rows:
        path = out / f"{stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
        paths.append(path)
    if table:
        paths.append(_write_shares(table, out / f"{stem}-shares.csv"))
    return paths


def _write_shares(table: list[tuple[str, dict[str, np.ndarray]]], path: Path) -> Path:
    """The shares of :func:`write_grids` as CSV, one row per pair and a last row of means (``mean``)."""
    names = ("area", *SHARED_FIELDS)
    header = ["pair"] + [f"{name}: {region}" for name in names for region in REGIONS]
    mean = {name: np.nanmean([shares[name] for _, shares in table], axis=0) for name in names}

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for title, shares in [*table, ("mean", mean)]:
                writer.writerow([title] + [f"{v:.4f}" for name in names for v in shares[name]])

    atomic_write(path, write)
    return path
