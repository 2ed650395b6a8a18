"""The evaluation protocols end to end on a tiny prepared cache and a tiny trained model.

The cache is written through ``facskit.data.cache``'s own writers (shards, index, meta) with crops that
draw each AU as discs at its AU points, so it reads exactly like a ``facskit prepare`` output; the model
is trained by ``facskit.train.train`` for two steps. What is checked is wiring and invariants: the JSON
schema, the table layout, the predictions round trip, the held-out subjects, robustness at sigma 0 equal
to evaluate, compare merging runs and papers, crossval skipping finished folds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers import write_prepared_cache

from facskit.align import MEAN_FACE_256, rescale_points
from facskit.aus import au_column, au_points
from facskit.cli import main
from facskit.data.cache import PreparedCache
from facskit.data.folds import fold_split
from facskit.errors import CheckpointError, DatasetError, UsageError

CACHE_AUS = (6, 12, 17)
CROP = 64
# A model small enough to train in a second: 16-wide, depth-2 hourglass on 32-pixel input (8x8 maps).
TINY = [
    "model.overrides={width: 16, depth: 2}",
    "data.image_size=32",
    "train.epochs=1",
    "train.batch_size=4",
    "train.workers=0",
    "train.max_steps=2",
    "data.max_train_frames=8",
    "log.tensorboard=false",
    "log.every_steps=0",
    "checkpoint.every_steps=0",
]


def make_cache(path: Path, aus=CACHE_AUS, subjects: int = 6, frames: int = 6, seed: int = 0) -> Path:
    """A prepared cache of ``subjects`` x ``frames`` faces (one sequence each) with random labels."""
    rng = np.random.default_rng(seed)
    base = rescale_points(MEAN_FACE_256, 256, CROP)

    def faces():
        for s in range(subjects):
            subject = f"S{s:02d}"
            for f in range(frames):
                landmarks = (base + rng.normal(0, 0.3, base.shape)).astype(np.float32)
                intensities = rng.integers(0, 6, len(aus)).astype(np.float32)
                if f == 0:
                    intensities[-1] = np.nan  # one unknown label per subject
                image = np.full((CROP, CROP, 3), 80 + 10 * s, np.uint8)
                points = au_points(landmarks[None].astype(np.float64), aus)[0]  # (A, 2, 2)
                for a, value in enumerate(intensities):
                    for x, y in points[a] if np.isfinite(value) and value > 0 else []:
                        cv2.circle(image, (round(x), round(y)), int(value), (255, 255, 255), -1)
                row = {"subject": subject, "sequence": "T1", "frame": f + 1, "source": "", "source_frame": f}
                row.update({"landmark_source": "test", "skip_reason": ""})
                row.update({au_column(code): value for code, value in zip(aus, intensities, strict=True)})
                yield f"{subject}-seq", row, image, landmarks

    meta = {"dataset": "test", "aus": list(aus), "align": {"kind": "bmvc", "size": CROP}}
    return write_prepared_cache(path, faces(), meta, shard_size=4)


def assert_metrics_close(actual: dict, expected: dict) -> None:
    """Two ``per_au`` (or ``mean``) mappings agree: same keys, numbers close, nulls where nulls."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_metrics_close(actual[key], value)
        elif value is None or not isinstance(value, int | float):
            assert actual[key] == value, key
        else:
            assert actual[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("eval") / "cache")


@pytest.fixture(scope="module")
def run_dir(cache_dir: Path) -> Path:
    """Fold 0 of 3, trained through the training API."""
    from facskit.config import load_config
    from facskit.train.loop import train

    run = cache_dir.parent / "run"
    config = load_config("bmvc2018-lite", [f"data.cache={cache_dir}", "data.fold=0", *TINY])
    train(config, run, quiet=True)
    assert (run / "best.ckpt").is_file()
    return run


