"""Put several evaluations and the papers' published tables side by side: one markdown table, one bar plot.

Inputs are metrics documents: ``facskit evaluate --json`` files, ``facskit crossval`` folders (their
``metrics.json``, pooled numbers at the top level), run folders holding a ``metrics.json``, and entries of
the shipped published tables (:mod:`facskit.eval.published`). All share ``per_au`` / ``mean``, so the table
is a plain union: one row per (result, metric), AUs as columns in code order, Mean last, ``-`` where a
result has no value. Means are each result's own (a paper's reported average); a note flags results whose
AU sets differ, since their means then average different AUs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facskit.aus import parse_au
from facskit.errors import UsageError
from facskit.eval.evaluate import write_json

__all__ = ["COMPARED_METRICS", "compare_markdown", "load_result", "plot_compare", "write_compare"]

# (key, row label, decimals): intensity metrics first, as in the papers' tables.
COMPARED_METRICS: tuple[tuple[str, str, int], ...] = (
    ("icc", "ICC", 2),
    ("mae", "MAE", 2),
    ("pcc", "PCC", 2),
    ("f1", "F1", 2),
)
METRICS_FILE = "metrics.json"


def load_result(spec: str | Path) -> dict[str, Any]:
    """A metrics document from ``PATH`` or ``LABEL=PATH`` (a JSON file or a folder with ``metrics.json``).

    The label defaults to the folder name for ``.../NAME/metrics.json`` and to the file stem otherwise.
    """
    text = str(spec)
    label = None
    if "=" in text and not Path(text).exists():
        label, text = text.split("=", 1)
    path = Path(text)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise UsageError(
            f"{text}: no metrics JSON (give a file from `facskit evaluate --json` or a crossval folder)"
        )
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict) or not isinstance(document.get("per_au"), dict):
        raise UsageError(f"{path}: not a facskit metrics document (no per_au)")
    default = path.parent.name if path.name == METRICS_FILE else path.stem
    return {
        "label": label or default or str(path),
        "kind": "run",
        "per_au": document["per_au"],
        "mean": document.get("mean", {}),
        "source": {
            "path": str(path),
            **({"protocol": document["protocol"]} if "protocol" in document else {}),
        },
    }


def _au_names(results: Sequence[dict[str, Any]]) -> list[str]:
    names = {name for r in results for name in r["per_au"]}
    return sorted(names, key=parse_au)


def _present_metrics(results: Sequence[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """The metrics any result has a value for (all-null rows are noise in a comparison)."""
    present = []
    for key, label, decimals in COMPARED_METRICS:
        has = any(
            r["mean"].get(key) is not None or any(v.get(key) is not None for v in r["per_au"].values())
            for r in results
        )
        if has:
            present.append((key, label, decimals))
    return present


def compare_markdown(results: Sequence[dict[str, Any]]) -> str:
    """One markdown table: rows (result, metric), AUs as columns, Mean last; sources listed under it."""
    if not results:
        raise UsageError("nothing to compare: give result files or --published names")
    names = _au_names(results)
    metrics = _present_metrics(results) or list(COMPARED_METRICS[:1])
    lines = [
        "| Result | Metric | " + " | ".join(names) + " | Mean |",
        "|---|---|" + "---:|" * (len(names) + 1),
    ]
    for key, label, decimals in metrics:
        for result in results:
            cells = []
            for name in names:
                value = result["per_au"].get(name, {}).get(key)
                cells.append("-" if value is None else f"{value:.{decimals}f}")
            mean = result["mean"].get(key)
            cells.append("-" if mean is None else f"{mean:.{decimals}f}")
            lines.append(f"| {result['label']} | {label} | " + " | ".join(cells) + " |")
    notes = []
    au_sets = {tuple(sorted(r["per_au"], key=parse_au)) for r in results}
    if len(au_sets) > 1:
        notes.append("Results cover different AUs; each Mean averages that result's own AUs.")
    for result in results:
        source = result["source"]
        if result["kind"] == "published":
            notes.append(
                f"{result['label']}: {source['paper']}; {source['table']} ({source['url']}). "
                f"{source['status']}."
            )
        else:
            held_out = source.get("protocol", {}).get("held_out")
            notes.append(f"{result['label']}: {source['path']}" + (f" ({held_out})" if held_out else ""))
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def plot_compare(results: Sequence[dict[str, Any]], path: str | Path, metric: str = "icc") -> Path:
    """Grouped bars of ``metric`` per AU (and Mean), one colour per result; missing values leave a gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from facskit.io.figures import write_figure

    names = [*_au_names(results), "Mean"]
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(
        figsize=(min(14.0, max(6.0, 0.5 * len(names) * len(results) ** 0.5 + 2)), 4), dpi=120
    )
    x = np.arange(len(names))
    for i, result in enumerate(results):
        values = [result["per_au"].get(n, {}).get(metric) for n in names[:-1]] + [result["mean"].get(metric)]
        heights = np.array([np.nan if v is None else v for v in values], dtype=float)
        hatch = "//" if result["kind"] == "published" else None
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=result["label"], hatch=hatch)
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0)
    label = dict((k, lbl) for k, lbl, _ in COMPARED_METRICS).get(metric, metric)
    ax.set_ylabel(label)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{label} per AU")
    fig.tight_layout()
    path = write_figure(fig, path)
    plt.close(fig)
    return path


def write_compare(results: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    """``compare.md``, ``compare.json`` (the merged documents) and ``compare.png`` (ICC bars) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "compare.md"
    markdown.write_text(compare_markdown(results))
    return {
        "markdown": markdown,
        "json": write_json({"results": list(results)}, out / "compare.json"),
        "plot": plot_compare(results, out / "compare.png"),
    }
