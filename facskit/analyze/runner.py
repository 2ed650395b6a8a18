"""Analyse many inputs into an output folder, resumably: what ``facskit analyze`` does.

Layout of ``--out``::

    <name>.csv | <name>.parquet      one result per input (+ <name>.csv.meta.json with the attrs for CSV)
    summary.csv                      per file and face of every result in the folder: mean/max/% active
    <name>.overlay.mp4               with --overlay-video
    <name>.heatmaps/chunk-*.npz      with --save-heatmaps (float16, compressed)
    .parts/<name>/part-*.parquet     raw rows of an unfinished input, one file per chunk of frames
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
(:mod:`facskit.analyze.assemble`), so memory does not grow with the length of a video.

Backends are never mixed: ``run.json`` records the backend and precision, and a run with others is refused
naming them (``facskit analyze`` with ``--backend``/``--precision`` left at ``auto`` takes the folder's).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facskit.analyze.assemble import assemble
from facskit.analyze.detector import Detector, Source
from facskit.analyze.pipeline import DEFAULT_CHUNK_FRAMES, FrameResult, rows_from_frames
from facskit.analyze.result_files import read_attrs, result_path, summarize_file
from facskit.analyze.schema import RESULT_FORMATS, ResultFormat
from facskit.errors import FacskitError, MediaError, UsageError
from facskit.io.atomic import atomic_write

PARTS_DIR = ".parts"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.csv"
LOCK_FILE = ".facskit-analyze.lock"
NEXT_FRAME_KEY = b"facskit.next_frame"
PROVENANCE_KEY = b"facskit.provenance"  # a part's JSON {"input": ..., "options": ...}
# Run options recorded under an older name -> today's name, so a folder written before a rename is resumed.
RENAMED_OPTIONS = {"every": "detect_every"}
OVERLAY_SUFFIX = ".overlay.mp4"
# Result stems that would overwrite the folder's own files (compared without case: macOS, Windows).
RESERVED_STEMS = frozenset({Path(SUMMARY_FILE).stem})
# Output names are cut to this many UTF-8 bytes (plus a hash): the longest file made from one,
# ".<name>.csv.meta.json.<8 random>.tmp", must stay under the 255-byte limit of common file systems.
MAX_NAME_BYTES = 150
# What atomic_write, the overlay writer and prepare_out_dir leave behind when killed.
LEFTOVER_PATTERNS = (
    re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$"),
    re.compile(r"^\..+" + re.escape(OVERLAY_SUFFIX) + r"\.\d+\.tmp\.mp4$"),
    re.compile(r"^\.write-test-[A-Za-z0-9_]{8}$"),
)


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
    (``clip_mp4``) when two inputs share a stem, then the folder name in front if that still clashes.

    A stem reserved for the folder's own files (``summary``) takes its extension too (``summary_jpg``), and a
    name too long for the file system is cut and given a hash of the whole name.
    """
    stems = [Path(label).stem or "input" for label in labels]
    names: list[str] = []
    for label, stem in zip(labels, stems, strict=True):
        path = Path(label)
        name = stem
        if stems.count(stem) > 1 or stem.lower() in RESERVED_STEMS:
            name = f"{stem}_{path.suffix.lstrip('.') or 'input'}"
        name = _short_name(name)
        base, n = name, 2
        if name in names:
            name = base = _short_name(f"{path.parent.name}_{name}")
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def _short_name(name: str) -> str:
    """``name``, or its first bytes and a hash of it all when it is longer than :data:`MAX_NAME_BYTES`."""
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    head = encoded[: MAX_NAME_BYTES - 9].decode(errors="ignore")
    return f"{head}-{_short_hash(name)}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and prove it is writable, with a one-line error otherwise."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise FacskitError(f"output folder {out_dir} is not writable: {error.strerror or error}") from None


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir`` for this run: a second run into it is refused with a one-line error.

    ``flock`` on :data:`LOCK_FILE`: the OS releases it when the holder exits or is killed, so a stale lock
    never blocks a later run. The file is removed at the end while still locked; a run that opened it just
    before sees, once it holds the lock, that the path no longer names the file it locked, and starts over.
    Where ``fcntl`` does not exist (Windows) runs are not serialised.
    """
    prepare_out_dir(out_dir)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = out_dir / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise FacskitError(f"cannot lock {out_dir}: {error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _lock_holder(fd)
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise FacskitError(f"cannot lock {out_dir}: {error.strerror or error}") from None
            raise FacskitError(
                f"{out_dir} is being written by another facskit analyze{holder}; "
                "wait for it to finish or use another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the lock


def _lock_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (pid {pid})"
    return ""


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


def read_run_file(out_dir: Path) -> dict[str, Any] | None:
    """The options recorded in ``out_dir/run.json``, None when there is none; one line naming a bad file."""
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FacskitError(
            f"{path}: unreadable ({_first_line(error)}); delete it to reuse the folder with this run's "
            "options"
        ) from None
    if not isinstance(recorded, dict):
        raise FacskitError(f"{path}: not a facskit run file; delete it to reuse the folder")
    return current_option_names(recorded)


def current_option_names(options: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded run options under today's names (:data:`RENAMED_OPTIONS`), values unchanged."""
    return {RENAMED_OPTIONS.get(key, key): value for key, value in options.items()}


