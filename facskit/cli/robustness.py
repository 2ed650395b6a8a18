"""``facskit robustness RUN --data CACHE --noise 0,3,6,9,13,20``: ICC against landmark noise (BMVC'18).

    facskit robustness runs/bmvc-f0 --data cache/disfa --noise 0,3,6,9,13,20 --out runs/bmvc-f0/robustness

Adds Gaussian noise (sigma in px of the 256 crop) to each test frame's landmarks, re-aligns the crop from
them, runs the model and tabulates ICC per AU per sigma; writes robustness.{json,csv,md,png} to --out.
"""

from __future__ import annotations

import argparse

from facskit.cli.options import add_cache_option, add_fold_options, add_scoring_options, evaluation_keywords


def _levels(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN", help="run folder (facskit train --out) or checkpoint file")
    add_cache_option(parser)
    parser.add_argument(
        "--noise",
        type=_levels,
        default=[0.0, 3.0, 6.0, 9.0, 13.0, 20.0],
        help="sigmas in px (default 0,3,6,9,13,20)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: RUN/robustness, or ./robustness)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the landmark noise (default 0)")
    add_fold_options(parser, "the run's")
    parser.add_argument(
        "--split", choices=("test", "train", "all"), default="test", help="frames to use (default test)"
    )
    add_scoring_options(parser)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers re-aligning crops (default 0)"
    )
    parser.add_argument("--quiet", action="store_true", help="print the table only (not the files written)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facskit.eval.robustness import robustness, robustness_markdown, write_robustness

    result = robustness(args.model, args.data, args.noise, seed=args.seed, **evaluation_keywords(args))
    model = Path(args.model)
    out = Path(args.out) if args.out else (model / "robustness" if model.is_dir() else Path("robustness"))
    paths = write_robustness(result, out)
    print(robustness_markdown(result))
    if not args.quiet:
        print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0
