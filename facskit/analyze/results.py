"""The result table of an analysis: one row per face per frame, one column schema, metadata in ``.attrs``.

The schema is defined here once (face columns come from :mod:`facskit.faces`, AU columns from the model's AU
list) and applied on every read, so a result that went through CSV or Parquet comes back with the same dtypes
and the same ``.attrs``. Peers lose this (OpenFace's CSV headers carry leading spaces, Py-Feat's metadata
vanishes on save), which is why the round trip is tested.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from facskit.aus import OCCURRENCE_THRESHOLD, au_column, parse_au
from facskit.errors import FacskitError, UsageError
from facskit.faces import FACE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

ResultFormat = Literal["csv", "parquet"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("csv", "parquet")

OCCURRENCE_SUFFIX = "_c"
# The key under which the attrs travel: a Parquet schema metadata key and the name of the CSV sidecar.
ATTRS_KEY = "facskit.attrs"
CSV_SIDECAR_SUFFIX = ".meta.json"
# A sidecar key that is not an attr: what the CSV looked like when it was written (its size in bytes).
FILE_CHECK_KEY = "facskit.file"


# dtypes of the face columns (the columns themselves are defined once, in facskit.faces.schema). Pixel and
# pose values are float32, the precision landmarks are fitted at; a frame without a face has NaN there and
# face_id -1 (facskit.faces.NO_FACE_ID).
_FACE_INTEGER = {"frame": "int64", "face_id": "int64"}
FACE_DTYPES: dict[str, Any] = {
    name: {"file": "string", "timestamp": "float64", "face_detected": "bool", **_FACE_INTEGER}.get(
        name, "float32"
    )
    for name in FACE_COLUMNS
}


def occurrence_column(code: int) -> str:
    """``6 -> "AU06_c"``: the boolean occurrence column that goes with the intensity column ``AU06``."""
    return au_column(code) + OCCURRENCE_SUFFIX


def result_columns(aus: Sequence[int]) -> list[str]:
    """Column order of a result: the face columns, then one intensity per AU, then one occurrence per AU."""
    return [*FACE_COLUMNS, *(au_column(a) for a in aus), *(occurrence_column(a) for a in aus)]


def result_dtypes(aus: Sequence[int]) -> dict[str, Any]:
    """The dtype of every result column. Intensities are float32 (NaN without a face); occurrence is a
    nullable boolean so that "no face" stays distinct from "not active"."""
    dtypes: dict[str, Any] = dict(FACE_DTYPES)
    dtypes.update({au_column(a): "float32" for a in aus})
    dtypes.update({occurrence_column(a): "boolean" for a in aus})
    return dtypes


def aus_from_columns(columns: Iterable[str]) -> tuple[int, ...]:
    """AU codes in column order, recognised by the intensity columns ``AU06`` (not ``AU06_c``)."""
    codes = []
    for name in columns:
        if name.startswith("AU") and not name.endswith(OCCURRENCE_SUFFIX):
            try:
                codes.append(parse_au(name))
            except (ValueError, KeyError, FacskitError):
                continue
    return tuple(codes)


def thresholds_for(aus: Sequence[int], threshold: float | Mapping[Any, float]) -> dict[int, float]:
    """Expand a threshold (one number, or a per-AU mapping keyed by code or ``"AU06"``) to every AU.

    AUs missing from a mapping get :data:`facskit.aus.OCCURRENCE_THRESHOLD`, so a user can tune one AU
    without restating all.
    """
    if isinstance(threshold, Mapping):
        given = {parse_au(str(k)) if not isinstance(k, int) else k: float(v) for k, v in threshold.items()}
        unknown = sorted(set(given) - set(aus))
        if unknown:
            raise UsageError(
                f"thresholds given for AUs the model does not predict: {unknown}; it predicts {list(aus)}"
            )
        return {a: given.get(a, OCCURRENCE_THRESHOLD) for a in aus}
    return {a: float(threshold) for a in aus}


def conform(frame: pd.DataFrame, aus: Sequence[int]) -> pd.DataFrame:
    """Reorder and cast ``frame`` to the result schema (missing AU columns become NaN / NA)."""
    columns = result_columns(aus)
    missing = [c for c in FACE_COLUMNS if c not in frame.columns]
    if missing:
        raise FacskitError(f"not a facskit result: missing columns {missing[:5]}")
    out = frame.reindex(columns=columns)
    return out.astype(result_dtypes(aus))


class AUResult(pd.DataFrame):
    """Per-frame AU intensities: a pandas DataFrame (one row per face per frame) with a few helpers.

    Columns: ``file, frame, timestamp, face_id, face_detected, x, y, w, h, score, yaw, pitch, roll``,
    landmarks ``x_0..x_67, y_0..y_67`` (frame pixels), one intensity column per AU (``AU06``, 0-5) and one
    occurrence column (``AU06_c``). A frame without a face is a row with ``face_detected=False`` and NaN
    intensities, never a gap. ``.attrs`` holds the model name and version, the AU list, the alignment, the
    thresholds and any smoothing or calibration applied. Being a DataFrame, it filters, groups and saves like
    one; :func:`write_result` / :func:`read_result` keep the attrs through CSV and Parquet.
    """

    _metadata: list[str] = []

    @property
    def _constructor(self) -> Callable[..., AUResult]:
        return AUResult

    @property
    def aus(self) -> tuple[int, ...]:
        """AU codes of the intensity columns, in column order (``(6, 10, 12, 14, 17)``)."""
        if "aus" in self.attrs:
            return tuple(int(a) for a in self.attrs["aus"])
        return aus_from_columns(self.columns)

    @property
    def au_columns(self) -> list[str]:
        """Intensity column names (``["AU06", ...]``)."""
        return [au_column(a) for a in self.aus]

    def summary(self) -> pd.DataFrame:
        """Per file and face: frames seen, and per AU the mean and max intensity and the % of frames active.

        Only rows with a detected face count; "active" is the occurrence column (threshold applied).
        """
        return summarize(self)

    def plot_timeseries(self, face_id: int | None = None, aus: Sequence[int] | None = None) -> Figure:
        """A matplotlib Figure of AU intensity over time, one panel per face (or just ``face_id``)."""
        from facskit.analyze.plots import plot_timeseries

        return plot_timeseries(self, face_id=face_id, aus=aus)

    def plot_overlay(self, frame: int, file: str | None = None, image: np.ndarray | None = None) -> Figure:
        """The frame with every face's box, landmarks and AU points (coloured by intensity) and a bar chart.

        The image is decoded again from ``file`` (the only file of the result by default) unless given.
        """
        from facskit.analyze.plots import plot_overlay

        return plot_overlay(self, frame=frame, file=file, image=image)


def empty_result(aus: Sequence[int], attrs: Mapping[str, Any] | None = None) -> AUResult:
    """A result with no rows but the full schema (e.g. an image that failed to decode)."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in result_columns(aus)})
    out = AUResult(conform(frame, aus))
    out.attrs.update(dict(attrs or {}))
    return out


