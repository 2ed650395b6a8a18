"""``facskit report``: one self-contained HTML page for an analysis folder (works offline).

facskit report results/ --out results/report.html
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result_dir", help="an output folder of `facskit analyze`")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--title", default=None, help="page title (default: the folder name)")


def run(args: argparse.Namespace) -> int:
    from facskit.analyze.report import write_report

    print(write_report(args.result_dir, args.out, title=args.title))
    return 0
