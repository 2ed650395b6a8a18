"""Preparing one sequence: what a prepare worker does, in a pool process or in the caller's.

A worker streams the sequence's frames in order (:func:`~facskit.data.sequence_frames.iter_sequence_frames`,
so face tracking sees consecutive frames), takes each frame's 68 landmarks from the dataset or detects them
(:class:`LandmarkFinder`), aligns the frame, streams the crops into shards and commits the sequence as a
part file (:func:`~facskit.data.prepare_parts.commit_part`). ``crop="track"`` first reads the landmarks of
the whole sequence to frame it with one matrix (:func:`facskit.align.track_matrix`), then aligns with it.
Everything here is a function of the task alone, so a killed sequence redone gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from facskit.align import AlignSpec, align_face, track_matrix
from facskit.data.cache import (
    LANDMARK_X,
    LANDMARK_Y,
    POSE_COLUMNS,
    SHARD_DIR,
    SKIP_BAD_LANDMARKS,
    SKIP_NO_FACE,
    SKIP_UNREADABLE,
    ShardWriter,
)
from facskit.data.index import LANDMARKS_COLUMN, Problem
from facskit.data.prepare_parts import commit_part
from facskit.data.sequence_frames import FrameAt, iter_sequence_frames

LandmarkMode = Literal["dataset", "detect"]
# How frames are cropped (prepare_dataset's ``crop``): each frame aligned on its own landmarks, or one crop
# per sequence (the head's motion stays in the images; for TCAE pretraining).
CropMode = Literal["aligned", "track"]
CROP_MODES: tuple[str, ...] = ("aligned", "track")
# Frames prepared between two progress reports (a report from a pool worker takes a shared lock).
REPORT_EVERY = 16


@dataclass
class SequenceTask:
    """One sequence to prepare: its index rows and the run's settings (picklable, sent to a worker)."""

    key: str
    rows: pd.DataFrame
    out: str
    landmarks: LandmarkMode
    align_kind: str
    align_size: int
    shard_size: int
    detect_every: int
    aus: tuple[int, ...]
    crop: CropMode = "aligned"


@dataclass
class SequenceOutcome:
    """What preparing one sequence gave: its frame count and problems, or the error that stopped it."""

    key: str
    frames: int
    problems: list[Problem]
    error: str = ""


# Where frames done are reported: a shared counter in a pool worker, the progress line in-process.
_report: Callable[[int], None] | None = None


def report_frames_to(report: Callable[[int], None] | None) -> None:
    """Send this process's counts of frames done to ``report`` from now on (None: stop reporting)."""
    global _report
    _report = report


def _count(n: int) -> None:
    if _report is not None and n:
        _report(n)