def test_evaluate_schema_table_and_held_out_subjects(cache_dir: Path, run_dir: Path) -> None:
    from facskit.eval.evaluate import evaluate

    result = evaluate(run_dir, cache_dir)
    metrics = result.metrics
    names = [au_column(code) for code in CACHE_AUS]
    assert list(metrics["per_au"]) == names
    for values in metrics["per_au"].values():
        assert set(values) == {"icc", "mae", "pcc", "f1", "n"}
        assert values["mae"] is not None and 0 <= values["mae"] <= 5
    assert set(metrics["mean"]) == {"icc", "mae", "pcc", "f1"}
    assert metrics["mean"]["mae"] == pytest.approx(np.mean([metrics["per_au"][n]["mae"] for n in names]))
    json.dumps(metrics, allow_nan=False)  # strict JSON: undefined values are null, never NaN

    # The held-out subjects are the ones training validated on: fold 0 of 3 with the run's seed.
    index = PreparedCache(cache_dir).index
    _, test = fold_split(index, 3, 0, 0)
    expected = sorted(index.loc[test, "subject"].unique())
    assert sorted(result.predictions["subject"].unique()) == expected
    assert metrics["n_subjects"] == len(expected) and metrics["protocol"]["fold"] == 0
    assert len(result.predictions) == int(test.sum())

    lines = result.markdown.splitlines()
    assert lines[0] == "| Metric | AU06 | AU12 | AU17 | Mean |"
    assert [line.split("|")[1].strip() for line in lines[2:6]] == ["ICC", "MAE", "PCC", "F1"]


