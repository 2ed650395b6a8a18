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

from facskit.aus import OCCURRENCE_THRESHOLD
from facskit.cli import add_deprecated_alias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="RUN_OR_CKPT", help="run folder (facskit train --out) or checkpoint file"
    )
    parser.add_argument(
        "--data", required=True, metavar="CACHE", help="prepared cache folder (facskit prepare)"
    )
    parser.add_argument(
        "--fold", type=int, default=None, metavar="K", help="held-out fold (default: the run's)"
    )
    parser.add_argument(
        "--folds", type=int, default=None, metavar="N", help="number of folds (default: the run's, else 3)"
    )
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
    parser.add_argument(
        "--threshold",
        type=float,
        default=OCCURRENCE_THRESHOLD,
        help=f"occurrence = intensity >= this (default {OCCURRENCE_THRESHOLD:g})",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="frames per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available; default), cpu, cuda[:N]")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers reading crops (default 0)")
    parser.add_argument(
        "--quiet", action="store_true", help="print the table only (no notes, no list of the files written)"
    )


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from facskit.eval.evaluate import evaluate, write_json, write_predictions

    result = evaluate(
        args.model,
        args.data,
        split=args.split,
        fold=args.fold,
        folds=args.folds,
        threshold=args.threshold,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
    )
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
