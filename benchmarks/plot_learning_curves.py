"""Validation learning curves of several training runs in one PNG (mean ICC and MAE per epoch).

    python benchmarks/plot_learning_curves.py --out docs/img/curves.png \
        "lite, 48 epochs=runs/a/metrics.csv" "paper size=runs/b/metrics.csv"

Each argument is ``label=metrics.csv`` (the file `facskit train` writes in its run folder). The x axis is the
number of training frames seen, so runs with different batch sizes or epoch lengths line up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="label=path/to/metrics.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=16, help="frames per step, for the x axis")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for item in args.runs:
        label, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"expected label=metrics.csv, got {item!r}")
        table = pd.read_csv(path)
        frames = table["step"] * args.batch_size / 1000
        left.plot(frames, table["val_icc"], label=label)
        right.plot(frames, table["val_mae"], label=label)
    for axis, name in ((left, "mean ICC(3,1), held-out fold"), (right, "mean MAE, held-out fold")):
        axis.set_xlabel("training frames seen (thousands)")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
