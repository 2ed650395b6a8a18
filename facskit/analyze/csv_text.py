"""CSV for plain column arrays, byte for byte what pandas' ``DataFrame.to_csv(index=False)`` writes for the
same columns and dtypes, without importing pandas.

A still image's result is one row per face with ~180 columns. pandas spends ~50 ms writing such a table
and as much again casting and thresholding it, against ~40 ms of work on the face itself, and its import
is a third of a one-image run's start-up. So stills are written from arrays
(:mod:`facskit.analyze.still_result`); tests/analyze/test_csv_text.py holds this writer to pandas' bytes.

pandas formats a float column with numpy's ``astype(str)`` (the shortest text that reads back as the same
float32 or float64), writes NaN and NA as empty fields, and quotes through Python's :mod:`csv` module
(minimal quoting, ``"`` doubled, ``\\n`` line ends); so does this.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def column_text(values: np.ndarray | Sequence[Any]) -> list[str]:
    """One column as the strings pandas writes for it: floats as numpy prints them, NaN, None and pandas'
    NA as empty fields, booleans as ``True``/``False``, everything else through ``str``."""
    array = np.asarray(values) if isinstance(values, np.ndarray) else None
    if array is not None and array.dtype.kind == "f":
        text = array.astype(str)
        text[np.isnan(array)] = ""
        return text.tolist()
    if array is not None and array.dtype.kind in "biu":
        return [str(v) for v in array.tolist()]
    return ["" if _missing(v) else str(v) for v in (values.tolist() if array is not None else values)]


def _missing(value: Any) -> bool:
    """None, a float NaN, or pandas' NA (recognised by type name, so pandas need not be imported)."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return type(value).__name__ == "NAType"


def write_csv(path: Path, columns: Mapping[str, np.ndarray | Sequence[Any]]) -> None:
    """Write ``columns`` (name -> values, all the same length) to ``path`` as pandas would, header first."""
    texts = [column_text(values) for values in columns.values()]
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(columns))
        writer.writerows(zip(*texts, strict=True))


__all__ = ["column_text", "write_csv"]
