"""facskit.io.atomic: a reader sees the old file or the new one, never half of one, and a failed write leaves
no temporary file behind."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facskit.errors import FacskitError
from facskit.io.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_parquet


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = atomic_write_bytes(tmp_path / "a.bin", b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_an_os_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(FacskitError, match=r"cannot write .*missing/a\.txt"):
        atomic_write_bytes(tmp_path / "missing" / "a.txt", b"x")
    assert atomic_write_bytes(tmp_path / "made" / "a.txt", b"x", parents=True).read_bytes() == b"x"


def test_json_and_parquet_round_trip_with_ordinary_permissions(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1.5]}, sort_keys=True, durable=True)
    assert path.read_text() == json.dumps({"a": [1.5], "b": 1}, indent=2) + "\n"
    assert path.stat().st_mode & 0o644 == 0o644  # not mkstemp's 0600
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "nan.json", {"x": float("nan")}, allow_nan=False)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    pd.testing.assert_frame_equal(pd.read_parquet(atomic_write_parquet(tmp_path / "t.parquet", frame)), frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "t.parquet"]
