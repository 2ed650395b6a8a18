"""OpenFace 2.0 column names for a result (``facskit analyze --openface-columns``), and back, so scripts
written for OpenFace read facskit's results and facskit reads OpenFace-named files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facskit.analyze.schema import OCCURRENCE_SUFFIX, aus_from_columns, occurrence_column
from facskit.aus import au_column

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# facskit column -> OpenFace 2.0 column. OpenFace counts frames from 1, so `frame` is shifted on the way out.
OPENFACE_RENAMES = {"score": "confidence", "face_detected": "success"}


def to_openface_columns(result: pd.DataFrame) -> pd.DataFrame:
    """The result with OpenFace 2.0 names (``frame`` from 1, ``confidence``, ``success`` 0/1, ``AU06_r``,
    ``AU06_c`` 0/1), without OpenFace's leading spaces, so scripts written for OpenFace read it."""
    import pandas as pd

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
    import pandas as pd

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