def as_result(frame: pd.DataFrame, attrs: Mapping[str, Any]) -> AUResult:
    """Wrap ``frame`` (already in the result schema) as an :class:`AUResult` with ``attrs``."""
    aus = tuple(int(a) for a in attrs["aus"])
    out = AUResult(conform(frame, aus))
    out.attrs.clear()
    out.attrs.update(json.loads(json.dumps(dict(attrs))))  # plain JSON types only: what survives a file
    return out


def concat_results(results: Sequence[AUResult], attrs: Mapping[str, Any]) -> AUResult:
    """Concatenate results that share a schema (e.g. several inputs of one call) under one set of attrs."""
    aus = tuple(int(a) for a in attrs["aus"])
    if not results:
        return empty_result(aus, attrs)
    frames = [pd.DataFrame(r) for r in results if len(r)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=result_columns(aus))
    return as_result(frame, attrs)


def apply_thresholds(result: pd.DataFrame, thresholds: Mapping[int, float]) -> None:
    """Set each ``AU.._c`` from its intensity, in place: active when intensity >= threshold, NA without a
    face."""
    for code, value in thresholds.items():
        intensity = result[au_column(code)]
        occurrence = (intensity >= value).astype("boolean")
        occurrence[intensity.isna()] = pd.NA
        result[occurrence_column(code)] = occurrence


