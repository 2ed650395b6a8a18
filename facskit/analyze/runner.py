"""Analyse many inputs into an output folder, resumably: what ``facskit analyze`` does.

Layout of ``--out``::

    <name>.csv | <name>.parquet      one result per input (+ <name>.csv.meta.json with the attrs for CSV)
    summary.csv                      per file and face of every result in the folder: mean/max/% active
    <name>.overlay.mp4               with --overlay-video
    <name>.heatmaps/chunk-*.npz      with --save-heatmaps (float16, compressed)
    .parts/<name>/part-*.parquet     raw rows of an unfinished video, one file per chunk of frames
    run.json                         the options the numbers depend on, backend and precision included
    .facskit-analyze.lock            while a run writes here (removed when it ends)

Every file is written atomically (temporary file + ``os.replace``), and one run at a time writes a folder: a
second ``facskit analyze`` into it is refused with a one-line error (an ``flock`` the OS drops when its holder
dies, so a killed run never blocks the next). A result is finished only when its metadata is complete
(a CSV's sidecar records its size) and records what produced it: the input (resolved path, size,
modification time) and the run options. An input whose result matches on all of these is skipped; one that
changed, or whose result is incomplete, is analysed again. A different input that would get the same name
as a result already in the folder gets the name plus a short hash of its path, so nothing is overwritten
or mistaken for done. An input with parts resumes after its last part (the face tracker restarts there),
only when the parts record the same input and options, else it starts over. The parts are assembled,
post-processed (smoothing, calibration, thresholds) and removed when an input finishes, one part at a time
(:mod:`facskit.analyze.assemble`), so memory does not grow with the length of a video. A still image is
analysed in one go and written from arrays, its summary recorded in its sidecar
(:mod:`facskit.analyze.still_result`).

Backends are never mixed: ``run.json`` records the backend and precision, and a run with others is refused
naming them (``facskit analyze`` with ``--backend``/``--precision`` left at ``auto`` takes the folder's).

This is the one driver of ``facskit analyze``; ``--ray`` is a way to run its inputs, not a second runner.
The plan (names, skips, provenance, the lock) is the same; inputs are then fanned out over Ray as files and
time chunks (:mod:`facskit.analyze.distributed`, stitched to the single-process rows), except those whose
frames must pass through one process in order (``--overlay-video``, ``--save-heatmaps``) or that resume
from parts, which run here as without Ray. The folder modules: :mod:`~facskit.analyze.outdir` (names, lock,
``run.json``, leftovers, summary) and :mod:`~facskit.analyze.parts` (resumable parts, saved heatmaps).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facskit.analyze.detector import Detector, Source
from facskit.analyze.outdir import (
    OVERLAY_SUFFIX,
    PARTS_DIR,
    check_run_file,
    clean_leftovers,
    is_analysis_output,
    output_lock,
    output_names,
    result_owners,
    short_hash,
    short_name,
    why_not_done,
    write_summary,
)
from facskit.analyze.parts import (
    drop_heatmaps_from,
    part_files,
    remove_if_empty,
    resume_frame,
    write_heatmaps,
    write_part,
)
from facskit.analyze.pipeline import DEFAULT_CHUNK_FRAMES
from facskit.analyze.schema import ResultFormat, result_path
from facskit.errors import MediaError

# Threads that analyse still images side by side (one per core, at most this many).
STILL_WORKERS = 4


@dataclass(frozen=True)
class OutputOptions:
    """What ``facskit analyze`` writes besides the numbers (none of it changes them)."""

    fmt: ResultFormat = "csv"
    openface_columns: bool = False
    overlay_video: bool = False
    overlay_aus: tuple[int, ...] | None = None  # AUs blended into the overlay (default: all)
    save_heatmaps: bool = False
    max_frames: int | None = None
    chunk_frames: int = DEFAULT_CHUNK_FRAMES


@dataclass
class RunReport:
    """What happened to each input."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (input, message)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0


def run_options(detector: Detector, options: OutputOptions) -> dict[str, Any]:
    """Everything a result's numbers depend on: the detector's options, the backend and precision it runs
    (they change the numbers by up to 0.16 on the 0-5 scale), the format and the frame limit."""
    out = {
        **detector.options(),
        "backend": detector.backend.name,
        "precision": getattr(detector.backend, "precision", "fp32"),
        "format": options.fmt,
        "openface_columns": options.openface_columns,
        "max_frames": options.max_frames,
    }
    return json.loads(json.dumps(out))  # as stored: tuples are lists, keys strings