@dataclass
class SequenceColumns:
    """The columns a sequence adds to its index rows, one entry per row, filled as frames are prepared."""

    shard: np.ndarray  # shard file of the crop ("" when skipped)
    offset: np.ndarray  # position of the crop in its shard (-1 when skipped)
    landmarks: np.ndarray  # (n, 68, 2) in crop pixels
    pose: np.ndarray  # (n, 3) yaw, pitch, roll in degrees
    detected: np.ndarray  # a face was found (landmarks read or detected)
    landmark_source: np.ndarray  # "dataset", "detected" or ""
    skip: np.ndarray  # why there is no crop ("" when prepared)

    @classmethod
    def empty(cls, n: int) -> SequenceColumns:
        """Columns for ``n`` rows, every frame not prepared yet."""
        return cls(
            shard=np.full(n, "", dtype=object),
            offset=np.full(n, -1, dtype=np.int64),
            landmarks=np.full((n, 68, 2), np.nan, dtype=np.float32),
            pose=np.full((n, 3), np.nan, dtype=np.float32),
            detected=np.zeros(n, dtype=bool),
            landmark_source=np.full(n, "", dtype=object),
            skip=np.full(n, "", dtype=object),
        )

    def joined_to(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` (without the dataset's landmark file column) with these columns added: the part."""
        results: dict[str, Any] = {"shard": self.shard.astype(str), "offset": self.offset}
        results.update(zip(LANDMARK_X, self.landmarks[:, :, 0].T, strict=True))
        results.update(zip(LANDMARK_Y, self.landmarks[:, :, 1].T, strict=True))
        results.update(zip(POSE_COLUMNS, self.pose.T, strict=True))
        results.update(
            face_detected=self.detected,
            landmark_source=self.landmark_source.astype(str),
            skip_reason=self.skip.astype(str),
        )
        return pd.concat(
            [rows.drop(columns=[LANDMARKS_COLUMN], errors="ignore"), pd.DataFrame(results, index=rows.index)],
            axis=1,
        )


class LandmarkFinder:
    """Each frame's 68 landmarks in frame pixels: the dataset's own where it has them, else detected.

    Records in ``columns`` where a frame's landmarks came from and, for detected faces, the head pose.
    The face tracker starts on the first frame that needs it and then sees the frames in order.
    """

    def __init__(
        self, rows: pd.DataFrame, mode: LandmarkMode, detect_every: int, columns: SequenceColumns
    ) -> None:
        self.files = (
            rows[LANDMARKS_COLUMN].fillna("").astype(str).to_numpy()
            if mode == "dataset" and LANDMARKS_COLUMN in rows
            else None
        )
        self.detect_every = detect_every
        self.columns = columns
        self.tracker: Any = None
        self.bad_files: list[str] = []

    def all_in_files(self) -> bool:
        """Whether every row has a dataset landmark file (then nothing needs decoding to find them)."""
        return self.files is not None and all(self.files)

    def find(self, position: int, image: np.ndarray | None, dataset: bool = True) -> np.ndarray | None:
        """The dataset's landmarks of a frame, else dlib's (largest face); records where they came from."""
        if dataset and self.files is not None and self.files[position]:
            from facskit.data.disfa import read_disfa_landmarks

            try:
                points = read_disfa_landmarks(self.files[position])
                self.columns.landmark_source[position] = "dataset"
                return points
            except ValueError as error:
                self.bad_files.append(str(error))
        if image is None:
            return None
        return self._detect(position, image)

    def _detect(self, position: int, image: np.ndarray) -> np.ndarray | None:
        if self.tracker is None:
            from facskit.faces import FaceTracker

            self.tracker = FaceTracker(detect_every=self.detect_every)
        faces = [f for f in self.tracker.update(image) if f.success]
        if not faces:
            return None
        # One person per dataset sequence: the largest face is the subject, others are bystanders.
        best = max(faces, key=lambda f: float(f.box.w) * float(f.box.h))
        self.columns.landmark_source[position] = "detected"
        self.columns.pose[position] = tuple(best.pose)
        return np.asarray(best.landmarks, dtype=np.float32)

    def bad_files_problem(self) -> Problem | None:
        """One problem for all the landmark files that could not be read (their frames were detected)."""
        if not self.bad_files:
            return None
        return Problem(
            str(Path(self.bad_files[0].split(":")[0]).parent),
            f"unreadable landmark files ({len(self.bad_files)}), detected instead: {self.bad_files[0]}",
        )


@dataclass
class TrackFraming:
    """``crop="track"``: the landmarks found in a first pass and the one matrix that frames the sequence."""

    known: np.ndarray  # (n, 68, 2) frame pixels, NaN where no face was found
    matrix: np.ndarray | None  # None when no frame had a face: every frame is then skipped
    files_only: bool  # the first pass read landmark files without decoding

    def landmarks(self, finder: LandmarkFinder, position: int, image: np.ndarray) -> np.ndarray | None:
        """The landmarks to align a frame on: the first pass's, else detected where its file was bad."""
        if np.isfinite(self.known[position]).all():
            return self.known[position]
        # an unreadable landmark file: detect, as per-frame alignment does (not in the median)
        return finder.find(position, image, dataset=False) if self.files_only else None


def frame_sequence(rows: pd.DataFrame, finder: LandmarkFinder, spec: AlignSpec) -> TrackFraming:
    """The first pass of ``crop="track"``: every frame's landmarks (decoding only when some must be
    detected), then one matrix for the whole sequence (:func:`facskit.align.track_matrix`)."""
    n = len(rows)
    known = np.full((n, 68, 2), np.nan, dtype=np.float32)
    files_only = finder.all_in_files()
    if files_only:
        first_pass: Iterator[FrameAt] = ((p, None) for p in range(n))
    else:
        first_pass = iter_sequence_frames(rows, [])  # its decoding problems are reported by the second pass
    for position, image in first_pass:
        points = finder.find(position, image)
        if points is not None:
            known[position] = points
    try:
        matrix = track_matrix(known, spec)
    except ValueError:
        matrix = None  # no face anywhere: every frame is skipped below as it would be per frame
    return TrackFraming(known, matrix, files_only)


def prepare_sequence(task: SequenceTask) -> SequenceOutcome:
    """Prepare one sequence and commit it (shards, then the problems file, then the part index)."""
    out = Path(task.out)
    rows = task.rows.reset_index(drop=True)
    spec = AlignSpec(task.align_kind, task.align_size)  # type: ignore[arg-type]
    problems: list[Problem] = []
    columns = SequenceColumns.empty(len(rows))
    finder = LandmarkFinder(rows, task.landmarks, task.detect_every, columns)
    framing = frame_sequence(rows, finder, spec) if task.crop == "track" else None
    writer = ShardWriter(out / SHARD_DIR, task.key, (spec.size, spec.size, 3), task.shard_size)
    try:
        _align_frames(rows, problems, finder, framing, spec, writer, columns)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    bad_files = finder.bad_files_problem()
    if bad_files is not None:
        problems.append(bad_files)
    commit_part(out, task.key, columns.joined_to(rows), problems, task.aus)
    return SequenceOutcome(task.key, len(rows), problems)


def _align_frames(
    rows: pd.DataFrame,
    problems: list[Problem],
    finder: LandmarkFinder,
    framing: TrackFraming | None,
    spec: AlignSpec,
    writer: ShardWriter,
    columns: SequenceColumns,
) -> None:
    """Align every frame of the sequence into ``writer``, filling ``columns`` (or the skip reason)."""
    from facskit.faces import head_pose

    pending = 0
    for position, image in iter_sequence_frames(rows, problems):
        pending += 1
        if pending >= REPORT_EVERY:
            _count(pending)
            pending = 0
        if image is None:
            columns.skip[position] = SKIP_UNREADABLE
            continue
        if framing is None:
            points = finder.find(position, image)
        else:
            points = framing.landmarks(finder, position, image)
        if points is None:
            columns.skip[position] = SKIP_NO_FACE
            continue
        columns.detected[position] = True
        try:
            aligned = align_face(image, points, spec, framing.matrix if framing is not None else None)
        except ValueError:
            columns.skip[position] = SKIP_BAD_LANDMARKS
            continue
        columns.shard[position], columns.offset[position] = writer.append(aligned.crop)
        columns.landmarks[position] = aligned.landmarks
        if columns.landmark_source[position] == "dataset":
            columns.pose[position] = tuple(
                head_pose(points, (image.shape[1], image.shape[0]))
            )  # (width, height)
    _count(pending)