def summarize(result: pd.DataFrame) -> pd.DataFrame:
    """See :meth:`AUResult.summary`. One row per (file, face_id); columns ``frames``, ``AU06_mean``,
    ``AU06_max``, ``AU06_active`` (% of the face's frames), and ``AU06_baseline`` if calibrated."""
    aus = aus_from_columns(result.columns)
    faces = result[result["face_detected"].astype(bool)]
    rows = []
    for (file, face_id), group in faces.groupby(["file", "face_id"], sort=True, observed=True):
        row: dict[str, Any] = {"file": file, "face_id": int(face_id), "frames": len(group)}
        for code in aus:
            name = au_column(code)
            values = group[name].astype("float64")
            row[f"{name}_mean"] = float(values.mean())
            row[f"{name}_max"] = float(values.max())
            active = group[occurrence_column(code)].astype("float64")
            row[f"{name}_active"] = float(100.0 * active.mean())
        rows.append(row)
    return _summary_table(rows, aus, result.attrs.get("calibration", {}) or {})


def _summary_table(
    rows: list[dict[str, Any]], aus: Sequence[int], calibration: Mapping[str, Any]
) -> pd.DataFrame:
    """The summary's columns in order, with each face's calibration baseline added to its row."""
    columns = ["file", "face_id", "frames"]
    for code in aus:
        name = au_column(code)
        columns += [f"{name}_mean", f"{name}_max", f"{name}_active"]
        if calibration:
            columns.append(f"{name}_baseline")
    baselines = calibration.get("baselines", {}) if calibration else {}
    for row in rows:
        base = baselines.get(str(row["file"]), {}).get(str(row["face_id"]), {})
        for code in aus:
            name = au_column(code)
            if name in base:
                row[f"{name}_baseline"] = float(base[name])
    return pd.DataFrame(rows, columns=columns)


# Rows read at a time by summarize_file.
SUMMARY_BLOCK_ROWS = 8192


def summarize_file(path: Path | str, block_rows: int = SUMMARY_BLOCK_ROWS) -> pd.DataFrame:
    """``summarize(read_result(path))`` without holding the file: only the columns a summary needs are read,
    ``block_rows`` rows at a time, and per face only running sums, counts and maxima are kept.

    The frames, maxima and % active are exactly :func:`summarize`'s; a mean may differ from it in the last
    bits (sums of blocks instead of one sum over the face's rows).
    """
    path = Path(path)
    fmt, header, attrs = _header_and_attrs(path)
    openface = "success" in header and "face_detected" not in header
    # facskit name -> name in the file (OpenFace: success, AU06_r).
    names = {c: OPENFACE_RENAMES.get(c, c) if openface else c for c in ("file", "face_id", "face_detected")}
    intensity_names = (
        [c[:-2] for c in header if c.startswith("AU") and c.endswith("_r")] if openface else header
    )
    aus = tuple(int(a) for a in attrs.get("aus") or aus_from_columns(intensity_names))
    for code in aus:
        names[au_column(code)] = au_column(code) + ("_r" if openface else "")
        names[occurrence_column(code)] = occurrence_column(code)
    present = {k: v for k, v in names.items() if v in header}
    missing = [v for k, v in names.items() if k in ("file", "face_id", "face_detected") and v not in header]
    if missing:
        raise FacskitError(f"{path}: not a facskit result: missing columns {missing}")
    accumulator = _SummaryAccumulator(aus)
    for block in _read_blocks(path, fmt, list(present.values()), aus, openface, block_rows):
        accumulator.add(block.rename(columns={v: k for k, v in present.items()}))
    return _summary_table(accumulator.rows(), aus, attrs.get("calibration", {}) or {})


