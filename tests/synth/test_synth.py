"""facskit.synth: determinism, exact layouts, label round trips, AU geometry and appearance, dlib realism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facskit.aus import BP4D_AUS, DISFA_AUS, au_column
from facskit.synth import (
    SYNTH_AUS,
    FaceRenderer,
    Pose,
    Scene,
    animate_face,
    label_intensity,
    sample_identity,
    write_dataset,
)

MEDIA = Path(__file__).resolve().parents[3] / "shared" / "media"
QUIET_SCENE = Scene(1, (0.0, 0.0, 1.0), 0.5, 0.6, (1.0, 1.0, 1.0), 0.0, 0.0, (90.0, 90.0, 90.0))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for fmt, sequences in (("disfa", 1), ("bp4d", 2), ("folder", 1)):
        out[fmt] = base / fmt
        write_dataset(out[fmt], fmt, subjects=2, frames=12, seed=7, size=256, sequences=sequences, quiet=True)
    return out


def test_same_seed_gives_identical_bytes_serial_or_parallel(
    tmp_path: Path, datasets: dict[str, Path]
) -> None:
    # disfa again in one process; bp4d (4 sequences) and folder (its labels.csv gathered from the workers)
    # with 2 worker processes: the same bytes and tables in the same order either way.
    for fmt, workers in (("bp4d", 2), ("disfa", 1), ("folder", 2)):
        again = tmp_path / fmt
        write_dataset(
            again,
            fmt,
            subjects=2,
            frames=12,
            seed=7,
            size=256,
            sequences=2 if fmt == "bp4d" else 1,
            quiet=True,
            workers=workers,
        )
        first, second = _files(datasets[fmt]), _files(again)
        assert first.keys() == second.keys()
        differing = [name for name in first if first[name] != second[name] and not name.endswith(".parquet")]
        assert differing == []
        a = pd.read_parquet(datasets[fmt] / "synth_ground_truth.parquet")
        b = pd.read_parquet(again / "synth_ground_truth.parquet")
        pd.testing.assert_frame_equal(a, b)
    other = tmp_path / "other"
    write_dataset(other, "bp4d", subjects=2, frames=12, seed=8, size=256, sequences=2, quiet=True)
    assert _files(other) != _files(datasets["bp4d"])


def test_disfa_layout_and_labels_round_trip(datasets: dict[str, Path]) -> None:
    import av
    from scipy.io import loadmat

    root = datasets["disfa"]
    truth = pd.read_parquet(root / "synth_ground_truth.parquet")
    for subject in ("SN001", "SN002"):
        rows = truth[truth.subject == subject].sort_values("frame")
        assert rows.frame.tolist() == list(range(1, 13))
        for code in DISFA_AUS:
            lines = (root / f"ActionUnit_Labels/{subject}/{subject}_au{code}.txt").read_text().splitlines()
            frames, values = zip(*(map(int, line.split(",")) for line in lines), strict=True)
            assert list(frames) == list(range(1, 13))
            np.testing.assert_array_equal(values, label_intensity(rows[au_column(code)].to_numpy()))
        pts = loadmat(root / f"Landmark_Points/{subject}/tmp_frame_lm/l0003_lm.mat")["pts"]
        row = rows[rows.frame == 3].iloc[0]
        xy = np.stack([[row[f"x_{i}"], row[f"y_{i}"]] for i in range(68)])
        np.testing.assert_allclose(pts, np.delete(xy, (60, 64), axis=0), atol=1e-4)
        with av.open(str(root / f"Videos_LeftCamera/LeftVideo{subject}_comp.avi")) as container:
            stream = container.streams.video[0]
            assert float(stream.average_rate) == 20.0
            assert sum(1 for _ in container.decode(video=0)) == 12
    manifest = json.loads((root / "synth_manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["args"]["format"] == "disfa"


def test_bp4d_layout_and_labels_round_trip(datasets: dict[str, Path]) -> None:
    root = datasets["bp4d"]
    truth = pd.read_parquet(root / "synth_ground_truth.parquet")
    assert {s[0] for s in truth.subject} <= {"F", "M"}
    assert set(truth.sequence) == {"T1", "T2"}
    assert truth.label_unknown.any()
    for (subject, task), rows in truth.groupby(["subject", "sequence"]):
        rows = rows.sort_values("frame")
        assert all((root / f"{subject}/{task}/{f:04d}.jpg").is_file() for f in rows.frame)
        for code in BP4D_AUS:
            name = au_column(code)
            table = np.loadtxt(root / f"{name}/{subject}_{task}_{name}.csv", delimiter=",", dtype=int)
            np.testing.assert_array_equal(table[:, 0], rows.frame)
            expected = np.where(rows.label_unknown, 9, label_intensity(rows[name].to_numpy()))
            np.testing.assert_array_equal(table[:, 1], expected)


def test_folder_layout_round_trips_exactly(datasets: dict[str, Path]) -> None:
    from facskit.io import iter_frames

    root = datasets["folder"]
    labels = pd.read_csv(root / "labels.csv")
    truth = pd.read_parquet(root / "synth_ground_truth.parquet")
    assert list(labels.columns) == ["file", "frame", "subject", "sequence"] + [
        au_column(c) for c in SYNTH_AUS
    ]
    merged = labels.merge(truth, on=["file", "frame"], suffixes=("", "_truth"))
    assert len(merged) == len(truth) == 24
    for code in SYNTH_AUS:
        name = au_column(code)
        np.testing.assert_array_equal(merged[name].to_numpy(np.float32), merged[f"{name}_truth"].to_numpy())
    first = truth.file.iloc[0]
    assert sum(1 for _ in iter_frames(root / first)) == 12


def _render(aus: dict[int, float], identity_seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    identity = sample_identity(np.random.default_rng(identity_seed))
    return FaceRenderer(256).render(identity, aus, Pose(), np.random.default_rng(0), QUIET_SCENE)


def _measures(lm: np.ndarray) -> dict[str, float]:
    """Signed measures that each AU must increase (pixels; y grows downwards)."""
    return {
        "inner_brow_up": -float(lm[[21, 22], 1].mean()),
        "outer_brow_up": -float(lm[[17, 26], 1].mean()),
        "brows_down_together": float(lm[[21, 22], 1].mean()) - float(lm[22, 0] - lm[21, 0]),
        "upper_lid_up": -float(lm[[37, 38, 43, 44], 1].mean()),
        "lower_lid_up": -float(lm[[40, 41, 46, 47], 1].mean()),
        "nose_wing_up": -float(lm[[31, 35], 1].mean()),
        "upper_lip_up": -float(lm[[50, 51, 52], 1].mean()),
        "corners_up_out": -float(lm[[48, 54], 1].mean()) + float(lm[54, 0] - lm[48, 0]),
        "corners_in": -float(lm[54, 0] - lm[48, 0]),
        "corners_down": float(lm[[48, 54], 1].mean()),
        "lower_lip_up": -float(lm[57, 1]),
        "corners_out": float(lm[54, 0] - lm[48, 0]),
        "lips_thinner": -float(lm[57, 1] - lm[51, 1]),
        "lips_apart": float(lm[66, 1] - lm[62, 1]),
        "mouth_chin": float(lm[8, 1] - lm[62, 1]),
        "eyes_closed": -float((lm[[41, 40, 47, 46], 1] - lm[[37, 38, 43, 44], 1]).mean()),
    }


AU_MEASURE = {
    1: "inner_brow_up",
    2: "outer_brow_up",
    4: "brows_down_together",
    5: "upper_lid_up",
    6: "lower_lid_up",
    7: "lower_lid_up",
    9: "nose_wing_up",
    10: "upper_lip_up",
    12: "corners_up_out",
    14: "corners_in",
    15: "corners_down",
    17: "lower_lip_up",
    20: "corners_out",
    23: "lips_thinner",
    25: "lips_apart",
    26: "mouth_chin",
    45: "eyes_closed",
}


@pytest.mark.parametrize("code", SYNTH_AUS)
def test_each_au_moves_landmarks_the_right_way_monotonically_and_changes_pixels(code: int) -> None:
    measure = AU_MEASURE[code]
    neutral_image, neutral = _render({})
    values = []
    for intensity in range(6):
        image, lm = _render({code: float(intensity)})
        values.append(_measures(lm)[measure])
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), (code, values)
    image, _ = _render({code: 5.0})
    changed = np.abs(image.astype(int) - neutral_image.astype(int)).max(axis=2) > 12
    assert changed.sum() > 40, (code, changed.sum())
    # Intensity 1 is subtle but real.
    assert values[1] - values[0] > 0.05


def test_dlib_finds_most_synthetic_faces_within_20_degrees_yaw() -> None:
    from facskit.synth.sequence import random_still
    from facskit.synth.texture import dlib_models

    detector, _ = dlib_models()
    renderer = FaceRenderer(256)
    rng = np.random.default_rng(11)
    found = 0
    n = 40
    for i in range(n):
        image, _ = random_still(renderer, rng, i, 30)
        found += len(detector(image, 0)) > 0
    assert found / n >= 0.9


@pytest.mark.media
def test_texture_mode_animates_a_real_face_and_flags_unknown_base(tmp_path: Path) -> None:
    from facskit.synth.texture import iter_texture_faces

    source = MEDIA / "single_face.jpg"
    if not source.is_file():
        pytest.skip("shared media not available")
    crop, base = next(iter_texture_faces(source, 256))
    image, moved = animate_face(crop, base, {12: 5.0, 25: 3.0})
    assert moved[48, 1] < base[48, 1] and moved[48, 0] < base[48, 0] and moved[54, 0] > base[54, 0]
    assert np.abs(image.astype(int) - crop.astype(int)).max() > 30
    textures = tmp_path / "textures"
    textures.mkdir()
    shutil.copy(source, textures / source.name)
    write_dataset(tmp_path / "out", "folder", subjects=1, frames=3, seed=1, textures=textures, quiet=True)
    truth = pd.read_parquet(tmp_path / "out" / "synth_ground_truth.parquet")
    assert truth.base_expression_unknown.all() and (truth.texture_source == source.name).all()
