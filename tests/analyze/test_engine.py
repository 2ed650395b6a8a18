"""The pipelined engine gives the plain loop's rows exactly, for any batch size; its threads hand errors over
in order and stop when the consumer does."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest

from facskit.analyze.engine import in_background, tune_malloc
from facskit.errors import MediaError

FRAMES = 60


@pytest.fixture(scope="module")
def tiny_model():
    from facskit.models import create_model

    return create_model("bmvc2018-tiny", width=32, depth=2, input_size=64)


def _analyze(model, video, **options):
    from facskit import Detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pinned = {"backend": "torch", "precision": "fp32", **options}
        return pd.DataFrame(Detector(model=model, **pinned).analyze(video, max_frames=FRAMES))


def test_pipelined_equals_plain_loop_and_batch_size_does_not_matter(tiny_model, media_dir) -> None:
    video = media_dir / "WolfgangLanger_Pexels.mp4"
    plain = _analyze(tiny_model, video, pipelined=False, batch_size=16)
    piped = _analyze(tiny_model, video, pipelined=True, batch_size=16)
    assert len(plain) >= FRAMES and plain["face_detected"].any()
    pd.testing.assert_frame_equal(plain, piped)  # same crops, same batches: bit-identical
    one = _analyze(tiny_model, video, pipelined=True, batch_size=1)
    many = _analyze(tiny_model, video, pipelined=True, batch_size=64)
    aus = [c for c in plain.columns if c.startswith("AU") and not c.endswith("_c")]
    non_au = [c for c in plain.columns if c not in aus and not c.endswith("_c")]
    pd.testing.assert_frame_equal(one[non_au], plain[non_au])
    pd.testing.assert_frame_equal(many[non_au], plain[non_au])
    assert np.nanmax(np.abs(one[aus].to_numpy() - many[aus].to_numpy())) <= 1e-4


def test_video_with_several_faces_and_no_face_frames(tiny_model, media_dir) -> None:
    video = media_dir / "face_noface.mov"
    pd.testing.assert_frame_equal(_analyze(tiny_model, video, pipelined=False), _analyze(tiny_model, video))


def test_errors_arrive_after_the_items_before_them() -> None:
    def items():
        yield 1
        yield 2
        raise MediaError("cut short")

    seen = []
    with pytest.raises(MediaError, match="cut short"):
        for item in in_background(items(), maxsize=1, name="test"):
            seen.append(item)
    assert seen == [1, 2]


def test_consumer_stopping_early_stops_the_producer() -> None:
    produced = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    before = threading.active_count()
    stream = in_background(items(), maxsize=2, name="test")
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert threading.active_count() == before
    assert len(produced) < 10  # bounded queue: the producer never ran ahead


def test_tune_malloc_is_harmless() -> None:
    assert tune_malloc() in (True, False)
    assert np.ones(1 << 20).sum() == 1 << 20


def test_queues_hold_fewer_frames_of_large_videos() -> None:
    from facskit.analyze.engine import DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES, queue_length

    assert queue_length(None, DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES) == DECODE_QUEUE_FRAMES
    assert queue_length(640 * 360 * 3, DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES) == DECODE_QUEUE_FRAMES
    assert queue_length(1920 * 1080 * 3, DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES) == 10
    assert queue_length(3840 * 2160 * 3, DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES) == 2
    assert queue_length(10**10, DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES) == 2  # never fewer than two


def test_frames_keep_their_pixels_only_for_a_consumer_that_wants_them(
    tiny_model, media_dir, monkeypatch
) -> None:
    """Frames queued for the network hold only their crops, unless ``on_frame`` (overlays) wants pixels."""
    from facskit import Detector
    from facskit.analyze.pipeline import AnalysisPipeline

    queued: list[bool] = []
    prepare = AnalysisPipeline.prepare

    def spying(self, file, frame, tracked):  # noqa: ANN001, ANN202
        result, crops = prepare(self, file, frame, tracked)
        queued.append(result.image is not None)
        return result, crops

    monkeypatch.setattr(AnalysisPipeline, "prepare", spying)
    video = media_dir / "WolfgangLanger_Pexels.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector = Detector(model=tiny_model, backend="torch", precision="fp32")
    seen: list[bool] = []
    for _ in detector.iter_chunks(video, max_frames=10, on_frame=lambda r: seen.append(r.image is not None)):
        pass
    assert queued == seen == [True] * 10  # the overlay writer sees every frame's pixels
    queued.clear()
    chunks = list(detector.iter_chunks(video, max_frames=10))
    assert queued == [False] * 10 and sum(len(chunk) for chunk in chunks) == 10
