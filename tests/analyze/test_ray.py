"""Ray fan-out: the same rows and numbers as one process, a video cut into time chunks included, with face ids
stable across the chunk border. Runs on a local Ray instance with 2 CPUs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from facskit.analyze.chunks import Chunk, plan_chunks
from facskit.faces.track import DEFAULT_FULL_SCAN_ROUNDS

FRAMES = 150


def _micro_detector():
    """A Detector on a micro untrained Hourglass: the numbers are meaningless, the wiring is the test."""
    from facskit import Detector
    from facskit.models import create_model

    model = create_model("bmvc2018-tiny", width=32, depth=2, input_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Detector(model=model, batch_size=8, backend="torch", precision="fp32")


def test_plan_chunks_warm_up_is_aligned_to_detection_rounds() -> None:
    assert plan_chunks(None, 100, 60, 5) == [Chunk(0, 0, None, 0)]
    assert plan_chunks(90, 100, 60, 5) == [Chunk(0, 0, None, 0)]
    chunks = plan_chunks(250, 100, 33, 5)
    assert [(c.start, c.stop) for c in chunks] == [(0, 100), (100, 200), (200, None)]
    assert [c.warm_start for c in chunks] == [0, 60, 165]
    assert all(c.warm_start % (5 * DEFAULT_FULL_SCAN_ROUNDS) == 0 for c in chunks)  # whole-frame scans align
    assert chunks[0].tail_from is not None and chunks[0].tail_from <= chunks[1].warm_start


def test_stop_ray_stops_the_local_instance_it_started() -> None:
    """The CLI's shutdown leaves no Ray process of its own behind (the monitor is killed, not waited for)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'facskit[ray]'")
    from facskit.analyze.distributed import init_ray, stop_ray

    if ray.is_initialized():
        pytest.skip("another test's Ray instance is still connected")
    init_ray(None, num_cpus=1)
    processes = [
        info.process for infos in ray._private.worker._global_node.all_processes.values() for info in infos
    ]
    stop_ray()
    assert not ray.is_initialized()
    assert all(process.poll() is not None for process in processes)
    stop_ray()  # not connected: nothing to do


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'facskit[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_equals_one_process_across_a_chunk_border(ray_local, media_dir) -> None:
    from facskit.analyze.distributed import analyze_ray

    detector = _micro_detector()
    video = media_dir / "WolfgangLanger_Pexels.mp4"
    image = media_dir / "single_face.jpg"
    single = pd.DataFrame(detector.analyze([video, image], max_frames=FRAMES))
    logged: list[str] = []
    fanned = analyze_ray(detector, [video, image], chunk_frames=80, max_frames=FRAMES, log=logged.append)
    stitch = fanned.attrs["stitch"]
    fanned = pd.DataFrame(fanned)
    assert any("chunk 1" in line for line in logged)  # the video really was cut in two
    assert list(single.columns) == list(fanned.columns)
    aus = [c for c in single.columns if c.startswith("AU") and not c.endswith("_c")]
    rest = [c for c in single.columns if c not in aus]
    pd.testing.assert_frame_equal(single[rest], fanned[rest])  # same rows, boxes, landmarks, face ids
    assert np.nanmax(np.abs(single[aus].to_numpy() - fanned[aus].to_numpy())) <= 1e-4
    ids = fanned[(fanned["file"] == str(video)) & fanned["face_detected"]]
    around = ids[(ids["frame"] >= 70) & (ids["frame"] < 90)]["face_id"]
    assert around.nunique() == 1  # one face id through the border at frame 80
    assert stitch[str(video)]["exact"] and stitch[str(video)]["chunks"] == 2
    assert 0 < stitch[str(video)]["sync_frames"][0] < 80  # caught up inside the warm-up


def test_one_cpu_task_runs_serially_capped_and_reuses_its_detector(media_dir) -> None:
    """A one-CPU task (the default) runs the serial loop with its thread pools capped, a two-CPU task the
    pipelined engine; both give the same rows, and a worker builds the run's detector only once."""
    import cv2
    import torch

    from facskit.analyze.distributed import DetectorRecipe, analyze_chunk

    detector = _micro_detector()
    video = str(media_dir / "WolfgangLanger_Pexels.mp4")
    chunk = Chunk(0, 0, None, 0)
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        one = DetectorRecipe.of(detector, threads=1)
        built = one.build()
        assert built is one.build()  # cached per worker process and run
        assert not built.pipelined and torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
        serial = analyze_chunk(one, video, chunk, max_frames=40)
        two = DetectorRecipe.of(detector, threads=2)
        assert two.build().pipelined
        pipelined = analyze_chunk(two, video, chunk, max_frames=40)
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    assert len(serial.rows) == 40 and serial.error is None
    pd.testing.assert_frame_equal(serial.rows, pipelined.rows, atol=1e-5)


