"""The parametric face: a 68-point 3D shape model, identity variation, AU displacement fields and head pose.

All geometry lives in *face units*: the origin is the midpoint between the two eye centres, x points to the
image right, y points down the face, z points towards the camera, and one unit is the inter-ocular distance
(outer eye corners 36-45, iBUG-68 indexing). The synthetic AU labels are only as good as these fields, so
each AU's field follows the FACS description of its muscle (Ekman, Friesen & Hager 2002) and is scaled by
intensity / 5: intensity 5 is the displacement below, 1 a fifth of it (subtle, as FACS "A" is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The AUs the generator animates (FACS codes). facskit.aus holds the full registry; this tuple is the subset
# with a displacement field and appearance cues below.
SYNTH_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)

# Mean frontal iBUG-68 shape in face units: dlib landmarks on 57 real frontal frames, similarity-normalised
# (eye centres on the x axis, outer corners 1 unit apart), averaged with their mirror images;
# the mouth is then closed (the source frames were mostly of people talking).
MEAN_SHAPE_2D = np.array(
    [
        [-0.768, 0.061],
        [-0.771, 0.262],
        [-0.752, 0.464],
        [-0.713, 0.665],
        [-0.641, 0.855],
        [-0.527, 1.026],
        [-0.380, 1.166],
        [-0.204, 1.245],
        [0.000, 1.275],
        [0.204, 1.245],
        [0.380, 1.166],
        [0.527, 1.026],
        [0.641, 0.855],
        [0.713, 0.665],
        [0.752, 0.464],
        [0.771, 0.262],
        [0.768, 0.061],
        [-0.655, -0.157],
        [-0.563, -0.263],
        [-0.422, -0.310],
        [-0.272, -0.302],
        [-0.132, -0.247],
        [0.132, -0.247],
        [0.272, -0.302],
        [0.422, -0.310],
        [0.563, -0.263],
        [0.655, -0.157],
        [0.000, -0.055],
        [0.000, 0.069],
        [0.000, 0.190],
        [0.000, 0.316],
        [-0.168, 0.432],
        [-0.086, 0.458],
        [0.000, 0.482],
        [0.086, 0.458],
        [0.168, 0.432],
        [-0.500, 0.009],
        [-0.410, -0.037],
        [-0.308, -0.040],
        [-0.207, 0.011],
        [-0.308, 0.027],
        [-0.411, 0.031],
        [0.207, 0.011],
        [0.308, -0.040],
        [0.410, -0.037],
        [0.500, 0.009],
        [0.411, 0.031],
        [0.308, 0.027],
        [-0.345, 0.705],
        [-0.223, 0.637],
        [-0.091, 0.611],
        [0.000, 0.631],
        [0.091, 0.611],
        [0.223, 0.637],
        [0.345, 0.705],
        [0.229, 0.785],
        [0.099, 0.838],
        [0.000, 0.846],
        [-0.099, 0.838],
        [-0.229, 0.785],
        [-0.299, 0.711],
        [-0.092, 0.694],
        [0.000, 0.702],
        [0.092, 0.694],
        [0.299, 0.711],
        [0.094, 0.699],
        [0.000, 0.706],
        [-0.094, 0.699],
    ],
    dtype=np.float64,
)

# iBUG-68 index of each point's mirror image (left <-> right).
MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)

JAW = np.arange(0, 17)
BROW_L, BROW_R = np.arange(17, 22), np.arange(22, 27)
NOSE_BRIDGE, NOSE_BASE = np.arange(27, 31), np.arange(31, 36)
EYE_L, EYE_R = np.arange(36, 42), np.arange(42, 48)
LIP_OUTER, LIP_INNER = np.arange(48, 60), np.arange(60, 68)

# Centre of head rotation in face units: behind the face, level with the nose (roughly the neck pivot).
ROTATION_CENTRE = np.array([0.0, 0.35, -0.75])

# Pose ranges the generator samples (degrees): yaw (turn), pitch (nod, + = chin down), roll (tilt).
POSE_LIMITS_DEG = {"yaw": 30.0, "pitch": 20.0, "roll": 20.0}


def _field(entries: dict[tuple[int, ...], tuple[float, float]], mirror_x: bool = True) -> np.ndarray:
    """A (68, 2) displacement at intensity 5 from {indices: (dx, dy)}; each point's mirror gets (-dx, dy).

    dx is given for the image-left side of the face and means *outward* when negative; the mirrored point
    gets -dx so both sides move symmetrically (outward stays outward).
    """
    field = np.zeros((68, 2))
    for indices, (dx, dy) in entries.items():
        for index in indices:
            field[index] = (dx, dy)
            if mirror_x and MIRROR[index] != index:
                field[MIRROR[index]] = (-dx, dy)
    return field


# AU displacement fields at intensity 5, face units (x right, y down). Left-side indices; mirrored.
AU_FIELDS: dict[int, np.ndarray] = {
    # AU1 inner brow raiser (frontalis, pars medialis): inner brow ends up, lids follow slightly.
    1: _field(
        {
            (21,): (0.0, -0.13),
            (20,): (0.0, -0.10),
            (19,): (0.0, -0.05),
            (18,): (0.0, -0.02),
            (37, 38): (0.0, -0.008),
        }
    ),
    # AU2 outer brow raiser (frontalis, pars lateralis): outer brow up, arched.
    2: _field(
        {
            (17,): (-0.01, -0.13),
            (18,): (0.0, -0.13),
            (19,): (0.0, -0.09),
            (20,): (0.0, -0.04),
            (21,): (0.0, -0.01),
            (37,): (0.0, -0.008),
        }
    ),
    # AU4 brow lowerer (corrugator, depressor supercilii, procerus): brows down and together.
    4: _field(
        {
            (21,): (0.07, 0.10),
            (20,): (0.05, 0.09),
            (19,): (0.03, 0.07),
            (18,): (0.015, 0.05),
            (17,): (0.0, 0.03),
            (37, 38): (0.0, 0.015),
            (27,): (0.0, 0.01),
        }
    ),
    # AU5 upper lid raiser (levator palpebrae superioris): upper lid up, sclera above the iris shows.
    5: _field({(37, 38): (0.0, -0.055), (36, 39): (0.0, -0.006), (40, 41): (0.0, 0.004)}),
    # AU6 cheek raiser (orbicularis oculi, pars orbitalis): cheeks and lower lids up, crow's feet.
    6: _field(
        {
            (40, 41): (0.0, -0.035),
            (36,): (0.0, -0.012),
            (37, 38): (0.0, 0.008),
            (1, 2): (0.0, -0.02),
            (17,): (0.0, 0.01),
            (48,): (-0.005, -0.012),
        }
    ),
    # AU7 lid tightener (orbicularis oculi, pars palpebralis): lower lid up and straight, upper lid down.
    7: _field({(40, 41): (0.0, -0.04), (37, 38): (0.0, 0.018), (36,): (0.01, -0.004)}),
    # AU9 nose wrinkler (levator labii superioris alaeque nasi): nose wings and upper lip up, brows down.
    9: _field(
        {
            (31,): (0.0, -0.06),
            (32,): (0.0, -0.05),
            (33,): (0.0, -0.045),
            (30,): (0.0, -0.03),
            (29,): (0.0, -0.015),
            (21, 20): (0.0, 0.04),
            (49, 50, 51): (0.0, -0.04),
            (61, 62): (0.0, -0.03),
            (48,): (0.0, -0.015),
            (40, 41): (0.0, -0.015),
        }
    ),
    # AU10 upper lip raiser (levator labii superioris): upper lip up, centre most, teeth may show.
    10: _field(
        {
            (50, 51): (0.0, -0.08),
            (49,): (0.0, -0.065),
            (61, 62): (0.0, -0.085),
            (60,): (0.0, -0.03),
            (48,): (-0.01, -0.03),
            (31, 32, 33): (0.0, -0.015),
        }
    ),
    # AU12 lip corner puller (zygomaticus major): corners up and out, along the nasolabial line.
    12: _field(
        {
            (48, 60): (-0.09, -0.09),
            (49,): (-0.045, -0.05),
            (59,): (-0.05, -0.055),
            (61,): (-0.03, -0.035),
            (67,): (-0.03, -0.04),
            (50,): (-0.02, -0.015),
            (58,): (-0.02, -0.02),
            (41, 40): (0.0, -0.012),
            (3, 4): (-0.01, -0.015),
        }
    ),
    # AU14 dimpler (buccinator): corners pulled in and back, tightened.
    14: _field({(48, 60): (0.04, -0.012), (49, 59): (0.015, 0.0)}),
    # AU15 lip corner depressor (depressor anguli oris): corners down.
    15: _field(
        {
            (48, 60): (-0.015, 0.085),
            (59,): (0.0, 0.04),
            (49,): (0.0, 0.03),
            (67,): (0.0, 0.03),
            (61,): (0.0, 0.025),
            (58,): (0.0, 0.01),
        }
    ),
    # AU17 chin raiser (mentalis): chin boss and lower lip pushed up.
    17: _field(
        {
            (57,): (0.0, -0.07),
            (56, 58): (0.0, -0.06),
            (55, 59): (0.0, -0.035),
            (66,): (0.0, -0.05),
            (65, 67): (0.0, -0.045),
            (62,): (0.0, -0.015),
            (61,): (0.0, -0.01),
            (8,): (0.0, -0.035),
            (7,): (0.0, -0.03),
            (6,): (0.0, -0.015),
        }
    ),
    # AU20 lip stretcher (risorius, platysma): corners pulled laterally, lips flattened.
    20: _field(
        {
            (48, 60): (-0.11, 0.02),
            (49,): (-0.05, 0.008),
            (59,): (-0.05, 0.0),
            (61, 67): (-0.03, 0.0),
            (50,): (-0.02, 0.008),
            (58,): (-0.02, -0.008),
            (5, 6): (-0.01, 0.0),
        }
    ),
    # AU23 lip tightener (orbicularis oris): red of the lips narrows, corners in.
    23: _field(
        {
            (49, 50, 51): (0.0, 0.025),
            (59, 58, 57): (0.0, -0.025),
            (48, 60): (0.025, 0.0),
            (61, 62): (0.0, 0.004),
            (66, 67): (0.0, -0.004),
        }
    ),
    # AU25 lips part (depressor labii / relaxed mentalis): lower lip drops away from the upper.
    25: _field(
        {
            (61, 62): (0.0, -0.02),
            (66, 67): (0.0, 0.07),
            (65,): (0.0, 0.0),
            (57,): (0.0, 0.06),
            (56, 58): (0.0, 0.055),
            (55, 59): (0.0, 0.03),
            (60,): (0.0, 0.005),
        }
    ),
    # AU26 jaw drop (masseter relaxed): jaw, chin and lower lip down.
    26: _field(
        {
            (8,): (0.0, 0.26),
            (7,): (0.0, 0.245),
            (6,): (0.0, 0.2),
            (5,): (0.0, 0.13),
            (4,): (0.0, 0.06),
            (3,): (0.0, 0.02),
            (57, 66): (0.0, 0.17),
            (56, 58, 65, 67): (0.0, 0.16),
            (55, 59): (0.0, 0.1),
            (60,): (0.0, 0.04),
            (48,): (0.0, 0.035),
            (62, 61): (0.0, 0.01),
        }
    ),
}

# Identity shape parameters: name -> (standard deviation, meaning); N(0, sd) clipped at 2 sd.
IDENTITY_SHAPE_PARAMS: dict[str, tuple[float, str]] = {
    "face_width": (0.05, "relative change of the jaw width"),
    "face_length": (0.06, "relative change of the lower-face length"),
    "jaw_round": (0.05, "rounder (+) or more angular (-) lower jaw, face units"),
    "eye_size": (0.10, "relative change of the eye opening and width"),
    "brow_height": (0.03, "brows up (+) or down (-), face units"),
    "brow_arch": (0.02, "arch of the brows, face units"),
    "nose_length": (0.05, "nose base lower (+), face units"),
    "nose_width": (0.10, "relative change of the nose base width"),
    "mouth_width": (0.07, "relative change of the mouth width"),
    "lip_upper": (0.25, "relative change of the upper lip thickness"),
    "lip_lower": (0.25, "relative change of the lower lip thickness"),
    "mouth_height": (0.03, "mouth lower (+), face units"),
}


@dataclass(frozen=True)
class Identity:
    """One synthetic person: shape parameters (face units) and appearance (colours RGB 0-255).

    Stored per row in the ground-truth sidecar as ``id_*`` columns so a trained model can be audited per
    identity factor (skin tone, glasses, hair).
    """

    identity_id: int
    sex: str  # "F" or "M": decides the BP4D subject prefix and a few appearance priors
    shape: tuple[float, ...]  # values of IDENTITY_SHAPE_PARAMS in that order
    skin_rgb: tuple[float, float, float]
    lip_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]
    hair_style: int  # 0 bald/shaved, 1 short, 2 medium, 3 long
    hairline: float  # y of the hairline in face units (negative = above the eyes)
    glasses: bool
    beard: float  # stubble darkness 0..1 (0 for most)
    age_lines: float  # strength of permanent lines (nasolabial, forehead) 0..1
    brow_thickness: float  # face units
    background_seed: int

    def shape_params(self) -> dict[str, float]:
        return dict(zip(IDENTITY_SHAPE_PARAMS, self.shape, strict=True))

    def as_columns(self) -> dict[str, float | int | str | bool]:
        """Flat ``id_*`` columns for the ground-truth table."""
        out: dict[str, float | int | str | bool] = {}
        for key, value in asdict(self).items():
            if key == "shape":
                for name, v in self.shape_params().items():
                    out[f"id_{name}"] = float(v)
            elif isinstance(value, tuple):
                for channel, v in zip("rgb", value, strict=True):
                    out[f"id_{key.removesuffix('_rgb')}_{channel}"] = float(v)
            else:
                out[f"id_{key}" if key != "identity_id" else "identity"] = value
        return out


# Skin tones (RGB) spanning light to dark; an identity interpolates between two neighbours.
SKIN_TONES = np.array(
    [
        [241, 204, 180],
        [228, 185, 152],
        [214, 168, 132],
        [191, 142, 106],
        [160, 112, 80],
        [120, 82, 58],
        [88, 60, 44],
    ],
    dtype=np.float64,
)
HAIR_COLOURS = np.array(
    [
        [25, 20, 18],
        [45, 32, 24],
        [80, 55, 35],
        [120, 85, 50],
        [170, 130, 80],
        [200, 170, 120],
        [140, 135, 130],
        [95, 40, 25],
    ],
    dtype=np.float64,
)
IRIS_COLOURS = np.array(
    [[60, 40, 25], [95, 65, 40], [70, 100, 120], [80, 110, 80], [40, 30, 25]], dtype=np.float64
)


def sample_identity(rng: np.random.Generator, identity_id: int = 0) -> Identity:
    """Draw one person: face shape, feature sizes, skin tone, hair, glasses (~20%), beard, background."""
    sd = np.array([s for s, _ in IDENTITY_SHAPE_PARAMS.values()])
    shape = np.clip(rng.normal(0.0, 1.0, len(sd)), -2, 2) * sd
    sex = "F" if rng.random() < 0.55 else "M"
    t = rng.random() * (len(SKIN_TONES) - 1)
    i0 = int(t)
    i1 = min(i0 + 1, len(SKIN_TONES) - 1)
    skin = SKIN_TONES[i0] * (1 - (t - i0)) + SKIN_TONES[i1] * (t - i0)
    skin = np.clip(skin * rng.uniform(0.93, 1.05) + rng.normal(0, 5, 3), 30, 250)
    lip = np.clip(skin * np.array([0.92, 0.62, 0.62]) + rng.normal(0, 6, 3), 20, 240)
    if sex == "F" and rng.random() < 0.4:  # lipstick
        lip = np.clip(lip * np.array([1.0, 0.75, 0.8]) + np.array([25, 0, 5]), 20, 240)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.15)
    style_p = [0.02, 0.25, 0.33, 0.40] if sex == "F" else [0.12, 0.6, 0.23, 0.05]
    return Identity(
        identity_id=identity_id,
        sex=sex,
        shape=tuple(float(v) for v in shape),
        skin_rgb=tuple(float(v) for v in skin),
        lip_rgb=tuple(float(v) for v in lip),
        hair_rgb=tuple(float(v) for v in np.clip(hair, 10, 230)),
        iris_rgb=tuple(float(v) for v in IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        hair_style=int(rng.choice(4, p=style_p)),
        hairline=float(rng.uniform(-0.85, -0.6)),
        glasses=bool(rng.random() < 0.2),
        beard=float(rng.uniform(0.2, 0.7)) if sex == "M" and rng.random() < 0.3 else 0.0,
        age_lines=float(rng.beta(1.5, 4.0)),
        brow_thickness=float(rng.uniform(0.045, 0.075) if sex == "M" else rng.uniform(0.03, 0.055)),
        background_seed=int(rng.integers(2**31)),
    )


def identity_shape(identity: Identity) -> np.ndarray:
    """The person's neutral 68-point shape (68, 2), face units."""
    p = identity.shape_params()
    s = MEAN_SHAPE_2D.copy()
    jaw = s[JAW]
    # Jaw: width about the midline, length below the eyes, roundness pushes the mid-jaw points out.
    jaw[:, 0] *= 1 + p["face_width"]
    jaw[:, 1] = np.where(jaw[:, 1] > 0.2, 0.2 + (jaw[:, 1] - 0.2) * (1 + p["face_length"]), jaw[:, 1])
    roundness = np.sin(np.linspace(0, np.pi, 17)) ** 2
    jaw[:, 0] += np.sign(jaw[:, 0]) * roundness * p["jaw_round"]
    s[JAW] = jaw
    for eye in (EYE_L, EYE_R):
        centre = s[eye].mean(0)
        s[eye] = centre + (s[eye] - centre) * np.array([1 + 0.4 * p["eye_size"], 1 + p["eye_size"]])
    for brow in (BROW_L, BROW_R):
        s[brow, 1] -= p["brow_height"]
        s[brow[1:4], 1] -= p["brow_arch"]
    s[NOSE_BASE, 1] += p["nose_length"]
    s[30, 1] += 0.7 * p["nose_length"]
    s[NOSE_BASE, 0] *= 1 + p["nose_width"]
    mouth = np.r_[LIP_OUTER, LIP_INNER]
    centre_y = s[[51, 57]].mean(0)[1]
    s[mouth, 0] *= 1 + p["mouth_width"]
    s[mouth, 1] += p["mouth_height"] + 0.4 * p["face_length"]
    s[[49, 50, 51, 52, 53], 1] -= p["lip_upper"] * (s[[61, 61, 62, 63, 63], 1] - s[[49, 50, 51, 52, 53], 1])
    s[[55, 56, 57, 58, 59], 1] += p["lip_lower"] * (s[[55, 56, 57, 58, 59], 1] - s[[65, 65, 66, 67, 67], 1])
    del centre_y
    return s


