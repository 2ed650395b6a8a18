"""Prepare a dataset for training: landmarks, alignment and the cache, in parallel and resumably.

The unit of work is one sequence (a DISFA video, a BP4D subject-task, a folder video or image folder): one
worker streams its frames in order, so video decoding is sequential and face tracking sees consecutive
frames. A sequence is committed when its part file ``parts/<seq>.parquet`` is renamed into place, after all
its shards; a killed run leaves at most the sequences in flight uncommitted, and a rerun redoes exactly those
(their stale shards are deleted first). The final ``index.parquet`` is assembled from the parts in the
dataset's sequence order, so the cache is byte-for-byte the same whatever the worker count or the number of
interruptions.

Workers are separate processes started from a clean fork server (no threads inherited from the caller,
``cv2`` limited to one thread each); a file lock keeps two runs, or the orphaned workers of a killed run,
from writing one cache at once.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import pandas as pd

from facskit.align import AlignSpec
from facskit.aus import au_column
from facskit.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    INDEX_FILE,
    LANDMARK_X,
    LANDMARK_Y,
    META_FILE,
    PART_DIR,
    POSE_COLUMNS,
    SHARD_DIR,
    SKIP_BAD_LANDMARKS,
    SKIP_NO_FACE,
    SKIP_UNREADABLE,
    ShardWriter,
    write_json_atomic,
    write_parquet_atomic,
)
from facskit.data.index import LANDMARKS_COLUMN, DatasetIndex, Problem
from facskit.errors import DatasetError
from facskit.io.lock import hold_lock, share_lock
from facskit.io.media import VIDEO_EXTENSIONS
from facskit.io.progress import Progress

LandmarkMode = Literal["dataset", "detect"]
LOCK_FILE = ".lock"
# BMVC'18 3-point alignment to 256 x 256, what every paper preset trains on.
DEFAULT_ALIGN = AlignSpec("bmvc", 256)
# How frames are cropped (prepare_dataset's ``crop``): each frame aligned on its own landmarks, or one crop
# per sequence (the head's motion stays in the images; for TCAE pretraining).
CropMode = Literal["aligned", "track"]
CROP_MODES: tuple[str, ...] = ("aligned", "track")
# Settings that change the content of a cache; a rerun with other values must use another folder.
_META_KEYS = ("dataset", "aus", "align", "landmarks", "shard_size", "detect_every")


@dataclass
class PrepareSummary:
    """What a prepare run did: frames prepared, skipped by reason, sequences, problems, speed."""

    frames: int = 0
    prepared: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sequences: int = 0
    resumed_sequences: int = 0
    failed_sequences: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    processed_frames: int = 0  # frames worked on in this run (not the resumed ones)

    @property
    def frames_per_second(self) -> float:
        return self.processed_frames / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        lines = [
            f"prepared {self.prepared} of {self.frames} frames; skipped {skipped} ({reasons})",
            f"{self.sequences} sequences ({self.resumed_sequences} already done before this run), "
            f"{self.processed_frames} frames in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)",
        ]
        if self.failed_sequences:
            lines.append(
                f"{len(self.failed_sequences)} sequences failed and are not in the index (rerun to retry): "
                + ", ".join(self.failed_sequences)
            )
        lines.append(f"{len(self.problems)} problems" + (":" if self.problems else ""))
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def sequence_key(subject: str, sequence: str) -> str:
    """A file-name-safe, collision-free stem for one sequence (readable part + 8 hex digits of a hash)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{subject}__{sequence}").strip("._")[:80] or "seq"
    digest = hashlib.sha1(f"{subject}\0{sequence}".encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


# ----------------------------------------------------------------------------------------------------------
# Worker side


@dataclass
class _Task:
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
class _Outcome:
    key: str
    frames: int
    problems: list[Problem]
    error: str = ""


# Where a worker reports frames done: a shared multiprocessing.Value in a pool, the Progress in-process.
_on_frames: Callable[[int], None] | None = None
_lock_handle: Any = None


def _init_worker(counter: Any, lock_path: str) -> None:
    """Pool initializer: progress counter, one cv2 thread per process, shared hold on the cache lock."""
    global _on_frames, _lock_handle
    import cv2

    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    _on_frames = add
    cv2.setNumThreads(1)
    _lock_handle = _hold_lock(Path(lock_path), exclusive=False)


def _count(n: int) -> None:
    if _on_frames is not None and n:
        _on_frames(n)


def _is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _frames(rows: pd.DataFrame, problems: list[Problem]) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (row position, RGB image or None when unreadable) for every row, each video streamed once."""
    from facskit.errors import MediaError
    from facskit.io import iter_frames, read_image

    sources = rows["source"].to_numpy()
    source_frames = rows["source_frame"].to_numpy()
    start = 0
    while start < len(rows):
        stop = start
        while stop < len(rows) and sources[stop] == sources[start]:
            stop += 1
        source = str(sources[start])
        if _is_video(source):
            wanted: dict[int, list[int]] = {}
            for position in range(start, stop):
                wanted.setdefault(int(source_frames[position]), []).append(position)
            last = max(wanted)
            try:
                for frame in iter_frames(source):
                    positions = wanted.pop(frame.index, None)
                    if positions:
                        for position in positions:
                            yield position, frame.image
                    if frame.index >= last:
                        break
            except (MediaError, OSError, ValueError) as error:
                problems.append(Problem(source, f"unreadable frames: decoding stopped ({error})"))
            except Exception as error:  # PyAV's own errors (av.error.*)
                problems.append(Problem(source, f"unreadable frames: decoding stopped ({error})"))
            if wanted:
                missing = sorted(wanted)
                problems.append(
                    Problem(
                        source,
                        f"unreadable frames ({len(missing)}): video ended or broke before frame {missing[0]}",
                    )
                )
                for index in missing:
                    for position in wanted[index]:
                        yield position, None
        else:
            for position in range(start, stop):
                try:
                    yield position, read_image(source)
                except (MediaError, OSError) as error:
                    problems.append(Problem(source, f"unreadable frame: {error}"))
                    yield position, None
        start = stop


def _prepare_sequence(task: _Task) -> _Outcome:
    """Prepare one sequence and commit it (shards, then the problems file, then the part index)."""
    from facskit.align import align_face, track_matrix
    from facskit.data.disfa import read_disfa_landmarks
    from facskit.faces import FaceTracker, head_pose

    out = Path(task.out)
    rows = task.rows.reset_index(drop=True)
    n = len(rows)
    spec = AlignSpec(task.align_kind, task.align_size)  # type: ignore[arg-type]
    problems: list[Problem] = []
    writer = ShardWriter(out / SHARD_DIR, task.key, (spec.size, spec.size, 3), task.shard_size)
    shard = np.full(n, "", dtype=object)
    offset = np.full(n, -1, dtype=np.int64)
    landmarks = np.full((n, 68, 2), np.nan, dtype=np.float32)
    pose = np.full((n, 3), np.nan, dtype=np.float32)
    detected = np.zeros(n, dtype=bool)
    source_of_landmarks = np.full(n, "", dtype=object)
    skip = np.full(n, "", dtype=object)
    dataset_landmarks = (
        rows[LANDMARKS_COLUMN].fillna("").astype(str).to_numpy()
        if task.landmarks == "dataset" and LANDMARKS_COLUMN in rows
        else None
    )
    tracker = None
    bad_landmark_files: list[str] = []

    def find_landmarks(position: int, image: np.ndarray | None, dataset: bool = True) -> np.ndarray | None:
        """The dataset's landmarks of a frame, else dlib's (largest face); records where they came from."""
        nonlocal tracker
        if dataset and dataset_landmarks is not None and dataset_landmarks[position]:
            try:
                points = read_disfa_landmarks(dataset_landmarks[position])
                source_of_landmarks[position] = "dataset"
                return points
            except ValueError as error:
                bad_landmark_files.append(str(error))
        if image is None:
            return None
        if tracker is None:
            tracker = FaceTracker(detect_every=task.detect_every)
        faces = [f for f in tracker.update(image) if f.success]
        if not faces:
            return None
        # One person per dataset sequence: the largest face is the subject, others are bystanders.
        best = max(faces, key=lambda f: float(f.box.w) * float(f.box.h))
        source_of_landmarks[position] = "detected"
        pose[position] = tuple(best.pose)
        return np.asarray(best.landmarks, dtype=np.float32)

    # "track" crops: a first pass finds every frame's landmarks (decoding only when some must be detected),
    # then one matrix frames the whole sequence (facskit.align.track_matrix).
    known: np.ndarray | None = None  # (n, 68, 2) frame pixels from the first pass, NaN where none
    matrix: np.ndarray | None = None
    files_only = False  # the first pass read landmark files without decoding
    if task.crop == "track":
        known = np.full((n, 68, 2), np.nan, dtype=np.float32)
        files_only = dataset_landmarks is not None and all(dataset_landmarks)
        if files_only:
            first_pass: Iterator[tuple[int, np.ndarray | None]] = ((p, None) for p in range(n))
        else:
            first_pass = _frames(rows, [])  # its decoding problems are reported by the second pass
        for position, image in first_pass:
            points = find_landmarks(position, image)
            if points is not None:
                known[position] = points
        try:
            matrix = track_matrix(known, spec)
        except ValueError:
            matrix = None  # no face anywhere: every frame is skipped below as it would be per frame
    pending = 0
    try:
        for position, image in _frames(rows, problems):
            pending += 1
            if pending >= 16:
                _count(pending)
                pending = 0
            if image is None:
                skip[position] = SKIP_UNREADABLE
                continue
            if known is None:
                points = find_landmarks(position, image)
            elif np.isfinite(known[position]).all():
                points = known[position]
            else:  # an unreadable landmark file: detect, as per-frame alignment does (not in the median)
                points = find_landmarks(position, image, dataset=False) if files_only else None
            if points is None:
                skip[position] = SKIP_NO_FACE
                continue
            detected[position] = True
            try:
                aligned = align_face(image, points, spec, matrix)
            except ValueError:
                skip[position] = SKIP_BAD_LANDMARKS
                continue
            shard[position], offset[position] = writer.append(aligned.crop)
            landmarks[position] = aligned.landmarks
            if source_of_landmarks[position] == "dataset":
                pose[position] = tuple(head_pose(points, (image.shape[1], image.shape[0])))  # (width, height)
        _count(pending)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if bad_landmark_files:
        problems.append(
            Problem(
                str(Path(bad_landmark_files[0].split(":")[0]).parent),
                f"unreadable landmark files ({len(bad_landmark_files)}), detected instead: "
                f"{bad_landmark_files[0]}",
            )
        )
    results: dict[str, Any] = {"shard": shard.astype(str), "offset": offset}
    results.update(zip(LANDMARK_X, landmarks[:, :, 0].T, strict=True))
    results.update(zip(LANDMARK_Y, landmarks[:, :, 1].T, strict=True))
    results.update(zip(POSE_COLUMNS, pose.T, strict=True))
    results.update(
        face_detected=detected, landmark_source=source_of_landmarks.astype(str), skip_reason=skip.astype(str)
    )
    part = pd.concat(
        [rows.drop(columns=[LANDMARKS_COLUMN], errors="ignore"), pd.DataFrame(results, index=rows.index)],
        axis=1,
    )
    part_dir = out / PART_DIR
    write_json_atomic({"problems": [asdict(p) for p in problems]}, part_dir / f"{task.key}.problems.json")
    write_parquet_atomic(_part_columns(part, task.aus), part_dir / f"{task.key}.parquet")
    return _Outcome(task.key, n, problems)


def _part_columns(part: pd.DataFrame, aus: tuple[int, ...]) -> pd.DataFrame:
    """Fixed column order and dtypes so that parts concatenate and compare identically."""
    columns = (
        ["subject", "sequence", "frame", "source", "source_frame"]
        + [au_column(a) for a in aus]
        + ["shard", "offset"]
        + LANDMARK_X
        + LANDMARK_Y
        + POSE_COLUMNS
        + ["face_detected", "landmark_source", "skip_reason"]
    )
    part = part[columns].copy()
    for name in [au_column(a) for a in aus] + LANDMARK_X + LANDMARK_Y + POSE_COLUMNS:
        part[name] = part[name].astype(np.float32)
    for name in ("frame", "source_frame", "offset"):
        part[name] = part[name].astype(np.int64)
    for name in ("subject", "sequence", "source", "shard", "landmark_source", "skip_reason"):
        part[name] = part[name].astype(str)
    return part


def _run_task(task: _Task) -> _Outcome:
    """Pool entry point: a failure in one sequence is reported, never fatal to the others."""
    try:
        return _prepare_sequence(task)
    except Exception as error:
        return _Outcome(task.key, len(task.rows), [], error=f"{type(error).__name__}: {error}")


# ----------------------------------------------------------------------------------------------------------
# Parent side


def _hold_lock(path: Path, exclusive: bool) -> Any:
    return hold_lock(
        path,
        exclusive,
        DatasetError(
            f"{path.parent} is being written by another `facskit prepare` (or the workers of a killed one "
            "are finishing); wait for it to end, then run again"
        ),
    )


def _check_meta(out: Path, meta: dict[str, Any]) -> None:
    meta_path = out / META_FILE
    if meta_path.is_file():
        import json

        try:
            old = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(
                f"{meta_path}: not valid JSON ({error}); {out} is not a usable cache: use another --out"
            ) from None
        if not isinstance(old, dict):
            raise DatasetError(f"{meta_path}: not a facskit cache's metadata; use another --out")
        changed = [k for k in _META_KEYS if old.get(k) != meta.get(k)]
        if old.get("format") != CACHE_FORMAT or changed:
            what = ", ".join(f"{k}: {old.get(k)!r} -> {meta.get(k)!r}" for k in changed) or "another format"
            raise DatasetError(
                f"{out} holds a cache prepared with other settings ({what}); use another --out"
            )
    write_json_atomic(meta, meta_path)


def prepare_dataset(
    index: DatasetIndex,
    out: str | Path,
    *,
    workers: int = 2,
    landmarks: LandmarkMode = "dataset",
    spec: AlignSpec = DEFAULT_ALIGN,
    shard_size: int = 1024,
    detect_every: int = 5,
    crop: CropMode = "aligned",
    progress: bool = True,
    stream: TextIO | None = None,
) -> PrepareSummary:
    """Detect or read landmarks, align every frame of ``index`` and write the cache at ``out``.

    ``landmarks="dataset"`` uses the dataset's own landmarks where the index has them (DISFA) and detects
    elsewhere; ``"detect"`` always runs dlib. ``crop="track"`` frames each sequence with one matrix
    (:func:`facskit.align.track_matrix`) instead of aligning every frame, so the head's motion stays in the
    crops (TCAE pretraining; AU models want the default ``"aligned"``); it reads the landmarks in a first
    pass, which decodes the video twice where they must be detected. ``workers`` processes share the
    sequences (``workers <= 1`` runs in this process). Sequences already committed in ``out`` are kept
    (resume). Returns the summary; raises :class:`DatasetError` when ``out`` holds a cache with other
    settings or is being written.
    """
    if landmarks not in ("dataset", "detect"):
        raise ValueError(f"landmarks must be 'dataset' or 'detect', got {landmarks!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    started = time.perf_counter()
    stream = stream or sys.stderr
    out = Path(out)
    for sub in (out, out / SHARD_DIR, out / PART_DIR):
        sub.mkdir(parents=True, exist_ok=True)
    lock = _hold_lock(out / LOCK_FILE, exclusive=True)
    # Nobody else holds it: downgrade to shared so this run's workers can join; a second run, which asks
    # for it exclusively, is refused until this run and all its workers have let go.
    share_lock(lock)
    try:
        import facskit

        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "dataset": index.dataset,
            "source_root": str(index.root),
            "aus": list(index.aus),
            # "crop" only when not the default, so caches made before it existed resume unchanged
            "align": {"kind": spec.kind, "size": spec.size} | ({"crop": crop} if crop != "aligned" else {}),
            "landmarks": landmarks,
            "shard_size": shard_size,
            "detect_every": detect_every,
            "facskit": facskit.__version__,
        }
        _check_meta(out, meta)
        for stale in list((out / SHARD_DIR).glob("*.tmp")) + list((out / PART_DIR).glob("*.tmp")):
            stale.unlink(missing_ok=True)

        tasks: list[_Task] = []
        for (subject, sequence), rows in index.frames.groupby(["subject", "sequence"], sort=True):
            tasks.append(
                _Task(
                    sequence_key(str(subject), str(sequence)),
                    rows,
                    str(out),
                    landmarks,
                    spec.kind,
                    spec.size,
                    shard_size,
                    detect_every,
                    tuple(index.aus),
                    crop,
                )
            )
        done = {t.key for t in tasks if (out / PART_DIR / f"{t.key}.parquet").is_file()}
        pending = [t for t in tasks if t.key not in done]
        for task in pending:
            for stale in (out / SHARD_DIR).glob(f"{task.key}-*.npy"):
                stale.unlink()
        summary = PrepareSummary(sequences=len(tasks), resumed_sequences=len(done))
        total = int(sum(len(t.rows) for t in pending))
        line = Progress(total, unit="frames", quiet=not progress or not total, label="prepare", stream=stream)
        # Longest sequences first: the pool finishes together instead of waiting on one late long video.
        pending.sort(key=lambda t: -len(t.rows))
        with line:
            outcomes = _run_pending(pending, workers, out, line)
        for outcome in outcomes:
            if outcome.error:
                summary.failed_sequences.append(outcome.key)
                summary.problems.append(Problem(outcome.key, f"sequence failed: {outcome.error}"))
            else:
                summary.processed_frames += outcome.frames

        parts = []
        problems: list[Problem] = list(index.problems)
        for task in tasks:
            part_path = out / PART_DIR / f"{task.key}.parquet"
            if not part_path.is_file():
                continue
            parts.append(_read_part(part_path))
            problems_path = out / PART_DIR / f"{task.key}.problems.json"
            if problems_path.is_file():
                problems.extend(_read_part_problems(problems_path))
        summary.problems = problems + summary.problems
        table = pd.concat(parts, ignore_index=True) if parts else _part_columns(_empty_part(index), index.aus)
        write_parquet_atomic(table, out / INDEX_FILE)
        summary.frames = len(table)
        reasons = Counter(table["skip_reason"].tolist())
        summary.prepared = reasons.pop("", 0)
        summary.skipped = dict(reasons)
        summary.seconds = time.perf_counter() - started
        write_json_atomic(
            {
                "frames": summary.frames,
                "prepared": summary.prepared,
                "skipped": summary.skipped,
                "failed_sequences": summary.failed_sequences,
                "problems": [str(p) for p in summary.problems],
            },
            out / "summary.json",
        )
        return summary
    finally:
        if lock is not None:
            lock.close()


def _damaged(path: Path, error: BaseException) -> DatasetError:
    reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
    return DatasetError(
        f"{path}: damaged part file ({type(error).__name__}: {reason}); delete it and run prepare again to "
        "redo that sequence"
    )


def _read_part(path: Path) -> pd.DataFrame:
    """A committed sequence's index rows. Parts are written atomically, so a damaged one was damaged
    afterwards (disk, a hand edit); it is named with the way to redo it, not a pyarrow traceback."""
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise _damaged(path, error) from None


def _read_part_problems(path: Path) -> list[Problem]:
    """The problems a committed sequence reported (its ``.problems.json``)."""
    import json

    try:
        return [Problem(**p) for p in json.loads(path.read_text())["problems"]]
    except (
        ValueError,
        KeyError,
        TypeError,
    ) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _damaged(path, error) from None


def _empty_part(index: DatasetIndex) -> pd.DataFrame:
    part = index.frames.drop(columns=[LANDMARKS_COLUMN], errors="ignore").iloc[:0].copy()
    for name in ["shard", "landmark_source", "skip_reason"]:
        part[name] = pd.Series([], dtype=object)
    for name in ["offset"]:
        part[name] = pd.Series([], dtype=np.int64)
    for name in LANDMARK_X + LANDMARK_Y + POSE_COLUMNS:
        part[name] = pd.Series([], dtype=np.float32)
    part["face_detected"] = pd.Series([], dtype=bool)
    return part


def _run_pending(pending: list[_Task], workers: int, out: Path, line: Progress) -> list[_Outcome]:
    """Run the tasks here (``workers <= 1``) or in a fork-server pool, updating the progress line."""
    global _on_frames
    outcomes: list[_Outcome] = []
    if not pending:
        return outcomes
    if workers <= 1 or len(pending) == 1:
        _on_frames = line.update
        try:
            outcomes.extend(_run_task(task) for task in pending)
        finally:
            _on_frames = None
        return outcomes
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["facskit.data.prepare", "cv2", "numpy", "pandas"])
    counter = ctx.Value("q", 0)
    with ProcessPoolExecutor(
        max_workers=min(workers, len(pending)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(counter, str(out / LOCK_FILE)),
    ) as pool:
        futures: set[Future] = {pool.submit(_run_task, task) for task in pending}
        try:
            while futures:
                finished, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                outcomes.extend(f.result() for f in finished)
                line.update(int(counter.value) - line.count)
        except BrokenProcessPool as error:
            raise DatasetError(
                f"a prepare worker died ({error}); out of memory? Finished sequences in {out} are kept: "
                "rerun the same command (with fewer --workers) to resume"
            ) from error
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    line.update(int(counter.value) - line.count)
    return outcomes
