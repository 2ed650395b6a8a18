"""``facskit crossval CONFIG --data CACHE --folds 3 --out DIR``: train and evaluate every fold, then pool.

    facskit crossval scc-lite --data cache/disfa --folds 3 --out runs/cv-scc train.epochs=2
    facskit crossval bmvc2018-lite --data cache/disfa --out runs/cv-bmvc --quiet

Each fold trains into DIR/fold<k> and is evaluated on its held-out subjects; rerunning the command skips
folds that are finished (predictions and metrics written) and resumes an interrupted one. DIR/metrics.json
holds the pooled and the mean-over-folds metrics, DIR/report.md both tables.
"""

from __future__ import annotations

import argparse

from facskit.cli.options import add_cache_option, add_overrides, add_scoring_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from facskit.config import training_presets

    parser.add_argument(
        "config", help=f"preset ({', '.join(training_presets())}) or YAML path (base: PRESET starts from one)"
    )
    add_cache_option(parser)
    parser.add_argument("--folds", type=int, default=3, help="subject-exclusive folds (default 3)")
    parser.add_argument("--out", required=True, metavar="DIR", help="cross-validation folder (resumable)")
    add_scoring_options(
        parser,
        batch_help="frames per forward pass in evaluation",
        device_help="evaluation device: auto (CUDA when available; default), cpu, cuda[:N]",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="fold checkpoint to evaluate: last (default) or best (chosen on the held-out fold = test set)",
    )
    parser.add_argument("--quiet", action="store_true", help="no training progress output")
    add_overrides(parser, "config overrides for every fold, e.g. train.epochs=2")


def run(args: argparse.Namespace) -> int:
    from facskit.errors import FacskitError
    from facskit.eval.crossval import crossval

    try:
        result = crossval(
            args.config,
            args.data,
            args.out,
            folds=args.folds,
            overrides=args.overrides,
            threshold=args.threshold,
            batch_size=args.batch_size,
            device=args.device,
            checkpoint=args.checkpoint,
            quiet=args.quiet,
        )
    except FloatingPointError as error:  # a fold's loss became NaN or Inf: that training diverged
        raise FacskitError(f"a fold's training diverged ({error}); finished folds are kept") from None
    print(result.markdown)
    skipped = f" ({len(result.skipped_folds)} finished earlier, skipped)" if result.skipped_folds else ""
    print(f"{args.folds} folds{skipped}; metrics: {args.out}/metrics.json, report: {args.out}/report.md")
    return 0
