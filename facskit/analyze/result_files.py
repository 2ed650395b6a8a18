"""Result files: a result to and from CSV (attrs in a ``.meta.json`` sidecar that also records the CSV's
size) or Parquet (attrs in the schema metadata), every write atomic (:mod:`facskit.io.atomic`); and the
summary of a result file read a block of rows at a time (:func:`summarize_file`).

Reading applies the schema again (:func:`facskit.analyze.schema.conform`), so dtypes and ``.attrs`` survive
the round trip; OpenFace 2.0 column names are read too (:mod:`facskit.analyze.openface`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facskit.analyze.openface import OPENFACE_RENAMES
from facskit.analyze.schema import (
    ATTRS_KEY,
    FILE_CHECK_KEY,
    RESULT_FORMATS,
    ResultFormat,
    aus_from_columns,
    occurrence_column,
    result_dtypes,
)
from facskit.analyze.sidecar import read_sidecar, write_csv_sidecar
from facskit.aus import au_column
from facskit.errors import FacskitError, UsageError, first_line
from facskit.io.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from facskit.analyze.results import AUResult


def write_result(result: pd.DataFrame, path: Path | str, fmt: ResultFormat | None = None) -> Path:
    """Write a result to CSV (attrs in a ``.meta.json`` sidecar) or Parquet (attrs in the schema metadata).

    Both writes are atomic. The format comes from the suffix unless given.
    """
    import pandas as pd

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
    fmt = fmt or result_format(path)
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
        write_csv_sidecar(path, attrs)
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
    import pandas as pd
    import pyarrow as pa

    from facskit.analyze.openface import from_openface_columns
    from facskit.analyze.results import as_result

    path = Path(path)
    fmt, header, attrs = header_and_attrs(path)
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
        raise FacskitError(f"{path}: not a readable result table ({first_line(error)})") from None


def read_attrs(path: Path | str) -> dict[str, Any]:
    """The attrs of a result file without reading its rows; a one-line :class:`FacskitError` for a file that
    is not a complete result (see :func:`read_sidecar`)."""
    return header_and_attrs(Path(path))[2]


def header_and_attrs(path: Path) -> tuple[ResultFormat, list[str], dict[str, Any]]:
    """A result file's format, column names and attrs (CSV sidecar or Parquet metadata), without its rows.

    Every problem with the file is one line naming it: missing, not a table, truncated, bad metadata.
    """
    if not path.is_file():
        raise UsageError(f"no such result file: {path}")
    fmt = result_format(path)
    if fmt == "csv":
        attrs = read_sidecar(path) or {}
        return fmt, csv_header(path), attrs
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise FacskitError(f"{path}: not a readable Parquet result ({first_line(error)})") from None
    raw = (schema.metadata or {}).get(ATTRS_KEY.encode())
    try:
        attrs = json.loads(raw) if raw else {}
    except ValueError as error:
        raise FacskitError(f"{path}: unreadable result metadata ({first_line(error)})") from None
    return fmt, list(schema.names), attrs if isinstance(attrs, dict) else {}


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file, read with :mod:`csv` (pandas' ``read_csv(nrows=0)`` costs ~15 ms a
    file, most of a summary of a folder of photos); a one-line :class:`FacskitError` when there are none."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FacskitError(f"{path}: not a readable result table ({first_line(error)})") from None
    if not header:
        raise FacskitError(f"{path}: not a readable result table (no columns to parse from file)")
    return header


def result_format(path: Path) -> ResultFormat:
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "pq":
        return "parquet"
    if suffix not in RESULT_FORMATS:
        raise UsageError(f"cannot tell the format of {path}: use a .csv or .parquet name")
    return suffix  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------- summary

# Rows read at a time by summarize_file.
SUMMARY_BLOCK_ROWS = 8192


def summarize_file(path: Path | str, block_rows: int = SUMMARY_BLOCK_ROWS) -> pd.DataFrame:
    """``summarize(read_result(path))`` without holding the file: only the columns a summary needs are read,
    ``block_rows`` rows at a time, and per face only running sums, counts and maxima are kept.

    The frames, maxima and % active are exactly :func:`summarize`'s; a mean may differ from it in the last
    bits (sums of blocks instead of one sum over the face's rows).
    """
    from facskit.analyze.summary import SummaryAccumulator, summary_table

    path = Path(path)
    fmt, header, attrs = header_and_attrs(path)
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
    accumulator = SummaryAccumulator(aus)
    for block in _read_blocks(path, fmt, list(present.values()), aus, openface, block_rows):
        accumulator.add(block.rename(columns={v: k for k, v in present.items()}))
    return summary_table(accumulator.rows(), aus, attrs.get("calibration", {}) or {})


def _read_blocks(
    path: Path, fmt: ResultFormat, columns: list[str], aus: Sequence[int], openface: bool, block_rows: int
) -> Iterable[pd.DataFrame]:
    """``columns`` of a result file, ``block_rows`` rows at a time, parsed as :func:`read_result` does."""
    import pandas as pd

    if fmt == "csv":
        dtypes = {} if openface else {c: d for c, d in result_dtypes(aus).items() if c in columns}
        yield from pd.read_csv(path, usecols=columns, dtype=dtypes or None, chunksize=block_rows)
    else:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as handle:
            for batch in handle.iter_batches(batch_size=block_rows, columns=columns):
                yield batch.to_pandas()
