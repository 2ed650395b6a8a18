"""TCAE's head pose decoder (``TCAESpec.pose_decoder = "head"``): a rigid 3D head placed from psi_t over a
background with its own motion, in place of the paper's pose field decoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facskit.models.warping import identity_grid

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.tcae import TCAESpec

__all__ = ["HeadPoseDecoder", "mean_face_ellipse"]


class HeadPoseDecoder(nn.Module):
    """(psi_s, psi_t) -> the backward field of a rigid 3D head over a background, and the head's support.

    An MLP gives the head's motion, six numbers: rotations about x, y, z (radians, at most 0.6), an
    image-plane shift (at most 0.5 of the half-image) and a log scale (at most 0.3). A second MLP places the
    head in the *target* frame from psi_t alone: the mean face's ellipse (:func:`mean_face_ellipse`) shifted
    (at most 0.3 of the half-image) and stretched (log-scale at most 0.3 per axis). Each target pixel
    p = (x, y) in normalised coordinates is lifted to (x, y, z(p)) on the half-ellipsoid over that ellipse
    (depth 0.8 of its half-width), moved back by the inverse motion, P_s = R^T (P_t - t) / s, and projected
    orthographically: tau(p) = P_s[:2] - p. Depth is read at the target pixel, a first-order approximation
    that is exact for in-plane motion. Outside the head's support, a soft ellipse sigmoid((1 - r^2) / 0.1),
    the field is the background's own in-plane similarity (four more numbers from the motion MLP). The last
    layers start near zero, so the field starts at the identity (a still background), like
    :class:`FieldDecoder`. The mask logit returned is the support's: the au_gate mix applies the pose field
    in full, and ``TCAESpec.au_within_head`` bounds the AU gate by it.

    Why: a head is closer to an ellipsoid than to the plane that affine and grid fields assume, which is the
    difference between yaw and a horizontal shift; on track crops the background stays still while the
    head moves (a rigid field moving every pixel left the AU field to hold the background still: 57% of the
    gated AU flow outside the face, where optical flow has 33%); and in a track crop the face is up to a
    tenth of the crop away from the mean face, so the head is placed per frame (benchmarks/results/tcae.md).
    """

    MAX_ANGLE, MAX_SHIFT, MAX_LOG_SCALE = 0.6, 0.5, 0.3
    MAX_PLACE_SHIFT, MAX_PLACE_LOG_SCALE, SUPPORT_SOFTNESS, DEPTH_RATIO = 0.3, 0.3, 0.1, 0.8

    def __init__(self, spec: TCAESpec, hidden: int = 128) -> None:
        super().__init__()
        self.size = spec.input_size
        # the head's rotations about x, y, z, shift x, y, log scale; the background's rotation about z,
        # shift x, y, log scale
        self.net = nn.Sequential(
            nn.Linear(2 * spec.embedding_size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 10)
        )
        nn.init.normal_(self.net[-1].weight, std=1e-3)
        nn.init.zeros_(self.net[-1].bias)
        self.place = nn.Sequential(
            nn.Linear(spec.embedding_size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4)
        )
        nn.init.normal_(self.place[-1].weight, std=1e-3)
        nn.init.zeros_(self.place[-1].bias)
        self.register_buffer("ellipse", torch.tensor(mean_face_ellipse()), persistent=False)
        grid = identity_grid(spec.input_size, spec.input_size)[0]  # (S, S, 2): x, y
        points = torch.cat((grid, torch.zeros_like(grid[..., :1])), dim=-1)  # depth filled per head
        self.register_buffer("points", points, persistent=False)

    def motion(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B, 10)``: the head's rotations about x, y, z, shift x, y, log scale, then the background's
        rotation about z, shift x, y, log scale (bounded by tanh)."""
        raw = torch.tanh(self.net(F.relu(torch.cat((source, target), dim=1))))
        bounds = [self.MAX_ANGLE] * 3 + [self.MAX_SHIFT] * 2 + [self.MAX_LOG_SCALE]
        bounds += [self.MAX_ANGLE, self.MAX_SHIFT, self.MAX_SHIFT, self.MAX_LOG_SCALE]
        return raw * raw.new_tensor(bounds)

    def placement(self, target: torch.Tensor) -> torch.Tensor:
        """``(B, 4)``: the head's ellipse in the target frame, centre x, y and half-axes a, b (normalised)."""
        raw = torch.tanh(self.place(F.relu(target)))
        cx, cy, a, b = self.ellipse.to(raw.dtype)
        shift = raw[:, :2] * self.MAX_PLACE_SHIFT
        stretch = torch.exp(raw[:, 2:] * self.MAX_PLACE_LOG_SCALE)
        return torch.stack((cx + shift[:, 0], cy + shift[:, 1], a * stretch[:, 0], b * stretch[:, 1]), dim=1)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, E), (B, E)`` -> ``(field (B, 2, S, S), support logit (B, 1, S, S))``."""
        motion = self.motion(source, target)  # (B, 10)
        placement = self.placement(target)  # (B, 4)
        coords = self.head_coordinates(placement)  # (B, S*S, 2)
        inside = 1.0 - (coords**2).sum(dim=-1)  # (B, S*S): 1 - r^2, > 0 inside the ellipse
        # the half-ellipsoid's height, depth ratio x half-width; + 1e-6 keeps sqrt's gradient finite at 0
        depth = self.DEPTH_RATIO * placement[:, 2:3] * torch.sqrt(inside.clamp(min=0) + 1e-6)
        points = self.points.flatten(0, 1).to(motion.dtype).expand(len(motion), -1, -1).clone()
        points[..., 2] = depth
        head = self.field(motion[:, :6], points)
        background_motion = F.pad(motion[:, 6:], (2, 0))  # rotation about z only, no depth
        background = self.field(background_motion)  # self.points has z = 0
        logit = inside.view(len(motion), 1, self.size, self.size) / self.SUPPORT_SOFTNESS
        support = torch.sigmoid(logit)
        return support * head + (1 - support) * background, logit

    def head_coordinates(self, placement: torch.Tensor) -> torch.Tensor:
        """``(B, S*S, 2)``: each pixel in the coordinates of the ellipses ``placement (B, 4)``,
        ((x - cx) / a, (y - cy) / b); the ellipse is where they have norm < 1."""
        xy = self.points.flatten(0, 1)[:, :2].to(placement.dtype)  # (S*S, 2)
        return (xy[None] - placement[:, None, :2]) / placement[:, None, 2:]

    def field(self, motion: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """The backward field ``(B, 2, S, S)`` of ``motion (B, 6)`` (see the class docstring) on
        ``points`` ``(S*S, 3)`` or ``(B, S*S, 3)`` (default: the decoder's own)."""
        rotation = _rotation(motion[:, 0], motion[:, 1], motion[:, 2])  # (B, 3, 3)
        shift = F.pad(motion[:, 3:5], (0, 1))  # (B, 3): no shift in depth
        scale = torch.exp(motion[:, 5])[:, None, None]  # (B, 1, 1)
        if points is None:
            points = self.points.flatten(0, 1).to(motion.dtype)
        if points.dim() == 2:
            points = points[None]
        # row vectors: P_s = (P_t - t) R / s is R^T (P_t - t) / s for column vectors
        moved = ((points - shift[:, None]) @ rotation) / scale  # (B, S*S, 3)
        field = moved[..., :2] - points[..., :2]  # (B, S*S, 2)
        return field.transpose(1, 2).reshape(len(motion), 2, self.size, self.size)


def _rotation(about_x: torch.Tensor, about_y: torch.Tensor, about_z: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` rotation R = R_z R_y R_x (x right, y down, z towards the camera)."""
    cx, sx, cy, sy, cz, sz = (f(a) for a in (about_x, about_y, about_z) for f in (torch.cos, torch.sin))
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    r_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], dim=-1).view(-1, 3, 3)
    r_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=-1).view(-1, 3, 3)
    r_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], dim=-1).view(-1, 3, 3)
    return r_z @ r_y @ r_x


def mean_face_ellipse() -> tuple[float, float, float, float]:
    """``(cx, cy, a, b)``, normalised: where :class:`HeadPoseDecoder` starts the head, the ellipse over the
    mean face of the BMVC'18 crop (:data:`facskit.align.MEAN_FACE_256`: jaw line 47-209 px across, brows
    at 55 and chin at 228 of 256), with the forehead a third of the brow-to-chin height above the brows."""
    from facskit.align import MEAN_FACE_256

    face = np.asarray(MEAN_FACE_256, dtype=np.float64) / 255.0 * 2.0 - 1.0  # crop pixels -> [-1, 1]
    left, right = face[0:17, 0].min(), face[0:17, 0].max()
    brows, chin = face[17:27, 1].min(), face[8, 1]
    top = brows - (chin - brows) / 3.0
    return (left + right) / 2.0, (top + chin) / 2.0, (right - left) / 2.0, (chin - top) / 2.0
