"""One self-contained HTML report of an analysis folder: nothing is fetched, so it opens offline and can be
mailed or archived with a paper's supplement.

Images are inline base64 PNGs; the interactive time series is a small vanilla-JS SVG plot (no CDN, no
library) fed by the per-face intensities embedded as JSON. A ``window.onerror`` hook writes any script error
into the page (``#js-errors``), which the headless-browser test reads back.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facskit.analyze.result_files import read_result
from facskit.analyze.results import AUResult
from facskit.analyze.summary import summarize
from facskit.aus import AUS, au_column
from facskit.errors import UsageError
from facskit.io.atomic import atomic_write

MAX_POINTS = 1500  # per series in the interactive plot; longer series are decimated (every k-th frame)
KEY_FRAMES_PER_FILE = 2
RESULT_SUFFIXES = (".csv", ".parquet")
SKIPPED_FILES = ("summary.csv",)
ERROR_MARKER = "JS-ERROR"
UNTRAINED_BANNER = (
    "<p class='warning'>These numbers come from a model with untrained (freshly initialised) weights: "
    "they test the pipeline and mean nothing about the faces.</p>"
)


def find_results(folder: Path) -> list[Path]:
    """The result files of an analysis folder (``summary.csv`` and sidecars excluded)."""
    if not folder.is_dir():
        raise UsageError(f"no such analysis folder: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix in RESULT_SUFFIXES and p.name not in SKIPPED_FILES)
    if not paths:
        raise UsageError(
            f"{folder} holds no result (.csv or .parquet) files; run `facskit analyze --out {folder}`"
        )
    return paths


# Characters JSON may hold as they are that end or change a <script> element (`</script>`, `<!--`, `]]>`),
# or that older JavaScript parsers take as line ends; each becomes its JSON escape (JSON.parse reads it back).
SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(data: Any) -> str:
    """``data`` as JSON safe to embed in an HTML ``<script>`` element: a file named ``<!--<script>.jpg``
    cannot end the element early or hide the rest of the page."""
    text = json.dumps(data, ensure_ascii=False)
    return "".join(SCRIPT_ESCAPES.get(c, c) for c in text)


def _png(fig_or_image: Any) -> str:
    """A data URI for a matplotlib Figure or an RGB uint8 array."""
    buffer = io.BytesIO()
    if isinstance(fig_or_image, np.ndarray):
        import cv2

        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(fig_or_image[..., ::-1]))
        if not ok:
            raise ValueError("PNG encoding failed")
        buffer.write(encoded.tobytes())
    else:
        fig_or_image.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def series_data(results: Sequence[AUResult]) -> dict[str, Any]:
    """Data of the interactive plot: ``{"aus": [...], "series": [{"file", "face_id", "t": [...], "AU06":
    [...], ...}]}`` with null where the face was not found."""
    aus: list[int] = []
    series = []
    for result in results:
        aus += [a for a in result.aus if a not in aus]
        faces = result[result["face_detected"].astype(bool)]
        for (file, face_id), group in faces.groupby(["file", "face_id"], sort=True, observed=True):
            group = group.sort_values("frame")
            step = max(1, int(np.ceil(len(group) / MAX_POINTS)))
            group = group.iloc[::step]
            item: dict[str, Any] = {
                "file": Path(str(file)).name,
                "face_id": int(face_id),
                "t": [round(float(v), 4) for v in group["timestamp"]],
            }
            for code in result.aus:
                values = group[au_column(code)].astype("float64")
                item[au_column(code)] = [None if np.isnan(v) else round(float(v), 3) for v in values]
            series.append(item)
    return {"aus": [au_column(a) for a in aus], "series": series}


def key_frames(result: AUResult, folder: Path, count: int = KEY_FRAMES_PER_FILE) -> list[tuple[str, str]]:
    """``(caption, data URI)`` for the frames of highest summed intensity.

    With saved heatmaps (``--save-heatmaps``) the network's own maps are blended on the frame; otherwise the
    AU points are drawn, sized by intensity. Frames whose source can no longer be read are skipped.
    """
    from facskit.analyze.plots import plot_overlay

    faces = result[result["face_detected"].astype(bool)]
    if faces.empty:
        return []
    total = faces[result.au_columns].astype("float64").sum(axis=1)
    order = total.sort_values(ascending=False).index
    chosen: list[tuple[str, int]] = []
    for index in order:
        key = (str(faces.at[index, "file"]), int(faces.at[index, "frame"]))
        if key not in chosen:
            chosen.append(key)
        if len(chosen) >= count:
            break
    out = []
    for file, frame in chosen:
        if not Path(file).is_file():
            continue
        try:
            image = _heatmap_frame(result, folder, file, frame)
            if image is not None:
                caption = f"{Path(file).name}, frame {frame}: AU heatmaps of the network"
                out.append((caption, _png(image)))
            else:
                caption = f"{Path(file).name}, frame {frame}: AU points sized by intensity"
                out.append((caption, _png(plot_overlay(result, frame=frame, file=file))))
        except Exception as error:  # noqa: BLE001 - a missing key frame must not sink the report
            out.append((f"{Path(file).name}, frame {frame}: not shown ({error})", ""))
    return out


def _heatmap_frame(result: AUResult, folder: Path, file: str, frame: int) -> np.ndarray | None:
    from facskit.analyze.overlay import draw_frame
    from facskit.analyze.pipeline import FaceResult, FrameResult
    from facskit.analyze.plots import read_frame
    from facskit.models.spec import ModelSpec

    stem = _stem_for(result, folder, file)
    maps_dir = folder / f"{stem}.heatmaps"
    if not maps_dir.is_dir():
        return None
    for chunk in sorted(maps_dir.glob("chunk-*.npz")):
        with np.load(chunk) as data:
            hit = np.flatnonzero(data["frame"] == frame)
            if not len(hit):
                continue
            rows = result[(result["file"] == file) & (result["frame"] == frame)]
            faces = []
            for i in hit:
                row = rows[rows["face_id"] == int(data["face_id"][i])]
                if row.empty:
                    continue
                r = row.iloc[0]
                faces.append(
                    FaceResult(
                        face_id=int(data["face_id"][i]),
                        box=(float(r["x"]), float(r["y"]), float(r["w"]), float(r["h"])),
                        score=float(r["score"]),
                        pose=(0.0, 0.0, 0.0),
                        landmarks=np.zeros((68, 2), np.float32),
                        matrix=data["matrix"][i],
                        intensities=r[result.au_columns].to_numpy(np.float32),
                        heatmaps=data["heatmaps"][i].astype(np.float32),
                    )
                )
            spec = ModelSpec(
                name=str(result.attrs.get("model", "model")),
                arch="hourglass",
                arch_args=(),
                input_size=int(result.attrs.get("input_size", 256)),
                aus=result.aus,
                convention=result.attrs.get("heatmap_convention", "bmvc"),
                crop_size=int(result.attrs.get("alignment", {}).get("crop_size", 256)),
            )
            image = read_frame(file, frame)
            return draw_frame(FrameResult(file, frame, 0.0, image, faces), spec, result.aus)
    return None


def _stem_for(result: AUResult, folder: Path, file: str) -> str:
    for path in folder.iterdir():
        if path.suffix in RESULT_SUFFIXES and path.stem == Path(file).stem:
            return path.stem
    return Path(file).stem


def model_card(attrs: dict[str, Any]) -> str:
    """The model and options behind the numbers, as an HTML table."""
    aus = [int(a) for a in attrs.get("aus", [])]
    rows = [
        ("model", attrs.get("model")),
        ("weights", attrs.get("model_source")),
        ("weights hash", attrs.get("model_hash")),
        ("trained", attrs.get("model_trained")),
        ("training", json.dumps(attrs.get("model_training") or {})),
        ("heatmap convention / input", f"{attrs.get('heatmap_convention')} / {attrs.get('input_size')} px"),
        ("alignment", json.dumps(attrs.get("alignment"))),
        ("readout", attrs.get("readout")),
        ("backend", attrs.get("backend")),
        ("face detection every (frames)", attrs.get("detect_every", attrs.get("every"))),  # "every": older
        ("faces", attrs.get("faces")),
        ("occurrence thresholds", json.dumps(attrs.get("thresholds"))),
        ("smoothing", json.dumps(attrs.get("smoothing"))),
        (
            "calibration",
            "off" if not attrs.get("calibration") else f"{attrs['calibration'].get('percentile')}th pct",
        ),
        ("produced by", attrs.get("producer")),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    au_rows = "".join(
        f"<tr><td>{au_column(a)}</td><td>{html.escape(AUS[a].name)}</td><td>{html.escape(AUS[a].muscle)}</td></tr>"
        for a in aus
        if a in AUS
    )
    return (
        f"<table class='card'>{body}</table><h3>Action Units</h3>"
        f"<table><tr><th>AU</th><th>name</th><th>muscle</th></tr>{au_rows}</table>"
    )


SCRIPT = r"""
window.onerror = function (message, source, line) {
  var box = document.getElementById('js-errors');
  box.textContent += 'JS-' + 'ERROR: ' + message + ' (line ' + line + ')\n';
  box.style.display = 'block';
};
(function () {
  var data = JSON.parse(document.getElementById('series-data').textContent);
  var colours = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
                 '#bcbd22', '#17becf', '#393b79', '#637939'];
  var select = document.getElementById('series-select');
  var boxes = document.getElementById('au-boxes');
  var chart = document.getElementById('chart');
  var NS = 'http://www.w3.org/2000/svg';
  data.series.forEach(function (s, i) {
    var option = document.createElement('option');
    option.value = i; option.textContent = s.file + ' - face ' + s.face_id;
    select.appendChild(option);
  });
  data.aus.forEach(function (au, i) {
    var label = document.createElement('label');
    var box = document.createElement('input');
    box.type = 'checkbox'; box.checked = true; box.value = au; box.addEventListener('change', draw);
    label.appendChild(box);
    label.appendChild(document.createTextNode(' ' + au + ' '));
    label.style.color = colours[i % colours.length];
    boxes.appendChild(label);
  });
  select.addEventListener('change', draw);
  function el(name, attrs) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) { node.setAttribute(key, attrs[key]); }
    return node;
  }
  function draw() {
    while (chart.firstChild) { chart.removeChild(chart.firstChild); }
    var W = 1100, H = 320, L = 45, R = 10, T = 10, B = 35;
    chart.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    if (!data.series.length) {
      var empty = el('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle'});
      empty.textContent = 'no face detected'; chart.appendChild(empty);
      chart.setAttribute('data-rendered', 'empty'); return;
    }
    var s = data.series[select.value || 0];
    var t0 = s.t[0], t1 = s.t[s.t.length - 1];
    if (t1 <= t0) { t1 = t0 + 1; }
    var x = function (t) { return L + (W - L - R) * (t - t0) / (t1 - t0); };
    var y = function (v) { return T + (H - T - B) * (1 - v / 5); };
    for (var level = 0; level <= 5; level++) {
      chart.appendChild(el('line', {x1: L, x2: W - R, y1: y(level), y2: y(level), stroke: '#ddd'}));
      var tick = el('text', {x: L - 8, y: y(level) + 4, 'text-anchor': 'end', 'font-size': 11});
      tick.textContent = level; chart.appendChild(tick);
    }
    var axis = el('text', {x: (W + L) / 2, y: H - 5, 'text-anchor': 'middle', 'font-size': 12});
    axis.textContent = 'time (s): ' + t0.toFixed(2) + ' - ' + t1.toFixed(2); chart.appendChild(axis);
    var shown = 0;
    data.aus.forEach(function (au, i) {
      var box = boxes.querySelector('input[value="' + au + '"]');
      if (!box.checked || !s[au]) { return; }
      var path = '', pen = 'M';
      s[au].forEach(function (v, k) {
        if (v === null) { pen = 'M'; return; }
        path += pen + x(s.t[k]).toFixed(1) + ' ' + y(v).toFixed(1) + ' '; pen = 'L';
      });
      if (s.t.length < 60) {  // few points (an image): dots, since a one-point path draws nothing
        s[au].forEach(function (v, k) {
          if (v !== null) {
            var dot = {cx: x(s.t[k]), cy: y(v), r: 3, fill: colours[i % colours.length]};
            chart.appendChild(el('circle', dot));
          }
        });
      }
      if (path) {
        chart.appendChild(el('path', {d: path, fill: 'none', stroke: colours[i % colours.length],
                                      'stroke-width': 1.5, 'class': 'series'}));
        shown++;
      }
    });
    chart.setAttribute('data-rendered', String(shown));
  }
  draw();
})();
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
table.card th, table.card td { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 6px 10px; }
#js-errors { display: none; color: #b00; white-space: pre; }
#chart { width: 100%; height: auto; border: 1px solid #eee; }
.frames figure { display: inline-block; margin: 6px; max-width: 560px; }
"""


def build_report(folder: Path | str, title: str | None = None) -> str:
    """The HTML text of the report of an analysis folder (see the module docstring)."""
    from facskit.analyze.plots import plot_cooccurrence, plot_distribution, plot_timeseries

    folder = Path(folder)
    results = [read_result(p) for p in find_results(folder)]
    attrs = dict(results[0].attrs)
    summary = pd.concat([summarize(r) for r in results], ignore_index=True)
    summary["file"] = summary["file"].map(lambda f: Path(str(f)).name)
    parts = [
        f"<h1>{html.escape(title or 'facskit analysis: ' + folder.name)}</h1>",
        "<div id='js-errors'></div>",
        UNTRAINED_BANNER if attrs.get("model_trained") is False else "",
        f"<p>{sum(len(r) for r in results)} rows from {len(results)} file(s); "
        "intensities on the 0-5 FACS scale.</p>",
        "<h2>Summary</h2>",
        "<div style='overflow-x: auto'>",
        summary.to_html(index=False, float_format=lambda v: f"{v:.2f}", border=0),
        "</div>",
        "<h2>Time series</h2>",
        "<p><select id='series-select'></select> <span id='au-boxes'></span></p>",
        "<svg id='chart' xmlns='http://www.w3.org/2000/svg' data-rendered='no'></svg>",
        "<script type='application/json' id='series-data'>" + script_json(series_data(results)) + "</script>",
        "<h2>Distributions and co-occurrence</h2>",
    ]
    combined = pd.concat([pd.DataFrame(r) for r in results], ignore_index=True)
    for fig in (plot_distribution(combined), plot_cooccurrence(combined)):
        parts.append(f"<img alt='plot' src='{_png(fig)}'>")
    parts.append("<h2>Per-face time series</h2>")
    for result in results:
        if result["frame"].nunique() < 2:
            continue  # a still image has no time axis
        parts.append(f"<img alt='time series' src='{_png(plot_timeseries(result))}'>")
    parts.append("<h2>Key frames</h2><div class='frames'>")
    for result in results:
        for caption, uri in key_frames(result, folder):
            image = f"<img alt='key frame' src='{uri}'>" if uri else ""
            parts.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</div><h2>Model card</h2>")
    parts.append(model_card(attrs))
    errors = [e for r in results for e in r.attrs.get("errors", [])]
    if errors:
        items = "".join(f"<li>{html.escape(e['file'])}: {html.escape(e['error'])}</li>" for e in errors)
        parts.append(f"<h2>Input errors</h2><ul>{items}</ul>")
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title or 'facskit report')}</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def write_report(folder: Path | str, out: Path | str, title: str | None = None) -> Path:
    """Write :func:`build_report` to ``out`` atomically."""
    out = Path(out)
    text = build_report(folder, title)
    if out.parent and not out.parent.exists():
        os.makedirs(out.parent, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out
