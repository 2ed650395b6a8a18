"""Analyse many inputs into an output folder, resumably: what ``facskit analyze`` does.

Layout of ``--out``::

    <name>.csv | <name>.parquet      one result per input (+ <name>.csv.meta.json with the attrs for CSV)
    summary.csv                      per file and face: frames, mean/max/% active per AU
    <name>.overlay.mp4               with --overlay-video
    <name>.heatmaps/chunk-*.npz      with --save-heatmaps (float16, compressed)
    .parts/<name>/part-*.parquet     raw rows of an unfinished input, one file per chunk of frames
    run.json                         the options the numbers depend on

Every file is written atomically (temporary file + ``os.replace``). An input whose result exists is
skipped; an input with parts resumes after its last part (the face tracker restarts there). The parts are
assembled, post-processed (smoothing, calibration, thresholds) and removed when an input finishes, one part
at a time (:mod:`facskit.analyze.assemble`), so memory does not grow with the length of a video.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facskit.analyze.assemble import assemble
from facskit.analyze.detector import Detector, Source
from facskit.analyze.pipeline import DEFAULT_CHUNK_FRAMES, FrameResult, rows_from_frames
from facskit.analyze.results import ResultFormat, atomic_write, result_path, summarize_file
from facskit.errors import FacskitError, MediaError, UsageError

PARTS_DIR = ".parts"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.csv"
NEXT_FRAME_KEY = b"facskit.next_frame"


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


def output_names(labels: Sequence[str]) -> list[str]:
    """A unique, stable output name per input: the file stem (``clip``), or stem and extension
    (``clip_mp4``) when two inputs share a stem, then the folder name in front if that still clashes."""
    stems = [Path(label).stem or "input" for label in labels]
    names: list[str] = []
    for label, stem in zip(labels, stems, strict=True):
        path = Path(label)
        name = stem
        if stems.count(stem) > 1:
            name = f"{stem}_{path.suffix.lstrip('.')}" if path.suffix else stem
        base, n = name, 2
        if name in names:
            name = base = f"{path.parent.name}_{name}"
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and prove it is writable, with a one-line error otherwise."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise FacskitError(f"output folder {out_dir} is not writable: {error.strerror or error}") from None


def check_run_file(out_dir: Path, options: dict[str, Any]) -> None:
    """Refuse to mix results made with different numbers-changing options in one folder."""
    path = out_dir / RUN_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != options:
            changed = sorted(k for k in set(previous) | set(options) if previous.get(k) != options.get(k))
            raise UsageError(
                f"{out_dir} holds results made with other options ({', '.join(changed)}); "
                "use another --out folder or delete it"
            )
        return
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(options, indent=2, sort_keys=True) + "\n"))


def analyze_to_dir(
    detector: Detector,
    inputs: Sequence[Source],
    out_dir: Path | str,
    options: OutputOptions = OutputOptions(),
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Analyse ``inputs`` into ``out_dir`` (layout in the module docstring). Returns a :class:`RunReport`.

    Raises :class:`FacskitError` for problems that stop the whole run (folder not writable, disk full);
    an input that cannot be read is reported and the others go on.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    out_dir = Path(out_dir)
    plan = plan_run(detector, inputs, out_dir, options, log)
    report = plan.report
    for label, source, name, target in plan.todo:
        try:
            error = _analyze_one(detector, label, source, out_dir, name, target, options, log)
        except MediaError as failure:
            report.errors.append((label, str(failure)))
            log(f"error: {_named(label, failure)}")
            continue
        report.written.append(target)
        if error:
            report.errors.append((label, error))
    write_summary(out_dir, plan.targets)
    return report


@dataclass
class RunPlan:
    """What a run into an output folder has to do: every input's result path, and those still missing."""

    targets: list[Path]  # one result per input, in input order (summary.csv lists them all)
    todo: list[tuple[str, Source, str, Path]]  # (label, source, output name, result path) not yet written
    report: RunReport  # with the inputs already finished marked as skipped


