"""``facskit plot``: the standard figures of an analysis result (PNG and SVG).

facskit plot results/interview.csv --out figures/
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", help="a result file written by `facskit analyze` (.csv or .parquet)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for timeseries/distribution/cooccurrence .png/.svg",
    )
    parser.add_argument("--face", type=int, default=None, help="only this face id in the time series")
    parser.add_argument("--quiet", action="store_true", help="print errors only (not the files written)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facskit.analyze.plots import plot_cooccurrence, plot_distribution, plot_timeseries, save_figure
    from facskit.analyze.result_files import read_result

    result = read_result(args.result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in (
        ("timeseries", plot_timeseries(result, face_id=args.face)),
        ("distribution", plot_distribution(result)),
        ("cooccurrence", plot_cooccurrence(result)),
    ):
        written += save_figure(fig, out / name)
    if not args.quiet:
        print("\n".join(str(p) for p in written))
    return 0
