"""The blendshape teacher: it reads a real face, its AU map is monotone and masks what it cannot see, the
trainer ignores masked AUs, mixed caches read as one, and teach -> train -> analyze runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facskit.data.cache import ConcatCache, PreparedCache
from facskit.teacher import AU_SOURCES, BLENDSHAPE_NAMES, MASKED_AUS, AUMap, MonotoneMap, load_au_map
from facskit.teacher.au_map import MAX_INTENSITY
from facskit.teacher.teach import BLENDSHAPE_COLUMNS, file_key
from facskit.train.loop import masked_mse

pytest.importorskip("ai_edge_litert", reason="the teacher needs LiteRT: pip install -e '.[teach]'")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def taught(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teach cache of single_face.jpg and every 10th frame of single_face.mp4."""
    from facskit.teacher.teach import teach

    out = tmp_path_factory.mktemp("teach") / "cache"
    summary = teach(
        [media_dir / "single_face.jpg", media_dir / "single_face.mp4"], out, frame_step=10, progress=False
    )
    assert summary.files == 2 and summary.faces >= 2 and not summary.problems
    return out


def test_the_teacher_reads_a_smile_on_a_real_face(taught: Path) -> None:
    cache = PreparedCache(taught)
    index = cache.index
    assert set(BLENDSHAPE_COLUMNS) <= set(index.columns)
    assert {"teacher_presence", "lips_apart", "face_id", "source"} <= set(index.columns)
    still = index[index["source"].str.endswith("single_face.jpg")]
    assert len(still) == 1 and still["teacher_presence"].iloc[0] > 0.9
    # single_face.jpg is a broad smile: the teacher's smile coefficient is high and maps to a strong AU12.
    assert still["bs_mouthSmileLeft"].iloc[0] > 0.5 and still["AU12"].iloc[0] > 2.0
    for au in MASKED_AUS:
        if f"AU{au:02d}" in index:
            assert index[f"AU{au:02d}"].isna().all()
    for au in AU_SOURCES:
        assert index[f"AU{au:02d}"].between(0, MAX_INTENSITY).all()
    item = cache[0]
    assert item["image"].shape == (256, 256, 3) and item["landmarks"].shape == (68, 2)


def test_teach_resumes_and_refuses_other_settings(taught: Path, media_dir: Path) -> None:
    from facskit.errors import UsageError
    from facskit.teacher.teach import teach

    before = (taught / "index.parquet").read_bytes()
    again = teach([media_dir / "single_face.jpg", media_dir / "single_face.mp4"], taught, frame_step=10,
                  progress=False)  # fmt: skip
    assert again.files_done_before == 2
    assert (taught / "index.parquet").read_bytes() == before
    with pytest.raises(UsageError, match="frame_step"):
        teach([media_dir / "single_face.jpg"], taught, frame_step=3, progress=False)


def test_file_keys_differ_for_same_named_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    assert file_key(a) != file_key(b) and file_key(a).startswith("clip-")


def test_the_shipped_map_is_monotone_and_covers_exactly_the_seen_aus() -> None:
    au_map = load_au_map()
    assert set(au_map.maps) == set(AU_SOURCES)
    assert not set(au_map.maps) & set(MASKED_AUS)
    grid = np.linspace(-0.5, 1.5, 401)
    for au, curve in au_map.maps.items():
        values = curve(grid)
        assert np.all(np.diff(values) >= 0), au
        assert values[0] == 0 and values.max() <= MAX_INTENSITY, au


@pytest.mark.parametrize(
    ("x", "y"),
    [((0.0, 0.5, 0.4), (0, 1, 2)), ((0.0, 1.0), (3.0, 1.0)), ((0.0, 1.0), (0.0, 6.0)), ((0.0,), (0.0,))],
)
def test_a_map_that_is_not_monotone_or_out_of_range_is_refused(x: tuple, y: tuple) -> None:
    with pytest.raises(ValueError):
        MonotoneMap(x, y)


def test_a_masked_au_is_unknown_whatever_the_coefficients(tmp_path: Path) -> None:
    from facskit.teacher.blendshapes import TeacherReading

    reading = TeacherReading(np.ones(len(BLENDSHAPE_NAMES), np.float32), 1.0, np.zeros((478, 2)), 0.5)
    au_map = AUMap({12: MonotoneMap((0.0, 1.0), (0.0, 5.0))})
    values = au_map.intensities(reading, (6, 12, 25))
    assert np.isnan(values[0]) and values[1] == pytest.approx(5.0) and np.isnan(values[2])
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"maps": {"AU06": {"x": [0, 1], "y": [0, 5]}}}))
    from facskit.teacher.blendshapes import TeacherUnavailable

    with pytest.raises(TeacherUnavailable, match="no reading"):
        load_au_map(bad)


