"""Options several commands share, defined once so that they are spelled, defaulted and explained alike.

Not a command (``COMMANDS`` in :mod:`facskit.cli` lists those). Light to import: ``facskit --help`` and a
command's ``--help`` load no torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from facskit.aus import OCCURRENCE_THRESHOLD

DEVICE_HELP = "auto (CUDA when available; default), cpu, cuda[:N]"


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    """``--data CACHE``: the prepared cache a model is evaluated on."""
    parser.add_argument(
        "--data", required=True, metavar="CACHE", help="prepared cache folder (facskit prepare)"
    )


def add_fold_options(parser: argparse.ArgumentParser, folds_default_help: str) -> None:
    """``--fold K --folds N``: a held-out fold other than the run's (``folds_default_help``: what
    ``--folds`` is when not given)."""
    parser.add_argument(
        "--fold", type=int, default=None, metavar="K", help="held-out fold (default: the run's)"
    )
    folds_help = f"number of folds (default: {folds_default_help})"
    parser.add_argument("--folds", type=int, default=None, metavar="N", help=folds_help)


def add_device_option(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    """``--device``, ``auto`` by default everywhere."""
    parser.add_argument("--device", default="auto", help=help)


def add_scoring_options(
    parser: argparse.ArgumentParser,
    batch_help: str = "frames per forward pass (default 32)",
    device_help: str = DEVICE_HELP,
) -> None:
    """``--threshold --batch-size --device`` of the commands that run a model over a cache and score it."""
    parser.add_argument(
        "--threshold",
        type=float,
        default=OCCURRENCE_THRESHOLD,
        help=f"occurrence = intensity >= this (default {OCCURRENCE_THRESHOLD:g})",
    )
    parser.add_argument("--batch-size", type=int, default=32, help=batch_help)
    add_device_option(parser, device_help)


def evaluation_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The frame selection and scoring keywords of :func:`facskit.eval.evaluate.evaluate` and
    :func:`facskit.eval.robustness.robustness`, from the options above (and ``--split``, ``--workers``)."""
    return {
        "split": args.split,
        "fold": args.fold,
        "folds": args.folds,
        "threshold": args.threshold,
        "batch_size": args.batch_size,
        "device": args.device,
        "workers": args.workers,
    }


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """The trailing ``KEY=VALUE`` config overrides of the training commands. They may also come before
    the options (``CONFIG key=value --data D``): intermixed parsing accepts both orders, here as in
    :func:`facskit.cli.main`."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]