def recorded_backend(out_dir: Path | str) -> tuple[str, str] | None:
    """The (backend, precision) an output folder's results were made with, if it records them (so that a
    rerun left at ``auto`` continues with them instead of mixing)."""
    try:
        recorded = read_run_file(Path(out_dir))
    except FacskitError:
        return None
    if recorded and isinstance(recorded.get("backend"), str) and isinstance(recorded.get("precision"), str):
        return recorded["backend"], recorded["precision"]
    return None


def check_run_file(out_dir: Path, options: dict[str, Any]) -> None:
    """Refuse to mix results made with different numbers-changing options (backend and precision included)
    in one folder, naming what differs. A run file of an older facskit lacks some keys: those are added
    (each result and part records its own options too, and one that differs is redone, never mixed)."""
    path = out_dir / RUN_FILE
    previous = read_run_file(out_dir)
    if previous is not None:
        changed = sorted(k for k in previous if previous.get(k) != options.get(k))
        if changed:
            differences = ", ".join(
                f"{k}: {_brief(previous.get(k))} there, {_brief(options.get(k))} now" for k in changed
            )
            raise UsageError(
                f"{out_dir} holds results made with other options ({differences}); "
                "use another --out folder or delete it"
            )
        if set(options) <= set(previous):
            return
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(options, indent=2, sort_keys=True) + "\n"))


