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

This module runs a prepare: settings, lock, tasks, the pool and the summary. What a worker does with one
sequence is :mod:`facskit.data.prepare_worker`; the part files and their assembly into the index are
:mod:`facskit.data.prepare_parts`; reading a sequence's frames is :mod:`facskit.data.sequence_frames`.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import re
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from facskit.align import AlignSpec
from facskit.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    INDEX_FILE,
    META_FILE,
    PART_DIR,
    SHARD_DIR,
    read_cache_settings,
    write_json_atomic,
    write_parquet_atomic,
)
from facskit.data.index import DatasetIndex, Problem
from facskit.data.prepare_parts import assemble_index, part_path
from facskit.data.prepare_worker import (
    CROP_MODES,
    CropMode,
    LandmarkMode,
    SequenceOutcome,
    SequenceTask,
    prepare_sequence,
    report_frames_to,
)
from facskit.errors import DatasetError
from facskit.io.lock import hold_lock, share_lock
from facskit.io.progress import Progress

__all__ = [
    "CROP_MODES",
    "DEFAULT_ALIGN",
    "LOCK_FILE",
    "CropMode",
    "LandmarkMode",
    "PrepareSummary",
    "prepare_dataset",
    "sequence_key",
]

LOCK_FILE = ".lock"
# BMVC'18 3-point alignment to 256 x 256, what every paper preset trains on.
DEFAULT_ALIGN = AlignSpec("bmvc", 256)
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
    _check_arguments(landmarks, shard_size, crop)
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
        _check_meta(out, _cache_meta(index, landmarks, spec, shard_size, detect_every, crop))
        for stale in list((out / SHARD_DIR).glob("*.tmp")) + list((out / PART_DIR).glob("*.tmp")):
            stale.unlink(missing_ok=True)
        tasks = [
            SequenceTask(
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
            for (subject, sequence), rows in index.frames.groupby(["subject", "sequence"], sort=True)
        ]
        summary = _run_tasks(tasks, out, workers, progress, stream)
        table, problems = assemble_index(out, [t.key for t in tasks], index)
        summary.problems = problems + summary.problems
        write_parquet_atomic(table, out / INDEX_FILE)
        _count_frames(summary, table)
        summary.seconds = time.perf_counter() - started
        _write_summary(summary, out)
        return summary
    finally:
        if lock is not None:
            lock.close()


def _check_arguments(landmarks: str, shard_size: int, crop: str) -> None:
    if landmarks not in ("dataset", "detect"):
        raise ValueError(f"landmarks must be 'dataset' or 'detect', got {landmarks!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")


def _cache_meta(
    index: DatasetIndex, landmarks: str, spec: AlignSpec, shard_size: int, detect_every: int, crop: str
) -> dict[str, Any]:
    """The cache's ``meta.json``: what it holds and the settings it was prepared with."""
    import facskit

    return {
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


def _check_meta(out: Path, meta: dict[str, Any]) -> None:
    """Refuse a folder that holds a cache prepared with other settings (a resume must not mix them);
    then write ``meta``."""
    old = read_cache_settings(out)
    if old is not None:
        changed = [k for k in _META_KEYS if old.get(k) != meta.get(k)]
        if old.get("format") != CACHE_FORMAT or changed:
            what = ", ".join(f"{k}: {old.get(k)!r} -> {meta.get(k)!r}" for k in changed) or "another format"
            raise DatasetError(
                f"{out} holds a cache prepared with other settings ({what}); use another --out"
            )
    write_json_atomic(meta, out / META_FILE)


def _run_tasks(
    tasks: list[SequenceTask], out: Path, workers: int, progress: bool, stream: TextIO
) -> PrepareSummary:
    """Prepare the sequences not committed yet (resume), with a progress line; failures are counted,
    not raised, so that the other sequences are kept."""
    done = {t.key for t in tasks if part_path(out, t.key).is_file()}
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
    return summary


def _count_frames(summary: PrepareSummary, table: pd.DataFrame) -> None:
    """Frames in the index, prepared and skipped by reason, into ``summary``."""
    summary.frames = len(table)
    reasons = Counter(table["skip_reason"].tolist())
    summary.prepared = reasons.pop("", 0)
    summary.skipped = dict(reasons)


def _write_summary(summary: PrepareSummary, out: Path) -> None:
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


# ----------------------------------------------------------------------------------------------------------
# Running the sequences: in this process or in a pool of fork-server workers

# Looked up at call time by _run_task, so that a test can put a failing sequence in its place.
_prepare_sequence = prepare_sequence
_lock_handle: Any = None  # a pool worker's shared hold on the cache lock, kept for the process's life


def _hold_lock(path: Path, exclusive: bool) -> Any:
    return hold_lock(
        path,
        exclusive,
        DatasetError(
            f"{path.parent} is being written by another `facskit prepare` (or the workers of a killed one "
            "are finishing); wait for it to end, then run again"
        ),
    )


def _init_worker(counter: Any, lock_path: str) -> None:
    """Pool initializer: progress counter, one cv2 thread per process, shared hold on the cache lock."""
    global _lock_handle
    import cv2

    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    report_frames_to(add)
    cv2.setNumThreads(1)
    _lock_handle = _hold_lock(Path(lock_path), exclusive=False)


def _run_task(task: SequenceTask) -> SequenceOutcome:
    """Pool entry point: a failure in one sequence is reported, never fatal to the others."""
    try:
        return _prepare_sequence(task)
    except Exception as error:
        return SequenceOutcome(task.key, len(task.rows), [], error=f"{type(error).__name__}: {error}")


def _run_pending(
    pending: list[SequenceTask], workers: int, out: Path, line: Progress
) -> list[SequenceOutcome]:
    """Run the tasks here (``workers <= 1``) or in a fork-server pool, updating the progress line."""
    if not pending:
        return []
    if workers <= 1 or len(pending) == 1:
        report_frames_to(line.update)
        try:
            return [_run_task(task) for task in pending]
        finally:
            report_frames_to(None)
    return _run_in_pool(pending, workers, out, line)


def _run_in_pool(
    pending: list[SequenceTask], workers: int, out: Path, line: Progress
) -> list[SequenceOutcome]:
    """Run the tasks in ``workers`` processes started from a fork server (spawn where there is none)."""
    outcomes: list[SequenceOutcome] = []
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
