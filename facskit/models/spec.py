"""The frozen description every AU model carries, and the pure pre/post-processing derived from it.

A `ModelSpec` is all a checkpoint needs besides its weights: the architecture and its arguments, the
input size and normalisation, the AU list and heatmap convention, and the face alignment the crops must
come from. Pre-processing (`preprocess`) and the readout (`intensity_from_heatmaps`) are plain functions
of the spec so the analysis pipeline, the trainer and the exporter cannot disagree about them.

This module does not import torch: ONNX Runtime inference reads the spec and feeds the network through
`preprocess_numpy` without it (importing torch costs ~1 s and ~200 MB per process, paid again by every Ray
worker). `preprocess` and `resize_crops` import torch when called; `AUModel`, an ``nn.Module``, lives in
:mod:`facskit.models.base` and is re-exported here on first access.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from facskit.aus import BP4D_AUS, DISFA_AUS

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from facskit.models.base import AUModel

Convention = Literal["bmvc", "scc"]
Arch = Literal["hourglass", "scc"]

# Intensities are on the FACS 0-5 scale; both papers read a map's maximum and clip it to that range.
INTENSITY_MIN = 0.0
READOUT = "max_clip_0_5"

# Bounds of a spec's sizes. A spec is small and its network's size follows from it, so a checkpoint of a
# few bytes could otherwise ask for gigabytes before its weights are read. The papers use 256-pixel inputs
# and crops and at most 12 AUs; these leave room for larger experiments and refuse only the absurd.
MAX_INPUT_SIZE = 1024
MAX_CROP_SIZE = 2048
MAX_AUS = 64
MAX_AU_CODE = 999

# BMVC'18 feeds RGB / 255; AAAI'20 subtracts the ImageNet RGB means on the 0-255 scale (no scaling).
BMVC_MEAN = (0.0, 0.0, 0.0)
BMVC_STD = (255.0, 255.0, 255.0)
SCC_MEAN = (123.68, 116.78, 103.94)
SCC_STD = (1.0, 1.0, 1.0)

_WORK = threading.local()  # preprocess_numpy's reusable work arrays, one set per thread


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
        # A spec also arrives from a checkpoint someone sent: every field is checked for its type and a
        # sane range here, before a network (whose size follows from these numbers) is ever built.
        for name in ("name", "arch", "alignment", "readout"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, not {getattr(self, name)!r}")
        if self.convention not in ("bmvc", "scc"):
            raise ValueError(f"heatmap convention must be 'bmvc' or 'scc', not {self.convention!r}")
        input_size = _whole(self.input_size, "input_size", 4, MAX_INPUT_SIZE)
        if input_size % 4:
            raise ValueError(f"input_size must be a multiple of 4, not {input_size}")
        crop_size = _whole(self.crop_size, "crop_size", 8, MAX_CROP_SIZE)
        if isinstance(self.aus, str | bytes) or not isinstance(self.aus, list | tuple):
            raise ValueError(f"aus must be a list of AU codes, not {self.aus!r}")
        if not self.aus:
            raise ValueError("a model needs at least one AU")
        if len(self.aus) > MAX_AUS:
            raise ValueError(f"a model predicts at most {MAX_AUS} AUs, not {len(self.aus)}")
        # Normalise types so a spec read back from a checkpoint compares equal to the original.
        object.__setattr__(self, "input_size", input_size)
        object.__setattr__(self, "crop_size", crop_size)
        object.__setattr__(self, "aus", tuple(_whole(a, "an AU code", 1, MAX_AU_CODE) for a in self.aus))
        object.__setattr__(self, "mean", _finite_triple(self.mean, "mean"))
        object.__setattr__(self, "std", _finite_triple(self.std, "std"))
        if 0.0 in self.std:
            raise ValueError(f"std divides the input and must not hold 0, got {list(self.std)}")
        pairs = self.arch_args
        if not isinstance(pairs, list | tuple) or any(
            not isinstance(p, list | tuple) or len(p) != 2 for p in pairs
        ):
            raise ValueError(f"arch_args must be (name, value) pairs, not {pairs!r}")
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


def _whole(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``low..high``; a bool, float or string is refused, not rounded or parsed."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {value}")
    return int(value)


def _finite_triple(value: Any, name: str) -> tuple[float, float, float]:
    """Three finite numbers (one per RGB channel) as floats."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"{name} must be three numbers (R, G, B), not {value!r}")
    if not all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be three numbers (R, G, B), not {value!r}")
    floats = tuple(float(v) for v in value)
    if not all(np.isfinite(floats)):
        raise ValueError(f"{name} must be finite, not {list(floats)}")
    return floats  # type: ignore[return-value]


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
    import torch
    from torch import nn

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