def _brief(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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


def analyze_to_dir(
    detector: Detector,
    inputs: Sequence[Source],
    out_dir: Path | str,
    options: OutputOptions = OutputOptions(),
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Analyse ``inputs`` into ``out_dir`` (layout in the module docstring). Returns a :class:`RunReport`.

    Raises :class:`FacskitError` for problems that stop the whole run (folder not writable or in use by
    another run, disk full); an input that cannot be read is reported and the others go on.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    out_dir = Path(out_dir)
    with output_lock(out_dir):
        plan = plan_run(detector, inputs, out_dir, options, log)
        report = plan.report
        for job in plan.todo:
            try:
                error = _analyze_one(detector, job, out_dir, options, log)
            except MediaError as failure:
                report.errors.append((job.label, str(failure)))
                log(f"error: {_named(job.label, failure)}")
                continue
            report.written.append(job.target)
            if error:
                report.errors.append((job.label, error))
        write_summary(out_dir)
    return report


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
    single-process and the Ray runner; the caller holds :func:`output_lock`."""
    opts = run_options(detector, options)
    check_run_file(out_dir, opts)
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
        if _is_analysis_output(source):
            log(f"{label}: written by facskit analyze (an overlay video), not analysed as an input")
            continue
        try:
            readable.append((label, source, input_identity(label, source)))
        except MediaError as failure:
            plan.report.errors.append((label, str(failure)))
            log(f"error: {_named(label, failure)}")
    owners = _owners(out_dir)
    by_path = {path: name for name, path in owners.items() if path is not None}
    names = output_names([label for label, _, _ in readable])
    taken: set[str] = set()
    for (label, source, identity), base in zip(readable, names, strict=True):
        name = by_path.get(identity["path"])
        if name is None or name in taken:
            name = base
            if name in owners or name in taken:
                name = _short_name(f"{base}-{_short_hash(identity['path'])}")
                holder = owners.get(base)
                log(f"{label}: {base} is the name of another input's result{_from(holder)}; writing {name}")
            n = 2
            while name in owners or name in taken:
                name, n = f"{name}_{n}", n + 1
        taken.add(name)
        target = result_path(out_dir, name, options.fmt)
        plan.targets.append(target)
        provenance = {"input": identity, "options": opts}
        stale = _why_not_done(target, provenance)
        if stale is None:
            log(f"{label}: done already ({target.name}), skipped")
            plan.report.skipped.append(target)
            shutil.rmtree(out_dir / PARTS_DIR / name, ignore_errors=True)  # left by a kill after the result
            _remove_if_empty(out_dir / PARTS_DIR)
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


def _is_analysis_output(source: Source) -> bool:
    """An overlay video in a folder ``facskit analyze`` wrote (it holds a run.json): an output, never an
    input, even when that folder is also an input folder."""
    if isinstance(source, np.ndarray):
        return False
    path = Path(source.path)
    return path.name.lower().endswith(OVERLAY_SUFFIX) and (path.parent / RUN_FILE).is_file()


def _result_files(out_dir: Path) -> list[Path]:
    """Files of ``out_dir`` that may be results: ``*.csv``/``*.parquet`` other than summary.csv."""
    suffixes = {f".{fmt}" for fmt in RESULT_FORMATS}
    return sorted(
        p for p in out_dir.iterdir() if p.suffix in suffixes and p.name != SUMMARY_FILE and p.is_file()
    )


def _owners(out_dir: Path) -> dict[str, str | None]:
    """Output name -> resolved path of the input whose result or parts are in ``out_dir`` under it (None
    where that cannot be told: an incomplete result of an older facskit, a foreign table)."""
    owners: dict[str, str | None] = {}
    for path in _result_files(out_dir):
        owners[path.stem] = _result_owner(path)
    parts_root = out_dir / PARTS_DIR
    if parts_root.is_dir():
        for folder in sorted(p for p in parts_root.iterdir() if p.is_dir()):
            owner = _parts_owner(folder)
            if owners.get(folder.name) is None:
                owners[folder.name] = owner
    return owners


def _result_owner(path: Path) -> str | None:
    with contextlib.suppress(FacskitError, OSError, ValueError, KeyError, TypeError):
        owner = read_attrs(path).get("input", {}).get("path")
        if isinstance(owner, str):
            return owner
    # A result without provenance (an older facskit): the input its first row names, as typed then.
    from facskit.io import resolved

    with contextlib.suppress(Exception):  # noqa: BLE001 - any unreadable table simply has no known owner
        if path.suffix == ".csv":
            first = pd.read_csv(path, usecols=["file"], nrows=1, dtype=str)
        else:
            first = pd.read_parquet(path, columns=["file"]).head(1)
        if len(first):
            return str(resolved(Path(str(first["file"].iloc[0]))))
    return None


def _parts_owner(folder: Path) -> str | None:
    for part in _part_files(folder):
        provenance = _part_provenance(part)
        if provenance is not None:
            owner = provenance.get("input", {}).get("path")
            return owner if isinstance(owner, str) else None
    return None


def _why_not_done(target: Path, provenance: Mapping[str, Any]) -> str | None:
    """None when ``target`` is a complete result of this input and these options; else why it is not."""
    if not target.exists():
        return "absent"
    try:
        attrs = read_attrs(target)
    except FacskitError as error:
        return f"is unreadable or incomplete ({error})"
    if "input" not in attrs or "run_options" not in attrs:
        return "has no complete metadata (no record of its input and options)"
    if attrs["input"] != provenance["input"]:
        return "was made from an earlier version of the input (its size or modification time changed)"
    recorded = current_option_names(attrs["run_options"]) if isinstance(attrs["run_options"], dict) else {}
    if recorded != provenance["options"]:
        changed = sorted(
            k
            for k in set(recorded) | set(provenance["options"])
            if recorded.get(k) != provenance["options"].get(k)
        )
        return f"was made with other options ({', '.join(changed)})"
    return None


def clean_leftovers(out_dir: Path) -> None:
    """Remove what killed runs leave: temporary files (of atomic writes, overlay videos, the writable
    check) in the folder, its parts and heatmap folders, and empty part folders. Only under the lock: no
    other run can be writing them."""
    folders = [out_dir, *(p for p in out_dir.glob("*.heatmaps") if p.is_dir())]
    parts_root = out_dir / PARTS_DIR
    if parts_root.is_dir():
        folders += [p for p in parts_root.iterdir() if p.is_dir()]
    for folder in folders:
        for path in folder.iterdir():
            if path.is_file() and any(pattern.match(path.name) for pattern in LEFTOVER_PATTERNS):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    if parts_root.is_dir():
        for folder in parts_root.iterdir():
            if folder.is_dir():
                _remove_if_empty(folder)
        _remove_if_empty(parts_root)


def folder_results(out_dir: Path) -> list[Path]:
    """Every complete facskit result in ``out_dir``, by name (incomplete and foreign tables left out)."""
    found = []
    for path in _result_files(out_dir):
        with contextlib.suppress(FacskitError, OSError):
            attrs = read_attrs(path)
            if str(attrs.get("producer", "")).startswith("facskit"):
                found.append(path)
    return found


def write_summary(out_dir: Path, results: Sequence[Path] | None = None) -> Path:
    """``summary.csv``: :meth:`AUResult.summary` of ``results`` (default: every result in the folder, from
    this run and earlier ones), one row per file and face (each result read a block of rows at a time:
    :func:`summarize_file`)."""
    results = folder_results(out_dir) if results is None else results
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
    job: Job,
    out_dir: Path,
    options: OutputOptions,
    log: Callable[[str], None],
) -> str | None:
    """Analyse one input into ``job.target``; returns the decode error that cut it short, if any."""
    label, source, name, target = job.label, job.source, job.name, job.target
    parts_dir = out_dir / PARTS_DIR / name
    start = _resume_frame(parts_dir, job.provenance, label, log)
    if start and options.overlay_video:
        # The overlay video is one stream: it cannot be appended to, so the input starts over.
        shutil.rmtree(parts_dir)
        start = 0
    if start:
        log(f"{label}: resuming at frame {start}")
    _drop_heatmaps_from(out_dir / f"{name}.heatmaps", start)
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
                    _write_heatmaps(out_dir / f"{name}.heatmaps", chunk)
                _write_part(parts_dir, chunk, detector.aus, job.provenance)
                frames_done += len(chunk)
        except MediaError as failure:
            if not _part_files(parts_dir):
                raise
            error = str(failure)
            log(f"error: {_named(label, failure)}; the frames decoded before it are kept")
        if overlay is not None:
            overlay.close()
            overlay = None
    except MediaError:
        _remove_if_empty(parts_dir)  # a failed input leaves no empty folder behind
        _remove_if_empty(out_dir / PARTS_DIR)
        raise
    finally:
        if overlay is not None:
            overlay.abort()
    parts = _part_files(parts_dir)
    if not parts:
        _remove_if_empty(parts_dir)
        _remove_if_empty(out_dir / PARTS_DIR)
        raise MediaError(f"{label}: no frame could be analysed")
    errors = [{"file": label, "error": error}] if error else []
    provenance = {"input": job.provenance["input"], "run_options": job.provenance["options"]}
    rows = assemble(
        parts, target, options.fmt, detector, errors, options.openface_columns, provenance=provenance
    )
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


def _part_first_frame(part: Path) -> int:
    return int(part.stem.split("-", 1)[1])


def _part_provenance(part: Path) -> dict[str, Any] | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with contextlib.suppress(pa.ArrowException, OSError, ValueError):
        raw = (pq.read_schema(part).metadata or {}).get(PROVENANCE_KEY)
        value = json.loads(raw) if raw else None
        return value if isinstance(value, dict) else None
    return None


def _resume_frame(
    parts_dir: Path, provenance: Mapping[str, Any], label: str, log: Callable[[str], None]
) -> int:
    """The frame after the last usable part (0 when there is none), keeping only parts that continue one
    another from frame 0 and were made from this input with these options.

    Parts of another input or other options (an older run with another backend) are all removed: the
    input starts over cleanly rather than mixing. A part that is unreadable, or overlaps the one before it,
    is removed with every part after it, so no frame can be written twice.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = _part_files(parts_dir)
    start = 0
    for k, part in enumerate(parts):
        try:
            metadata = pq.read_schema(part).metadata or {}
            recorded = json.loads(metadata.get(PROVENANCE_KEY, b"null"))
            next_frame = int(metadata[NEXT_FRAME_KEY])
            first = _part_first_frame(part)
        except (pa.ArrowException, OSError, ValueError, KeyError) as error:
            log(f"{label}: {part.name} is unreadable ({_first_line(error)}); it and later parts are redone")
            _remove_files(parts[k:])
            return start
        if recorded != json.loads(json.dumps(provenance)):
            why = _provenance_difference(recorded, provenance)
            log(f"{label}: its partial result was made {why}; starting it over")
            _remove_files(parts)
            return 0
        if first < start or next_frame <= first:
            log(f"{label}: {part.name} overlaps the part before it; it and later parts are redone")
            _remove_files(parts[k:])
            return start
        start = next_frame
    return start


def _provenance_difference(recorded: Any, provenance: Mapping[str, Any]) -> str:
    if not isinstance(recorded, dict):
        return "by an older facskit (no record of its input and options)"
    if recorded.get("input") != provenance["input"]:
        return "from an earlier version of the input"
    before, now = recorded.get("options") or {}, provenance["options"]
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return "with other options (" + ", ".join(f"{k}: {_brief(before.get(k))}" for k in changed) + ")"


def _remove_files(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _drop_heatmaps_from(folder: Path, start: int) -> None:
    """Remove saved heatmap chunks of frames from ``start`` on: they belong to work being redone now (a
    chunk's heatmaps are written just before its part, so a kill between the two leaves one behind)."""
    if not folder.is_dir():
        return
    for chunk in folder.glob("chunk-*.npz"):
        with contextlib.suppress(ValueError):
            if int(chunk.stem.split("-", 1)[1]) >= start:
                chunk.unlink(missing_ok=True)


def _write_part(
    parts_dir: Path, chunk: list[FrameResult], aus: Sequence[int], provenance: Mapping[str, Any]
) -> Path:
    """One chunk's raw rows; its metadata records the next frame (where a resume starts) and what made it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_from_frames(chunk, aus)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[NEXT_FRAME_KEY] = str(chunk[-1].index + 1).encode()
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True).encode()
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