def _read_blocks(
    path: Path, fmt: ResultFormat, columns: list[str], aus: Sequence[int], openface: bool, block_rows: int
) -> Iterable[pd.DataFrame]:
    """``columns`` of a result file, ``block_rows`` rows at a time, parsed as :func:`read_result` does."""
    if fmt == "csv":
        dtypes = {} if openface else {c: d for c, d in result_dtypes(aus).items() if c in columns}
        yield from pd.read_csv(path, usecols=columns, dtype=dtypes or None, chunksize=block_rows)
    else:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as handle:
            for batch in handle.iter_batches(batch_size=block_rows, columns=columns):
                yield batch.to_pandas()


class _SummaryAccumulator:
    """Per (file, face_id) of blocks of rows: detected frames, and per AU the intensity sum, count and max and
    the active sum and count, from which :func:`summarize`'s row follows."""

    def __init__(self, aus: Sequence[int]) -> None:
        self.intensities = [au_column(a) for a in aus]
        self.occurrences = [occurrence_column(a) for a in aus]
        self.faces: dict[tuple[str, int], dict[str, Any]] = {}

    def add(self, block: pd.DataFrame) -> None:
        detected = block["face_detected"].astype(bool).to_numpy()
        if not detected.any():
            return
        block = block[detected]
        # The casts of conform (float32 intensities, nullable boolean occurrence) and then summarize's.
        values = pd.DataFrame(
            {
                "file": block["file"].astype("string"),
                "face_id": block["face_id"].astype("int64"),
                **{c: block[c].astype("float32").astype("float64") for c in self.intensities},
                **{c: block[c].astype("boolean").astype("float64") for c in self.occurrences},
            }
        )
        groups = values.groupby(["file", "face_id"], sort=False, observed=True)
        sizes = groups.size()
        sums, counts = groups.sum(), groups.count()
        maxima = groups[self.intensities].max()
        for key, size in sizes.items():
            file, face_id = str(key[0]), int(key[1])
            face = self.faces.setdefault(
                (file, face_id),
                {
                    "frames": 0,
                    "sum": np.zeros(len(self.intensities) + len(self.occurrences)),
                    "count": np.zeros(len(self.intensities) + len(self.occurrences), dtype=np.int64),
                    "max": np.full(len(self.intensities), np.nan),
                },
            )
            face["frames"] += int(size)
            face["sum"] += sums.loc[key, self.intensities + self.occurrences].to_numpy(dtype=np.float64)
            face["count"] += counts.loc[key, self.intensities + self.occurrences].to_numpy(dtype=np.int64)
            face["max"] = np.fmax(face["max"], maxima.loc[key].to_numpy(dtype=np.float64))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        n = len(self.intensities)
        for (file, face_id), face in sorted(self.faces.items()):
            row: dict[str, Any] = {"file": file, "face_id": face_id, "frames": face["frames"]}
            mean = [s / c if c else float("nan") for s, c in zip(face["sum"], face["count"], strict=True)]
            for k, name in enumerate(self.intensities):
                row[f"{name}_mean"] = float(mean[k])
                row[f"{name}_max"] = float(face["max"][k])
                row[f"{name}_active"] = float(100.0 * mean[n + k])
            out.append(row)
        return out


# ----------------------------------------------------------------------------------------------- files


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp_path)`` then ``os.replace``: a reader never sees half a file.

    A failure (disk full, Ctrl-C) removes the temporary file and leaves any previous ``path`` untouched; an
    ``OSError`` becomes a one-line :class:`FacskitError` naming the file.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise FacskitError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def result_path(out_dir: Path, stem: str, fmt: ResultFormat) -> Path:
    """Where the result of an input named ``stem`` goes."""
    return Path(out_dir) / f"{stem}.{fmt}"


def write_result(result: pd.DataFrame, path: Path | str, fmt: ResultFormat | None = None) -> Path:
    """Write a result to CSV (attrs in a ``.meta.json`` sidecar) or Parquet (attrs in the schema metadata).

    Both writes are atomic. The format comes from the suffix unless given.
    """
    return write_result_parts([pd.DataFrame(result)], result.attrs, path, fmt)


