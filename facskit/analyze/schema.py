"""The result table's column schema, defined once: which columns an analysis result has, in which order,
with which dtypes, and how AU codes map to column names.

Face columns come from :mod:`facskit.faces` (``FACE_COLUMNS``), AU columns from the model's AU list. Every
reader and writer (:mod:`facskit.analyze.results`, :mod:`facskit.analyze.result_files`, the chunked
assembly, the summary, the OpenFace renames) goes through :func:`conform` or :func:`result_dtypes`, so a
result that went through CSV or Parquet comes back with the same dtypes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from facskit.aus import OCCURRENCE_THRESHOLD, au_column, parse_au
from facskit.errors import FacskitError, UsageError
from facskit.faces import FACE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ResultFormat = Literal["csv", "parquet"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("csv", "parquet")

OCCURRENCE_SUFFIX = "_c"
# The key under which the attrs travel: a Parquet schema metadata key and the name of the CSV sidecar.
ATTRS_KEY = "facskit.attrs"
CSV_SIDECAR_SUFFIX = ".meta.json"
# A sidecar key that is not an attr: what the CSV looked like when it was written (its size in bytes).
FILE_CHECK_KEY = "facskit.file"
# Another sidecar key that is not an attr: the per-face summary of the rows, for results written from arrays.
SUMMARY_KEY = "facskit.summary"


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


def result_path(out_dir: Path, stem: str, fmt: ResultFormat) -> Path:
    """Where the result of an input named ``stem`` goes."""
    return Path(out_dir) / f"{stem}.{fmt}"


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
    import pandas as pd

    columns = result_columns(aus)
    missing = [c for c in FACE_COLUMNS if c not in frame.columns]
    if missing:
        raise FacskitError(f"not a facskit result: missing columns {missing[:5]}")
    out = frame.reindex(columns=columns)
    # Only the columns whose dtype differs: a 183-column astype costs ~24 ms even when nothing changes
    # (measured on a one-face result). Compared by repr, which tells string storages and NA kinds apart
    # (a pandas "str" column compares == "string").
    dtypes = result_dtypes(aus)
    current = out.dtypes.to_dict()
    wanted = {name: repr(pd.api.types.pandas_dtype(name)) for name in set(dtypes.values())}
    casts = {c: t for c, t in dtypes.items() if repr(current[c]) != wanted[t]}
    return out.astype(casts) if casts else out
