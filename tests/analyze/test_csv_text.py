"""The pandas-free CSV writer writes pandas' bytes (facskit.analyze.csv_text)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facskit.analyze.csv_text import write_csv


def columns(rows: int) -> dict[str, object]:
    rng = np.random.default_rng(rows)
    f32 = (rng.normal(size=rows) * 10.0 ** rng.integers(-9, 10, rows)).astype(np.float32)
    f64 = rng.normal(size=rows) * 10.0 ** rng.integers(-20, 20, rows)
    if rows:
        f32[::3] = np.nan
        f64[::4] = np.nan
        f32[-1] = np.inf
    names = ["a,b", 'say "hi"', "new\nline", "ünïcødé", "plain", " spaced ", "", "tab\there", "cr\rhere"]
    return {
        "file": [names[k % len(names)] for k in range(rows)],
        "frame": np.arange(rows, dtype=np.int64),
        "face_id": np.arange(rows, dtype=np.int64) - 1,
        "x": f32,
        "timestamp": f64,
        "face_detected": np.arange(rows) % 2 == 0,
        "AU12_c": np.array([(True, None, False)[k % 3] for k in range(rows)], dtype=object),
    }


@pytest.mark.parametrize("rows", [0, 1, 9, 40])
def test_write_csv_is_pandas_byte_for_byte(tmp_path, rows) -> None:
    data = columns(rows)
    write_csv(tmp_path / "ours.csv", data)
    frame = pd.DataFrame(data)
    frame["file"] = frame["file"].astype("string")
    frame["AU12_c"] = frame["AU12_c"].astype("boolean")
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
