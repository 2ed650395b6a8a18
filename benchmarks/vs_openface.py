"""facskit against OpenFace 2.0, as a user meets both: whole processes, start-up included, alternating runs.

    python benchmarks/vs_openface.py --openface /path/to/OpenFace/build/bin/FeatureExtraction
    python benchmarks/vs_openface.py                    # facskit only (prints the command to add OpenFace)

Times, ``--runs`` times each and alternating (so a change in the machine's load hits both alike):

* a video: ``facskit analyze VIDEO --out DIR --quiet`` against ``FeatureExtraction -f VIDEO -aus``
* start-up on one image: ``facskit analyze IMAGE ...`` against ``FaceLandmarkImg -f IMAGE -aus -out_dir DIR``
  (OpenFace's tool for stills, found beside FeatureExtraction; skipped when absent)

and prints a Markdown table of medians (wall time, frames/s including start-up, peak memory of the process)
and the ratio OpenFace / facskit (above 1: facskit is faster). It also says how facskit is installed (the
distribution, an editable checkout or not, whether ONNX Runtime is there, and which backend ``auto`` runs),
the CPU, and the load average before and after, since other work on the machine slows both.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
VIDEO = MEDIA / "WolfgangLanger_Pexels.mp4"
IMAGE = REPO / "facskit" / "assets" / "sample_face.jpg"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_process(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one whole process (``wait4``: this child's rusage)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{error[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def facskit_command() -> list[str]:
    """The installed ``facskit`` console script when it belongs to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("facskit")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "facskit"]


def installation() -> str:
    """How facskit is installed here, in one line."""
    try:
        dist = importlib.metadata.distribution("facskit")
    except importlib.metadata.PackageNotFoundError:
        return "facskit is not pip-installed (run from a source tree on sys.path)"
    direct = dist.read_text("direct_url.json")
    editable = bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))
    requires = [r for r in (dist.requires or []) if "extra ==" not in r]
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    has_onnx = importlib.util.find_spec("onnx") is not None
    return (
        f"facskit {dist.version} ({'editable' if editable else 'regular'} install: "
        f"pip install {'-e ' if editable else ''}.) with {len(requires)} core requirements; "
        f"onnxruntime {'installed' if has_ort else 'absent'}, onnx {'installed' if has_onnx else 'absent'}"
    )


def auto_backend() -> str:
    """Which backend and precision ``auto`` runs for the default model here (and why), in a subprocess."""
    code = (
        "import json, warnings; warnings.simplefilter('ignore'); from facskit import Detector; "
        "d = Detector(quiet=True); print(json.dumps(d.backend.check))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "?"


def frame_count(video: Path) -> int:
    from facskit.io import probe

    return int(probe(video).frame_count or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openface", type=Path, default=None, help="path to OpenFace's FeatureExtraction")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--facskit-args", default="", help="extra analyze options, e.g. '--backend torch'")
    args = parser.parse_args()
    from facskit.device import cpu_model

    openface = args.openface if args.openface and args.openface.is_file() else None
    still_tool = openface.with_name("FaceLandmarkImg") if openface else None
    if still_tool is not None and not still_tool.is_file():
        still_tool = None
    work = Path(tempfile.mkdtemp(prefix="vs_openface-"))
    extra = args.facskit_args.split()
    base = facskit_command()
    jobs: dict[str, tuple[Path, list[str]]] = {
        "facskit video": (args.video, [*base, "analyze", str(args.video), "--quiet", *extra]),
        "facskit one image": (args.image, [*base, "analyze", str(args.image), "--quiet", *extra]),
    }
    if openface is not None:
        jobs["OpenFace video"] = (args.video, [str(openface), "-f", str(args.video), "-aus", "-q"])
    if still_tool is not None:
        jobs["OpenFace one image"] = (args.image, [str(still_tool), "-f", str(args.image), "-aus", "-q"])
    frames = {args.video: frame_count(args.video), args.image: 1}
    print(f"# {cpu_model()}, {len(os.sched_getaffinity(0))} CPUs; load average before: {loadavg()}")
    print(f"# {installation()}")
    print(f"# auto runs: {auto_backend()}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    for run in range(args.runs):
        for name, (_, command) in jobs.items():  # alternating: one run of each per round
            out = work / f"{name.replace(' ', '_')}-{run}"
            full = (
                [*command, "--out", str(out)]
                if name.startswith("facskit")
                else [*command, "-out_dir", str(out)]
            )
            results[name].append(run_process(full))
            shutil.rmtree(out, ignore_errors=True)
    print(f"# load average after: {loadavg()}; {args.runs} runs each, alternating; medians\n")
    print("| command | median wall (s) | frames/s incl. start-up | median peak memory (MB) |")
    print("|---|---|---|---|")
    medians: dict[str, float] = {}
    for name, (media, command) in jobs.items():
        walls = [wall for wall, _ in results[name]]
        medians[name] = statistics.median(walls)
        memory = statistics.median(mb for _, mb in results[name])
        shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
        rate = frames[media] / medians[name]
        print(f"| `{shown}` ({name}) | {medians[name]:.2f} | {rate:.1f} | {memory:.0f} |")
    for what in ("video", "one image"):
        if f"OpenFace {what}" in medians:
            ratio = medians[f"OpenFace {what}"] / medians[f"facskit {what}"]
            print(f"\n{what}: OpenFace / facskit median wall = **{ratio:.2f}x** (above 1: facskit is faster)")
    if openface is None:
        print(
            "\nOpenFace was not given (or not found), so only facskit ran. With an OpenFace 2.0 build:\n"
            f"    python {Path(__file__).relative_to(REPO)} --runs {args.runs} "
            "--openface /path/to/OpenFace/build/bin/FeatureExtraction"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
