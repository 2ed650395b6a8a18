"""The ``.meta.json`` beside a CSV result, read and written without pandas: the result's attrs, the size the
CSV was written with (so a CSV cut short or edited afterwards is told from a complete one) and, for results
written from arrays, the per-face summary of its rows, so that ``summary.csv`` need not read the CSV again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facskit.analyze.schema import CSV_SIDECAR_SUFFIX, FILE_CHECK_KEY, SUMMARY_KEY
from facskit.errors import FacskitError, first_line
from facskit.io.atomic import atomic_write


def csv_sidecar(path: Path | str) -> Path:
    """The ``.meta.json`` beside a CSV result: its attrs and the size the CSV was written with."""
    path = Path(path)
    return path.with_name(path.name + CSV_SIDECAR_SUFFIX)


def write_csv_sidecar(path: Path, attrs: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None:
    """Write the sidecar of the CSV result ``path`` (atomic), after the CSV: it records the CSV's size.

    ``summary``: ``{"columns": [...], "rows": [[...], ...]}``, the summary table of the result's rows."""
    entries: dict[str, Any] = {**attrs, FILE_CHECK_KEY: {"bytes": path.stat().st_size}}
    if summary is not None:
        entries[SUMMARY_KEY] = dict(summary)
    text = json.dumps(entries, sort_keys=True) + "\n"
    atomic_write(csv_sidecar(path), lambda tmp: tmp.write_text(text))


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The attrs of a CSV result from its sidecar, or None when there is no sidecar.

    Raises a one-line :class:`FacskitError` for a sidecar that is not JSON, and for a CSV whose size is not
    the one its sidecar recorded (cut short, or edited since facskit wrote it). Sidecars of older facskit
    versions record no size and are taken as they are.
    """
    entries = _checked_entries(path)
    if entries is None:
        return None
    entries.pop(SUMMARY_KEY, None)
    return entries


def recorded_summary(path: Path) -> dict[str, Any] | None:
    """The summary recorded in the sidecar of the CSV result ``path`` (``{"columns", "rows"}``), or None
    when it records none (written by the table path or an older facskit). Raises as :func:`read_sidecar`."""
    entries = _checked_entries(path)
    summary = (entries or {}).get(SUMMARY_KEY)
    if isinstance(summary, dict) and isinstance(summary.get("columns"), list) and "rows" in summary:
        return summary
    return None


def _checked_entries(path: Path) -> dict[str, Any] | None:
    """The sidecar's JSON object without the file check, once the check has passed; None without one."""
    sidecar = csv_sidecar(path)
    if not sidecar.is_file():
        return None
    try:
        entries = json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise FacskitError(f"{sidecar}: unreadable result metadata ({first_line(error)})") from None
    if not isinstance(entries, dict):
        raise FacskitError(f"{sidecar}: unreadable result metadata (not a JSON object)")
    check = entries.pop(FILE_CHECK_KEY, None)
    if isinstance(check, dict) and "bytes" in check:
        size = path.stat().st_size
        if size != check["bytes"]:
            raise FacskitError(
                f"{path}: {size} bytes, but {sidecar.name} records {check['bytes']}: the result was cut "
                "short or changed after facskit wrote it; rerun `facskit analyze` into its folder to redo it"
            )
    return entries


__all__ = ["csv_sidecar", "read_sidecar", "recorded_summary", "write_csv_sidecar"]
