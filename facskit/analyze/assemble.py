"""The end of one input of ``facskit analyze``: its raw parts (``.parts/<name>/part-*.parquet``, one per
chunk of frames) become the finished result file, holding about one part at a time.

The result equals what finalising the concatenation of the parts in one table gives (smoothing, then
calibration, then thresholds: :meth:`facskit.analyze.detector.Detector.finalize`), written by
:func:`facskit.analyze.results.write_result`; tests/analyze/test_assemble.py checks this. How:

* thresholds, OpenFace naming and the file formats work row by row, so each part is finalised and appended
  on its own (CSV part after part, Parquet one row group per part);
* smoothing (a centred window per face) and calibration (a low percentile per face) need a face's whole
  series, so with either on, a first pass reads only ``file, frame, face_id, face_detected`` and the AU
  intensities of every part (``columns=``: ~12 + 4 bytes per AU per row, about 1.5 MB for 10 minutes of one
  face at 24 fps, against ~100 MB for the whole table with its copies), runs
  :func:`facskit.analyze.postprocess.adjust_intensities` on that, and the second pass copies the adjusted
  intensities into each part's rows. That state grows with the video, but by two orders of magnitude less
  than the rows; a smoothing-only pass could carry a window's tail per face instead, which is not needed
  for the memory target.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facskit.analyze.openface import to_openface_columns
from facskit.analyze.postprocess import adjust_intensities, result_attrs
from facskit.analyze.result_files import write_result_parts
from facskit.analyze.results import apply_thresholds, as_result
from facskit.analyze.schema import ResultFormat
from facskit.aus import au_column
from facskit.errors import FacskitError

if TYPE_CHECKING:  # pragma: no cover
    from facskit.analyze.detector import Detector

# The columns smoothing and calibration read, besides the intensities.
KEY_COLUMNS = ["file", "frame", "face_id", "face_detected"]


def read_part(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One raw part (or some of its columns), with the dtypes it was written with."""
    return pd.read_parquet(path, columns=list(columns) if columns is not None else None)


def assemble(
    parts: Sequence[Path],
    target: Path,
    fmt: ResultFormat,
    detector: Detector,
    errors: list[dict[str, str]],
    openface_columns: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> int:
    """Finalise the raw ``parts`` of one input (in order) into ``target``, atomically; returns its rows.

    ``provenance`` (the input and options that made the parts) joins the attrs, so the finished result says
    what produced it. The parts must hold each (frame, face) once, in frame order: a part that starts at or
    before the previous part's last frame is refused, so a result can never hold a row twice.
    """
    aus = tuple(detector.aus)
    columns = [au_column(a) for a in aus]
    adjusted: np.ndarray | None = None  # (rows, AUs) float32: the intensities after smoothing/calibration
    if detector.smoothing is not None or detector.calibration is not None:
        keys = pd.concat([read_part(p, [*KEY_COLUMNS, *columns]) for p in parts], ignore_index=True)
        added = adjust_intensities(keys, aus, detector.smoothing, detector.calibration)
        adjusted = keys[columns].to_numpy(dtype=np.float32)
        del keys
    else:
        added = {"smoothing": None, "calibration": None}
    attrs = result_attrs(detector, added, errors, provenance)
    rows = [0]
    blocks = _finished_parts(parts, aus, detector.thresholds, attrs, adjusted, openface_columns, rows)
    write_result_parts(blocks, attrs, target, fmt)
    return rows[0]


def _finished_parts(
    parts: Sequence[Path],
    aus: Sequence[int],
    thresholds: Mapping[int, float],
    attrs: Mapping[str, Any],
    adjusted: np.ndarray | None,
    openface_columns: bool,
    rows: list[int],
) -> Iterator[pd.DataFrame]:
    """Each part finalised as the whole table would be, one at a time; counts the rows into ``rows[0]``."""
    columns = [au_column(a) for a in aus]
    last_frame = -1
    for path in parts:
        raw = read_part(path)
        frames = raw["frame"].to_numpy()
        if len(frames) and (frames.min() <= last_frame or raw.duplicated(["frame", "face_id"]).any()):
            raise FacskitError(f"{path} repeats frames of the parts before it; rerun to redo this input")
        last_frame = int(frames.max()) if len(frames) else last_frame
        start, stop = rows[0], rows[0] + len(raw)
        if adjusted is not None:
            if stop > len(adjusted):
                raise FacskitError(f"{path} changed while its input was being finished")
            for k, name in enumerate(columns):
                raw[name] = adjusted[start:stop, k]
        rows[0] = stop
        apply_thresholds(raw, thresholds)
        result = as_result(raw, attrs)
        del raw
        # write_result writes pd.DataFrame(result): a plain frame, without attrs (which pyarrow would store).
        table = pd.DataFrame(to_openface_columns(result) if openface_columns else result)
        del result
        yield table
        del table
    if adjusted is not None and rows[0] != len(adjusted):
        raise FacskitError(f"the parts of {parts[0].parent} changed while its input was being finished")
