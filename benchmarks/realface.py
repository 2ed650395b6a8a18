"""Real-face checks: does a model read real expressions the right way round?

No AU labels exist for these faces, so every check is relative (this face more than that one, this part
of a clip more than that part) or an agreement with the teacher; each is one a FACS coder would grant on
sight. Models side by side: facskit checkpoints (``--model NAME=PATH``, e.g. the previous and the new
default), the mapped teacher itself (``--teacher``), and OpenFace 2.0 where its ``FeatureExtraction`` CSVs
are at hand (``--openface DIR``: ``DIR/<media stem>.csv``, AUxx_r columns).

Checks (thresholds from the issue that set them):

* ``multi_face.jpg``: each of the four smiling faces reads a higher AU12 than the neutral boy (centre,
  third face from the left).
* ``sample_clip.mp4`` (a laugh, mouth open): mean AU12 >= 2.5 and mean AU25 >= 2.
* ``WolfgangLanger_Pexels.mp4``: mean AU12 over frames 320-471 (broad smiles) at least 1.0 above frames
  60-150 (crying), and mean AU04 over 60-150 at least 0.5 above 320-471.
* London Set identities held out of training: the smiling photo's AU12 exceeds the neutral photo's by more
  than 0.5 for at least 90% of them.
* Per-AU PCC between the model and the mapped teacher on held-out real faces (the held-out London photos
  and the GRID clips, neither of which the default model trained on), for every AU the teacher sees.

    python benchmarks/realface.py --model new=facskit/weights/default.ckpt --model old=old.ckpt --teacher \
        --out benchmarks/results/realface.md

Needs ../shared/media and ../shared/realfaces (skips a check whose files are absent, saying so).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MEDIA = SHARED / "media"
REAL = SHARED / "realfaces"
LONDON = REAL / "webmorphR.stim"
SAMPLE_CLIP = REPO / "facskit" / "assets" / "sample_clip.mp4"
WOLFGANG = MEDIA / "WolfgangLanger_Pexels.mp4"
MULTI_FACE = MEDIA / "multi_face.jpg"
NEUTRAL_FACE_POSITION = 2  # multi_face.jpg: the neutral boy is the third face from the left
LONDON_MARGIN, LONDON_SHARE = 0.5, 0.9
Analyse = Callable[[Path], pd.DataFrame]  # media -> rows: file, frame, face_id, x, AUxx


def london_heldout() -> list[str]:
    """Every third London identity by number (26 of 76), as tools/build_default_model.sh holds them out."""
    ids = sorted(p.name.split("_")[0] for p in (LONDON / "london_neutral").glob("*.jpg"))
    return ids[::3]


def model_analyser(path: str) -> Analyse:
    """``CHECKPOINT`` or ``CHECKPOINT@PRECISION`` (fp32, int8; default: the Detector's ``auto``)."""
    from facskit import Detector

    path, _, precision = path.partition("@")
    detector = Detector(model=path, precision=precision or "auto")
    return lambda media: pd.DataFrame(detector.analyze(str(media)))


def teacher_analyser() -> Analyse:
    """The mapped teacher on the faces facskit's own front end finds (the same faces the models see)."""
    from facskit.faces import FaceFrontEnd
    from facskit.io import expand_path
    from facskit.synth.face_model import SYNTH_AUS
    from facskit.teacher import BlendshapeTeacher, load_au_map
    from facskit.teacher.teach import MIN_PRESENCE

    front_end, teacher, au_map = FaceFrontEnd(), BlendshapeTeacher(), load_au_map()

    def analyse(media: Path) -> pd.DataFrame:
        rows = []
        for item in expand_path(media):
            for frame, faces in front_end.iter_faces(item):
                for face in faces:
                    if not face.success:
                        continue
                    reading = teacher.read(frame.image, face.landmarks)
                    if reading.presence < MIN_PRESENCE:  # as teach does: the mesh model saw no face
                        continue
                    values = au_map.intensities(reading, SYNTH_AUS)
                    row = {"file": str(item.path), "frame": frame.index, "face_id": face.face_id}
                    row["x"] = float(face.box.x)
                    row.update({f"AU{a:02d}": float(v) for a, v in zip(SYNTH_AUS, values, strict=True)})
                    rows.append(row)
        return pd.DataFrame(rows)

    return analyse


def openface_analyser(folder: Path) -> Analyse:
    def analyse(media: Path) -> pd.DataFrame:
        table = pd.read_csv(folder / f"{media.stem}.csv", skipinitialspace=True)
        table = table.rename(columns=lambda c: c.replace("_r", "") if c.endswith("_r") else c)
        return table.rename(columns={"face": "face_id"})

    return analyse


def _mean(rows: pd.DataFrame, au: str, start: int, stop: int) -> float:
    part = rows[(rows["frame"] >= start) & (rows["frame"] <= stop)]
    return float(part[au].mean()) if au in part and len(part) else float("nan")


def checks(analyse: Analyse) -> dict[str, object]:
    """Every check's numbers and verdict for one model (NaN / skipped where files or AUs are missing)."""
    out: dict[str, object] = {}
    if MULTI_FACE.is_file():
        rows = analyse(MULTI_FACE).dropna(subset=["AU12"]).sort_values("x")
        if len(rows) == 5:
            au12 = rows["AU12"].to_numpy()
            neutral = au12[NEUTRAL_FACE_POSITION]
            smiles = np.delete(au12, NEUTRAL_FACE_POSITION)
            out["multi_face AU12 smiles / neutral"] = (
                f"{', '.join(f'{v:.2f}' for v in smiles)} / {neutral:.2f}"
            )
            out["multi_face pass"] = bool((smiles > neutral).all())
        else:
            out["multi_face pass"] = f"skipped: {len(rows)} faces found, 5 expected"
    if SAMPLE_CLIP.is_file():
        rows = analyse(SAMPLE_CLIP)
        au12, au25 = float(rows["AU12"].mean()), float(rows["AU25"].mean())
        out["laugh clip mean AU12 / AU25"] = f"{au12:.2f} / {au25:.2f}"
        out["laugh clip pass"] = bool(au12 >= 2.5 and au25 >= 2.0)
    if WOLFGANG.is_file():
        rows = analyse(WOLFGANG)
        smile, cry = _mean(rows, "AU12", 320, 471), _mean(rows, "AU12", 60, 150)
        brow_cry, brow_smile = _mean(rows, "AU04", 60, 150), _mean(rows, "AU04", 320, 471)
        out["Wolfgang AU12 smile - cry"] = f"{smile:.2f} - {cry:.2f} = {smile - cry:+.2f}"
        out["Wolfgang AU04 cry - smile"] = (
            f"{brow_cry:.2f} - {brow_smile:.2f} = {brow_cry - brow_smile:+.2f}"
            if np.isfinite(brow_cry) and np.isfinite(brow_smile)
            else "AU4 not read"
        )
        out["Wolfgang pass"] = bool(smile - cry >= 1.0 and brow_cry - brow_smile >= 0.5)
    if LONDON.is_dir():
        wins, margins = 0, []
        ids = london_heldout()
        for number in ids:
            smiling = analyse(LONDON / "london_smiling" / f"{number}_08.jpg")
            neutral = analyse(LONDON / "london_neutral" / f"{number}_03.jpg")
            if len(smiling) and len(neutral):
                margin = float(smiling["AU12"].max() - neutral["AU12"].max())
                margins.append(margin)
                wins += margin > LONDON_MARGIN
        share = wins / len(ids) if ids else float("nan")
        out["London held-out: smile - neutral AU12 > 0.5"] = (
            f"{wins}/{len(ids)} ({share:.0%}), median {np.median(margins):+.2f}"
        )
        out["London pass"] = bool(share >= LONDON_SHARE)
    return out


def heldout_media() -> list[Path]:
    media = []
    if LONDON.is_dir():
        for number in london_heldout():
            media += [
                LONDON / "london_neutral" / f"{number}_03.jpg",
                LONDON / "london_smiling" / f"{number}_08.jpg",
            ]
    media += sorted((REAL / "grid_ccby").glob("*.mpg"))
    return media


def agreement(analyse: Analyse, teacher_rows: pd.DataFrame, media: list[Path]) -> dict[str, float]:
    """Per-AU PCC with the mapped teacher over the faces both read (matched by file, frame, face id)."""
    from facskit.metrics import pcc
    from facskit.teacher import AU_SOURCES

    rows = pd.concat([analyse(m) for m in media], ignore_index=True)
    joined = rows.merge(teacher_rows, on=["file", "frame", "face_id"], suffixes=("", "_teacher"))
    result = {}
    for au in sorted(AU_SOURCES):
        name = f"AU{au:02d}"
        if name in joined and f"{name}_teacher" in joined:
            a, b = joined[name].to_numpy(float), joined[f"{name}_teacher"].to_numpy(float)
            pairs = int((np.isfinite(a) & np.isfinite(b)).sum())
            result[name] = pcc(a, b) if pairs > 2 else float("nan")  # pcc drops NaN pairs itself
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", action="append", default=[], help="NAME=CHECKPOINT[@PRECISION] (repeatable)"
    )
    parser.add_argument("--teacher", action="store_true", help="also score the mapped teacher")
    parser.add_argument("--openface", help="folder of OpenFace 2.0 CSVs named after the media files")
    parser.add_argument("--out", help="write the Markdown tables here (and NAME.json beside it)")
    args = parser.parse_args()
    if not MEDIA.is_dir() or not REAL.is_dir():
        print(f"skipped: {MEDIA} or {REAL} is absent (the real-face corpus is not shipped)", file=sys.stderr)
        return 0
    analysers: dict[str, Analyse] = {}
    for item in args.model:
        name, _, path = item.partition("=")
        analysers[name] = model_analyser(path)
    teacher = teacher_analyser()
    if args.teacher:
        analysers["teacher (mapped)"] = teacher
    if args.openface:
        analysers["OpenFace 2.0"] = openface_analyser(Path(args.openface))
    results: dict[str, dict[str, object]] = {}
    held = heldout_media()
    teacher_rows = pd.concat([teacher(m) for m in held], ignore_index=True) if held else pd.DataFrame()
    for name, analyse in analysers.items():
        started = time.perf_counter()
        results[name] = checks(analyse)
        if name != "teacher (mapped)" and name != "OpenFace 2.0" and len(teacher_rows):
            results[name]["PCC with teacher"] = agreement(analyse, teacher_rows, held)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {json.dumps(results[name], default=str)}", file=sys.stderr)
    keys = [k for k in next(iter(results.values())) if k not in ("PCC with teacher", "seconds")]
    lines = ["| check | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(str(r.get(key, "")) for r in results.values()) + " |")
    pcc_models = {n: r["PCC with teacher"] for n, r in results.items() if "PCC with teacher" in r}
    if pcc_models:
        aus = list(next(iter(pcc_models.values())))
        lines += ["", f"Per-AU PCC with the mapped teacher on {len(held)} held-out real media files:", ""]
        lines += ["| model | " + " | ".join(aus) + " | mean |", "|---|" + "---:|" * (len(aus) + 1)]
        for name, values in pcc_models.items():
            numbers = [values[a] for a in aus]
            lines.append(
                f"| {name} | " + " | ".join(f"{v:.2f}" for v in numbers) + f" | {np.nanmean(numbers):.2f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