def plan_run(
    detector: Detector,
    inputs: Sequence[Source],
    out_dir: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> RunPlan:
    """Prepare ``out_dir``, refuse it if it holds results made with other options, name each input's
    result and skip those already written. Shared by the single-process and the Ray runner."""
    prepare_out_dir(out_dir)
    run_options = {**detector.options(), "format": options.fmt, "openface_columns": options.openface_columns}
    run_options["max_frames"] = options.max_frames
    check_run_file(out_dir, run_options)
    sources = detector.sources(inputs)
    names = output_names([label for label, _ in sources])
    plan = RunPlan([], [], RunReport())
    for (label, source), name in zip(sources, names, strict=True):
        target = result_path(out_dir, name, options.fmt)
        plan.targets.append(target)
        if target.is_file():
            log(f"{label}: done already ({target.name}), skipped")
            plan.report.skipped.append(target)
        else:
            plan.todo.append((label, source, name, target))
    return plan


def write_summary(out_dir: Path, results: Sequence[Path]) -> Path:
    """``summary.csv``: :meth:`AUResult.summary` of every finished result, one row per file and face (each
    result read a block of rows at a time: :func:`summarize_file`)."""
    tables = [summarize_file(path) for path in results if path.is_file()]
    tables = [t for t in tables if len(t)]
    summary = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=["file", "face_id", "frames"])
    )
    path = out_dir / SUMMARY_FILE
    atomic_write(path, lambda tmp: summary.to_csv(tmp, index=False))
    return path


def _analyze_one(
    detector: Detector,
    label: str,
    source: Source,
    out_dir: Path,
    name: str,
    target: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> str | None:
    """Analyse one input into ``target``; returns the decode error that cut it short, if any."""
    parts_dir = out_dir / PARTS_DIR / name
    start = _resume_frame(parts_dir)
    if start and options.overlay_video:
        # The overlay video is one stream: it cannot be appended to, so the input starts over.
        shutil.rmtree(parts_dir)
        start = 0
    if start:
        log(f"{label}: resuming at frame {start}")
    parts_dir.mkdir(parents=True, exist_ok=True)
    keep_heatmaps = options.overlay_video or options.save_heatmaps
    overlay = None
    if options.overlay_video:
        from facskit.analyze.overlay import OverlayVideoWriter

        overlay = OverlayVideoWriter(
            out_dir / f"{name}.overlay.mp4", detector.spec, source, aus=options.overlay_aus or detector.aus
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
                    _write_heatmaps(out_dir / f"{name}.heatmaps", chunk)
                _write_part(parts_dir, chunk, detector.aus)
                frames_done += len(chunk)
        except MediaError as failure:
            if not _part_files(parts_dir):
                raise
            error = str(failure)
            log(f"error: {_named(label, failure)}; the frames decoded before it are kept")
        if overlay is not None:
            overlay.close()
            overlay = None
    finally:
        if overlay is not None:
            overlay.abort()
    parts = _part_files(parts_dir)
    if not parts:
        raise MediaError(f"{label}: no frame could be analysed")
    errors = [{"file": label, "error": error}] if error else []
    rows = assemble(parts, target, options.fmt, detector, errors, options.openface_columns)
    shutil.rmtree(parts_dir, ignore_errors=True)
    _remove_if_empty(out_dir / PARTS_DIR)
    log(f"{label}: {rows} rows ({frames_done} frames analysed now) -> {target.name}")
    return error


def _named(label: str, error: Exception) -> str:
    """The error message with the input's name in front, unless it already names it."""
    text = str(error)
    return text if label in text else f"{label}: {text}"


def _part_files(parts_dir: Path) -> list[Path]:
    return sorted(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else []


def _resume_frame(parts_dir: Path) -> int:
    """The frame after the last written part (0 when nothing was written)."""
    import pyarrow.parquet as pq

    start = 0
    for part in _part_files(parts_dir):
        metadata = pq.read_schema(part).metadata or {}
        start = max(start, int(metadata.get(NEXT_FRAME_KEY, b"0")))
    return start


def _write_part(parts_dir: Path, chunk: list[FrameResult], aus: Sequence[int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_from_frames(chunk, aus)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[NEXT_FRAME_KEY] = str(chunk[-1].index + 1).encode()
    table = table.replace_schema_metadata(metadata)
    path = parts_dir / f"part-{chunk[0].index:09d}.parquet"
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def _write_heatmaps(folder: Path, chunk: list[FrameResult]) -> None:
    """One compressed ``.npz`` per chunk: ``frame`` (N,), ``face_id`` (N,), ``heatmaps`` (N, P, h, w) float16
    (crop-aligned, 0-5 scale) and ``matrix`` (N, 2, 3) frame -> crop, to map them back with
    :func:`facskit.align.heatmaps_to_frame`."""
    faces = [(r.index, f) for r in chunk for f in r.faces if f.heatmaps is not None]
    if not faces:
        return
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "frame": np.array([i for i, _ in faces], dtype=np.int64),
        "face_id": np.array([f.face_id for _, f in faces], dtype=np.int64),
        "heatmaps": np.stack([f.heatmaps for _, f in faces]).astype(np.float16),  # (N, P, h, w)
        "matrix": np.stack([f.matrix for _, f in faces]),  # (N, 2, 3)
    }
    path = folder / f"chunk-{chunk[0].index:09d}.npz"

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST):
            raise
