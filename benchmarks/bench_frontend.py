"""Face front-end throughput on one core: decode + detect/track + 68 landmarks + head pose + BMVC align.

Usage: python benchmarks/bench_frontend.py [VIDEO] [--repeats N] [--out benchmarks/results/frontend.md]

Runs the same path `facskit faces` and the analyze module use (`FaceFrontEnd.iter_faces`, HOG every 5th
frame on a grey copy, landmarks every frame) plus the BMVC 3-point crop (facskit.align if present, else
cv2.getAffineTransform + warpAffine inline) with torch and OpenCV limited to one thread. Reports frames/s
(best and median of N runs over the whole clip, models loaded once beforehand), frames per CPU-second
(immune to other jobs on a shared machine) and peak RSS. Pin to one core with `taskset -c 0`.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"
# BMVC 2018 template: landmarks 8 (chin), 36, 45 (outer eye corners) -> these points of a 256 crop.
BMVC_SOURCE_POINTS = (8, 36, 45)
BMVC_TEMPLATE = np.float32([(127.6475, 227.8161), (79.1608, 87.0376), (176.8392, 87.0376)])
CROP_SIZE = 256


def _aligner():  # noqa: ANN202 - returns a crop function, whichever implementation exists
    try:
        from facskit.align import AlignSpec, align_face

        spec = AlignSpec(kind="bmvc", size=CROP_SIZE)
        return "facskit.align.align_face", lambda image, landmarks: align_face(image, landmarks, spec).crop
    except ImportError:

        def crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
            matrix = cv2.getAffineTransform(
                landmarks[list(BMVC_SOURCE_POINTS)].astype(np.float32), BMVC_TEMPLATE
            )
            return cv2.warpAffine(image, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)

        return "inline cv2.warpAffine", crop


SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")  # the ones that change CPU speed here


def cpu_model() -> str:
    """lscpu's model name plus which of SIMD_FLAGS the CPU has."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    model = fields.get("Model name", "unknown").strip()
    flags = set(fields.get("Flags", "").split())
    return f"{model} [{' '.join(flag for flag in SIMD_FLAGS if flag in flags) or 'no AVX2'}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown result table here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from facskit.faces import FaceFrontEnd
    from facskit.io import MediaFile, MediaKind

    align_name, crop = _aligner()
    front_end = FaceFrontEnd()
    _ = front_end.video_detector  # load the models before timing
    media = MediaFile(args.video, MediaKind.VIDEO)
    rates, cpu_rates, frames, faces_found = [], [], 0, 0
    for _ in range(args.repeats):
        frames = faces_found = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for _frame, faces in front_end.iter_faces(media):
            frames += 1
            for face in faces:
                if face.success:
                    faces_found += 1
                    crop(_frame.image, face.landmarks)
        rates.append(frames / (time.perf_counter() - start))
        cpu_rates.append(frames / (time.process_time() - cpu_start))
    load_1min = os.getloadavg()[0]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    script = Path(sys.argv[0])
    shown = script.resolve().relative_to(REPO) if script.resolve().is_relative_to(REPO) else script
    command = " ".join(["taskset -c 0 python", str(shown), *sys.argv[1:]])
    lines = [
        "# Face front end (decode + HOG every 5th frame + 68 landmarks + pose + BMVC align), one core",
        "",
        f"- CPU: {cpu_model()} ({platform.machine()}), torch/OpenCV threads = 1, dlib single-threaded",
        f"- video: {args.video.name}, {frames} frames, face fitted in {faces_found} of them",
        f"- align: {align_name}; Python {platform.python_version()}",
        f"- machine load during the run: 1-minute load average {load_1min:.1f} on {os.cpu_count()} CPUs"
        " (other jobs compete for the core when it exceeds the CPU count)",
        f"- command: `{command}`",
        "",
        "frames/s = frames / wall-clock seconds; frames per CPU-second = frames / (user + system CPU seconds"
        " of this process, all its threads), the one-core rate that other jobs on the machine do not dilute.",
        "",
        "| runs | best frames/s | median frames/s | median frames per CPU-second | peak RSS (MB) |",
        "|---|---|---|---|---|",
        f"| {args.repeats} | {max(rates):.1f} | {statistics.median(rates):.1f} | "
        f"{statistics.median(cpu_rates):.1f} | {peak_rss_mb:.0f} |",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