def input_identity(label: str, source: Source) -> dict[str, Any]:
    """What tells this input from another with the same name: the resolved path, size and modification
    time of a file; the size and a content hash of an in-memory array. Raises MediaError naming the input
    when it cannot be looked at (a symlink loop, a file gone since the folder was listed)."""
    if isinstance(source, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()[:16]
        return {"path": label, "size": int(source.nbytes), "sha256": digest}
    from facskit.io import resolved

    path = Path(source.path)
    try:
        stat = path.stat()
    except OSError as error:
        raise MediaError(f"{label}: cannot be read ({error.strerror or error})") from None
    return {"path": str(resolved(path)), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


@dataclass(frozen=True)
class Job:
    """One input still to analyse: its label, source, output name, result path and provenance (what its
    result and parts record: ``{"input": identity, "options": run options}``)."""

    label: str
    source: Source
    name: str
    target: Path
    provenance: dict[str, Any]


@dataclass(frozen=True)
class RaySettings:
    """``facskit analyze --ray``: where the cluster is and how its tasks are sized (see
    :mod:`facskit.analyze.distributed`)."""

    address: str | None = None  # None: a local Ray instance; "auto"; "ray://head:10001"
    workers: int | None = None  # tasks in flight (default: the cluster's CPUs / cpus_per_task)
    cpus_per_task: int = 1


def analyze_to_dir(
    detector: Detector,
    inputs: Sequence[Source],
    out_dir: Path | str,
    options: OutputOptions = OutputOptions(),
    log: Callable[[str], None] | None = None,
    ray: RaySettings | None = None,
) -> RunReport:
    """Analyse ``inputs`` into ``out_dir`` (layout in the module docstring). Returns a :class:`RunReport`.

    With ``ray`` the inputs whose frames need not pass through this process in order are fanned out over
    Ray as files and time chunks (:func:`fan_out`); the rest (:func:`runs_here`) run here, in this process,
    exactly as without Ray. Both write the same folder under the same lock, plan and provenance, so every
    option works with or without Ray and a folder started one way is finished the other.

    Raises :class:`FacskitError` for problems that stop the whole run (folder not writable or in use by
    another run, disk full); an input that cannot be read is reported and the others go on.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    out_dir = Path(out_dir)
    with output_lock(out_dir):
        plan = plan_run(detector, inputs, out_dir, options, log)
        report = plan.report
        here = [job for job in plan.todo if ray is None or runs_here(job, out_dir, options)]
        fanned = [job for job in plan.todo if job not in here]
        if ray is not None and here:
            log(f"ray: {len(here)} input(s) run in this process (overlay, heatmaps or resuming parts)")
        if fanned:
            fan_out(detector, fanned, options, ray or RaySettings(), report, log)
        with contextlib.closing(run_jobs(detector, here, out_dir, options, log)) as outcomes:
            for job, outcome in outcomes:
                if isinstance(outcome, MediaError):
                    report.errors.append((job.label, str(outcome)))
                    log(f"error: {_named(job.label, outcome)}")
                    continue
                report.written.append(job.target)
                if outcome:
                    report.errors.append((job.label, outcome))
        write_summary(out_dir)
    return report


def run_jobs(
    detector: Detector,
    jobs: Sequence[Job],
    out_dir: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> Iterator[tuple[Job, str | MediaError | None]]:
    """Run ``jobs`` and yield each one's outcome in input order: the decode error that cut it short (or
    None), or the :class:`MediaError` that stopped it.

    Still images run :data:`STILL_WORKERS` at a time on threads: the HOG detector, most of a photo's time,
    releases the GIL, and a folder of 813 portraits took 20 instead of 33 s on 2 cores. At most twice as
    many are in flight as there are threads; a video waits for the stills before it and runs alone (its
    engine has threads of its own). An error that stops the run (a full disk, Ctrl-C) lets the stills
    already running finish, each written whole or not at all, and starts no other."""
    workers = min(STILL_WORKERS, os.cpu_count() or 1)
    still = [takes_still_path(detector, job, options) for job in jobs]
    if workers < 2 or sum(still) < 2:
        for job in jobs:
            yield job, _outcome(analyze_job, detector, job, out_dir, options, log)
        return
    detector.front_end.still_detector  # noqa: B018 - loaded once, before the threads share it
    pool = ThreadPoolExecutor(workers, thread_name_prefix="facskit-still")
    pending: deque[tuple[Job, Future[str | MediaError | None]]] = deque()
    try:
        for job, is_still in zip(jobs, still, strict=True):
            if is_still:
                pending.append(
                    (job, pool.submit(_outcome, analyze_still, detector, job, out_dir, options, log))
                )
            while pending and (not is_still or len(pending) > 2 * workers):
                done, future = pending.popleft()
                yield done, future.result()
            if not is_still:
                yield job, _outcome(analyze_job, detector, job, out_dir, options, log)
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _outcome(analyse: Callable[..., str | None], *args: Any) -> str | MediaError | None:
    """``analyse(*args)``, with a :class:`MediaError` (this input only) returned instead of raised."""
    try:
        return analyse(*args)
    except MediaError as failure:
        return failure


def runs_here(job: Job, out_dir: Path, options: OutputOptions) -> bool:
    """Whether ``job`` must run in this process under ``--ray``: an overlay video and saved heatmaps are
    written frame by frame, in order, from one stream (Ray's time chunks return rows only), and an input
    with parts resumes after its last part, which only the in-process path reads."""
    return options.overlay_video or options.save_heatmaps or bool(part_files(out_dir / PARTS_DIR / job.name))


def fan_out(
    detector: Detector,
    jobs: Sequence[Job],
    options: OutputOptions,
    ray: RaySettings,
    report: RunReport,
    log: Callable[[str], None],
) -> None:
    """Run ``jobs`` as Ray tasks (files, and time chunks of long videos, stitched to the single-process
    rows) and write each result as soon as its last chunk is back, with the attrs the in-process path
    records plus ``stitch`` (how the chunks were joined)."""
    import pandas as pd

    from facskit.analyze.distributed import analyze_ray_raw
    from facskit.analyze.openface import to_openface_columns
    from facskit.analyze.result_files import write_result_parts

    by_label = {job.label: job for job in jobs}
    stitched = analyze_ray_raw(
        detector,
        list(by_label),
        ray.address,
        ray.workers,
        max_frames=options.max_frames,
        cpus_per_task=ray.cpus_per_task,
        log=log,
    )
    for label, rows, info in stitched:
        if not len(rows):
            report.errors.append((label, "; ".join(info["errors"]) or "no frame could be analysed"))
            continue
        job = by_label[label]
        result = detector.finalize(rows)
        result.attrs["stitch"] = info
        result.attrs["errors"] = [{"file": label, "error": e} for e in info["errors"]]
        result.attrs["input"] = job.provenance["input"]
        result.attrs["run_options"] = job.provenance["options"]
        table = to_openface_columns(result) if options.openface_columns else result
        write_result_parts([pd.DataFrame(table)], result.attrs, job.target, options.fmt)
        report.written.append(job.target)
        report.errors.extend((label, e) for e in info["errors"])
        log(f"{label}: {len(result)} rows -> {job.target.name}")


@dataclass
class RunPlan:
    """What a run into an output folder has to do: every input's result path, and those still missing."""

    targets: list[Path]  # one result per readable input, in input order
    todo: list[Job]  # inputs whose result is not written yet (or is stale or incomplete)
    report: RunReport  # with the inputs already finished marked as skipped, unreadable ones as errors


def plan_run(
    detector: Detector,
    inputs: Sequence[Source],
    out_dir: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> RunPlan:
    """Refuse ``out_dir`` if it holds results made with other options, clean what killed runs left, name
    each input's result and skip those already written by the same input and options. Shared by the
    in-process and the Ray paths; the caller holds :func:`output_lock`."""
    opts = run_options(detector, options)
    check_run_file(out_dir, opts, {"backend_check": getattr(detector.backend, "check", None)})
    clean_leftovers(out_dir)
    plan = RunPlan([], [], RunReport())
    sources: list[tuple[str, Source]] = []
    for item in _as_items(inputs):
        try:
            sources += detector.sources(item)
        except MediaError as failure:  # e.g. a folder without media: that input only
            label = os.fspath(item) if isinstance(item, str | os.PathLike) else type(item).__name__
            plan.report.errors.append((label, str(failure)))
            log(f"error: {_named(label, failure)}")
    sources = _unique(sources)
    readable: list[tuple[str, Source, dict[str, Any]]] = []
    for label, source in sources:
        if is_analysis_output(source):
            log(f"{label}: written by facskit analyze (an overlay video), not analysed as an input")
            continue
        try:
            readable.append((label, source, input_identity(label, source)))
        except MediaError as failure:
            plan.report.errors.append((label, str(failure)))
            log(f"error: {_named(label, failure)}")
    owners = result_owners(out_dir)
    by_path = {path: name for name, path in owners.items() if path is not None}
    names = output_names([label for label, _, _ in readable])
    taken: set[str] = set()
    for (label, source, identity), base in zip(readable, names, strict=True):
        name = by_path.get(identity["path"])
        if name is None or name in taken:
            name = base
            if name in owners or name in taken:
                name = short_name(f"{base}-{short_hash(identity['path'])}")
                holder = owners.get(base)
                log(f"{label}: {base} is the name of another input's result{_from(holder)}; writing {name}")
            n = 2
            while name in owners or name in taken:
                name, n = f"{name}_{n}", n + 1
        taken.add(name)
        target = result_path(out_dir, name, options.fmt)
        plan.targets.append(target)
        provenance = {"input": identity, "options": opts}
        stale = why_not_done(target, provenance)
        if stale is None:
            log(f"{label}: done already ({target.name}), skipped")
            plan.report.skipped.append(target)
            shutil.rmtree(out_dir / PARTS_DIR / name, ignore_errors=True)  # left by a kill after the result
            remove_if_empty(out_dir / PARTS_DIR)
            continue
        if stale != "absent":
            log(f"{label}: {target.name} {stale}; analysed again")
        plan.todo.append(Job(label, source, name, target, provenance))
    return plan


def _as_items(inputs: Source | Sequence[Source]) -> list[Source]:
    """The inputs one at a time, so one that cannot be expanded fails alone."""
    from facskit.io import MediaFile

    if isinstance(inputs, str | os.PathLike | np.ndarray | MediaFile) or not hasattr(inputs, "__iter__"):
        return [inputs]
    items = list(inputs)
    if all(isinstance(item, str | os.PathLike | MediaFile) for item in items):
        return items
    return [items]  # in-memory images are labelled by their position among all inputs


def _unique(sources: list[tuple[str, Source]]) -> list[tuple[str, Source]]:
    """Each file once, in first-seen order, however many arguments named it."""
    from facskit.io import resolved

    seen: set[str] = set()
    out = []
    for label, source in sources:
        key = label if isinstance(source, np.ndarray) else str(resolved(Path(source.path)))
        if key not in seen:
            seen.add(key)
            out.append((label, source))
    return out


def _from(holder: str | None) -> str:
    return f" ({holder})" if holder else ""


def analyze_job(
    detector: Detector,
    job: Job,
    out_dir: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> str | None:
    """Analyse one input into ``job.target``; returns the decode error that cut it short, if any."""
    if takes_still_path(detector, job, options):
        return analyze_still(detector, job, out_dir, options, log)
    from facskit.analyze.assemble import assemble

    label, source, name, target = job.label, job.source, job.name, job.target
    parts_dir = out_dir / PARTS_DIR / name
    start = resume_frame(parts_dir, job.provenance, label, log)
    if start and options.overlay_video:
        # The overlay video is one stream: it cannot be appended to, so the input starts over.
        shutil.rmtree(parts_dir)
        start = 0
    if start:
        log(f"{label}: resuming at frame {start}")
    drop_heatmaps_from(out_dir / f"{name}.heatmaps", start)
    parts_dir.mkdir(parents=True, exist_ok=True)
    keep_heatmaps = options.overlay_video or options.save_heatmaps
    overlay = None
    if options.overlay_video:
        from facskit.analyze.overlay import OverlayVideoWriter

        overlay = OverlayVideoWriter(
            out_dir / f"{name}{OVERLAY_SUFFIX}",
            detector.spec,
            source,
            aus=options.overlay_aus or detector.aus,
        )
    error: str | None = None
    frames_done = 0
    try:
        chunks = detector.iter_chunks(
            source,
            label=label,
            start_frame=start,
            max_frames=options.max_frames,
            chunk_frames=options.chunk_frames,
            keep_heatmaps=keep_heatmaps,
            on_frame=overlay.write if overlay is not None else None,
        )
        try:
            for chunk in chunks:
                if options.save_heatmaps:
                    write_heatmaps(out_dir / f"{name}.heatmaps", chunk)
                write_part(parts_dir, chunk, detector.aus, job.provenance)
                frames_done += len(chunk)
        except MediaError as failure:
            if not part_files(parts_dir):
                raise
            error = str(failure)
            log(f"error: {_named(label, failure)}; the frames decoded before it are kept")
        if overlay is not None:
            overlay.close()
            overlay = None
    except MediaError:
        remove_if_empty(parts_dir)  # a failed input leaves no empty folder behind
        remove_if_empty(out_dir / PARTS_DIR)
        raise
    finally:
        if overlay is not None:
            overlay.abort()
    parts = part_files(parts_dir)
    if not parts:
        remove_if_empty(parts_dir)
        remove_if_empty(out_dir / PARTS_DIR)
        raise MediaError(f"{label}: no frame could be analysed")
    errors = [{"file": label, "error": error}] if error else []
    provenance = {"input": job.provenance["input"], "run_options": job.provenance["options"]}
    rows = assemble(
        parts, target, options.fmt, detector, errors, options.openface_columns, provenance=provenance
    )
    shutil.rmtree(parts_dir, ignore_errors=True)
    remove_if_empty(out_dir / PARTS_DIR)
    log(f"{label}: {rows} rows ({frames_done} frames analysed now) -> {target.name}")
    return error


def takes_still_path(detector: Detector, job: Job, options: OutputOptions) -> bool:
    """Whether ``job`` is a still image whose result :func:`analyze_still` writes: plain CSV, no overlay
    video, no smoothing or calibration (see :mod:`facskit.analyze.still_result`)."""
    from facskit.io import MediaKind

    still = isinstance(job.source, np.ndarray) or getattr(job.source, "kind", None) is MediaKind.IMAGE
    plain = options.fmt == "csv" and not options.openface_columns and not options.overlay_video
    return still and plain and detector.smoothing is None and detector.calibration is None


def analyze_still(
    detector: Detector,
    job: Job,
    out_dir: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> str | None:
    """Analyse the still image of ``job`` into ``job.target`` in one go, without parts (see
    :mod:`facskit.analyze.still_result`); returns the decode error that cut a multi-page image short."""
    from facskit.analyze.postprocess import result_attrs
    from facskit.analyze.still_result import still_columns, write_still_result

    label, name = job.label, job.name
    shutil.rmtree(out_dir / PARTS_DIR / name, ignore_errors=True)  # left by an earlier version's run
    remove_if_empty(out_dir / PARTS_DIR)
    drop_heatmaps_from(out_dir / f"{name}.heatmaps", 0)
    frames = []
    error: str | None = None
    try:
        for chunk in detector.iter_chunks(
            job.source,
            label=label,
            max_frames=options.max_frames,
            chunk_frames=options.chunk_frames,
            keep_heatmaps=options.save_heatmaps,
        ):
            if options.save_heatmaps:
                write_heatmaps(out_dir / f"{name}.heatmaps", chunk)
            frames += chunk
    except MediaError as failure:
        if not frames:
            raise
        error = str(failure)
        log(f"error: {_named(label, failure)}; the pages decoded before it are kept")
    if not frames:
        raise MediaError(f"{label}: no frame could be analysed")
    errors = [{"file": label, "error": error}] if error else []
    provenance = {"input": job.provenance["input"], "run_options": job.provenance["options"]}
    added = {"smoothing": None, "calibration": None}
    attrs = result_attrs(detector, added, errors, provenance)
    columns = still_columns(frames, detector.aus, detector.thresholds)
    rows = write_still_result(job.target, columns, attrs, detector.aus)
    log(f"{label}: {rows} rows ({len(frames)} frames analysed now) -> {job.target.name}")
    return error


def _named(label: str, error: Exception) -> str:
    """The error message with the input's name in front, unless it already names it."""
    text = str(error)
    return text if label in text else f"{label}: {text}"
