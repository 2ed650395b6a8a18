"""``facskit synth --out DIR``: generate a labelled synthetic face/AU dataset in the DISFA, BP4D or folder
layout. The output folder as a positional argument (``facskit synth DIR``) still works for one release."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def _number(kind: type[int] | type[float], low: float, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind(text)``, finite and ``>= low`` (``> low`` when ``strict``), so ``nan``,
    ``inf`` or a negative seed is a usage error naming the option instead of a traceback from numpy."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if strict else '>='} {low:g}, got {text!r}"
            )
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (created)")
    # The older spelling `facskit synth DIR`: hidden, with a note (see run).
    parser.add_argument("out_positional", nargs="?", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--format", choices=("disfa", "bp4d", "folder"), default="disfa", help="on-disk layout"
    )
    parser.add_argument("--subjects", type=_number(int, 1), default=2, help="number of synthetic people")
    parser.add_argument("--frames", type=_number(int, 1), default=100, help="frames per sequence (20 fps)")
    parser.add_argument(
        "--sequences", type=_number(int, 1), default=1, help="tasks per subject for bp4d/folder (1-8)"
    )
    parser.add_argument("--seed", type=_number(int, 0), default=0, help="same seed, same bytes")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels, even, 256..512")
    parser.add_argument(
        "--textures",
        type=Path,
        default=None,
        help="folder of real face images/videos to animate instead of the parametric face",
    )
    parser.add_argument(
        "--activity",
        type=_number(float, 0, strict=True),
        default=0.45,
        help="expected fraction of frames inside an expression episode (0.45: DISFA-like, mostly neutral; "
        "1-3: overlapping episodes, more AU examples for training a general model)",
    )
    parser.add_argument(
        "--head-motion",
        type=_number(float, 0),
        default=1.0,
        help="scale of the head's motion within a sequence (1: default, 0: still; the mean pose is kept)",
    )
    parser.add_argument(
        "--workers",
        type=_number(int, 1),
        default=1,
        help="processes rendering sequences in parallel (same bytes as 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    import sys

    from facskit.errors import UsageError
    from facskit.synth.writers import write_dataset

    if args.out_positional is not None:
        if args.out is not None:
            raise UsageError(
                f"two output folders: {args.out_positional} and --out {args.out}; give --out only"
            )
        print(
            "facskit synth: note: the positional output folder is deprecated and will be removed in the next "
            "release; use --out DIR",
            file=sys.stderr,
        )
        args.out = args.out_positional
    if args.out is None:
        raise UsageError("--out DIR is required")

    manifest = write_dataset(
        args.out,
        args.format,
        args.subjects,
        args.frames,
        args.seed,
        args.size,
        args.textures,
        args.sequences,
        args.quiet,
        args.activity,
        args.head_motion,
        args.workers,
    )
    if not args.quiet:
        print(f"wrote {manifest.parent} ({args.format}); ground truth in synth_ground_truth.parquet")
    return 0