def test_the_masked_loss_gives_no_gradient_to_a_masked_au() -> None:
    pred = torch.rand(2, 3, 8, 8, requires_grad=True)
    target = torch.rand(2, 3, 8, 8) * 5
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    masked_mse(pred, target, weights, foreground_weight=10.0).backward()
    assert torch.all(pred.grad[:, 1] == 0) and torch.all(pred.grad[1, 2] == 0)
    assert torch.any(pred.grad[0, 0] != 0)


def test_concat_cache_reorders_aus_and_keeps_subjects_apart(taught: Path) -> None:
    real = PreparedCache(taught)
    narrow = real.subset(np.arange(1))
    narrow.aus = (12, 1)  # the same rows read as a cache with two AUs in another order
    narrow._intensities = real._intensities[:1][:, [real.aus.index(12), real.aus.index(1)]]
    both = ConcatCache([narrow, real])
    assert both.aus == (12, 1) and len(both) == 1 + len(real)
    second = both[1]
    assert second["intensities"].shape == (2,)
    assert second["intensities"][0] == pytest.approx(real[0]["intensities"][real.aus.index(12)])
    assert both.index["subject"].iloc[1].startswith("1:")
    three = ConcatCache([real, narrow])
    assert np.isnan(three[len(real)]["intensities"][real.aus.index(6)])  # AU6: not in the second cache


@pytest.mark.slow
def test_teach_train_analyze_round_trip(taught: Path, media_dir: Path, tmp_path: Path) -> None:
    from facskit import Detector
    from facskit.config import Config, apply_overrides
    from facskit.train.loop import train

    config = apply_overrides(
        Config(),
        [
            f"data.cache={taught}",
            f"data.extra_caches=[{taught}]",
            "data.split=none",
            "model.name=bmvc2018-tiny",
            "model.overrides={width: 32, depth: 2}",
            "data.image_size=64",
            "train.batch_size=4",
            "train.workers=0",
            "train.epochs=1",
            "log.tensorboard=false",
            "checkpoint.every_steps=0",
            "augment.grey=0.5",
            "augment.blur=0.5",
        ],
    )
    result = train(config, tmp_path / "run", quiet=True)
    assert result.global_step > 0 and np.isfinite(result.history[-1]["train_loss"])
    detector = Detector(model=str(tmp_path / "run" / "last.ckpt"), backend="torch", precision="fp32")
    rows = detector.analyze(str(media_dir / "single_face.jpg"))
    assert len(rows) == 1 and bool(rows["face_detected"].iloc[0])
    assert np.isfinite(rows[[f"AU{a:02d}" for a in AU_SOURCES]].to_numpy(float)).all()


@pytest.mark.parametrize(
    ("name", "content"),
    [("meta.json", b"{not json"), ("meta.json", b'{"format": "facskit-prepared-cache", "version": 1}'),
     ("index.parquet", b"PAR1garbage")],
)  # fmt: skip
def test_a_damaged_cache_is_one_error_naming_the_file(
    taught: Path, tmp_path: Path, name: str, content: bytes
):
    import shutil

    from facskit.errors import DatasetError

    copy = tmp_path / "cache"
    shutil.copytree(taught, copy)
    (copy / name).write_bytes(content)
    with pytest.raises(DatasetError, match=name.replace(".", r"\.")):
        PreparedCache(copy)


def test_a_new_map_relabels_the_cache_from_its_coefficients(taught: Path, media_dir: Path, tmp_path: Path):
    import shutil

    from facskit.teacher.teach import teach

    copy = tmp_path / "cache"
    shutil.copytree(taught, copy)
    before = PreparedCache(copy).index
    doubled = AUMap({12: MonotoneMap((0.0, 0.5), (0.0, 5.0))})  # AU12 only, twice as steep
    summary = teach([media_dir / "single_face.jpg", media_dir / "single_face.mp4"], copy, frame_step=10,
                    au_map=doubled, progress=False)  # fmt: skip
    assert summary.files_done_before == 2
    after = PreparedCache(copy).index
    smile = (after["bs_mouthSmileLeft"] + after["bs_mouthSmileRight"]) / 2
    np.testing.assert_allclose(after["AU12"], np.clip(smile * 10, 0, 5), atol=1e-5)
    assert after["AU25"].isna().all()  # not in the new map: unknown now
    np.testing.assert_array_equal(after[BLENDSHAPE_COLUMNS], before[BLENDSHAPE_COLUMNS])
    assert json.loads((copy / "meta.json").read_text())["teacher"]["au_map"] == doubled.to_json()