def write_result_parts(
    parts: Iterable[pd.DataFrame],
    attrs: Mapping[str, Any],
    path: Path | str,
    fmt: ResultFormat | None = None,
) -> Path:
    """Write the consecutive row blocks ``parts`` (same columns and dtypes) as one result, holding one block
    at a time: CSV appended block by block, Parquet one row group per block. The file is the one
    :func:`write_result` writes for their concatenation (byte for byte for CSV, the same values, schema and
    metadata for Parquet) and appears atomically once every block is written; ``parts`` must not be empty.
    """
    path = Path(path)
    fmt = fmt or _format_of(path)
    attrs = {k: v for k, v in dict(attrs).items() if k != FILE_CHECK_KEY}
    attrs_json = json.dumps(attrs, sort_keys=True)
    if fmt == "csv":

        def write_csv(tmp: Path) -> None:
            first = True
            for frame in parts:
                # By path (opened and closed per block), as DataFrame.to_csv does for one block.
                frame.to_csv(tmp, index=False, header=first, mode="w" if first else "a")
                first = False
            if first:
                raise ValueError("write_result_parts needs at least one block of rows")

        atomic_write(path, write_csv)
        # The sidecar, written second, records the CSV's size: a reader can tell a CSV cut short (or one whose
        # sidecar never came) from a complete one, which the CSV alone cannot show.
        check = {FILE_CHECK_KEY: {"bytes": path.stat().st_size}}
        sidecar_json = json.dumps({**attrs, **check}, sort_keys=True)
        atomic_write(csv_sidecar(path), lambda tmp: tmp.write_text(sidecar_json + "\n"))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        def write_parquet(tmp: Path) -> None:
            writer = None
            try:
                for frame in parts:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        metadata = dict(table.schema.metadata or {})
                        metadata[ATTRS_KEY.encode()] = attrs_json.encode()
                        writer = pq.ParquetWriter(tmp, table.schema.with_metadata(metadata))
                    writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
                if writer is None:
                    raise ValueError("write_result_parts needs at least one block of rows")
            finally:
                if writer is not None:
                    writer.close()

        atomic_write(path, write_parquet)
    else:
        raise UsageError(f"unknown result format {fmt!r}; choose from {', '.join(RESULT_FORMATS)}")
    return path


def read_result(path: Path | str) -> AUResult:
    """Read a result written by :func:`write_result` (or by ``facskit analyze``, OpenFace columns included).

    The schema is applied again, so dtypes are the same as before the write, and the attrs come back.
    """
    import pyarrow as pa

    path = Path(path)
    fmt, header, attrs = _header_and_attrs(path)
    try:
        if fmt == "csv":
            if "success" in header and "face_detected" not in header:
                frame = pd.read_csv(path)
            else:
                aus = attrs.get("aus") or aus_from_columns(header)
                dtypes = result_dtypes(aus)
                frame = pd.read_csv(path, dtype={c: d for c, d in dtypes.items() if c in header})
        else:
            import pyarrow.parquet as pq

            frame = pq.read_table(path).to_pandas()
        if "success" in frame.columns and "face_detected" not in frame.columns:
            frame = from_openface_columns(frame)
        aus = tuple(int(a) for a in attrs.get("aus") or aus_from_columns(frame.columns))
        attrs.setdefault("aus", list(aus))
        return as_result(frame, attrs)
    except FacskitError as error:
        raise FacskitError(f"{path}: {error}") from None
    except (ValueError, TypeError, KeyError, OSError, pa.ArrowException) as error:
        # A row cut in half, a value of the wrong type: the table is not what facskit wrote.
        raise FacskitError(f"{path}: not a readable result table ({_first_line(error)})") from None