def test_predictions_round_trip_and_rescore(cache_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    from facskit.eval.evaluate import evaluate, metrics_from_predictions, read_predictions, write_predictions

    result = evaluate(run_dir, cache_dir, split="all", batch_size=5)
    assert list(result.predictions.columns[:3]) == ["subject", "sequence", "frame"]
    assert {"AU06", "AU06_true", "AU17", "AU17_true"} <= set(result.predictions.columns)
    assert result.predictions["AU17_true"].isna().sum() == 6  # unknown labels stay NaN
    for suffix in (".parquet", ".csv"):
        back = read_predictions(write_predictions(result.predictions, tmp_path / f"preds{suffix}"))
        pd.testing.assert_frame_equal(back, result.predictions, check_dtype=False)
        assert_metrics_close(metrics_from_predictions(back)["per_au"], result.metrics["per_au"])
    # Batch size does not change predictions.
    again = evaluate(run_dir, cache_dir, split="all", batch_size=32).predictions
    np.testing.assert_allclose(again["AU06"], result.predictions["AU06"], atol=1e-5)


def test_cli_evaluate_writes_json_and_predictions(
    cache_dir: Path, run_dir: Path, tmp_path: Path, capsys
) -> None:
    out_json, out_preds = tmp_path / "m.json", tmp_path / "p.parquet"
    argv = ["evaluate", str(run_dir), "--data", str(cache_dir), "--out", str(out_json)]
    assert main([*argv, "--predictions", str(out_preds), "--threshold", "3"]) == 0
    assert "| Metric | AU06 | AU12 | AU17 | Mean |" in capsys.readouterr().out
    document = json.loads(out_json.read_text())
    assert {"per_au", "mean", "n_frames", "n_subjects"} <= set(document) and document["threshold"] == 3.0
    assert len(pd.read_parquet(out_preds)) == document["n_frames"]  # every frame has some label
    # A bare checkpoint outside its run still knows its fold from the config stored inside it.
    bare = tmp_path / "model.ckpt"
    shutil.copy(run_dir / "best.ckpt", bare)
    assert main(["evaluate", str(bare), "--data", str(cache_dir), "--out", str(tmp_path / "b.json")]) == 0
    assert_metrics_close(json.loads((tmp_path / "b.json").read_text())["per_au"], document["per_au"])


def test_clear_errors(cache_dir: Path, run_dir: Path, tmp_path: Path, capsys) -> None:
    from facskit.eval.evaluate import evaluate

    with pytest.raises(CheckpointError, match="no such run folder"):
        evaluate(tmp_path / "missing", cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="best.ckpt or last.ckpt"):
        evaluate(tmp_path / "empty", cache_dir)
    with pytest.raises(DatasetError, match="prepared cache"):
        evaluate(run_dir, tmp_path / "no-cache")
    with pytest.raises(UsageError, match="fold must be"):
        evaluate(run_dir, cache_dir, fold=5, folds=3)
    assert main(["evaluate", str(tmp_path / "missing"), "--data", str(cache_dir)]) == 1
    assert "no such run folder" in capsys.readouterr().err


def test_au_mismatch_evaluates_the_intersection(cache_dir: Path, tmp_path: Path) -> None:
    from facskit.eval.evaluate import evaluate
    from facskit.models import create_model, save_checkpoint

    model = create_model("bmvc2018-tiny", aus=(6, 12, 25), input_size=32, width=16, depth=2)
    path = save_checkpoint(tmp_path / "other.ckpt", model)
    result = evaluate(path, cache_dir, split="all")
    assert list(result.metrics["per_au"]) == ["AU06", "AU12"]
    notes = " ".join(result.metrics["notes"])
    assert "AU25" in notes and "AU17" in notes
    with pytest.raises(UsageError, match="--fold"):  # no run config: the held-out fold is unknown
        evaluate(path, cache_dir)
    with pytest.raises(UsageError, match="no AU in common"):
        evaluate(
            save_checkpoint(tmp_path / "x.ckpt", create_model("bmvc2018-tiny", aus=(1,))),
            cache_dir,
            split="all",
        )


def test_robustness_at_zero_noise_equals_evaluate(cache_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    from facskit.eval.evaluate import evaluate
    from facskit.eval.robustness import NoisyRealignment, robustness, write_robustness

    reference = evaluate(run_dir, cache_dir).metrics
    result = robustness(run_dir, cache_dir, [0, 6, 20], seed=1)
    assert list(result.table["sigma"]) == [0, 6, 20]
    zero = result.table.iloc[0]
    for name, values in reference["per_au"].items():
        assert zero[name] == pytest.approx(values["icc"], nan_ok=True)
    assert zero["mean_icc"] == pytest.approx(reference["mean"]["icc"])
    paths = write_robustness(result, tmp_path / "rob")
    assert paths["plot"].stat().st_size > 1000 and "| sigma (px) |" in paths["markdown"].read_text()

    # The transform: identity at 0, deterministic per (seed, frame), changes the crop for sigma > 0.
    item = PreparedCache(cache_dir)[3]
    image, landmarks = item["image"], item["landmarks"]
    assert NoisyRealignment(0.0)(image, landmarks, 3) is image
    noisy = NoisyRealignment(13.0, seed=2)(image, landmarks, 3)
    assert noisy.shape == image.shape and not np.array_equal(noisy, image)
    np.testing.assert_array_equal(noisy, NoisyRealignment(13.0, seed=2)(image, landmarks, 3))
    with pytest.raises(UsageError, match="noise"):
        robustness(run_dir, cache_dir, [-1])


def test_compare_merges_runs_and_published(cache_dir: Path, run_dir: Path, tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b" / "metrics.json"
    b.parent.mkdir()
    assert main(["evaluate", str(run_dir), "--data", str(cache_dir), "--out", str(a)]) == 0
    assert main(["evaluate", str(run_dir), "--data", str(cache_dir), "--split", "all", "--out", str(b)]) == 0
    capsys.readouterr()
    argv = [
        "compare",
        str(a),
        f"all={b.parent}",
        "--published",
        "bmvc2018-bp4d,scc-disfa",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 0
    table = (tmp_path / "c" / "compare.md").read_text()
    header = table.splitlines()[0]
    assert header.startswith("| Result | Metric | AU01 |") and header.endswith("| AU26 | Mean |")
    assert "| a | ICC |" in table and "| all | MAE |" in table
    assert "| BMVC'18 Hourglass (paper) | ICC |" in table and "0.68 |" in table  # the paper's mean ICC
    assert (tmp_path / "c" / "compare.png").stat().st_size > 1000
    merged = json.loads((tmp_path / "c" / "compare.json").read_text())["results"]
    assert [r["label"] for r in merged] == [
        "a",
        "all",
        "BMVC'18 Hourglass (paper)",
        "AAAI'20 SCC (paper), DISFA",
    ]
    assert main(["compare", "--published", "nope"]) == 2


def test_crossval_pools_and_resumes_fold_by_fold(cache_dir: Path, tmp_path: Path) -> None:
    from facskit.eval.crossval import crossval

    out = tmp_path / "cv"
    first = crossval("bmvc2018-lite", cache_dir, out, folds=2, overrides=TINY, quiet=True)
    assert first.trained_folds == [0, 1] and first.skipped_folds == []
    document = json.loads((out / "metrics.json").read_text())
    assert document["per_au"] == document["pooled"]["per_au"]
    assert {"pooled", "mean_over_folds", "folds"} <= set(document)
    assert document["n_subjects"] == 6  # every subject predicted exactly once, by the fold that held it out
    pooled = pd.read_parquet(out / "predictions.parquet")
    assert sorted(pooled.groupby("fold")["subject"].nunique()) == [3, 3]
    assert not pooled.duplicated(["subject", "sequence", "frame"]).any()
    fold_iccs = [fold["mean"]["icc"] for fold in document["folds"]]
    assert document["mean_over_folds"]["mean"]["icc"] == pytest.approx(np.mean(fold_iccs))
    assert "Pooled over 2 folds" in (out / "report.md").read_text()
    # The last checkpoint, not the epoch that scored best on the held-out (= test) fold.
    assert [fold["checkpoint"] for fold in document["folds"]] == ["last.ckpt", "last.ckpt"]
    assert all(fold["train_seconds"] > 0 for fold in document["folds"])  # what each fold cost
    assert "Training wall time summed over 2 folds" in (out / "report.md").read_text()
    with pytest.raises(UsageError, match="checkpoint must be one of"):
        crossval("bmvc2018-lite", cache_dir, out, folds=2, checkpoint="final")

    stamp = (out / "fold0" / "best.ckpt").stat().st_mtime_ns
    second = crossval("bmvc2018-lite", cache_dir, out, folds=2, overrides=TINY, quiet=True)
    assert second.trained_folds == [] and second.skipped_folds == [0, 1]
    assert (out / "fold0" / "best.ckpt").stat().st_mtime_ns == stamp
    assert_metrics_close(second.metrics["pooled"], document["pooled"])

    (out / "fold1" / "metrics.json").unlink()  # an unfinished fold is redone (training resumes, done)
    third = crossval("bmvc2018-lite", cache_dir, out, folds=2, overrides=TINY, quiet=True)
    assert third.trained_folds == [1] and third.skipped_folds == [0]
    assert_metrics_close(third.metrics["per_au"], document["per_au"])
    with pytest.raises(UsageError, match="folds are set by crossval"):
        crossval("bmvc2018-lite", cache_dir, out, folds=2, overrides=["data.fold=1"])


def test_published_tables_are_sourced_and_never_invented() -> None:
    from facskit.eval.published import list_published, published_entries, published_results

    assert {"bmvc2018-bp4d", "scc-bp4d", "scc-disfa"} <= set(list_published())
    for name, entry in published_entries().items():
        assert entry["paper"] and entry["table"] and entry["url"].startswith("https://") and entry["status"]
        document = published_results(name)
        values = [v for au in document["per_au"].values() for v in au.values()] + list(
            document["mean"].values()
        )
        for value in values:
            assert value is None or (0 <= value <= 5)
    assert published_results("bmvc2018-bp4d")["mean"]["icc"] == 0.68
