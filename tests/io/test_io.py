"""facskit.io: expanding paths, decoding images of every flavour, streaming videos, refusing bad input."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from facskit.errors import MediaError, UsageError
from facskit.io import (
    MediaKind,
    Progress,
    expand_path,
    image_size,
    iter_frames,
    iter_media,
    probe,
    read_image,
)

WOLFGANG_FRAMES = 472
WOLFGANG_FPS = 24000 / 1001


def _png_with_size(path: Path, width: int, height: int) -> None:
    """A valid 16x16 PNG whose IHDR is patched (with a correct CRC) to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr_start = 8 + 4  # signature, then the chunk length
    assert data[ihdr_start : ihdr_start + 4] == b"IHDR"
    data[ihdr_start + 4 : ihdr_start + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_start : ihdr_start + 17]))
    data[ihdr_start + 17 : ihdr_start + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


# ---- paths ---------------------------------------------------------------------------------------------


def test_folder_is_walked_recursively_and_sorted(tmp_path: Path) -> None:
    for name in ("b/z.png", "a/y.jpg", "c.mp4", "notes.txt", "a/deeper/x.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [(m.path.relative_to(tmp_path).as_posix(), m.kind) for m in expand_path(tmp_path)]
    assert found == [
        ("a/deeper/x.webp", MediaKind.IMAGE),
        ("a/y.jpg", MediaKind.IMAGE),
        ("b/z.png", MediaKind.IMAGE),
        ("c.mp4", MediaKind.VIDEO),
    ]


def test_glob_pattern_and_duplicates(tmp_path: Path) -> None:
    for name in ("one.png", "two.png", "three.jpg"):
        (tmp_path / name).write_bytes(b"")
    found = list(iter_media([str(tmp_path / "*.png"), tmp_path / "one.png"]))
    assert [m.path.name for m in found] == ["one.png", "two.png"]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does-not-exist"):
        expand_path(tmp_path / "does-not-exist.mp4")
    with pytest.raises(UsageError, match="matches no files"):
        expand_path(str(tmp_path / "*.nothing"))


def test_folder_without_media_is_a_media_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no faces here")
    with pytest.raises(MediaError, match="no image or video"):
        expand_path(tmp_path)


# ---- images --------------------------------------------------------------------------------------------


def test_grayscale_rgba_and_16bit_png_become_uint8_rgb(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # (64, 64)
    Image.fromarray(ramp, "L").save(tmp_path / "gray.png")
    rgba = np.dstack([ramp, ramp, ramp, np.full_like(ramp, 7)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit grey, I;16
    for name in ("gray.png", "rgba.png", "deep.png"):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3), name
        np.testing.assert_array_equal(image[..., 1], ramp, err_msg=name)  # scaled, not clipped


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rotated.jpg")
    assert image.shape == (40, 20, 3)  # portrait after rotation
    assert image_size(tmp_path / "rotated.jpg") == (20, 40)
    assert image[2, 10, 0] > 200 and image[2, 10, 2] < 60  # the stored left (red) is now on top
    assert image[-3, 10, 2] > 200 and image[-3, 10, 0] < 60


def test_real_photo_decodes(media_dir: Path) -> None:
    image = read_image(media_dir / "multi_face.jpg")
    assert image.shape == (667, 1000, 3) and image.dtype == np.uint8


def test_text_file_named_jpg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a JPEG")
    with pytest.raises(MediaError, match="notes.jpg"):
        read_image(path)


def test_truncated_jpeg_is_refused(tmp_path: Path, media_dir: Path) -> None:
    data = (media_dir / "single_face.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.jpg"):
        read_image(path)


def test_tiny_image_is_refused(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(MediaError, match="1x1"):
        read_image(tmp_path / "dot.png")


def test_decode_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _png_with_size(path, 20000, 20000)
    assert path.stat().st_size < 1000
    with pytest.raises(MediaError, match=r"bomb.png.*(20000x20000|MP limit)"):
        read_image(path)


def test_image_is_one_frame(media_dir: Path) -> None:
    frames = list(iter_frames(media_dir / "single_face.jpg"))
    assert [(f.index, f.timestamp) for f in frames] == [(0, 0.0)]
    info = probe(media_dir / "single_face.jpg")
    assert (info.kind, info.frame_count, info.width, info.height) == (MediaKind.IMAGE, 1, 572, 562)


# ---- videos --------------------------------------------------------------------------------------------


def _first(frames, count):  # noqa: ANN001, ANN202 - a tiny generator helper
    out = []
    for frame in frames:
        out.append(frame)
        if len(out) == count:
            break
    return out


def test_video_probe_and_timestamps(media_dir: Path) -> None:
    info = probe(media_dir / "WolfgangLanger_Pexels.mp4")
    assert (info.kind, info.frame_count, info.width, info.height) == (
        MediaKind.VIDEO,
        WOLFGANG_FRAMES,
        640,
        360,
    )
    assert info.fps == pytest.approx(WOLFGANG_FPS)
    frames = _first(iter_frames(media_dir / "WolfgangLanger_Pexels.mp4"), 30)
    assert [f.index for f in frames] == list(range(30))
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    times = np.array([f.timestamp for f in frames])
    np.testing.assert_allclose(times, np.arange(30) / WOLFGANG_FPS, atol=1e-6)


def test_every_nth_frame(media_dir: Path) -> None:
    frames = _first(iter_frames(media_dir / "WolfgangLanger_Pexels.mp4", frame_step=5), 8)
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25, 30, 35]
    assert frames[1].timestamp == pytest.approx(5 / WOLFGANG_FPS)


def test_variable_frame_rate_timestamps_come_from_pts(media_dir: Path) -> None:
    # face_noface.mov averages 26.4 fps but its frames are not evenly spaced: index / fps would be wrong.
    times = np.array([f.timestamp for f in iter_frames(media_dir / "face_noface.mov", frame_step=4)])
    steps = np.diff(times)
    assert times[0] == 0.0 and np.all(steps > 0)
    assert steps.max() - steps.min() > 0.01  # uneven spacing survives


def test_truncated_video_yields_good_frames_then_raises(tmp_path: Path, media_dir: Path) -> None:
    data = (media_dir / "WolfgangLanger_Pexels.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.25)])
    decoded = []
    with pytest.raises(MediaError, match="cut.mp4.*truncated"):
        for frame in iter_frames(path, frame_step=8):  # frame_step=8 keeps the RGB conversions cheap
            decoded.append(frame.index)
    assert decoded and decoded == list(range(0, decoded[-1] + 1, 8))
    assert decoded[-1] < WOLFGANG_FRAMES - 10


def test_video_without_frames_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(MediaError, match="empty.mp4"):
        list(iter_frames(path))


def test_unreadable_video_is_refused(tmp_path: Path, media_dir: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"\x00" * 4096)
    with pytest.raises(MediaError, match="garbage.mp4"):
        list(iter_frames(path))
    with pytest.raises(MediaError, match="garbage.mp4"):
        probe(path)
    copy = tmp_path / "clip.bin"  # an unknown extension named explicitly is tried as a video
    shutil.copy(media_dir / "single_face.mp4", copy)
    assert expand_path(copy)[0].kind is MediaKind.VIDEO
    assert probe(copy).frame_count == 72


# ---- progress ------------------------------------------------------------------------------------------


def test_progress_reports_rate_and_eta() -> None:
    stream = io.StringIO()
    with Progress(10, unit="frames", stream=stream) as progress:
        for _ in range(4):
            progress.update()
    text = stream.getvalue()
    assert "4/10 frames" in text and "frames/s" in text and "ETA" in text
    quiet = io.StringIO()
    with Progress(10, quiet=True, stream=quiet) as progress:
        progress.update(3)
    assert quiet.getvalue() == ""
