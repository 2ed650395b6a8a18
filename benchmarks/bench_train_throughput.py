"""Does the data pipeline starve training? Images/s with the real loader against tensors already in memory.

    python benchmarks/bench_train_throughput.py --cache CACHE                       # CPU, 2 threads
    python benchmarks/bench_train_throughput.py --cache CACHE --device cuda --batch-size 64
    python benchmarks/bench_train_throughput.py --cache CACHE --out benchmarks/results/train_throughput.md

For each model and loader setting, three rates over the same number of optimiser steps:

* ``loader``: batches/s of the real `HeatmapDataset` + `DataLoader` alone (mmap'd cache shards, augmentation,
  Gaussian targets, resize), i.e. the most the pipeline can feed;
* ``in memory``: forward + backward + Adam step on batches prepared beforehand (no data work at all);
* ``real``: the two together, as `facskit train` runs them.

The loader does not starve the model when ``real`` is close to ``in memory`` (ratio near 1). The batches
are the loop's own (same dataset class, same augmentation config, same loss), so the ratio is what a user's
training run sees.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _batches(loader, steps: int):
    it = iter(loader)
    for _ in range(steps):
        yield next(it)


def _step(model, optimizer, batch, device, foreground_weight: float, amp: bool = False) -> None:
    import torch

    from facskit.train.loop import masked_mse

    images = batch["image"].to(device, non_blocking=True)
    targets = batch["heatmaps"].to(device, non_blocking=True)
    weights = batch["weights"].to(device, non_blocking=True)
    # amp: bf16 autocast as `facskit train` runs on CUDA with train.amp (its default)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        maps = model(images)
    loss = masked_mse(maps.float(), targets, weights, foreground_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    model_name: str,
    cache_dir: str,
    workers: int,
    batch_size: int,
    steps: int,
    device_name: str,
    amp: bool = False,
):
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from facskit.config import AugmentConfig
    from facskit.data.cache import PreparedCache
    from facskit.models import create_model
    from facskit.train.dataset import HeatmapDataset, StepSampler

    device = torch.device(device_name)
    cache = PreparedCache(cache_dir)
    model = create_model(model_name, aus=tuple(int(a) for a in cache.aus)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    frames = np.arange(len(cache))
    dataset = HeatmapDataset(cache, frames, model.spec, AugmentConfig(), seed=0)
    options = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=4)

    def loader() -> DataLoader:
        return DataLoader(dataset, batch_sampler=StepSampler(len(frames), batch_size, seed=0), **options)

    # loader alone (after one warm-up batch, which also starts the workers)
    source = loader()
    batches = _batches(source, steps + 1)
    held = [next(batches)]
    began = time.perf_counter()
    for batch in batches:
        held.append(batch)
    loader_rate = steps * batch_size / (time.perf_counter() - began)
    del source

    # in memory: the same batches, already built
    model.train()
    _step(model, optimizer, held[0], device, 10.0, amp)  # warm-up
    _sync(device)
    began = time.perf_counter()
    for batch in held[1:]:
        _step(model, optimizer, batch, device, 10.0, amp)
    _sync(device)
    memory_rate = steps * batch_size / (time.perf_counter() - began)
    del held

    # real: loader and model together
    batches = _batches(loader(), steps + 1)
    _step(model, optimizer, next(batches), device, 10.0, amp)
    _sync(device)
    began = time.perf_counter()
    for batch in batches:
        _step(model, optimizer, batch, device, 10.0, amp)
    _sync(device)
    real_rate = steps * batch_size / (time.perf_counter() - began)
    return loader_rate, memory_rate, real_rate


def main() -> None:
    import os

    import torch

    from facskit.device import cpu_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="a prepared cache (facskit prepare)")
    parser.add_argument("--models", default="bmvc2018-tiny,bmvc2018-lite")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader workers to try")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the trainer")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast, as `facskit train` on CUDA")
    parser.add_argument("--out", help="write the markdown table here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_model()
    lines = [
        "# Training throughput: real loader vs batches in memory (benchmarks/bench_train_throughput.py)",
        "",
        f"Device: {where}; {os.cpu_count()} CPUs; trainer threads {args.threads}; batch {args.batch_size}; "
        f"{args.steps} steps per rate; {'bf16 autocast; ' if args.amp else ''}"
        f"torch {torch.__version__}; load average "
        f"{os.getloadavg()[0]:.1f} at start.",
        f"Command: `python benchmarks/bench_train_throughput.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | loader workers | loader alone img/s | in memory img/s | real img/s | real / in memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.models.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            loader_rate, memory_rate, real_rate = measure(
                name, args.cache, workers, args.batch_size, args.steps, args.device, args.amp
            )
            row = (
                f"| {name} | {workers} | {loader_rate:.1f} | {memory_rate:.1f} | {real_rate:.1f} | "
                f"{real_rate / memory_rate:.2f} |"
            )
            lines.append(row)
            print(row, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
