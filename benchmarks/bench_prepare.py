"""Benchmark ``facskit prepare``: frames/s and peak memory (parent + workers) on a synthetic DISFA set.

Usage::

    python benchmarks/bench_prepare.py [--subjects 4] [--frames 150] [--workers 2] [--out FILE.md]

The dataset is generated once (facskit.synth, 256 px frames) into a temporary folder; ``facskit prepare``
runs as a subprocess for each landmark mode, and the resident memory of its whole process tree (the CLI,
the fork server and the workers) is sampled from /proc every 50 ms. Synthesis time is not counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them (no double count)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory_bytes(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) over ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        ppid = int(fields.get("PPid", "0").strip())
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total_rss, total_pss, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        total_rss += rss.get(current, 0)
        total_pss += _pss_bytes(current)
        stack.extend(children.get(current, []))
    return total_rss, total_pss


def run_prepare(src: Path, out: Path, workers: int, landmarks: str) -> tuple[float, int, int, str]:
    command = [sys.executable, "-m", "facskit", "prepare", "disfa", str(src), "--out", str(out)]
    command += ["--workers", str(workers), "--landmarks", landmarks, "--quiet"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_rss = peak_pss = 0
    while process.poll() is None:
        rss, pss = tree_memory_bytes(process.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"prepare failed:\n{stdout}\n{stderr}")
    return seconds, peak_rss, peak_pss, " ".join(command[1:])


def cpu_model() -> tuple[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown", ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    simd = " ".join(f for f in flags if f.startswith(("avx", "sse4", "fma", "amx")))
    return fields.get("Model name", "unknown").strip(), simd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prepare.md"))
    args = parser.parse_args()
    from facskit.synth import write_dataset

    model, simd = cpu_model()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "disfa"
        write_dataset(src, "disfa", subjects=args.subjects, frames=args.frames, seed=0, quiet=True)
        n = args.subjects * args.frames
        for landmarks in ("dataset", "detect"):
            seconds, peak, pss, command = run_prepare(
                src, Path(tmp) / f"cache-{landmarks}", args.workers, landmarks
            )
            rows.append((landmarks, n, seconds, n / seconds, peak / 2**20, pss / 2**20, command))
            print(
                f"{landmarks}: {n} frames, {seconds:.1f} s, {n / seconds:.1f} frames/s, "
                f"RSS {peak / 2**20:.0f} MiB, PSS {pss / 2**20:.0f} MiB"
            )
    lines = [
        "# `facskit prepare` benchmark",
        "",
        f"CPU: {model} ({os.cpu_count()} logical CPUs visible); SIMD flags: {simd}",
        f"Python {platform.python_version()}; synthetic DISFA set: {args.subjects} subjects x {args.frames}"
        " frames, 256 x 256 MPEG-4 video, 66-point .mat landmarks per frame (facskit.synth, seed 0).",
        "Wall time includes process start-up, the fork server, reading the dataset and assembling the index;"
        " memory is summed over the CLI process, the fork server and the workers, sampled every 50 ms:"
        " RSS counts pages the forked processes share once per process, PSS splits them (real footprint).",
        f"1-minute load average before the run: {load_before:.1f}, after: {os.getloadavg()[0]:.1f}"
        " (other jobs on the machine slow every figure down; compare only runs made together).",
        "",
        "| landmarks | workers | frames | seconds | frames/s | peak RSS sum (MiB) | peak PSS sum (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for landmarks, n, seconds, fps, rss_mib, pss_mib, _ in rows:
        lines.append(
            f"| {landmarks} | {args.workers} | {n} | {seconds:.1f} | {fps:.1f} "
            f"| {rss_mib:.0f} | {pss_mib:.0f} |"
        )
    lines += ["", "Commands:", "", "```", f"python benchmarks/bench_prepare.py --subjects {args.subjects} "
              f"--frames {args.frames} --workers {args.workers}"]  # fmt: skip
    lines += [f"python {command}" for *_, command in rows]
    lines += ["```", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
