"""Write synthetic sequences in the real on-disk layouts (DISFA, BP4D/FERA 2015, facskit folder) plus truth.

Layouts (frame numbers as in the real datasets; ``size`` x ``size`` RGB frames):

* ``disfa``: ``Videos_LeftCamera/LeftVideoSN001_comp.avi`` (MPEG-4 Part 2, 20 fps; video frame k, 0-based,
  is label frame k + 1); ``ActionUnit_Labels/SN001/SN001_au1.txt`` lines ``frame,intensity`` (frame from 1,
  integer 0-5) for the 12 DISFA AUs; ``Landmark_Points/SN001/tmp_frame_lm/l0001_lm.mat`` (frame from 1,
  4 digits), MATLAB variable ``pts``: float64 (66, 2) ``(x, y)`` 0-based pixel coordinates = the 68 iBUG
  points without the inner mouth corners 60 and 64. One sequence (video) per subject: SN001, SN002, ...
* ``bp4d``: ``F001/T1/0001.jpg`` (frame from 1, 4 digits; subjects F001.. and M001.. by the identity's
  sex, tasks T1..T8) and ``AU06/F001_T1_AU06.csv`` lines ``frame,intensity`` (integer 0-5, 9 = unknown on a
  few short runs of frames, all five AUs at once, as occlusions are in BP4D) for AUs 6, 10, 12, 14, 17.
* ``folder``: ``media/S001_T1.mp4`` (H.264, 20 fps) and ``labels.csv`` with columns
  ``file,frame,subject,sequence,AU01,...``
  (file relative to the root, frame 0-based as ``facskit.io.iter_frames`` numbers it, every synthetic AU
  with two decimals, which is exactly the generated value).

Every format also gets ``synth_ground_truth.parquet`` (see ``GroundTruthTable``) and ``synth_manifest.json``.
Files are written to a temporary name and renamed, so an interrupted run never leaves a half file.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from facskit.aus import BP4D_AUS, DISFA_AUS, au_column
from facskit.errors import FacskitError, UsageError
from facskit.io.atomic import atomic_write_bytes, atomic_write_parquet
from facskit.synth.face_model import SYNTH_AUS, sample_identity
from facskit.synth.render import FaceRenderer
from facskit.synth.scene import sample_scene
from facskit.synth.sequence import (
    DEFAULT_ACTIVITY,
    FPS,
    SynthFrame,
    au_timeline,
    frame_aus,
    generate_sequence,
)
from facskit.synth.texture import animate_face, estimate_pose, find_sources, iter_texture_faces

Format = Literal["disfa", "bp4d", "folder"]
FORMATS: tuple[str, ...] = ("disfa", "bp4d", "folder")
DISFA_DROPPED_POINTS = (60, 64)  # DISFA's 66-point landmarks lack the inner mouth corners
BP4D_UNKNOWN = 9
JPEG_QUALITY = 92
GROUND_TRUTH_FILE = "synth_ground_truth.parquet"
MANIFEST_FILE = "synth_manifest.json"
MAX_TASKS = 8
# Upper bounds of --activity and --head-motion: far above any useful value (the documented sets use up to
# 2.5 and 1), low enough that the episode count and the pose arithmetic stay finite numbers.
MAX_ACTIVITY = 100.0
MAX_HEAD_MOTION = 100.0


@dataclass(frozen=True)
class SequenceSpec:
    """One recording to generate: where it goes and how it is seeded."""

    subject: str
    sequence: str
    subject_index: int
    sequence_index: int


def label_intensity(values: np.ndarray) -> np.ndarray:
    """Integer FACS labels 0-5 from generated intensities: rounded half up (2.5 -> 3)."""
    return np.floor(np.clip(values, 0, 5) + 0.5).astype(int)


def _label_text(frames: np.ndarray, values: np.ndarray) -> bytes:
    return "".join(f"{f},{int(v)}\n" for f, v in zip(frames, values, strict=True)).encode()


class VideoWriter:
    """PyAV video writer to a temporary file, renamed into place on close; one thread for identical bytes."""

    def __init__(self, path: Path, codec: str, size: int, fps: float = FPS) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self.container = av.open(str(self.tmp), mode="w")
        self.stream = self.container.add_stream(codec, rate=int(fps))
        self.stream.width = size
        self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.thread_count = 1
        self.container.metadata["comment"] = "facskit synthetic"
        if codec == "libx264":
            self.stream.options = {"crf": "18", "preset": "medium", "threads": "1"}
        else:
            self.stream.bit_rate = int(size * size * FPS * 0.6)
            self.stream.options = {"threads": "1"}
        self._av = av

    def write(self, image: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def abort(self) -> None:
        """Drop the partial file (the run failed or was interrupted)."""
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)


def _sequence_specs(fmt: str, subjects: int, sequences: int, seed: int) -> list[SequenceSpec]:
    specs = []
    counters = {"F": 0, "M": 0}
    for s in range(subjects):
        if fmt == "disfa":
            subject, names = f"SN{s + 1:03d}", ["1"]
        elif fmt == "bp4d":
            sex = sample_identity(np.random.default_rng([seed, 0, s]), s).sex
            counters[sex] += 1
            subject, names = f"{sex}{counters[sex]:03d}", [f"T{k + 1}" for k in range(sequences)]
        else:
            subject, names = f"S{s + 1:03d}", [f"T{k + 1}" for k in range(sequences)]
        specs.extend(SequenceSpec(subject, name, s, k) for k, name in enumerate(names))
    return specs


def _frames_of(
    spec: SequenceSpec,
    frames: int,
    seed: int,
    renderer: FaceRenderer,
    sources: list[Path] | None,
    activity: float = DEFAULT_ACTIVITY,
    head_motion: float = 1.0,
) -> tuple[Iterator[SynthFrame], dict[str, object]]:
    """The frames of one sequence and the identity columns for its rows (``head_motion`` scales the
    generated head motion; real-texture sequences keep the source's)."""
    identity = sample_identity(np.random.default_rng([seed, 0, spec.subject_index]), spec.subject_index)
    rng = np.random.default_rng([seed, 1, spec.subject_index, spec.sequence_index])
    if sources is None:
        scene = sample_scene(rng)
        columns: dict[str, object] = identity.as_columns()
        columns.update(texture_source="", base_expression_unknown=False, pose_source="generated")
        return generate_sequence(renderer, identity, scene, frames, rng, activity, head_motion), columns
    source = sources[spec.subject_index % len(sources)]
    start = int(rng.integers(0, 200))
    columns = {
        "identity": spec.subject_index,
        "id_sex": identity.sex,
        "texture_source": source.name,
        "base_expression_unknown": True,
        "pose_source": "estimated",
    }

    def frames_iter() -> Iterator[SynthFrame]:
        intensities = au_timeline(rng, frames, activity)
        faces = iter_texture_faces(source, renderer.size, start)
        for i in range(frames):
            crop, base = next(faces)
            image, landmarks = animate_face(crop, base, frame_aus(intensities[i]), seed=spec.subject_index)
            yaw, pitch, roll = estimate_pose(landmarks, renderer.size)
            yield SynthFrame(i, image, landmarks, intensities[i], yaw, pitch, roll)

    return frames_iter(), columns


class GroundTruthTable:
    """Rows of ``synth_ground_truth.parquet``: one per frame.

    Columns: ``subject, sequence, frame`` (the layout's frame number), ``index`` (0-based in the sequence),
    ``file`` (media path relative to the root), ``AU01..AU45`` (float32, 0..5, every synthetic AU),
    ``x_0..x_67, y_0..y_67`` (float32 pixels in the written frame), ``yaw, pitch, roll`` (degrees),
    ``label_unknown`` (BP4D frames labelled 9), ``texture_source``, ``base_expression_unknown``,
    ``pose_source`` and the identity (``identity``, ``id_*``).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def add(
        self,
        spec: SequenceSpec,
        frame_no: int,
        file: str,
        f: SynthFrame,
        identity_columns: dict[str, object],
        unknown: bool = False,
    ) -> None:
        row: dict[str, object] = {
            "subject": spec.subject,
            "sequence": spec.sequence,
            "frame": frame_no,
            "index": f.index,
            "file": file,
        }
        row.update({au_column(c): float(v) for c, v in zip(SYNTH_AUS, f.intensities, strict=True)})
        row.update({f"x_{i}": float(f.landmarks[i, 0]) for i in range(68)})
        row.update({f"y_{i}": float(f.landmarks[i, 1]) for i in range(68)})
        row.update(yaw=f.yaw, pitch=f.pitch, roll=f.roll, label_unknown=unknown)
        row.update(identity_columns)
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        float_cols = [au_column(c) for c in SYNTH_AUS] + [f"{a}_{i}" for a in "xy" for i in range(68)]
        df[float_cols] = df[float_cols].astype(np.float32)
        return df

    def write(self, path: Path) -> None:
        atomic_write_parquet(path, self.frame())


def _unknown_mask(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A few short runs of 'unknown' frames (~2%), like BP4D's occlusion-coded frames."""
    mask = np.zeros(frames, bool)
    for _ in range(rng.poisson(frames * 0.02 / 3) + (1 if frames >= 10 else 0)):
        start = int(rng.integers(0, frames))
        mask[start : start + int(rng.integers(1, 5))] = True
    return mask


@dataclass(frozen=True)
class _SequenceJob:
    """One sequence to render and write (picklable: it crosses to a worker process)."""

    root: Path
    format: str
    spec: SequenceSpec
    frames: int
    seed: int
    size: int
    sources: list[Path] | None
    activity: float
    head_motion: float


def _write_sequence_quietly(job: _SequenceJob) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    return _write_sequence(job, lambda: None)


def _write_sequence(
    job: _SequenceJob, on_frame: Callable[[], object]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Render one sequence and write its media and labels; returns its ground-truth and folder rows."""
    root, format, spec, frames, seed = job.root, job.format, job.spec, job.frames, job.seed
    renderer = FaceRenderer(job.size)
    truth = GroundTruthTable()
    folder_rows: list[dict[str, object]] = []
    frame_iter, id_columns = _frames_of(
        spec, frames, seed, renderer, job.sources, job.activity, job.head_motion
    )
    unknown = _unknown_mask(np.random.default_rng([seed, 2, spec.subject_index, spec.sequence_index]), frames)
    collected: list[SynthFrame] = []
    video = None
    if format == "disfa":
        rel = f"Videos_LeftCamera/LeftVideo{spec.subject}_comp.avi"
        video = VideoWriter(root / rel, "mpeg4", job.size)
    elif format == "folder":
        rel = f"media/{spec.subject}_{spec.sequence}.mp4"
        video = VideoWriter(root / rel, "libx264", job.size)
    try:
        for f in frame_iter:
            if format == "disfa":
                frame_no = f.index + 1
                pts = np.delete(f.landmarks.astype(np.float64), DISFA_DROPPED_POINTS, axis=0)
                _write_mat(root / f"Landmark_Points/{spec.subject}/tmp_frame_lm/l{frame_no:04d}_lm.mat", pts)
            elif format == "bp4d":
                frame_no = f.index + 1
                rel = f"{spec.subject}/{spec.sequence}/{frame_no:04d}.jpg"
                ok, data = cv2.imencode(
                    ".jpg",
                    cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
                )
                atomic_write_bytes(root / rel, data.tobytes(), parents=True)
            else:
                frame_no = f.index
                folder_rows.append(
                    {
                        "file": rel,
                        "frame": frame_no,
                        # The person, so that folds on the folder format are subject-exclusive.
                        "subject": spec.subject,
                        "sequence": spec.sequence,
                        **{au_column(c): f"{v:.2f}" for c, v in zip(SYNTH_AUS, f.intensities, strict=True)},
                    }
                )
            if video is not None:
                video.write(f.image)
            truth.add(spec, frame_no, rel, f, id_columns, unknown=bool(format == "bp4d" and unknown[f.index]))
            collected.append(
                SynthFrame(f.index, np.empty(0, np.uint8), f.landmarks, f.intensities, f.yaw, f.pitch, f.roll)
            )
            on_frame()
    except BaseException:
        if video is not None:
            video.abort()
        raise
    if video is not None:
        video.close()
    _write_labels(root, format, spec, collected, unknown)
    return truth.rows, folder_rows


def write_dataset(
    out: Path | str,
    format: Format = "disfa",
    subjects: int = 2,
    frames: int = 100,
    seed: int = 0,
    size: int = 256,
    textures: Path | str | None = None,
    sequences: int = 1,
    quiet: bool = False,
    activity: float = DEFAULT_ACTIVITY,
    head_motion: float = 1.0,
    workers: int = 1,
) -> Path:
    """Generate and write a labelled synthetic dataset; returns the path of its manifest.

    ``frames`` is per sequence; ``sequences`` is the number of tasks per subject (BP4D, folder; DISFA has one
    video per subject). ``activity`` is the expected fraction of frames inside an expression episode
    (0.45: DISFA-like, most frames neutral; larger values overlap episodes, for training a general model).
    ``head_motion`` scales the head's motion within a sequence (1: default, 0: still; videos whose frames
    differ mostly by facial actions, for self-supervised experiments). The same arguments always give the
    same label files and images, whatever ``workers`` (processes rendering sequences in parallel).
    """
    from facskit import __version__
    from facskit.io.progress import Progress

    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not 256 <= size <= 512 or size % 2:
        raise UsageError(f"--size must be an even number of pixels in 256..512, got {size}")
    # `not (x > 0)` rather than `x <= 0`: NaN fails every comparison and would slip through the latter.
    if not 0 < activity <= MAX_ACTIVITY:
        raise UsageError(f"--activity must be positive and at most {MAX_ACTIVITY:g}, got {activity}")
    if not 0 <= head_motion <= MAX_HEAD_MOTION:
        raise UsageError(f"--head-motion must be >= 0 and at most {MAX_HEAD_MOTION:g}, got {head_motion}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0 (numpy seeds are unsigned), got {seed!r}")
    if subjects < 1 or frames < 1:
        raise UsageError("--subjects and --frames must be at least 1")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if not 1 <= sequences <= MAX_TASKS:
        raise UsageError(f"--sequences must be 1..{MAX_TASKS}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    sources = find_sources(Path(textures)) if textures is not None else None
    specs = _sequence_specs(format, subjects, 1 if format == "disfa" else sequences, seed)
    truth = GroundTruthTable()
    folder_rows: list[dict[str, object]] = []
    progress = Progress(total=len(specs) * frames, unit="frames", quiet=quiet, label="synth")
    jobs = [
        _SequenceJob(root, format, spec, frames, seed, size, sources, activity, head_motion) for spec in specs
    ]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            rows, folder = _write_sequence(job, progress.update)
            truth.rows.extend(rows)
            folder_rows.extend(folder)
    else:
        # Each sequence is seeded by its own indices, so a worker's output is byte for byte the serial one;
        # results are gathered in the specs' order, so the tables are too.
        context = mp.get_context("spawn")  # no fork of a parent holding codec or BLAS threads
        try:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                for rows, folder in pool.map(_write_sequence_quietly, jobs):
                    truth.rows.extend(rows)
                    folder_rows.extend(folder)
                    progress.update(frames)
        except BrokenProcessPool:
            raise FacskitError(
                f"a synth worker process died (out of memory?); rerun with fewer --workers than {workers}"
            ) from None
    progress.close()
    if format == "folder":
        csv = pd.DataFrame(folder_rows).to_csv(index=False, lineterminator="\n")
        atomic_write_bytes(root / "labels.csv", csv.encode(), parents=True)
    truth.write(root / GROUND_TRUTH_FILE)
    manifest = {
        "generator": "facskit.synth",
        "facskit_version": __version__,
        "seed": seed,
        "args": {
            "format": format,
            "subjects": subjects,
            "frames": frames,
            "sequences": sequences,
            "size": size,
            "textures": str(textures) if textures is not None else None,
        },
        "aus": list(SYNTH_AUS),
        "label_aus": list(DISFA_AUS if format == "disfa" else BP4D_AUS if format == "bp4d" else SYNTH_AUS),
        "fps": FPS,
        "frames_total": len(specs) * frames,
        "sequences": [{"subject": s.subject, "sequence": s.sequence} for s in specs],
        "disfa_landmarks": "l{frame:04d}_lm.mat, pts (66, 2) 0-based pixels, iBUG-68 minus 60, 64",
        "texture_sources": [str(p) for p in sources] if sources else [],
        "base_expression_unknown": sources is not None,
        "ground_truth": GROUND_TRUTH_FILE,
        "python": sys.version.split()[0],
    }
    path = root / MANIFEST_FILE
    atomic_write_bytes(path, (json.dumps(manifest, indent=2) + "\n").encode(), parents=True)
    return path


def _write_mat(path: Path, pts: np.ndarray) -> None:
    import io

    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, {"pts": pts}, do_compression=False)
    # savemat stamps the creation time into the header; blank it so files are identical run to run.
    data = bytearray(buffer.getvalue())
    header = b"MATLAB 5.0 MAT-file, written by facskit synth".ljust(116, b" ")
    data[:116] = header
    atomic_write_bytes(path, bytes(data), parents=True)


def _write_labels(
    root: Path, fmt: str, spec: SequenceSpec, frames: list[SynthFrame], unknown: np.ndarray
) -> None:
    if fmt == "folder":
        return
    values = np.stack([f.intensities for f in frames])
    numbers = np.arange(1, len(frames) + 1)
    for code in DISFA_AUS if fmt == "disfa" else BP4D_AUS:
        column = label_intensity(values[:, SYNTH_AUS.index(code)])
        if fmt == "disfa":
            atomic_write_bytes(
                root / f"ActionUnit_Labels/{spec.subject}/{spec.subject}_au{code}.txt",
                _label_text(numbers, column),
                parents=True,
            )
        else:
            column = np.where(unknown, BP4D_UNKNOWN, column)
            name = au_column(code)
            atomic_write_bytes(
                root / f"{name}/{spec.subject}_{spec.sequence}_{name}.csv",
                _label_text(numbers, column),
                parents=True,
            )
