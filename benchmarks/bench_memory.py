"""Peak RSS of ``facskit analyze`` on a 1-minute and a 10-minute 640x360 video: memory must not grow with
video length (DESIGN.md section 6).

    python benchmarks/bench_memory.py                       # makes /tmp/facskit_bench_{1,10}min.mp4 once
    python benchmarks/bench_memory.py --minutes 1 10 --model bmvc2018-lite --backend onnx --precision int8

The videos are real media: WolfgangLanger_Pexels.mp4 (472 frames, 640x360) looped and re-encoded with PyAV
(H.264, 23.976 fps). Each run is the full pipeline over every frame (no --frame-step, no --max-frames): the
``facskit analyze`` CLI in a fresh process, whose peak RSS is read from ``getrusage(RUSAGE_CHILDREN)``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "media" / "WolfgangLanger_Pexels.mp4"
FPS = Fraction(24000, 1001)


def make_video(minutes: float, path: Path) -> Path:
    """Loop SOURCE's frames (forwards then backwards, so there is no jump cut) into ``minutes`` of video."""
    import av

    from facskit.io import iter_frames

    if path.is_file():
        return path
    frames = [f.image for f in iter_frames(SOURCE)]
    cycle = frames + frames[::-1]
    total = int(round(minutes * 60 * float(FPS)))
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(total):
            for packet in stream.encode(av.VideoFrame.from_ndarray(cycle[i % len(cycle)], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def peak_rss_mb(video: Path, model: str, backend: str, precision: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one ``facskit analyze`` run in a child process."""
    out = Path(tempfile.mkdtemp(prefix="facskit-mem-"))
    command = [sys.executable, "-m", "facskit", "analyze", str(video), "--out", str(out), "--model", model]
    command += ["--backend", backend, "--precision", precision, "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def prepare_model(name: str, backend: str, precision: str) -> str:
    """Save registry model ``name`` (seeded weights) as a checkpoint and build its backend once (fills the
    ONNX/int8 cache the CLI reads). A path is returned as it is."""
    import warnings

    import torch

    from facskit import Detector
    from facskit.models import create_model, save_checkpoint

    if Path(name).is_file():
        return name
    path = Path(tempfile.gettempdir()) / f"facskit_bench_{name}.ckpt"
    if not path.is_file():
        torch.manual_seed(0)
        save_checkpoint(path, create_model(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Detector(model=path, backend=backend, precision=precision)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", nargs="+", type=float, default=[1.0, 10.0])
    parser.add_argument("--model", default="bmvc2018-lite")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args()
    # A fixed checkpoint whose ONNX/int8 files are made here, once: the children then measure analysis
    # only, not the one-off export and quantisation (whose calibration pass alone peaks at ~2 GB).
    model = prepare_model(args.model, args.backend, args.precision)
    print("| video | frames | peak RSS (MB) | seconds | fps | load (start/end) |")
    print("|---|---|---|---|---|---|")
    for minutes in args.minutes:
        video = make_video(minutes, Path(tempfile.gettempdir()) / f"facskit_bench_{minutes:g}min.mp4")
        from facskit.io import probe

        frames = probe(video).frame_count
        load0 = Path("/proc/loadavg").read_text().split()[0]
        # RUSAGE_CHILDREN is the max over all children so far: run each length in its own interpreter.
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(video), model, args.backend, args.precision],
            capture_output=True,
            text=True,
            check=True,
        )
        rss, seconds = (float(x) for x in proc.stdout.split())
        load1 = Path("/proc/loadavg").read_text().split()[0]
        print(
            f"| {minutes:g} min | {frames} | {rss:.0f} | {seconds:.0f} | {frames / seconds:.1f} | "
            f"{load0}/{load1} |",
            flush=True,
        )


_CHILD = f"""
HERE = {str(Path(__file__).resolve().parent)!r}
import sys
from pathlib import Path
sys.path.insert(0, HERE)
from bench_memory import peak_rss_mb
rss, seconds = peak_rss_mb(Path(sys.argv[1]), *sys.argv[2:5])
print(rss, seconds)
"""

if __name__ == "__main__":
    main()
