"""``facskit evaluate RUN_OR_CKPT --data CACHE``: the papers' metrics on the run's held-out subjects.

    facskit evaluate runs/scc-f0 --data cache/disfa --out runs/scc-f0/test.json --predictions preds.parquet
    facskit evaluate model.ckpt --data cache/disfa --fold 1 --folds 3
    facskit evaluate runs/bmvc --data cache/bp4d --split all --threshold 2

A run folder resolves to its best.ckpt (else last.ckpt) and its config.yaml, which names the held-out
fold; a bare checkpoint needs --fold (or --split all). Prints the table in the papers' layout (AUs as
columns; ICC, MAE, PCC, F1 rows; Mean last).
"""

from __future__ import annotations

import argparse

from facskit.cli import add_deprecated_alias
from facskit.cli.options import add_cache_option, add_fold_options, add_scoring_options, evaluation_keywords


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="RUN_OR_CKPT", help="run folder (facskit train --out) or checkpoint file"
    )
    add_cache_option(parser)
    add_fold_options(parser, "the run's, else 3")
    parser.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="test",
        help="held-out subjects (default), training ones, or all",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--out", metavar="FILE", help="the metrics JSON file to write")
    add_deprecated_alias(out, "--json", "--out")
    parser.add_argument(
        "--predictions", metavar="FILE", help="write per-frame predictions (.parquet, or .csv)"
    )
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    add_scoring_options(parser)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers reading crops (default 0)")
    parser.add_argument(
        "--quiet", action="store_true", help="print the table only (no notes, no list of the files written)"
    )


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from facskit.eval.evaluate import evaluate, write_json, write_predictions

    result = evaluate(args.model, args.data, **evaluation_keywords(args))
    for note in result.metrics["notes"]:
        if not args.quiet:
            print(f"note: {note}", file=sys.stderr)
    protocol = result.metrics["protocol"]
    print(f"{protocol['model']} ({protocol['checkpoint']}) on {protocol['cache']}: {protocol['held_out']}\n")
    print(result.markdown)
    if args.out:
        written = write_json(result.metrics, args.out)
        if not args.quiet:
            print(f"metrics: {written}")
    if args.predictions:
        written = write_predictions(result.predictions, args.predictions)
        if not args.quiet:
            print(f"predictions: {written}")
    if args.markdown:
        Path(args.markdown).write_text(result.markdown)
        if not args.quiet:
            print(f"table: {args.markdown}")
    return 0
