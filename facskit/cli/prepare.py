"""``facskit prepare FORMAT SRC --out CACHE``: read a dataset, detect/align every frame, write the cache.

Examples::

    facskit prepare disfa /data/DISFA --out cache/disfa --workers 8
    facskit prepare bp4d /data/FERA2015 --out cache/bp4d
    facskit prepare folder my_videos/ --out cache/mine --landmarks detect

Interrupt it at any time (Ctrl-C, or a killed job) and run the same command again: finished sequences are
kept and the rest is redone. Exit code 0 when every sequence was prepared (frames without a face are
recorded with a reason and do not fail the run), 1 when a sequence failed.
"""

from __future__ import annotations

import argparse
import sys

FORMATS = ("disfa", "bp4d", "fera2015", "folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, type=str.lower, help="dataset layout (fera2015 = bp4d)")
    parser.add_argument("src", help="dataset root folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="cache folder to create or resume")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 1 = no pool)")
    parser.add_argument(
        "--landmarks",
        choices=("dataset", "detect"),
        default="dataset",
        help="use the dataset's own landmarks where it has them (DISFA), or always detect with dlib",
    )
    parser.add_argument("--labels", help="folder format: the label CSV (default: SRC/labels.csv)")
    parser.add_argument(
        "--shard-size", type=int, default=1024, help="crops per .npy shard (default 1024, ~200 MB at 256 px)"
    )
    parser.add_argument(
        "--detect-every", type=int, default=5, help="run the face detector every N frames, track between"
    )
    parser.add_argument(
        "--crop",
        choices=("aligned", "track"),
        default="aligned",
        help="aligned: every frame aligned on its landmarks (what AU models train on; default); track: one "
        "crop per sequence, so head motion stays in the frames (TCAE pretraining, like the paper's tracks)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line; summary only")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facskit.data import read_bp4d, read_disfa, read_folder
    from facskit.data.prepare import prepare_dataset
    from facskit.errors import UsageError

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {args.shard_size}")
    if args.detect_every < 1:
        raise UsageError(f"--detect-every must be at least 1, got {args.detect_every}")
    src = Path(args.src)
    if not src.is_dir():
        raise UsageError(f"dataset root {src} does not exist or is not a folder")
    if args.format == "disfa":
        index = read_disfa(src)
    elif args.format in ("bp4d", "fera2015"):
        index = read_bp4d(src)
    else:
        index = read_folder(src, labels=args.labels)
    if not args.quiet:
        print(index.summary().splitlines()[0], file=sys.stderr)
    summary = prepare_dataset(
        index,
        args.out,
        workers=args.workers,
        landmarks=args.landmarks,
        shard_size=args.shard_size,
        detect_every=args.detect_every,
        crop=args.crop,
        progress=not args.quiet,
    )
    print(summary.text())
    print(f"cache: {args.out}")
    return 1 if summary.failed_sequences else 0
