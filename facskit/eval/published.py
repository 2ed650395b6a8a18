"""The papers' own result tables, shipped as data (``facskit/assets/published_results.yaml``).

Reproducing a paper means putting one's numbers next to the paper's. The YAML holds, per entry, the paper,
the table, the protocol, the source consulted and the per-AU values; a value nobody verified is ``null``
(shown as ``-``), never an estimate. :func:`published_results` turns an entry into the same document shape
as ``facskit evaluate``'s JSON (``per_au`` / ``mean``), so ``facskit compare`` treats papers and runs alike.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import yaml

from facskit.aus import au_column, parse_au
from facskit.errors import UsageError

__all__ = ["PUBLISHED_FILE", "list_published", "published_entries", "published_results"]

PUBLISHED_FILE = "published_results.yaml"
METRIC_KEYS = ("icc", "mae", "pcc", "f1")
REQUIRED_FIELDS = ("label", "paper", "table", "dataset", "url", "status", "metrics")


def _check_value(name: str, where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{PUBLISHED_FILE}: {name} {where} must be a number or null, got {value!r}")
    return float(value)


@cache
def published_entries() -> dict[str, dict[str, Any]]:
    """Every entry of the shipped YAML, checked: required fields present, metric names known, AU keys
    valid, values numbers or null."""
    text = (resources.files("facskit") / "assets" / PUBLISHED_FILE).read_text()
    data = yaml.safe_load(text) or {}
    for name, entry in data.items():
        missing = [f for f in REQUIRED_FIELDS if f not in entry]
        if missing:
            raise ValueError(f"{PUBLISHED_FILE}: entry {name!r} lacks {', '.join(missing)}")
        for metric, values in entry["metrics"].items():
            if metric not in METRIC_KEYS:
                raise ValueError(f"{PUBLISHED_FILE}: {name} has unknown metric {metric!r}")
            for key, value in values.items():
                if key != "mean":
                    parse_au(key)
                _check_value(name, f"{metric}.{key}", value)
    return data


def list_published() -> list[str]:
    """Names usable with ``facskit compare --published``."""
    return sorted(published_entries())


def published_results(name: str) -> dict[str, Any]:
    """One entry as a metrics document: ``{"label", "kind", "source", "per_au": {AU: {metric: v}},
    "mean": {...}}``."""
    entries = published_entries()
    if name not in entries:
        raise UsageError(f"no published results named {name!r}; choose from: {', '.join(list_published())}")
    entry = entries[name]
    per_au: dict[str, dict[str, float | None]] = {}
    mean: dict[str, float | None] = {}
    for metric, values in entry["metrics"].items():
        for key, value in values.items():
            if key == "mean":
                mean[metric] = _check_value(name, f"{metric}.mean", value)
            else:
                column = au_column(parse_au(key))
                per_au.setdefault(column, {})[metric] = _check_value(name, f"{metric}.{key}", value)
    return {
        "label": entry["label"],
        "kind": "published",
        "per_au": per_au,
        "mean": mean,
        "source": {k: entry[k] for k in ("paper", "table", "dataset", "url", "status")},
    }
