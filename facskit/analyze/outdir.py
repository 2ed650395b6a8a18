"""The output folder of ``facskit analyze`` (layout in :mod:`facskit.analyze.runner`): result names, the
lock that lets one run at a time write it, ``run.json`` (the options the numbers depend on), which result
belongs to which input, what killed runs left behind, and ``summary.csv``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facskit.analyze.csv_text import write_csv
from facskit.analyze.detector import Source
from facskit.analyze.parts import brief, part_files, part_provenance, remove_if_empty
from facskit.analyze.result_files import read_attrs, summarize_file
from facskit.analyze.schema import RESULT_FORMATS
from facskit.analyze.sidecar import recorded_summary
from facskit.errors import FacskitError, UsageError, first_line
from facskit.io.atomic import atomic_write

PARTS_DIR = ".parts"

RUN_FILE = "run.json"

SUMMARY_FILE = "summary.csv"

LOCK_FILE = ".facskit-analyze.lock"

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
        name = short_name(name)
        base, n = name, 2
        if name in names:
            name = base = short_name(f"{path.parent.name}_{name}")
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def short_name(name: str) -> str:
    """``name``, or its first bytes and a hash of it all when it is longer than :data:`MAX_NAME_BYTES`."""
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    head = encoded[: MAX_NAME_BYTES - 9].decode(errors="ignore")
    return f"{head}-{short_hash(name)}"


def short_hash(text: str) -> str:
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


def read_run_file(out_dir: Path) -> dict[str, Any] | None:
    """The options recorded in ``out_dir/run.json``, None when there is none; one line naming a bad file."""
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FacskitError(
            f"{path}: unreadable ({first_line(error)}); delete it to reuse the folder with this run's options"
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


# run.json keys that inform and are never compared: how the backend was chosen and its measured error
# (a speed re-measured on a busier day must not refuse a resume with the same backend and precision).
INFORMATIONAL_KEYS = ("backend_check",)


def check_run_file(out_dir: Path, options: dict[str, Any], info: Mapping[str, Any] | None = None) -> None:
    """Refuse to mix results made with different numbers-changing options (backend and precision included)
    in one folder, naming what differs. A run file of an older facskit lacks some keys: those are added
    (each result and part records its own options too, and one that differs is redone, never mixed).
    ``info`` (:data:`INFORMATIONAL_KEYS`) is written with a new run file, never compared."""
    path = out_dir / RUN_FILE
    previous = read_run_file(out_dir)
    if previous is not None:
        changed = sorted(
            k for k in previous if k not in INFORMATIONAL_KEYS and previous.get(k) != options.get(k)
        )
        if changed:
            differences = ", ".join(
                f"{k}: {brief(previous.get(k))} there, {brief(options.get(k))} now" for k in changed
            )
            raise UsageError(
                f"{out_dir} holds results made with other options ({differences}); "
                "use another --out folder or delete it"
            )
        if set(options) <= set(previous):
            return
    record = {**dict(info or {}), **options}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n"))


def is_analysis_output(source: Source) -> bool:
    """An overlay video in a folder ``facskit analyze`` wrote (it holds a run.json): an output, never an
    input, even when that folder is also an input folder."""
    if isinstance(source, np.ndarray):
        return False
    path = Path(source.path)
    return path.name.lower().endswith(OVERLAY_SUFFIX) and (path.parent / RUN_FILE).is_file()


def result_files(out_dir: Path) -> list[Path]:
    """Files of ``out_dir`` that may be results: ``*.csv``/``*.parquet`` other than summary.csv."""
    suffixes = {f".{fmt}" for fmt in RESULT_FORMATS}
    return sorted(
        p for p in out_dir.iterdir() if p.suffix in suffixes and p.name != SUMMARY_FILE and p.is_file()
    )


def result_owners(out_dir: Path) -> dict[str, str | None]:
    """Output name -> resolved path of the input whose result or parts are in ``out_dir`` under it (None
    where that cannot be told: an incomplete result of an older facskit, a foreign table)."""
    owners: dict[str, str | None] = {}
    for path in result_files(out_dir):
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
        import pandas as pd

        if path.suffix == ".csv":
            first = pd.read_csv(path, usecols=["file"], nrows=1, dtype=str)
        else:
            first = pd.read_parquet(path, columns=["file"]).head(1)
        if len(first):
            return str(resolved(Path(str(first["file"].iloc[0]))))
    return None


def _parts_owner(folder: Path) -> str | None:
    for part in part_files(folder):
        provenance = part_provenance(part)
        if provenance is not None:
            owner = provenance.get("input", {}).get("path")
            return owner if isinstance(owner, str) else None
    return None


def why_not_done(target: Path, provenance: Mapping[str, Any]) -> str | None:
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
                remove_if_empty(folder)
        remove_if_empty(parts_root)


def folder_results(out_dir: Path) -> list[Path]:
    """Every complete facskit result in ``out_dir``, by name (incomplete and foreign tables left out)."""
    found = []
    for path in result_files(out_dir):
        with contextlib.suppress(FacskitError, OSError):
            attrs = read_attrs(path)
            if str(attrs.get("producer", "")).startswith("facskit"):
                found.append(path)
    return found


def write_summary(out_dir: Path, results: Sequence[Path] | None = None) -> Path:
    """``summary.csv``: :meth:`AUResult.summary` of ``results`` (default: every result in the folder, from
    this run and earlier ones), one row per file and face.

    A result whose sidecar records its summary (stills, :mod:`facskit.analyze.still_result`) is not read
    again; the others are read a block of rows at a time (:func:`summarize_file`). When every one is
    recorded with the same columns, the table is written without pandas, with the bytes pandas writes."""
    results = folder_results(out_dir) if results is None else results
    summaries: list[Any] = [_recorded(path) or path for path in results if path.is_file()]
    recorded = [s for s in summaries if isinstance(s, dict) and s["rows"]]
    path = out_dir / SUMMARY_FILE
    columns = recorded[0]["columns"] if recorded else ["file", "face_id", "frames"]
    if all(isinstance(s, dict) for s in summaries) and all(r["columns"] == columns for r in recorded):
        rows = [row for r in recorded for row in r["rows"]]
        atomic_write(path, lambda tmp: write_csv(tmp, summary_columns(columns, rows)))
        return path
    import pandas as pd

    tables = [
        pd.DataFrame(s["rows"], columns=s["columns"]) if isinstance(s, dict) else summarize_file(s)
        for s in summaries
    ]
    tables = [t for t in tables if len(t)]
    summary = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=["file", "face_id", "frames"])
    )
    atomic_write(path, lambda tmp: summary.to_csv(tmp, index=False))
    return path


def _recorded(path: Path) -> dict[str, Any] | None:
    """The summary a CSV result's sidecar records, None for one that records none (or for Parquet)."""
    if path.suffix.lower() != ".csv":
        return None
    with contextlib.suppress(FacskitError, OSError):
        return recorded_summary(path)
    return None


def summary_columns(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Recorded summary rows as typed columns, the dtypes :func:`facskit.analyze.summary.summary_table`
    gives them: the file a string, the face id and frame count int64, every statistic float64."""
    out: dict[str, Any] = {}
    for k, name in enumerate(columns):
        values = [row[k] for row in rows]
        if name == "file":
            out[name] = [str(v) for v in values]
        elif name in ("face_id", "frames"):
            out[name] = np.array(values, dtype=np.int64)
        else:
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return out
