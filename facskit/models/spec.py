"""The frozen description every AU model carries, and the pure pre/post-processing derived from it.

A `ModelSpec` is all a checkpoint needs besides its weights: the architecture and its arguments, the
input size and normalisation, the AU list and heatmap convention, and the face alignment the crops must
come from. Pre-processing (`preprocess`) and the readout (`intensity_from_heatmaps`) are plain functions
of the spec so the analysis pipeline, the trainer and the exporter cannot disagree about them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Convention = Literal["bmvc", "scc"]
Arch = Literal["hourglass", "scc"]

BP4D_AUS: tuple[int, ...] = (6, 10, 12, 14, 17)
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)

# Intensities are on the FACS 0-5 scale; both papers read a map's maximum and clip it to that range.
INTENSITY_MIN = 0.0
INTENSITY_MAX = 5.0
READOUT = "max_clip_0_5"

# BMVC'18 feeds RGB / 255; AAAI'20 subtracts the ImageNet RGB means on the 0-255 scale (no scaling).
BMVC_MEAN = (0.0, 0.0, 0.0)
BMVC_STD = (255.0, 255.0, 255.0)
SCC_MEAN = (123.68, 116.78, 103.94)
SCC_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model and to feed and read it.

    `arch_args` holds the builder's keyword arguments as sorted (name, value) pairs so the spec stays
    hashable; `kwargs` gives them back as a dict.
    """

    name: str  # registry name the model was created from ("bmvc2018", "scc-lite", ...)
    arch: Arch  # which builder: "hourglass" (BMVC'18) or "scc" (AAAI'20)
    arch_args: tuple[tuple[str, Any], ...]  # architecture arguments (width, depth, k, ...)
    input_size: int  # network input S (pixels); crops of another size are resized to it
    aus: tuple[int, ...]  # AU codes, in output order
    convention: Convention  # "bmvc": one map per AU; "scc": two maps per AU (points 2a, 2a + 1)
    mean: tuple[float, float, float] = BMVC_MEAN  # subtracted from 0-255 RGB
    std: tuple[float, float, float] = BMVC_STD  # divides after the subtraction
    alignment: str = "bmvc"  # facskit.align AlignSpec kind the crops come from
    crop_size: int = 256  # aligned crop size S_crop; target points are in these pixels
    readout: str = READOUT  # heatmaps -> intensities rule (see intensity_from_heatmaps)

    def __post_init__(self) -> None:
        if self.convention not in ("bmvc", "scc"):
            raise ValueError(f"heatmap convention must be 'bmvc' or 'scc', not {self.convention!r}")
        if not self.aus:
            raise ValueError("a model needs at least one AU")
        if self.input_size % 4:
            raise ValueError(f"input_size must be a multiple of 4, not {self.input_size}")
        # Normalise types so a spec read back from a checkpoint compares equal to the original.
        object.__setattr__(self, "aus", tuple(int(a) for a in self.aus))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "arch_args", tuple(sorted((str(k), _freeze(v)) for k, v in self.arch_args)))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.arch_args)

    @property
    def n_maps(self) -> int:
        """Number of output heatmaps P: A for "bmvc", 2A for "scc"."""
        return len(self.aus) * (2 if self.convention == "scc" else 1)

    @property
    def map_size(self) -> int:
        """Heatmap side: both architectures output at 1/4 of the input (64 for a 256 input)."""
        return self.input_size // 4

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data only (str, int, float, bool, lists, dicts): `torch.load(weights_only=True)` reads it."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["arch_args"] = {k: _thaw(v) for k, v in self.arch_args}
        out["aus"] = list(self.aus)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model spec fields {unknown}")
        values = dict(data)
        values["arch_args"] = tuple(dict(values.get("arch_args", {})).items())
        return cls(**values)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


def preprocess(crops: np.ndarray | torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Aligned uint8 RGB crops (B, S, S, 3) -> the network input (B, 3, input_size, input_size) float32.

    Crops whose side differs from `spec.input_size` (e.g. 256-pixel cache crops for a 128-input lite
    model) are resized with antialiased bilinear interpolation after normalisation. A tensor on a GPU is
    processed there: uploading uint8 and normalising on the device moves a quarter of the bytes and takes
    the float work off the host.
    """
    x = torch.as_tensor(crops)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected square RGB crops (B, S, S, 3), got shape {tuple(x.shape)}")
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device)
    x = ((x.to(torch.float32) - mean) / std).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S)
    if x.shape[-1] != spec.input_size:
        size = (spec.input_size, spec.input_size)
        x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """uint8 crops ``(B, S, S, 3)`` -> ``(B, size, size, 3)`` uint8 with :func:`preprocess`'s filter.

    The training loader resizes a 256-pixel cache crop to a 128-input model's size *before* augmenting
    it, so the warp, colour jitter and normalisation touch a quarter of the pixels. Using the same
    antialiased bilinear filter as :func:`preprocess` keeps the training images what inference sees
    (they differ only by rounding to uint8, under 1 grey level).
    """
    # A channels-last uint8 view takes PyTorch's vectorised uint8 path: 10x the float one, within 1 level.
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8)).permute(0, 3, 1, 2)
    y = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def intensity_from_heatmaps(maps: torch.Tensor, convention: Convention) -> torch.Tensor:
    """Heatmaps (B, P, H, W) -> AU intensities (B, A) on the 0-5 scale.

    BMVC'18 (Sanchez-Lozano et al., sec. 3) reads each AU map's maximum clipped to [0, 5]; AAAI'20
    (Fan et al.) draws two maps per AU (points 2a and 2a + 1) whose peaks both scale with the intensity,
    so their clipped maxima are averaged. The rule lives in facskit.targets next to the targets it
    inverts; this re-export keeps the model's readout and the training targets one definition.
    """
    from facskit.targets import intensity_from_heatmaps as readout

    return readout(maps, convention)


class AUModel(nn.Module):
    """Base of every AU network: `forward(x) -> heatmaps (B, P, H, W)` plus the spec it was built from.

    The spec is a plain attribute, not a buffer, so the state_dict holds weights only (the BMVC'18
    release must load into it with no extra key).
    """

    spec: ModelSpec

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def preprocess(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        return preprocess(crops, self.spec)

    def intensities(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return intensity_from_heatmaps(heatmaps, self.spec.convention)


__all__ = [
    "AUModel",
    "BP4D_AUS",
    "DISFA_AUS",
    "ModelSpec",
    "intensity_from_heatmaps",
    "preprocess",
    "resize_crops",
]
