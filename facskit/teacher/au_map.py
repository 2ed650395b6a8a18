"""From MediaPipe's blendshape coefficients (0-1) to FACS AU intensities (0-5), and which AUs the teacher
cannot see.

Two decisions live here, each measured (``tools/fit_teacher_map.py`` fits and reports them;
``benchmarks/results/teacher.md`` holds the numbers):

* **Which coefficient reads which AU.** ARKit's blendshapes are muscle-like but not FACS: ``mouthSmile``
  is AU12, ``browInnerUp`` AU1, ``jawOpen`` AU26, ``eyeBlink`` AU45 and so on (the table below). AU25 (lips
  part) has no coefficient; it is read from the mesh itself (the inner lips' gap over the eye-corner
  distance), which also counts lips parted over closed teeth, as FACS does. Masked (NaN), so a student
  learns them from synthetic data only: ``cheekSquint`` (AU6) and ``noseSneer`` (AU9) stay near 0 on
  every real face tried, smiles and disgust included; no coefficient is AU23's lip tightening; and
  ``browDown`` (AU4) is not a brow lowerer's reading: its median is 0.42-0.47 on the smiling Congress
  portraits and Obama's addresses, 0.10 on neutral portraits, and 0.03 on a crying face with furrowed
  brows (``WolfgangLanger_Pexels.mp4`` frames 60-150), with PCC 0.05 against known AU4 on textured renders.
  ``mouthShrugLower`` (AU17) likewise: PCC -0.06 against known AU17 on the renders, and a 95th percentile of
  0.65 on neutral portraits. The rule: an AU whose coefficient correlates below 0.1 with known intensities
  on the renders is masked.
* **The scale.** A coefficient is not an intensity. Each AU gets a monotone piecewise-linear map, stored as
  knots in ``au_map.json``: 0 up to what real neutral faces produce, then linear to 5 at the coefficient's
  full scale (``tools/fit_teacher_map.py`` says how each anchor is measured). Monotone means the teacher's
  ranking of faces is never changed by the map, only its units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facskit.aus import MAX_INTENSITY
from facskit.teacher.blendshapes import BLENDSHAPE_NAMES, TeacherReading, TeacherUnavailable

MAP_FILE = Path(__file__).resolve().parent / "au_map.json"
LIPS_APART = "lipsApart"  # the mesh's inner-lip gap (TeacherReading.lips_apart), a pseudo-coefficient

# AU -> the coefficients whose mean reads it (left and right averaged: FACS codes the stronger side, but
# one-sided readings of the mesh are the noisier ones).
AU_SOURCES: dict[int, tuple[str, ...]] = {
    1: ("browInnerUp",),
    2: ("browOuterUpLeft", "browOuterUpRight"),
    5: ("eyeWideLeft", "eyeWideRight"),
    7: ("eyeSquintLeft", "eyeSquintRight"),
    10: ("mouthUpperUpLeft", "mouthUpperUpRight"),
    12: ("mouthSmileLeft", "mouthSmileRight"),
    14: ("mouthDimpleLeft", "mouthDimpleRight"),
    15: ("mouthFrownLeft", "mouthFrownRight"),
    20: ("mouthStretchLeft", "mouthStretchRight"),
    25: (LIPS_APART,),
    26: ("jawOpen",),
    45: ("eyeBlinkLeft", "eyeBlinkRight"),
}
# AUs the teacher is blind to (see the module docstring): supervised by synthetic data only.
MASKED_AUS: tuple[int, ...] = (4, 6, 9, 17, 23, 24)
_INDEX = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}


def coefficient_column(name: str) -> str:
    """The teach cache's column of a coefficient: ``bs_<name>`` for a blendshape, ``lips_apart`` for
    LIPS_APART (facskit.teacher.teach writes them; a map is refitted or reapplied from them)."""
    return "lips_apart" if name == LIPS_APART else f"bs_{name}"


def table_coefficients(table: Any, names: tuple[str, ...]) -> np.ndarray:
    """(N,) float64: the mean of the named coefficients over a teach cache's rows, as :func:`coefficient`."""
    return table[[coefficient_column(n) for n in names]].to_numpy(dtype=np.float64).mean(axis=1)


def coefficient(reading: TeacherReading, names: tuple[str, ...]) -> float:
    """The mean of the named coefficients of one reading (LIPS_APART is the mesh's lip gap)."""
    values = [
        reading.lips_apart if name == LIPS_APART else float(reading.scores[_INDEX[name]]) for name in names
    ]
    return float(np.mean(values))


@dataclass(frozen=True)
class MonotoneMap:
    """A non-decreasing piecewise-linear map, flat beyond its end knots; ``x`` strictly increasing."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, dtype=float), np.asarray(self.y, dtype=float)
        if len(x) < 2 or len(x) != len(y) or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("a map needs at least two finite (x, y) knots of equal count")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
            raise ValueError("a map's x must increase strictly and its y must never decrease")
        if y[0] < 0 or y[-1] > MAX_INTENSITY:
            raise ValueError(f"a map's intensities must lie in [0, {MAX_INTENSITY}]")

    def __call__(self, value: np.ndarray | float) -> np.ndarray:
        return np.interp(value, self.x, self.y)


@dataclass(frozen=True)
class AUMap:
    """Blendshapes -> intensities for every AU of ``maps``; ``aus`` in ascending order, masked ones NaN."""

    maps: dict[int, MonotoneMap]

    def intensities(self, reading: TeacherReading, aus: tuple[int, ...]) -> np.ndarray:
        """(len(aus),) float32: mapped intensities, NaN for AUs the teacher cannot see."""
        out = np.full(len(aus), np.nan, dtype=np.float32)
        for i, au in enumerate(aus):
            if au in self.maps and au in AU_SOURCES:
                out[i] = float(self.maps[au](coefficient(reading, AU_SOURCES[au])))
        return out

    def table_intensities(self, table: Any, aus: tuple[int, ...]) -> np.ndarray:
        """(N, len(aus)) float32 from a teach cache's index (its ``bs_*`` and ``lips_apart`` columns):
        the same numbers :meth:`intensities` gives for each row's reading, for relabelling a cache."""
        out = np.full((len(table), len(aus)), np.nan, dtype=np.float32)
        for i, au in enumerate(aus):
            if au in self.maps and au in AU_SOURCES:
                out[:, i] = self.maps[au](table_coefficients(table, AU_SOURCES[au]))
        return out

    def to_json(self) -> dict:
        return {f"AU{au:02d}": {"x": list(m.x), "y": list(m.y)} for au, m in sorted(self.maps.items())}

    @classmethod
    def from_json(cls, data: dict) -> AUMap:
        maps = {}
        for key, knots in data.items():
            au = int(str(key).removeprefix("AU"))
            if au in MASKED_AUS or au not in AU_SOURCES:
                raise ValueError(f"{key}: the teacher has no reading for this AU")
            maps[au] = MonotoneMap(tuple(float(v) for v in knots["x"]), tuple(float(v) for v in knots["y"]))
        return cls(maps)


def load_au_map(path: Path = MAP_FILE) -> AUMap:
    """The shipped (or a given) blendshape -> AU map; a clear error for a missing or malformed file."""
    try:
        return AUMap.from_json(json.loads(Path(path).read_text())["maps"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TeacherUnavailable(f"{path}: not a usable teacher AU map ({error})") from error
