"""``facskit tcae-show``: draw TCAE source/target/AU-changed/pose-changed faces, flows and masks."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a facskit pretrain-tcae run folder (or one of its .ckpt files)")
    parser.add_argument(
        "--video", required=True, help="a video file (faces tracked and aligned) or a prepared cache"
    )
    parser.add_argument("--pairs", type=int, default=4, help="number of pairs (rows), default 4")
    parser.add_argument("--gap", type=int, default=10, help="frames between source and target, default 10")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG grids")
    parser.add_argument("--cell", type=int, default=128, help="panel size in pixels, default 128")
    parser.add_argument("--epoch", type=int, default=None, help="use epoch-NNN.ckpt instead of last.ckpt")
    parser.add_argument(
        "--crop",
        choices=("aligned", "track"),
        default="aligned",
        help="a video's pairs: each frame aligned (default), or both cropped as the source frame so head "
        "motion shows (for models pretrained on a `facskit prepare --crop track` cache)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quiet", action="store_true", help="print the flow shares only (not the files written)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facskit.errors import UsageError
    from facskit.tcae.pretrain import load_tcae
    from facskit.tcae.show import pairs_from_cache, pairs_from_video, write_grids

    model, _ = load_tcae(args.run, epoch=args.epoch)
    source = Path(args.video)
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    if source.is_dir():
        from facskit.data.cache import PreparedCache

        pairs = list(pairs_from_cache(PreparedCache(source), args.pairs, args.gap, args.seed))
    else:
        pairs = list(pairs_from_video(source, args.pairs, args.gap, crop=args.crop))
    if not pairs:
        raise UsageError(f"{source}: no pair of frames with a tracked face {args.gap} frames apart")
    paths = write_grids(model, pairs, args.out, stem=source.stem, cell=args.cell)
    if not args.quiet:
        for path in paths:
            print(path)
    if paths[-1].suffix == ".csv":
        _print_mean_shares(paths[-1])
    return 0


def _print_mean_shares(path) -> None:
    """One line from the shares CSV's mean row: where the AU and the pose flow lie on the faces."""
    import csv

    with open(path, newline="") as handle:
        mean = list(csv.DictReader(handle))[-1]
    parts = [
        f"{name} {float(mean[f'{name}: mobile']):.0%} / {float(mean[f'{name}: outside']):.0%}"
        for name in ("area", "AU", "gated AU", "pose")
    ]
    print("in the mobile parts / outside the face (mean over the pairs): " + ", ".join(parts))
