"""The network stage of `facskit analyze` on a GPU: frames/s per model, precision and batch, GPU utilisation,
bf16-vs-fp32 AU deltas on real faces, and where the time goes (upload, preprocessing, network, readout).

    # on a CPU machine with the face models installed: aligned crops of the real video, as JPEG (small)
    python benchmarks/bench_gpu.py --make-crops gpu_carry/crops   # ../shared/media/WolfgangLanger_Pexels.mp4
    # on the GPU machine (no dlib model needed there): the crops travel, the models are built there
    python benchmarks/bench_gpu.py --crops gpu_carry/crops --json out.json

The landmark model (100 MB) and PyAV are not needed on the GPU side: the crops are the pipeline's own
aligned faces, made once on the CPU. Each configuration is timed as the pipeline runs it (uint8 crops in,
AU intensities out, `TorchBackend.heatmaps` + the readout) and as the network alone on a tensor already on
the GPU, so the gap between the two is the host-side cost. Timings are medians of repeated runs after a
warm-up, with `torch.cuda.synchronize()` before each clock read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = ["default", "bmvc2018", "scc-resnet50", "bmvc2018-lite", "scc-lite"]
DEFAULT_CKPT = ROOT / "facskit" / "weights" / "default.ckpt"
VIDEO = ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"


def make_crops(out: Path, video: str, per_alignment: int) -> None:
    """Aligned crops of ``video`` for every alignment the benchmarked models use, as JPEG (quality 95)."""
    import cv2

    from facskit.models import create_model, load_model
    from facskit.runtime.quantize import real_face_crops

    out.mkdir(parents=True, exist_ok=True)
    specs = {}
    for name in DEFAULT_MODELS:
        model = load_model(DEFAULT_CKPT) if name == "default" else create_model(name)
        specs.setdefault(model.spec.alignment, model.spec)
    for alignment, spec in specs.items():
        crops = real_face_crops(spec, [video], "check", per_alignment)
        for i, crop in enumerate(crops):
            path = out / f"{alignment}_{i:03d}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        print(f"{alignment}: {len(crops)} crops")


def read_crops(folder: Path, alignment: str) -> np.ndarray:
    import cv2

    files = sorted(folder.glob(f"{alignment}_*.jpg"))
    if not files:
        raise SystemExit(f"no {alignment} crops in {folder}; make them with --make-crops")
    return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])


class UtilisationSampler:
    """GPU utilisation (%) sampled by NVML every 50 ms while a `with` block runs."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()

    def __enter__(self) -> UtilisationSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as error:  # noqa: BLE001 - utilisation is a nice-to-have
            print(f"no NVML ({error}); utilisation not sampled", file=sys.stderr)
            return self

        def loop() -> None:
            while not self._stop.is_set():
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                time.sleep(0.05)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def timed(function, seconds: float, minimum: int = 5) -> float:
    """Median seconds per call of ``function`` (which must synchronise), after two warm-up calls."""
    import torch

    function()
    function()
    torch.cuda.synchronize()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < minimum or time.perf_counter() - began < seconds:
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch_of(crops: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(crops))
    return np.ascontiguousarray(np.concatenate([crops] * reps)[:size])


def bench_model(name: str, crops_folder: Path, batches: list[int], seconds: float) -> list[dict]:
    import torch

    from facskit.models import create_model, load_model
    from facskit.models.spec import intensity_from_heatmaps, preprocess
    from facskit.runtime.backends import TorchBackend
    from facskit.runtime.check import au_deltas, intensities

    model = load_model(DEFAULT_CKPT) if name == "default" else create_model(name)
    label = f"default ({model.spec.name})" if name == "default" else name
    crops = read_crops(crops_folder, model.spec.alignment)
    rows = []
    reference = intensities(TorchBackend(model, "cuda", "fp32"), crops, batch=64)
    for precision in ("fp32", "bf16"):
        backend = TorchBackend(model, "cuda", precision)
        delta = au_deltas(reference, intensities(backend, crops, batch=64)) if precision == "bf16" else (0, 0)
        for size in batches:
            batch = batch_of(crops, size)

            def stage(batch=batch, backend=backend) -> None:
                maps = backend.heatmaps(batch)
                intensity_from_heatmaps(torch.from_numpy(maps), backend.spec.convention)

            x_gpu = preprocess(torch.from_numpy(batch).cuda(), model.spec)
            if precision == "bf16":
                x_gpu = x_gpu.contiguous(memory_format=torch.channels_last)

            def network(x=x_gpu, backend=backend, precision=precision) -> None:
                with (
                    torch.inference_mode(),
                    torch.autocast("cuda", torch.bfloat16, enabled=precision == "bf16"),
                ):
                    backend.model(x)

            def cpu_preprocess(batch=batch) -> None:
                preprocess(batch, model.spec)

            stage_s = timed(stage, seconds)
            with UtilisationSampler() as sampler:
                timed(stage, min(seconds, 2.0))
            network_s = timed(network, seconds)
            row = {
                "model": label,
                "precision": precision,
                "batch": size,
                "stage_fps": size / stage_s,
                "network_fps": size / network_s,
                "gpu_util_pct": sampler.mean,
                "cpu_preprocess_ms": 1000 * timed(cpu_preprocess, 0.5) if size == 64 else None,
                "mean_delta": delta[0],
                "max_delta": delta[1],
                "input": model.spec.input_size,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        del backend
        torch.cuda.empty_cache()
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | precision | batch | stage frames/s | network frames/s | GPU util % | mean / max dAU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        util = "-" if r["gpu_util_pct"] is None else f"{r['gpu_util_pct']:.0f}"
        delta = "ref" if r["precision"] == "fp32" else f"{r['mean_delta']:.4f} / {r['max_delta']:.4f}"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['batch']} | {r['stage_fps']:.0f} "
            f"| {r['network_fps']:.0f} | {util} | {delta} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-crops", type=Path, help="write aligned JPEG crops here and stop (CPU side)")
    parser.add_argument(
        "--video", default=str(ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4")
    )
    parser.add_argument("--per-alignment", type=int, default=64)
    parser.add_argument("--crops", type=Path, help="folder written by --make-crops")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--batches", default="1,8,64,256")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing budget per measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.make_crops:
        make_crops(args.make_crops, args.video, args.per_alignment)
        return

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA device")
    from facskit.device import cpu_model

    device = torch.cuda.get_device_name(0)
    print(f"# {device}; torch {torch.__version__}; host CPU {cpu_model()}", flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for name in args.models:
        rows.extend(bench_model(name, args.crops, batches, args.seconds))
    print(markdown(rows))
    if args.json:
        args.json.write_text(
            json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
