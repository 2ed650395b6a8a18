"""Ray fan-out: N copies of a video on a local Ray instance, 1 and 2 workers, and one process for reference.

    python benchmarks/bench_ray.py                                   # 8 copies of the Pexels video, 2 CPUs
    python benchmarks/bench_ray.py --copies 8 --max-frames 600 --out benchmarks/results/ray.md

Every configuration is a fresh `facskit analyze` process (so each pays its own Ray start-up and model
loading, as a user's run does), timed by wall clock; the rows of every run are checked to be the same
count. The fan-out phase rate is Ray's aggregated progress (first task submitted to last result back).
"1 worker" is `--ray --workers 1`: one one-CPU task at a time; "2 workers" runs two at once. The
single-process line is the plain `facskit analyze` (pipelined engine, all cores) for reference.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"


def _run(args: list[str], out: Path) -> tuple[float, int, float | None]:
    """Wall seconds, result rows, and the fan-out's own frames/s from Ray's aggregated progress (the tasks'
    phase: from the first submission to the last result, without process and Ray start-up)."""
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    command = [sys.executable, "-m", "facskit", "analyze", *args, "--out", str(out)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    rows = sum(len(p.read_text().splitlines()) - 1 for p in out.glob("*.csv") if p.name != "summary.csv")
    progress = re.findall(r"ray: (\d+)/(\d+) tasks, \d+ frames, ([\d.]+) fps", done.stderr)
    return seconds, rows, float(progress[-1][2]) if progress else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(MEDIA))
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--max-frames", type=int, default=None, help="frames per copy (default: all)")
    parser.add_argument("--extra", default="", help="more analyze options, e.g. '--backend torch'")
    parser.add_argument("--out", help="write the markdown table here too")
    args = parser.parse_args()
    from facskit.device import cpu_model

    work = Path(tempfile.mkdtemp(prefix="facskit-bench-ray-"))
    inputs = work / "in"
    inputs.mkdir()
    for i in range(args.copies):
        shutil.copyfile(args.video, inputs / f"copy{i:02d}{Path(args.video).suffix}")
    common = [str(inputs)] + (["--max-frames", str(args.max_frames)] if args.max_frames else [])
    common += args.extra.split()
    runs = {
        "one process (pipelined, all cores)": common,
        "Ray, 1 worker": [*common, "--ray", "--workers", "1"],
        "Ray, 2 workers": [*common, "--ray", "--workers", "2"],
    }
    lines = [
        "# Ray fan-out (benchmarks/bench_ray.py)",
        "",
        f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start; "
        f"{args.copies} copies of `{Path(args.video).name}`"
        + (f", first {args.max_frames} frames each" if args.max_frames else "")
        + ".",
        f"Command: `python benchmarks/bench_ray.py {' '.join(sys.argv[1:])}`",
        "",
        "| run | wall s | rows | frames/s | vs Ray 1 worker | fan-out phase frames/s | vs 1 worker |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    results = {}
    for name, run_args in runs.items():
        results[name] = _run(run_args, work / "out")
    base, _, base_phase = results["Ray, 1 worker"]
    for name, (seconds, rows, phase) in results.items():
        fanout = f"{phase:.1f} | {phase / base_phase:.2f}x" if phase and base_phase else "- | -"
        row = f"| {name} | {seconds:.1f} | {rows} | {rows / seconds:.1f} | {base / seconds:.2f}x | {fanout} |"
        lines.append(row)
        print(row, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
