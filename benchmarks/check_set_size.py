"""How many faces the backend check and the int8 calibration need: the evidence behind their set sizes.

A first backend check spends most of its time on faces: gathering them, collecting int8 activation ranges
over the calibration set, and running every candidate network over the check set. This measures what
smaller sets cost in accuracy, on faces neither set contains:

* **calibration size**: an int8 model quantised on the first k real + k synthetic calibration faces, for
  several k, compared with ONNX fp32 on a held-out set (real faces of other people from
  ``../shared/media`` and ``../shared/realfaces``, plus the synthetic check faces): mean, 99th percentile and
  max |AU - AU_fp32| on the 0-5 scale, and the calibration time;
* **check size**: the (mean, max) the check would report on its first k real + k synthetic faces, for the
  same int8 model, against the same numbers over the held-out set.

    python benchmarks/check_set_size.py --model facskit/weights/default.ckpt --model paper.ckpt

Needs ../shared/media and ../shared/realfaces (exits saying so when they are absent).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HELDOUT_VIDEOS = [
    "media/WolfgangLanger_Pexels.mp4",
    "realfaces/blink_pexels/pexels-ron-lach-7817602.mp4",
    "realfaces/grid_ccby/bbaf2n.mpg",
    "realfaces/grid_ccby/lrwp9a.mpg",
    "realfaces/obama_weekly_pd/obama_weekly_1.mp4",
    "realfaces/obama_weekly_pd/obama_weekly_4.mp4",
    "realfaces/tears_of_steel_ccby",
]
HELDOUT_PER_VIDEO = 16


def heldout_videos() -> list[Path]:
    out = []
    for name in HELDOUT_VIDEOS:
        path = SHARED / name
        out += sorted(p for p in path.iterdir() if p.suffix in (".mp4", ".mov")) if path.is_dir() else [path]
    return [p for p in out if p.is_file()]


def deltas(reference: np.ndarray, got: np.ndarray) -> dict[str, float]:
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    return {"mean": float(diff.mean()), "p99": float(np.percentile(diff, 99)), "max": float(diff.max())}


def split_sizes(crops: np.ndarray, real: int, k: int) -> np.ndarray:
    """The first ``k`` real and first ``k`` synthetic faces of a split laid out real-then-synthetic."""
    return np.concatenate([crops[: min(k, real)], crops[real : real + k]])


def study(path: str, sizes: list[int]) -> None:
    from facskit.models.checkpoint import load_checkpoint, weights_hash
    from facskit.runtime.backends import OnnxBackend
    from facskit.runtime.check import intensities
    from facskit.runtime.export import cached_onnx_path
    from facskit.runtime.quantize import (
        REAL_PER_VIDEO,
        SAMPLE_CLIP,
        face_crops,
        quantize_onnx,
        real_face_crops,
    )

    model, _ = load_checkpoint(path)
    spec = model.spec
    fp32 = OnnxBackend(cached_onnx_path(model, weights_hash(model)))
    calibration = face_crops(spec, "calibration")
    check = face_crops(spec, "check")
    real_cal = len(real_face_crops(spec, [SAMPLE_CLIP], "calibration", REAL_PER_VIDEO["calibration"]))
    real_check = len(real_face_crops(spec, [SAMPLE_CLIP], "check", REAL_PER_VIDEO["check"]))
    heldout = np.concatenate(
        [real_face_crops(spec, heldout_videos(), "check", HELDOUT_PER_VIDEO), check[real_check:]]
    )
    reference = intensities(fp32, heldout)
    check_reference = intensities(fp32, check)
    print(f"\n## {path} ({spec.name}, crop {spec.crop_size})")
    print(f"held-out: {len(heldout)} faces ({len(heldout) - len(check) + real_check} real)")
    print(
        "| calibration faces | quantise s | held-out mean | p99 | max "
        "| check faces | check mean | check max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k in sizes:
            cal = split_sizes(calibration, real_cal, k)
            out = Path(tmp) / f"int8-{k}.onnx"
            began = time.perf_counter()
            quantize_onnx(cached_onnx_path(model, weights_hash(model)), out, cal)
            seconds = time.perf_counter() - began
            int8 = OnnxBackend(out, precision="int8")
            held = deltas(reference, intensities(int8, heldout))
            got = intensities(int8, check)
            for j in sizes:
                idx = np.r_[0 : min(j, real_check), real_check : real_check + j]
                c = deltas(check_reference[idx], got[idx])
                first = j == sizes[0]
                lead = (
                    f"| {len(cal)} | {seconds:.1f} "
                    f"| {held['mean']:.4f} | {held['p99']:.3f} | {held['max']:.3f}"
                    if first
                    else "| | | | | "
                )
                print(f"{lead} | {len(idx)} | {c['mean']:.4f} | {c['max']:.3f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="checkpoint (repeatable)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16, 24])
    args = parser.parse_args()
    if not heldout_videos():
        print(
            f"skipped: no held-out videos under {SHARED} (the real-face corpus is not shipped)",
            file=sys.stderr,
        )
        return 0
    import os

    from facskit.device import cpu_model

    print(f"# {cpu_model()}, {os.cpu_count()} CPUs")
    for path in args.model:
        study(path, args.sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
