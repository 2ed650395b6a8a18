"""Can a model fit 64 fixed frames, and how fast? ICC on those frames after N Adam steps (the training loss).

    python benchmarks/overfit_check.py --cache CACHE --model scc-lite --steps 200
    python benchmarks/overfit_check.py --cache CACHE --model scc-lite --steps 200 --arch scc=false,false,false

The diagnosis behind the SCC head's output init (docs/design_notes.md, "SCC from scratch"): a network that
cannot fit 64 frames in a few hundred steps will not learn anything in a CPU-budget cross-validation either,
and the number of steps it spends on a plateau (ICC ~0, maps nearly input-independent) is visible here in
about a minute per 100 steps on one core. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parse_arch(text: str) -> dict:
    """``scc=false,false,false;k=3;nodes=pixels`` -> {"scc": (False,) * 3, "k": 3, "nodes": "pixels"}."""
    out: dict = {}
    for item in filter(None, text.split(";")):
        key, value = item.split("=", 1)
        parts = [v.strip().lower() for v in value.split(",")]
        parsed = [
            p == "true" if p in ("true", "false") else int(p) if p.lstrip("-").isdigit() else p for p in parts
        ]
        out[key.strip()] = tuple(parsed) if len(parsed) > 1 else parsed[0]
    return out


def main() -> None:
    import numpy as np
    import torch

    from facskit.data.cache import PreparedCache
    from facskit.metrics import icc31
    from facskit.models import create_model
    from facskit.train.dataset import HeatmapDataset
    from facskit.train.loop import masked_mse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--model", default="scc-lite")
    parser.add_argument("--arch", default="", help="architecture overrides, e.g. 'scc=false,false,false'")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--foreground-weight", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    cache = PreparedCache(args.cache)
    model = create_model(args.model, aus=tuple(int(a) for a in cache.aus), **_parse_arch(args.arch))
    rng = np.random.default_rng(args.seed)
    frames = rng.choice(len(cache), args.frames, replace=False)
    dataset = HeatmapDataset(cache, frames, model.spec, augment=None)
    items = [dataset[(0, i)] for i in range(len(frames))]
    images = torch.stack([item["image"] for item in items])
    targets = torch.stack([item["heatmaps"] for item in items])
    weights = torch.stack([item["weights"] for item in items])
    truth = torch.stack([item["intensities"] for item in items]).numpy()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    began = time.perf_counter()
    report_every = max(1, args.steps // 8)
    for step in range(1, args.steps + 1):
        batch = torch.from_numpy(rng.choice(len(frames), 16, replace=False))
        model.train()
        loss = masked_mse(model(images[batch]), targets[batch], weights[batch], args.foreground_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % report_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                pred = model.intensities(model(images)).numpy()
            icc = np.nanmean([icc31(pred[:, a], truth[:, a]) for a in range(truth.shape[1])])
            print(
                f"step {step}: loss {loss.item():.4f}, ICC on the {len(frames)} frames {icc:.3f}, "
                f"prediction std {pred.std(0).mean():.2f}, {time.perf_counter() - began:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