def preprocess_numpy(crops: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """:func:`preprocess` without torch, for ONNX Runtime: RGB crops (B, S, S, 3) -> float32
    (B, 3, input_size, input_size).

    It repeats the float32 arithmetic of PyTorch's CPU kernels in their order: ``(x - mean) / std``, then the
    antialiased bilinear resize as two separable passes, width then height (:func:`_resample`). Against
    PyTorch's AVX2 / AVX-512 kernels it is bit for bit :func:`preprocess` without a resize and for any resize
    of at most 2x down (at most 4 taps per output: facskit's 256-pixel crops into 128- or 256-input models).
    Otherwise the two can differ in the last bit of a float32: PyTorch's vectorised loop leaves part of a
    longer sum unfused, and its build without FMA fuses none.

    Each crop is first split into contiguous channel planes (one uint8 transpose: reading the interleaved
    channels with strides is what made a whole-batch version slower) and normalised there. An exact halving
    (256 -> 128, the default model) then takes :func:`_halve_crops`, the same arithmetic on shifted slices
    instead of gathers: 0.54 against 1.46 ms per crop before it (batch 16, best of 100, 2 AMD EPYC cores,
    numpy 2.4). Every other size takes the per-plane gathers of :func:`_resample`. All paths give the same
    bits (tests/models/test_spec.py checks them against a plain reference).
    """
    x = np.asarray(crops)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected square RGB crops (B, S, S, 3), got shape {tuple(x.shape)}")
    side, size = x.shape[1], spec.input_size
    out = np.empty((len(x), 3, size, size), dtype=np.float32)  # (B, 3, s, s)
    if x.dtype == np.uint8 and side == 2 * size and _halving(side) and _scalable(spec.mean, spec.std):
        _halve_crops(x, spec, out)
        return out
    mean, std = (np.array(v, np.float32).reshape(3, 1, 1) for v in (spec.mean, spec.std))
    u = np.empty((3, side, side), dtype=x.dtype)  # one crop as channel planes
    if side == size:
        for b in range(len(x)):
            np.copyto(u, x[b].transpose(2, 0, 1))
            _normalise(u, mean, std, out[b])
        return out
    planes = np.empty((3, side, side), dtype=np.float32)
    taps = _antialias_taps(side, size)
    rows = np.empty((side, size), dtype=np.float32)  # after the width pass
    work = [(np.empty(shape, np.float32), np.empty(shape)) for shape in (rows.shape, (size, size))]
    for b in range(len(x)):
        np.copyto(u, x[b].transpose(2, 0, 1))
        _normalise(u, mean, std, planes)
        for c in range(3):
            _resample(planes[c], taps, 1, rows, work[0])
            _resample(rows, taps, 0, out[b, c], work[1])
    return out


def _normalise(u: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray) -> None:
    """``out = (u - mean) / std`` in float32, per element as :func:`preprocess`. A uint8 in float32 is exact
    and ``u - 0`` is ``u``, so uint8 crops and a zero mean skip the subtraction: one pass instead of two."""
    if u.dtype == np.uint8 and not mean.any():
        np.divide(u, std, out=out, dtype=np.float32)
    else:
        np.subtract(u, mean, out=out, dtype=np.float32)
        np.divide(out, std, out=out)


def _resample(
    x: np.ndarray,
    taps: tuple[np.ndarray, np.ndarray],
    axis: int,
    out: np.ndarray,
    work: tuple[np.ndarray, np.ndarray],
) -> None:
    """One pass of PyTorch's antialiased resize along ``axis`` of the float32 plane ``x``, into ``out``.

    Each output is ``t0 * w0``, then ``+ t_k * w_k`` tap by tap, each step rounded once to float32 as
    PyTorch's compiled kernel does with a fused multiply-add: a float32 * float32 product is exact in
    float64, so adding it in float64 and rounding gives the fused result. A tap past an output's window has
    weight 0 and leaves it unchanged. ``work``: a float32 and a float64 buffer of ``out``'s shape.
    """
    index, weights = taps  # (K, s), (K, s)
    shape = (-1, 1) if axis == 0 else (1, -1)
    tap, product = work
    np.take(x, index[0], axis=axis, out=tap)
    np.multiply(tap, weights[0].reshape(shape), out=out, casting="unsafe")
    for k in range(1, len(index)):
        np.take(x, index[k], axis=axis, out=tap)
        np.multiply(tap, weights[k].reshape(shape), out=product)
        np.add(out, product, out=out, casting="unsafe")


def _halve_crops(x: np.ndarray, spec: ModelSpec, out: np.ndarray) -> None:
    """:func:`preprocess_numpy` for crops of twice the input size, the same bits as :func:`_resample`.

    Inside the image, output ``i`` of a pass reads inputs ``2i-1 .. 2i+2`` with weights 1/8, 3/8, 3/8, 1/8,
    so a crop is split into planes by channel, row parity and column parity (one uint8 transpose), after
    which every tap of every pass is a contiguous slice shifted by one element (width) or one row (height)
    of a flattened plane: no gathers, and long loops. The outputs on the image border (first and last
    column and row) have other windows; their shifted-slice values are wrong and are overwritten by
    :func:`_fused` on the border inputs alone. :func:`_halve` takes its taps divided by 8, so the
    normalisation divides by ``64 * std``: the width pass then runs on the normalised values / 8, exactly
    (:func:`_scalable`), and yields its output / 8, what the height pass takes. Border weights are * 8.
    """
    n, side, h = len(x), x.shape[1], x.shape[1] // 2
    window, weights = _border_taps(side)
    mean = np.array(spec.mean, np.float32).reshape(3, 1, 1, 1, 1)
    std = np.array(spec.std, np.float32).reshape(3, 1, 1, 1, 1) * np.float32(64)
    # The 8 input columns 0-3 and side-4 .. side-1 as (column, crop, channel, row), and the first and last
    # column of the width pass (first / last, crop, channel, row).
    edge_in = np.empty((8, n, 3, side), np.float32)
    edge_u = np.concatenate((x[:, :, :4], x[:, :, -4:]), axis=2).transpose(2, 0, 3, 1)
    _normalise(edge_u, mean.reshape(3, 1), std.reshape(3, 1), edge_in)
    edge_cols = np.empty((2, n, 3, h, 2), np.float32)  # the rows as (row // 2, row parity)
    _fused(edge_cols.reshape(2, n, 3, side), edge_in[window], weights.reshape(4, 2, 1, 1, 1))
    edge_rows = np.empty((8, n, 3, h), np.float32)  # rows 0-3 and side-4 .. side-1 of the width pass
    pairs = x.reshape(n, side * h, 6)  # (crop, row * h + column // 2, column parity * 3 + channel)
    u, q, w, prod = _halving_buffers(h)  # w: width pass / 8 as (channel, row parity, row // 2, column)
    # u as (channel, row parity, column parity, row // 2, column // 2): q's layout
    planes = u.reshape(2, 3, h, 2, h).transpose(1, 3, 0, 2, 4)
    hh = h * h
    qe, qo, flat = q[:, :, 0].reshape(3, 2, hh), q[:, :, 1].reshape(3, 2, hh), w.reshape(3, 2, hh)
    we, wo = flat[:, 0], flat[:, 1]  # even and odd rows
    for b in range(n):
        np.copyto(u, pairs[b].T)  # a plain 2-D transpose: faster than one straight into q's layout
        _normalise(planes, mean, std, q)
        _halve(flat[..., 1:-1], (qo[..., :-2], qe[..., 1:-1], qo[..., 1:-1], qe[..., 2:]), prod)
        w[..., 0] = edge_cols[0, b].transpose(0, 2, 1)
        w[..., -1] = edge_cols[1, b].transpose(0, 2, 1)
        plane = out[b].reshape(3, hh)
        _halve(plane[:, h:-h], (wo[:, : -2 * h], we[:, h:-h], wo[:, h:-h], we[:, 2 * h :]), prod)
        np.copyto(edge_rows[:4, b].reshape(2, 2, 3, h), w[:, :, :2].transpose(2, 1, 0, 3))
        np.copyto(edge_rows[4:, b].reshape(2, 2, 3, h), w[:, :, -2:].transpose(2, 1, 0, 3))
    _fused(out[:, :, :: h - 1].transpose(2, 0, 1, 3), edge_rows[window], weights.reshape(4, 2, 1, 1, 1))


@functools.cache
def _border_taps(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the taps (4, 2) of the first and last output of a ``side -> side // 2`` pass lie among the
    8 border inputs kept by :func:`_halve_crops` (0-3, side-4 .. side-1), and their weights * 8."""
    index, weights = _antialias_taps(side, side // 2)
    index = index[:, [0, -1]]
    return np.where(index < 4, index, index - side + 8), weights[:, [0, -1]] * 8


def _halving_buffers(h: int) -> tuple[np.ndarray, ...]:
    """The per-crop work arrays of :func:`_halve_crops`, kept per thread: allocated afresh (2 MB for 256-pixel
    crops) they cost page faults on every call, and a batch of one crop took 1.6 ms instead of 0.6."""
    buffers = getattr(_WORK, "halving", None)
    if buffers is None or buffers[2].shape[-1] != h:
        u, q = np.empty((6, 2 * h * h), np.uint8), np.empty((3, 2, 2, h, h), np.float32)
        buffers = _WORK.halving = (u, q, np.empty((3, 2, h, h), np.float32), np.empty(6 * h * h))
    return buffers


def _halve(out: np.ndarray, taps: tuple[np.ndarray, ...], prod: np.ndarray) -> None:
    """One halving pass, ``out = a/8 + 3b/8 + 3c/8 + d/8`` rounded as :func:`_resample` does, given the
    taps ``a, b, c, d`` already divided by 8.

    Its first step, ``a * 1/8`` rounded to float32, is exact (:func:`_scalable`): it is ``a`` here. ``3b`` is
    exact in float64, added there and rounded to float32, as is ``3c``. Adding ``d`` in float32 rounds once,
    which equals the float64 sum rounded to float32 (for a sum of two float32s, 53 >= 2 * 24 + 2 bits make
    the double rounding harmless): one float32 pass instead of two mixed ones. ``prod``: a float64 buffer of
    at least ``out.size``.
    """
    a, b, c, d = taps
    p = prod[: out.size].reshape(out.shape)
    np.multiply(b, np.float64(3.0), out=p, dtype=np.float64)
    np.add(a, p, out=out, casting="unsafe", dtype=np.float64)
    np.multiply(c, np.float64(3.0), out=p, dtype=np.float64)
    np.add(out, p, out=out, casting="unsafe", dtype=np.float64)
    np.add(out, d, out=out)


def _fused(out: np.ndarray, taps: np.ndarray, weights: np.ndarray) -> None:
    """``out = taps[0] * w0``, then ``+ taps[k] * wk`` per tap, each step rounded as in :func:`_resample`."""
    prod = np.multiply(taps, weights, dtype=np.float64)  # exact
    np.copyto(out, prod[0], casting="unsafe")
    for product in prod[1:]:
        np.add(out, product, out=out, casting="unsafe")


@functools.cache
def _halving(side: int) -> bool:
    """Whether ``side -> side // 2`` has the taps :func:`_halve_crops` assumes: 1/8, 3/8, 3/8, 1/8 on inputs
    ``2i-1 .. 2i+2`` inside, border windows within 4 inputs of the edge, no border weight under 1/8."""
    h = side // 2
    if side % 2 or h < 4:
        return False
    index, weights = _antialias_taps(side, h)
    border, edges = weights[:, [0, -1]], index[:, [0, -1]]
    return (
        index.shape[0] == 4
        and np.array_equal(index[:, 1:-1], np.arange(1, 2 * h - 4, 2) + np.arange(4)[:, None])
        and np.array_equal(weights[:, 1:-1].T, np.tile([0.125, 0.375, 0.375, 0.125], (h - 2, 1)))
        and bool((edges[:, 0] < 4).all() and (edges[:, 1] >= side - 4).all())
        and bool((border[border != 0] >= 0.125).all())
    )


@functools.cache
def _scalable(mean: tuple[float, float, float], std: tuple[float, float, float]) -> bool:
    """Whether :func:`_halve_crops` may keep the pass inputs divided by 64 and 8 for this normalisation.

    Every normalised value is one of 256 per channel. If each non-zero one lies in [2^-60, 2^60], dividing
    by ``64 * std`` gives exactly the value / 64 (checked here outright), and every value kept divided (the
    pass inputs, the width pass output, their partial sums) is 0 or a multiple of 2^-112 below 2^64: the
    values are multiples of 2^-83 and the border weights (>= 1/8) of 2^-26. That is float32's normal range,
    where scaling by a power of two commutes with rounding. Others (e.g. ``std`` under ~2e-16 or over ~1e18)
    take the general path.
    """
    u = np.arange(256, dtype=np.float32)[:, None]
    m, s = np.array(mean, np.float32), np.array(std, np.float32)
    with np.errstate(all="ignore"):
        values = (u - m) / s
        scaled = (u - m) / (s * np.float32(64))
    size = np.abs(values[values != 0])
    return bool(
        np.isfinite(values).all()
        and np.array_equal(scaled * np.float32(64), values)
        and ((size >= 2.0**-60) & (size <= 2.0**60)).all()
    )


@functools.cache
def _antialias_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices (K, out_size) and weights (K, out_size) of PyTorch's antialiased bilinear resize along
    one axis: ATen's ``_compute_indices_min_size_weights_aa`` (Pillow's window bounds and triangle filter)
    with its mix of float32 and float64 arithmetic, so the weights are its float32 weights (held in
    float64, exactly). Taps past an output's window point at the last input with weight 0."""
    f32, f64 = np.float32, np.float64
    scale = f32(in_size) / f32(out_size)  # area_pixel_compute_scale<float>, align_corners=False
    downscaling = scale >= 1.0
    support = scale if downscaling else f32(1.0)  # bilinear: half-width 1, widened by the scale
    invscale = f32(1.0 / f64(scale)) if downscaling else f32(1.0)
    taps = int(np.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.int64)
    weights = np.zeros((taps, out_size), dtype=np.float32)
    used = 0
    for i in range(out_size):
        center = f32(f64(scale) * (i + 0.5))
        lo = max(int(f64(center - support) + 0.5), 0)  # C++ casts truncate toward zero, as int() does
        count = min(max(min(int(f64(center + support) + 0.5), in_size) - lo, 0), taps)
        total = f32(0.0)
        for j in range(count):
            t = f32((f64(f32(j + lo) - center) + 0.5) * f64(invscale))
            w = f32(1.0 - f64(abs(t))) if abs(t) < 1.0 else f32(0.0)
            weights[j, i] = w
            total = f32(total + w)
        if total != 0.0:
            weights[:count, i] /= total
        first[i] = lo
        used = max(used, count)
    index = np.minimum(first + np.arange(used)[:, None], in_size - 1)
    weights = weights[:used].astype(np.float64)
    index.setflags(write=False)
    weights.setflags(write=False)
    return index, weights


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """uint8 crops ``(B, S, S, 3)`` -> ``(B, size, size, 3)`` uint8 with :func:`preprocess`'s filter.

    The training loader resizes a 256-pixel cache crop to a 128-input model's size *before* augmenting
    it, so the warp, colour jitter and normalisation touch a quarter of the pixels. Using the same
    antialiased bilinear filter as :func:`preprocess` keeps the training images what inference sees
    (they differ only by rounding to uint8, under 1 grey level).
    """
    import torch
    from torch import nn

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


__all__ = [
    "AUModel",
    "BP4D_AUS",
    "DISFA_AUS",
    "ModelSpec",
    "intensity_from_heatmaps",
    "preprocess",
    "preprocess_numpy",
    "resize_crops",
]


def __getattr__(name: str) -> Any:
    # AUModel is an nn.Module: importing it imports torch, which the spec and the ONNX path never need.
    if name == "AUModel":
        from facskit.models.base import AUModel

        return AUModel
    raise AttributeError(f"module 'facskit.models.spec' has no attribute {name!r}")