def test_start_ray_warms_one_worker_per_task_slot(ray_local) -> None:
    from facskit.analyze.distributed import start_ray
    from facskit.errors import UsageError

    refs = start_ray(None, detect_every=5)  # the fixture's 2-CPU instance: two one-CPU slots
    pids = ray_local.get(refs)
    assert len(refs) == 2 and all(isinstance(pid, int) and pid > 0 for pid in pids)
    assert len(start_ray(None, workers=1)) == 1  # only the slots the run will use
    with pytest.raises(UsageError, match="cpus-per-task"):
        start_ray(None, cpus_per_task=0)


def test_ray_output_folder_equals_the_single_process_one(ray_local, media_dir, tmp_path) -> None:
    """`facskit analyze --ray` writes the files a single process writes (same rows, AUs within 1e-4), each
    as soon as its tasks are back rather than after the whole run, and a rerun skips them."""
    from facskit.analyze.runner import OutputOptions, RaySettings, analyze_to_dir

    detector = _micro_detector()
    inputs = [
        media_dir / "WolfgangLanger_Pexels.mp4",
        media_dir / "single_face.jpg",
        media_dir / "no_face.mp4",
    ]
    options = OutputOptions(max_frames=40)
    analyze_to_dir(detector, inputs, tmp_path / "one", options, log=lambda _: None)
    logged: list[str] = []
    ray = RaySettings(workers=2)
    report = analyze_to_dir(detector, inputs, tmp_path / "ray", options, log=logged.append, ray=ray)
    assert len(report.written) == 3 and not report.errors
    for target in report.written:
        single, fanned = pd.read_csv(tmp_path / "one" / target.name), pd.read_csv(target)
        aus = [c for c in single.columns if c.startswith("AU") and not c.endswith("_c")]
        rest = [c for c in single.columns if c not in aus]
        pd.testing.assert_frame_equal(single[rest], fanned[rest])
        assert np.nanmax(np.abs(single[aus].to_numpy() - fanned[aus].to_numpy()), initial=0.0) <= 1e-4
    assert (tmp_path / "ray" / "summary.csv").is_file()
    # Two slots, three one-task files: the first file is written before the third task can have finished.
    first_write = next(i for i, line in enumerate(logged) if " rows -> " in line)
    assert first_write < logged.index(next(line for line in logged if line.startswith("ray: 3/3 tasks")))
    again = analyze_to_dir(detector, inputs, tmp_path / "ray", options, log=lambda _: None, ray=RaySettings())
    assert len(again.skipped) == 3 and not again.written


def test_every_output_option_works_with_ray(ray_local, media_dir, tmp_path) -> None:
    """One driver: --openface-columns is written from Ray's rows; --save-heatmaps and --overlay-video need
    each input's frames in order, so those inputs run in the driver's process; all equal a run without Ray."""
    from facskit.analyze.runner import OutputOptions, RaySettings, analyze_to_dir

    detector = _micro_detector()
    inputs = [media_dir / "single_face.mp4"]
    for k, options in enumerate(
        (
            OutputOptions(max_frames=12, openface_columns=True),
            OutputOptions(max_frames=12, save_heatmaps=True, overlay_video=True),
        )
    ):
        one, fanned = tmp_path / f"one{k}", tmp_path / f"ray{k}"
        analyze_to_dir(detector, inputs, one, options, log=lambda _: None)
        logged: list[str] = []
        report = analyze_to_dir(detector, inputs, fanned, options, log=logged.append, ray=RaySettings())
        assert len(report.written) == 1 and not report.errors
        single, rayed = pd.read_csv(one / report.written[0].name), pd.read_csv(report.written[0])
        assert list(single.columns) == list(rayed.columns)
        assert ("AU06_r" in rayed.columns) == options.openface_columns
        here = any("run in this process" in line for line in logged)
        assert here == options.save_heatmaps
        if options.save_heatmaps:
            pd.testing.assert_frame_equal(single, rayed)
            assert list(fanned.glob("*.heatmaps")) and list(fanned.glob("*.overlay.mp4"))
