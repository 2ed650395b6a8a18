"""``facskit import-weights``: the BMVC'18 authors' ``AUdetector.pth.tar`` as a facskit checkpoint.

The result loads with ``load_checkpoint``/``--model model.ckpt`` like any trained model: AUs 6, 10, 12, 14,
17 (FERA 2015 / BP4D), BMVC alignment, RGB/255 input, readout = map maximum clipped to [0, 5].
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facskit.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="the authors' AUdetector.pth.tar")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="facskit checkpoint file to write (e.g. bmvc2018.ckpt)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read with full pickle if the file holds more than tensors and plain data (trusted files only)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace) -> int:
    from facskit.models.checkpoint import import_audetector, save_checkpoint

    if args.out.exists() and not args.force:
        raise UsageError(f"{args.out} exists; pass --force to overwrite it")
    model = import_audetector(args.source, allow_pickle=args.allow_pickle)
    training = {
        "source": "Sanchez-Lozano et al., BMVC 2018, released AUdetector.pth.tar",
        "dataset": "BP4D (FERA 2015)",
        "imported_from": args.source.name,
    }
    save_checkpoint(args.out, model, {"training": training})
    n_params = sum(p.numel() for p in model.parameters())
    aus = ", ".join(f"AU{a:02d}" for a in model.spec.aus)
    if not args.quiet:
        print(f"wrote {args.out}: bmvc2018 ({n_params / 1e6:.2f} M parameters), {aus}")
    return 0
