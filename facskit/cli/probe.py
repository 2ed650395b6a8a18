"""``facskit probe``: linear probe / fine-tune of TCAE embeddings for AU occurrence with few labels."""

from __future__ import annotations

import argparse

from facskit.cli import add_deprecated_alias
from facskit.cli.options import add_device_option


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of fractions: {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1], got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a facskit pretrain-tcae run folder (or one of its .ckpt files)")
    parser.add_argument("--data", required=True, help="labelled prepared cache (facskit prepare)")
    parser.add_argument("--folds", type=int, default=3, help="subject-exclusive folds (default 3)")
    parser.add_argument("--epoch", type=int, default=None, help="use epoch-NNN.ckpt instead of last.ckpt")
    parser.add_argument(
        "--finetune", action="store_true", help="also fine-tune the encoder, and train it from scratch"
    )
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument(
        "--finetune-min-steps",
        type=int,
        default=200,
        help="fine-tuning steps at least (at 1%% labels an epoch is one batch; default 200)",
    )
    parser.add_argument(
        "--finetune-head",
        choices=("random", "linear"),  # facskit.tcae.probe.FINETUNE_HEADS (not imported: it loads torch)
        default="linear",
        help="fine-tuning starts the head at the linear probe of the network's own frozen features (LP-FT, "
        "the default; scratch is then trained both ways) or at random",
    )
    parser.add_argument(
        "--subject-norm",
        action="store_true",
        help="linear AU probes on features minus each subject's mean (computed on unlabelled frames)",
    )
    parser.add_argument(
        "--label-fraction", type=_fractions, default=[1.0], help="training-label fractions, e.g. 0.01,0.1,1"
    )
    parser.add_argument(
        "--label-draws",
        type=int,
        default=1,
        help="for fractions below 1, average over this many random draws of the labelled frames per fold "
        "(1%% of a small set is a few dozen frames; one draw is noisy). Default 1",
    )
    add_device_option(parser)
    parser.add_argument("--seed", type=int, default=0)
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--out", metavar="FILE", default=None, help="the results JSON file (default: RUN/probe.json)"
    )
    add_deprecated_alias(out, "--json", "--out")
    parser.add_argument(
        "--quiet", action="store_true", help="print the table only (no progress, not the file written)"
    )


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from facskit.data.cache import PreparedCache
    from facskit.device import resolve_device
    from facskit.tcae.pretrain import checkpoint_path, load_tcae
    from facskit.tcae.probe import format_probe_table, run_probe

    device = resolve_device(args.device)
    model, info = load_tcae(args.run, epoch=args.epoch, device=device)
    cache = PreparedCache(args.data)
    result = run_probe(
        model,
        cache,
        folds=args.folds,
        fractions=args.label_fraction,
        finetune=args.finetune,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        finetune_min_steps=args.finetune_min_steps,
        finetune_head=args.finetune_head,
        subject_norm=args.subject_norm,
        label_draws=args.label_draws,
        seed=args.seed,
        device=device,
        log=(lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr)),
    )
    print(format_probe_table(result))
    path = Path(args.out) if args.out else checkpoint_path(args.run, args.epoch).parent / "probe.json"
    payload = {
        "checkpoint": info["path"],
        "step": info.get("step"),
        "data": str(args.data),
        **result.to_dict(),
    }
    path.write_text(json.dumps(payload, indent=2))
    if not args.quiet:
        print(f"\nwrote {path}", file=sys.stderr)
    return 0
