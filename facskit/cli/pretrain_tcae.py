"""``facskit pretrain-tcae``: self-supervised TCAE pretraining on unlabelled face videos (CVPR'19)."""

from __future__ import annotations

import argparse

from facskit.cli.options import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from facskit.config_loader import list_presets

    parser.add_argument(
        "config",
        help=f"preset ({', '.join(list_presets('tcae'))}) or a YAML file (trainer: tcae; "
        "base: PRESET starts from a preset)",
    )
    parser.add_argument(
        "--videos",
        required=True,
        help="a prepared cache folder (facskit prepare) or a video file / folder of videos "
        "(faces are tracked and cropped on the fly, one crop per track segment unless data.crop=aligned)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="run folder; an existing run there is resumed"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_overrides(parser, "config overrides, e.g. train.epochs=3 optim.lr=1e-4")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import pretrain_tcae

    config = load_tcae_config(args.config, args.overrides)
    last = pretrain_tcae(config, args.videos, args.out, quiet=args.quiet, overrides=args.overrides)
    if not args.quiet:
        print(f"wrote {last} (inspect: facskit tcae-show {Path(args.out)} --video VIDEO --out DIR)")
    return 0