def csv_sidecar(path: Path | str) -> Path:
    """The ``.meta.json`` beside a CSV result: its attrs and the size the CSV was written with."""
    path = Path(path)
    return path.with_name(path.name + CSV_SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The attrs of a CSV result from its sidecar, or None when there is no sidecar.

    Raises a one-line :class:`FacskitError` for a sidecar that is not JSON, and for a CSV whose size is not
    the one its sidecar recorded (cut short, or edited since facskit wrote it). Sidecars of older facskit
    versions record no size and are taken as they are.
    """
    sidecar = csv_sidecar(path)
    if not sidecar.is_file():
        return None
    try:
        attrs = json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise FacskitError(f"{sidecar}: unreadable result metadata ({_first_line(error)})") from None
    if not isinstance(attrs, dict):
        raise FacskitError(f"{sidecar}: unreadable result metadata (not a JSON object)")
    check = attrs.pop(FILE_CHECK_KEY, None)
    if isinstance(check, dict) and "bytes" in check:
        size = path.stat().st_size
        if size != check["bytes"]:
            raise FacskitError(
                f"{path}: {size} bytes, but {sidecar.name} records {check['bytes']}: the result was cut "
                "short or changed after facskit wrote it; rerun `facskit analyze` into its folder to redo it"
            )
    return attrs


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_attrs(path: Path | str) -> dict[str, Any]:
    """The attrs of a result file without reading its rows; a one-line :class:`FacskitError` for a file that
    is not a complete result (see :func:`read_sidecar`)."""
    return _header_and_attrs(Path(path))[2]


def _header_and_attrs(path: Path) -> tuple[ResultFormat, list[str], dict[str, Any]]:
    """A result file's format, column names and attrs (CSV sidecar or Parquet metadata), without its rows.

    Every problem with the file is one line naming it: missing, not a table, truncated, bad metadata.
    """
    if not path.is_file():
        raise UsageError(f"no such result file: {path}")
    fmt = _format_of(path)
    if fmt == "csv":
        attrs = read_sidecar(path) or {}
        try:
            columns = list(pd.read_csv(path, nrows=0).columns)
        except (ValueError, OSError, UnicodeDecodeError) as error:  # pandas' EmptyDataError is a ValueError
            raise FacskitError(f"{path}: not a readable result table ({_first_line(error)})") from None
        return fmt, columns, attrs
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise FacskitError(f"{path}: not a readable Parquet result ({_first_line(error)})") from None
    raw = (schema.metadata or {}).get(ATTRS_KEY.encode())
    try:
        attrs = json.loads(raw) if raw else {}
    except ValueError as error:
        raise FacskitError(f"{path}: unreadable result metadata ({_first_line(error)})") from None
    return fmt, list(schema.names), attrs if isinstance(attrs, dict) else {}


def _format_of(path: Path) -> ResultFormat:
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "pq":
        return "parquet"
    if suffix not in RESULT_FORMATS:
        raise UsageError(f"cannot tell the format of {path}: use a .csv or .parquet name")
    return suffix  # type: ignore[return-value]


# -------------------------------------------------------------------------------- OpenFace 2.0 naming

# facskit column -> OpenFace 2.0 column. OpenFace counts frames from 1, so `frame` is shifted on the way out.
OPENFACE_RENAMES = {"score": "confidence", "face_detected": "success"}


def to_openface_columns(result: pd.DataFrame) -> pd.DataFrame:
    """The result with OpenFace 2.0 names (``frame`` from 1, ``confidence``, ``success`` 0/1, ``AU06_r``,
    ``AU06_c`` 0/1), without OpenFace's leading spaces, so scripts written for OpenFace read it."""
    aus = aus_from_columns(result.columns)
    out = pd.DataFrame(result).rename(columns=OPENFACE_RENAMES)
    out["frame"] = out["frame"].astype("int64") + 1
    out["success"] = out["success"].astype(bool).astype("int8")
    for code in aus:
        out = out.rename(columns={au_column(code): au_column(code) + "_r"})
        out[occurrence_column(code)] = out[occurrence_column(code)].fillna(False).astype("int8")
    return out


def from_openface_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Inverse of :func:`to_openface_columns` (AU columns found by their ``_r`` names)."""
    out = frame.rename(columns={v: k for k, v in OPENFACE_RENAMES.items()})
    out["frame"] = out["frame"].astype("int64") - 1
    out["face_detected"] = out["face_detected"].astype(bool)
    renames = {c: c[:-2] for c in out.columns if c.startswith("AU") and c.endswith("_r")}
    out = out.rename(columns=renames)
    for name in renames.values():
        occurrence = out[name + OCCURRENCE_SUFFIX].astype("boolean")
        occurrence[~out["face_detected"]] = pd.NA
        out[name + OCCURRENCE_SUFFIX] = occurrence
    return out
