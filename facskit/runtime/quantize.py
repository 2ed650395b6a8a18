"""Static int8 quantisation of an exported AU model, calibrated on real aligned faces.

ONNX Runtime's int8 kernels (VNNI on AVX-512 CPUs) run the Hourglass ~3x faster than fp32 (DESIGN.md
section 6), but static quantisation fixes each activation's range from a calibration set, so that set must
look like what the model sees at analysis time: aligned face crops. Random tensors would set ranges no real
face produces and waste the 8 bits. The calibration and check sets here are aligned crops of real video
(facskit's bundled ``sample_clip.mp4`` by default, or any videos given) plus synthetic faces from
:func:`facskit.synth.render_face` (varied identity, pose, light and AUs, so that high intensities the real
clip lacks are covered). Calibration and checking use disjoint frames and seeds.

The synthetic faces are rendered when needed, not stored: they are aligned with the model's own spec
(alignment kind, crop size), which a stored crop set could not follow, and they are needed only when a
model is quantised or the backend check runs, once per model and machine (both cached). So
:mod:`facskit.synth` (a lower layer) is imported inside :func:`synthetic_face_crops` alone: analysing with
a cached int8 model, and importing this module, never load the generator.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from facskit.errors import FacskitError
from facskit.io.atomic import atomic_write, atomic_write_npy

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.spec import AUModel, ModelSpec

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "sample_clip.mp4"
Split = Literal["calibration", "check"]
# Real crops per video and synthetic faces, per split. Calibration keeps 24 + 24: on 126 held-out faces,
# int8 models calibrated on fewer had the same mean error but a larger worst case (default model: max
# 0.21-0.23 from 16-32 faces, 0.14 from 48; paper-size 0.022-0.028 against 0.015). The check's mean and max
# came out the same from 16 + 16 faces as from 24 + 24 (0.0202 / 0.137 and 0.0028 / 0.015), at two thirds
# of the cost (benchmarks/check_set_size.py; benchmarks/results/speed_2026-12-03.md).
REAL_PER_VIDEO = {"calibration": 24, "check": 16}
SYNTH_FACES = {"calibration": 24, "check": 16}
# Part of the cached crop files' names: bump it when the crops change (alignment, seeds, renderer).
CROPS_VERSION = 2
SYNTH_SEEDS = {"calibration": 1000, "check": 2000}
RENDER_THREADS = 4  # at most; one per core
CALIBRATION_BATCH = 1  # paper-size Hourglass, 48 faces: 0.74 GB peak at 1, 1.8 GB at 4, same file
# Part of every cached int8 file's name: bump it when the quantisation changes, so no stale file is reused.
QUANTISER_VERSION = 2


def real_face_crops(spec: ModelSpec, videos: Sequence[Path | str], split: Split, limit: int) -> np.ndarray:
    """Up to ``limit`` aligned crops (N, S, S, 3) uint8 per video: even frames for calibration, odd frames
    for the check, each spread over the whole video rather than its first seconds.

    Faces are found in the chosen frames alone (the video detector, then the landmark fit), not tracked
    through every frame between them, on grey (1.5x faster HOG): 0.9 s instead of 1.4 s for both splits of
    the bundled clip (benchmarks/results/speed_2026-12-03.md)."""
    from facskit.align import AlignSpec, align_faces
    from facskit.faces.detect import to_gray
    from facskit.faces.shared import shared_front_end
    from facskit.faces.still import faces_in_image
    from facskit.io import iter_frames, iter_media, probe

    align = AlignSpec(kind=spec.alignment, size=spec.crop_size)  # type: ignore[arg-type]
    front = shared_front_end(5)
    crops: list[np.ndarray] = []
    for video in videos:
        total = max(probe(video).frame_count or 2 * limit, 2)
        step = max(2, 2 * (total // (2 * limit)))  # even, so the parity of the frames is kept
        offset = 0 if split == "calibration" else 1
        found = 0
        for frame in iter_frames(next(iter_media([os.fspath(video)]))):
            if found >= limit:
                break
            if frame.index % step != offset:
                continue
            faces = faces_in_image(to_gray(frame.image), front.video_detector, front.predictor)
            good = [f for f in faces if f.success]
            if not good:
                continue
            batch, _, _ = align_faces(frame.image, np.stack([f.landmarks for f in good]), align)
            crops.extend(batch[: limit - found])
            found += min(len(batch), limit - found)
    if not crops:
        return np.zeros((0, spec.crop_size, spec.crop_size, 3), np.uint8)
    return np.stack(crops)


def synthetic_face_crops(spec: ModelSpec, split: Split, count: int | None = None) -> np.ndarray:
    """``count`` synthetic faces (N, S, S, 3) uint8 (default: the split's :data:`SYNTH_FACES`), aligned like
    real ones from their own landmarks, with random identity, pose (|yaw| <= 30 degrees) and AU intensities
    0-5.

    Each face draws from its own generator (seeded by the split and its index), so the faces can be rendered
    on threads and come out the same in any order: the renderer is numpy and OpenCV on whole images, which
    release the GIL, and 2 threads rendered 16 faces in 0.67 s against 1.07 s on 2 cores."""
    from concurrent.futures import ThreadPoolExecutor

    from facskit.align import AlignSpec, align_faces
    from facskit.synth.face_model import SYNTH_AUS, sample_identity
    from facskit.synth.render import Pose, render_face

    align = AlignSpec(kind=spec.alignment, size=spec.crop_size)  # type: ignore[arg-type]
    count = SYNTH_FACES[split] if count is None else count

    def crop(n: int) -> np.ndarray:
        rng = np.random.default_rng([SYNTH_SEEDS[split], n])
        identity = sample_identity(rng, n)
        aus = {int(a): float(rng.uniform(0, 5)) if rng.random() < 0.6 else 0.0 for a in SYNTH_AUS}
        pose = Pose(
            yaw=float(rng.uniform(-30, 30)),
            pitch=float(rng.uniform(-15, 15)),
            roll=float(rng.uniform(-15, 15)),
        )
        image, landmarks = render_face(identity, aus, pose, rng, size=320)
        return align_faces(image, landmarks[None], align)[0][0]

    with ThreadPoolExecutor(max_workers=min(RENDER_THREADS, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(crop, range(count))))


def face_crops(spec: ModelSpec, split: Split, videos: Sequence[Path | str] | None = None) -> np.ndarray:
    """Real then synthetic aligned crops (N, S, S, 3) uint8 for ``split`` (see the module docstring).

    The default set (no ``videos``) depends only on the alignment and the crop size, so it is made once per
    machine and kept in the cache folder: rendering and aligning it takes 4-5 s per split, which every
    backend check and int8 quantisation of another model would otherwise pay again."""
    if videos:
        return _make_face_crops(spec, split, videos)
    import facskit
    from facskit.runtime.export import cache_dir

    name = f"{spec.alignment}-{spec.crop_size}-{split}-{facskit.__version__}-v{CROPS_VERSION}.npy"
    path = cache_dir() / "crops" / name
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.dtype == np.uint8 and cached.shape[1:] == (spec.crop_size, spec.crop_size, 3):
            return cached
    except (OSError, ValueError, EOFError, IndexError):
        pass  # absent or damaged: made again
    crops = _make_face_crops(spec, split, [SAMPLE_CLIP])
    with contextlib.suppress(OSError, FacskitError):  # a read-only cache costs the next check the rendering
        atomic_write_npy(path, crops, parents=True)
    return crops


def _make_face_crops(spec: ModelSpec, split: Split, videos: Sequence[Path | str]) -> np.ndarray:
    real = real_face_crops(spec, videos, split, REAL_PER_VIDEO[split])
    return np.concatenate([real, synthetic_face_crops(spec, split)])


class _CropReader:
    """onnxruntime's CalibrationDataReader over preprocessed crops, ``batch`` at a time.

    It also has the length and ``set_range`` that ONNX Runtime's strided MinMax calibration asks for: the
    calibrator keeps every intermediate tensor of the batches it has been given until it reduces them to
    ranges, so handing it one face at a time bounds its memory (a paper-size Hourglass peaked at 4.3 GB
    calibrating 48 faces in one go, 0.74 GB one face at a time; benchmarks/results/int8.md) and gives the
    same ranges, since the min and max of the batches' ranges are those of the whole set (the int8 files
    made in batches of 1 and 4 are byte-identical).
    """

    def __init__(self, crops: np.ndarray, spec: ModelSpec, input_name: str, batch: int | None = None):
        self._crops, self._spec, self._input = crops, spec, input_name
        self._batch = batch or CALIBRATION_BATCH
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self._crops) // self._batch)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        from facskit.models.spec import preprocess

        if self._next >= self._end:
            return None
        start = self._next * self._batch
        self._next += 1
        return {self._input: preprocess(self._crops[start : start + self._batch], self._spec).numpy()}


def quantize_onnx(fp32_path: Path | str, out_path: Path | str, crops: np.ndarray) -> Path:
    """Write an int8 copy of the ONNX model ``fp32_path`` to ``out_path`` (atomic; facskit metadata kept).

    Static QDQ quantisation, per-channel int8 weights and uint8 activations (the U8S8 form ONNX Runtime's
    VNNI kernels run fastest), activation ranges from ``crops`` by MinMax. The convolution that reads the
    image stays fp32 (see :func:`input_convolutions`).
    """
    if len(crops) == 0:
        raise FacskitError("int8 quantisation needs calibration faces; none were found")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pre = out_path.with_name(f".{out_path.stem}.{os.getpid()}.pre.onnx")
    try:
        return atomic_write(out_path, partial(_write_int8, Path(fp32_path), pre, crops))
    finally:
        pre.unlink(missing_ok=True)


def _write_int8(fp32_path: Path, pre: Path, crops: np.ndarray, tmp: Path) -> None:
    """Quantise ``fp32_path`` into ``tmp`` (``pre`` holds ORT's shape-inferred copy) and carry over the
    facskit metadata ORT's quantiser drops."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from facskit.runtime.export import INPUT_NAME, read_onnx_spec

    spec = read_onnx_spec(fp32_path)
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(tmp),
        _CropReader(crops, spec, INPUT_NAME),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=input_convolutions(onnx.load(str(pre), load_external_data=False)),
        extra_options={"CalibStridedMinMax": 1},  # one batch at a time: see _CropReader
    )
    source = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    proto = onnx.load(str(tmp))
    present = {p.key for p in proto.metadata_props}
    for key, value in source.items():
        if key not in present:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))


