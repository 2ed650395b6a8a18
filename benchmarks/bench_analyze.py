"""End-to-end analysis throughput (decode, detect/track, landmarks, align, network, rows) per model, backend
and precision, plus each faster path's AU deltas against fp32.

    python benchmarks/bench_analyze.py                       # lite + paper-size, every available path
    python benchmarks/bench_analyze.py --models bmvc2018-lite --paths torch:fp32 onnx:int8 --serial
    python benchmarks/bench_analyze.py --mallopt             # the same with glibc's mallopt lever on

Models are registry names (fresh weights: throughput does not depend on the values) or checkpoint paths
(facskit/weights/default.ckpt is added when it exists). Each configuration runs in a fresh process, so the
allocator state, thread pools and caches of one do not flatter the next. Prints a Markdown table with the CPU
model, its relevant flags and the load average at the start and end of every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "WolfgangLanger_Pexels.mp4"
DEFAULT_CKPT = Path(__file__).resolve().parents[1] / "facskit" / "weights" / "default.ckpt"
PATHS = ("torch:fp32", "torch:bf16", "onnx:fp32", "onnx:int8")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_one(model: str, path: str, batch: int, pipelined: bool, video: str, frames: int | None) -> dict:
    """One configuration, in this process: warm up (models loaded, ONNX exported/quantised), then time."""
    import warnings

    warnings.simplefilter("ignore")
    from facskit import Detector

    backend, precision = path.split(":")
    detector = Detector(
        model=model, backend=backend, precision=precision, batch_size=batch, pipelined=pipelined
    )
    detector.analyze(video, max_frames=24)  # warm-up: dlib models, ORT session, first allocations
    load0 = loadavg()
    start = time.perf_counter()
    result = detector.analyze(video, max_frames=frames)
    seconds = time.perf_counter() - start
    n = int(result["frame"].nunique())
    return {
        "model": model,
        "path": path,
        "batch": batch,
        "engine": "pipelined" if pipelined else "serial",
        "frames": n,
        "faces": int(result["face_detected"].sum()),
        "seconds": round(seconds, 2),
        "fps": round(n / seconds, 1),
        "load_start": load0,
        "load_end": loadavg(),
        "mallopt": os.environ.get("FACSKIT_BENCH_MALLOPT") == "1",
    }


def verdicts(model: str) -> list[dict]:
    """AU deltas of every faster path vs torch fp32 on the held-out real + synthetic check faces."""
    import warnings

    warnings.simplefilter("ignore")
    from facskit.analyze.model_source import resolve_model
    from facskit.runtime.check import available_candidates, check_backends, verdict_summary

    backend, card = resolve_model(model, "cpu", "torch", "fp32")
    return verdict_summary(
        check_backends(backend.model, card["hash"], "cpu", available_candidates("cpu", "auto", "auto"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["bmvc2018-lite", "bmvc2018"])
    parser.add_argument("--paths", nargs="+", default=list(PATHS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--serial", action="store_true", help="also time the serial loop (torch:fp32, int8)")
    parser.add_argument(
        "--mallopt", action="store_true", help="turn glibc's mallopt lever on in the children"
    )
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--no-verdicts", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if os.environ.get("FACSKIT_BENCH_MALLOPT") == "1":
            from facskit.analyze.engine import tune_malloc

            tune_malloc()
        spec = json.loads(args.child)
        out = verdicts(spec["model"]) if spec.get("verdicts") else run_one(**spec)
        print("RESULT " + json.dumps(out))
        return

    from facskit.device import cpu_flags, cpu_model, has_fast_bf16

    models = list(args.models) + ([str(DEFAULT_CKPT)] if DEFAULT_CKPT.is_file() else [])
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma")))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; flags: {' '.join(flags)}")
    print(f"video: {args.video}; batch {args.batch}; mallopt {'on' if args.mallopt else 'off'}\n")
    env = dict(os.environ, FACSKIT_BENCH_MALLOPT="1" if args.mallopt else "0")

    def child(spec: dict) -> dict | list:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env
        )
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise RuntimeError(f"{spec}: {proc.stderr[-2000:]}")

    rows = []
    print("| model | backend:precision | engine | frames | fps | load (start/end) |")
    print("|---|---|---|---|---|---|")
    for model in models:
        for path in args.paths:
            if path == "torch:bf16" and not has_fast_bf16():
                continue
            engines = [True, False] if args.serial and path in ("torch:fp32", "onnx:int8") else [True]
            for pipelined in engines:
                spec = {"model": model, "path": path, "batch": args.batch, "pipelined": pipelined}
                row = child({**spec, "video": args.video, "frames": args.frames})
                rows.append(row)
                print(
                    f"| {Path(model).name} | {path} | {row['engine']} | {row['frames']} | {row['fps']} | "
                    f"{row['load_start']}/{row['load_end']} |",
                    flush=True,
                )
    if not args.no_verdicts:
        print("\n| model | path | mean abs dAU | max abs dAU | passed | img/s (network, b16) | faces |")
        print("|---|---|---|---|---|---|---|")
        for model in models:
            for v in child({"model": model, "verdicts": True}):
                rows.append({"model": model, **v})
                print(
                    f"| {Path(model).name} | {v['backend']}:{v['precision']} | {v['mean_delta']:.4f} | "
                    f"{v['max_delta']:.4f} | {v['passed']} | {v['images_per_s']:.1f} | {v['faces']} |",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
