"""``facskit train``: train or resume a heatmap AU model from a preset or YAML config.

    facskit train scc-bp4d --data cache/bp4d --out runs/scc-f0 --fold 0 optim.lr=1e-3 train.epochs=3
    torchrun --standalone --nproc_per_node=4 -m facskit train scc-bp4d --data cache/bp4d --out runs/x

Running it again with the same --out resumes from ``last.ckpt`` (the architecture and optimisation come
from the checkpoint). ``facskit/train/dist.py`` is the multi-GPU / multi-node runbook.
"""

from __future__ import annotations

import argparse

from facskit.cli.options import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from facskit.config import training_presets

    parser.add_argument(
        "config", help=f"preset ({', '.join(training_presets())}) or YAML path (base: PRESET starts from one)"
    )
    parser.add_argument("--data", required=True, metavar="CACHE", help="prepared cache (facskit prepare)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder; an existing run is resumed")
    parser.add_argument("--fold", type=int, default=None, metavar="K", help="held-out fold (sets data.fold)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_overrides(parser, "config overrides: optim.lr=1e-3 train.epochs=3")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facskit.config import load_config
    from facskit.errors import FacskitError
    from facskit.train.loop import train

    overrides = [f"data.cache={args.data}", *args.overrides]
    if args.fold is not None:
        overrides.append(f"data.fold={args.fold}")
    config = load_config(args.config, overrides)
    try:
        result = train(config, args.out, quiet=args.quiet)
    except FloatingPointError as error:  # the loss became NaN or Inf: the run diverged, not a facskit bug
        last = Path(args.out) / "last.ckpt"
        kept = f"; {last} holds the last state saved before it" if last.is_file() else ""
        raise FacskitError(f"training diverged ({error}){kept}") from None
    if not args.quiet:
        best = f", best checkpoint {result.best_checkpoint}" if result.best_checkpoint else ""
        print(f"{result.last_checkpoint} after {result.global_step} steps{best}")
    return 0
