"""The prepared-cache format: streamed .npy shards, atomic commits, random access, pickling, subsets."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import write_prepared_cache

from facskit.data.cache import META_FILE, SHARD_DIR, PreparedCache, ShardWriter
from facskit.errors import DatasetError

SIZE = 32


def crop(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def test_shard_writer_streams_valid_npy_shards(tmp_path: Path) -> None:
    (tmp_path / SHARD_DIR).mkdir()
    writer = ShardWriter(tmp_path / SHARD_DIR, "seq", (SIZE, SIZE, 3), shard_size=4)
    places = [writer.append(crop(i)) for i in range(10)]
    # Two full shards are committed as soon as they fill; the third only on close.
    assert sorted(p.name for p in (tmp_path / SHARD_DIR).iterdir()) == [
        "seq-0000.npy",
        "seq-0001.npy",
        "seq-0002.npy.tmp",
    ]
    writer.close()
    assert places[5] == ("shards/seq-0001.npy", 1)
    assert writer.written == ["shards/seq-0000.npy", "shards/seq-0001.npy", "shards/seq-0002.npy"]
    for i, (name, offset) in enumerate(places):
        shard = np.load(tmp_path / name, mmap_mode="r")
        assert shard.dtype == np.uint8 and shard.shape[1:] == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(shard[offset], crop(i))
    assert np.load(tmp_path / "shards/seq-0002.npy").shape == (2, SIZE, SIZE, 3)
    writer2 = ShardWriter(tmp_path / SHARD_DIR, "bad", (SIZE, SIZE, 3), shard_size=4)
    writer2.append(crop(0))
    writer2.abort()
    assert not list((tmp_path / SHARD_DIR).glob("bad*"))
    with pytest.raises(ValueError, match="crop must be uint8"):
        writer2.append(np.zeros((SIZE, SIZE, 3), np.float32))


def make_cache(root: Path, n: int = 9, skipped: tuple[int, ...] = (2, 5)) -> Path:
    """A small cache: 3 subjects, some frames skipped; frame i's landmark j at (i + j, -i - j)."""

    def faces():
        for i in range(n):
            row = {"subject": f"S{i % 3}", "sequence": "a", "frame": i, "AU06": float(i % 6), "AU12": np.nan}
            if i in skipped:
                yield "all", {**row, "skip_reason": "no_face"}, None, None
            else:
                j = np.arange(68, dtype=np.float64)
                yield "all", row, crop(i), np.stack([i + j, -i - j], axis=1)

    return write_prepared_cache(root, faces(), {"aus": [6, 12]}, shard_size=3)


def test_prepared_cache_items_and_subsets(tmp_path: Path) -> None:
    make_cache(tmp_path)
    cache = PreparedCache(tmp_path)
    assert len(cache) == 7 and len(cache.frames) == 9 and cache.aus == (6, 12)
    assert (cache.frames["skip_reason"] != "").sum() == 2
    frames = [0, 1, 3, 4, 6, 7, 8]
    for item_number, i in enumerate(frames):
        item = cache[item_number]
        np.testing.assert_array_equal(item["image"], crop(i))
        assert item["image"].flags.writeable
        assert item["landmarks"].shape == (68, 2) and item["landmarks"].dtype == np.float32
        assert item["landmarks"][3].tolist() == [i + 3, -i - 3]
        assert item["intensities"].dtype == np.float32
        assert item["intensities"][0] == i % 6 and np.isnan(item["intensities"][1])
        assert (item["subject"], item["sequence"], item["frame"]) == (f"S{i % 3}", "a", i)
    assert cache[-1]["frame"] == 8
    with pytest.raises(IndexError):
        cache[7]
    mask = (cache.index["subject"] == "S1").to_numpy()
    subset = cache.subset(mask)
    assert [subset[j]["frame"] for j in range(len(subset))] == [1, 4, 7]
    picked = cache.subset([6, 0])
    assert [picked[j]["frame"] for j in range(2)] == [8, 0]
    np.testing.assert_array_equal(picked[0]["image"], crop(8))


def test_prepared_cache_pickles_without_its_memory_maps(tmp_path: Path) -> None:
    make_cache(tmp_path)
    cache = PreparedCache(tmp_path)
    _ = cache[0]
    assert cache._maps
    payload = pickle.dumps(cache)
    assert len(payload) < 200_000
    clone = pickle.loads(payload)
    assert clone._maps == {}
    np.testing.assert_array_equal(clone[3]["image"], cache[3]["image"])


def test_prepared_cache_works_in_dataloader_workers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    make_cache(tmp_path)
    cache = PreparedCache(tmp_path)
    loader = torch.utils.data.DataLoader(cache, batch_size=4, num_workers=2, shuffle=False)
    frames = [int(f) for batch in loader for f in batch["frame"]]
    assert frames == [0, 1, 3, 4, 6, 7, 8]


def test_incomplete_or_foreign_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a complete prepared cache"):
        PreparedCache(tmp_path)
    make_cache(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"format": "other", "version": 1, "aus": []}))
    with pytest.raises(DatasetError, match="not a version 1"):
        PreparedCache(tmp_path)


def test_cache_settings_absent_damaged_or_not_a_mapping(tmp_path) -> None:
    """prepare and teach read a cache's settings through one function: None for a new folder, one line
    naming a damaged file."""
    from facskit.data.cache import META_FILE, read_cache_settings
    from facskit.errors import DatasetError

    assert read_cache_settings(tmp_path) is None
    (tmp_path / META_FILE).write_text('{"format": "x"')
    with pytest.raises(DatasetError, match=rf"{META_FILE}: not valid JSON .*use another --out"):
        read_cache_settings(tmp_path)
    (tmp_path / META_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_cache_settings(tmp_path)
    (tmp_path / META_FILE).write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a facskit cache's metadata"):
        read_cache_settings(tmp_path)
    (tmp_path / META_FILE).write_text('{"format": "x"}')
    assert read_cache_settings(tmp_path) == {"format": "x"}