def expression_shape(neutral: np.ndarray, intensities: dict[int, float]) -> np.ndarray:
    """Apply AU displacement fields to a (68, 2) face-unit shape; intensities are 0..5 per AU code.

    Fields add linearly; AU45 (blink) is applied last as a closure fraction that brings the upper lids down
    onto the lower lids, because a blink closes whatever opening the other AUs left.
    """
    shape = neutral.copy()
    for code, value in intensities.items():
        if code in AU_FIELDS and value > 0:
            shape += AU_FIELDS[code] * (min(float(value), 5.0) / 5.0)
    closure = min(max(float(intensities.get(45, 0.0)), 0.0), 5.0) / 5.0
    if closure > 0:
        upper = np.array([37, 38, 43, 44])
        lower = np.array([41, 40, 47, 46])
        meet = shape[lower] + np.array([0.0, -0.008])
        shape[upper] += closure * (meet - shape[upper])
        shape[lower, 1] -= 0.006 * closure
    # Lips never cross: the inner lower lip stays at or below the inner upper lip.
    for up, low in ((61, 67), (62, 66), (63, 65)):
        shape[low, 1] = max(shape[low, 1], shape[up, 1])
    return shape


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation for head pose in degrees (yaw about y, pitch about x, roll about z; R = Rz Ry Rx).

    Signs follow the face-unit axes (y down, z to camera): positive yaw turns the face towards image right,
    positive pitch tilts the chin down, positive roll rotates the face clockwise in the image.
    """
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def project(points3d: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate (N, 3) face-unit points about ROTATION_CENTRE and project orthographically to (N, 2)."""
    rotated = (points3d - ROTATION_CENTRE) @ rotation.T + ROTATION_CENTRE
    return rotated[:, :2]
