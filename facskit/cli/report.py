"""``facskit report``: one self-contained HTML page for an analysis folder (works offline).

facskit report results/ --out results/report.html
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result_dir", help="an output folder of `facskit analyze`")
    parser.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    parser.add_argument("--title", default=None, help="page title (default: the folder name)")
    parser.add_argument("--quiet", action="store_true", help="print errors only (not the file written)")


def run(args: argparse.Namespace) -> int:
    from facskit.analyze.report import write_report

    written = write_report(args.result_dir, args.out, title=args.title)
    if not args.quiet:
        print(written)
    return 0
