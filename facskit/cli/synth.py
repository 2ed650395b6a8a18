"""``facskit synth``: generate a labelled synthetic face/AU dataset in the DISFA, BP4D or folder layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument(
        "--format", choices=("disfa", "bp4d", "folder"), default="disfa", help="on-disk layout"
    )
    parser.add_argument("--subjects", type=int, default=2, help="number of synthetic people")
    parser.add_argument("--frames", type=int, default=100, help="frames per sequence (20 fps)")
    parser.add_argument("--sequences", type=int, default=1, help="tasks per subject for bp4d/folder (1-8)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels, even, 256..512")
    parser.add_argument(
        "--textures",
        type=Path,
        default=None,
        help="folder of real face images/videos to animate instead of the parametric face",
    )
    parser.add_argument(
        "--activity",
        type=float,
        default=0.45,
        help="expected fraction of frames inside an expression episode (0.45: DISFA-like, mostly neutral; "
        "1-3: overlapping episodes, more AU examples for training a general model)",
    )
    parser.add_argument(
        "--head-motion",
        type=float,
        default=1.0,
        help="scale of the head's motion within a sequence (1: default, 0: still; the mean pose is kept)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes rendering sequences in parallel (same bytes as 1)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from facskit.synth.writers import write_dataset

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