def input_convolutions(proto: object) -> list[str]:
    """Names of the Conv nodes that read the graph's input image, which int8 quantisation leaves in fp32.

    Keeping the first layer in higher precision is the usual practice, and measured here: on the default
    model's 48 held-out check faces, all-int8 differs from fp32 by 0.043 mean / 0.67 max AU intensity (over
    the 0.05 / 0.25 limit of the backend check); with the input convolution left fp32, 0.021 / 0.14 at the
    same speed (one 3-channel convolution of 56). Percentile calibration or leaving only the heatmap head in
    fp32 did not help (0.045 / 0.66 and 0.042 / 0.66). benchmarks/results/int8.md has the numbers.
    """
    graph = proto.graph  # type: ignore[attr-defined]
    inputs = {i.name for i in graph.input}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]


def cached_int8_path(model: AUModel, weights_hash: str) -> Path:
    """The int8 ONNX model of ``model``, quantised on first use and cached next to its fp32 export."""
    from facskit.runtime.export import cached_onnx_path

    fp32 = cached_onnx_path(model, weights_hash)
    path = fp32.with_name(f"{fp32.stem}-int8-q{QUANTISER_VERSION}.onnx")
    if not path.is_file():
        quantize_onnx(fp32, path, face_crops(model.spec, "calibration"))
    return path


__all__ = [
    "SAMPLE_CLIP",
    "cached_int8_path",
    "face_crops",
    "quantize_onnx",
    "real_face_crops",
    "synthetic_face_crops",
]
