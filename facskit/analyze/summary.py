"""Per file and face, the summary of a result: frames with a face, and per AU the mean and maximum
intensity and the share of frames active (``AUResult.summary()``, ``summary.csv``).

:func:`summarize` works on a result in memory; :class:`SummaryAccumulator` keeps running sums per face, from
which :func:`facskit.analyze.result_files.summarize_file` gives the same numbers for a result file of any
length while holding a few thousand rows at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from facskit.analyze.schema import aus_from_columns, occurrence_column
from facskit.aus import au_column


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
    return summary_table(rows, aus, result.attrs.get("calibration", {}) or {})


def summary_table(
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


class SummaryAccumulator:
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
