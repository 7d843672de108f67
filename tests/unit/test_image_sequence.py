"""Folders of images and printf-style patterns as sources: order, timeline and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.ingest.source import (
    ImageSequenceSource,
    SourceError,
    VideoSource,
    is_image_sequence,
    open_source,
    resolve_fps,
)


def write_image(path: Path, value: int, size: tuple[int, int] = (24, 32)) -> Path:
    """A flat image whose pixel value identifies it after decoding."""
    assert cv2.imwrite(str(path), np.full((*size, 3), value, dtype=np.uint8))
    return path


def sequence(source: Path, fps: float | None = None) -> ImageSequenceSource:
    """The source open_source picks for `source`, which must be a sequence."""
    src = open_source(str(source), fps=fps, open_timeout_s=1.0)
    assert isinstance(src, ImageSequenceSource)
    return src


def values(source: VideoSource) -> list[int]:
    return [int(f.image[0, 0, 0]) for f in source.frames()]


def test_folder_plays_in_natural_order(tmp_path: Path) -> None:
    for value, name in [(30, "img10.png"), (10, "img2.png"), (0, "img1.png"), (20, "IMG3.PNG")]:
        write_image(tmp_path / name, value)
    (tmp_path / "notes.txt").write_text("not a frame")
    src = sequence(tmp_path)
    assert [p.name for p in src.paths] == ["img1.png", "img2.png", "IMG3.PNG", "img10.png"]
    assert values(src) == [0, 10, 20, 30]


def test_zero_padded_names_and_every_extension(tmp_path: Path) -> None:
    names = ["000.jpg", "001.JPEG", "002.png", "003.bmp", "004.webp"]
    for i, name in enumerate(names):
        write_image(tmp_path / name, 50 * i)
    src = sequence(tmp_path)
    assert [p.name for p in src.paths] == names
    assert src.stats.expected_frames == 5


def test_timeline_is_index_over_fps_and_every_image_is_yielded(tmp_path: Path) -> None:
    for i in range(6):
        write_image(tmp_path / f"f{i}.png", i)
    src = sequence(tmp_path, fps=4.0)
    frames = list(src.frames())
    assert [f.index for f in frames] == list(range(6))
    assert [f.pts_s for f in frames] == [i / 4.0 for i in range(6)]
    assert src.native_fps == 4.0 and not src.is_stream
    assert (src.stats.frames_read, src.stats.frames_sampled, src.stats.expected_frames) == (6, 6, 6)


def test_default_fps_is_one(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / f"f{i}.png", i)
    src = sequence(tmp_path)
    assert src.native_fps == 1.0
    assert [f.pts_s for f in src.frames()] == [0.0, 1.0, 2.0]


def test_resolve_fps_defaults_by_kind(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 0)
    assert resolve_fps(str(tmp_path), None) == 1.0
    assert resolve_fps(str(tmp_path / "%d.png"), None) == 1.0
    assert resolve_fps("clip.mp4", None) == 5.0
    assert resolve_fps("clip.mp4", 0.0) is None  # 0 = every frame of a video
    assert resolve_fps(str(tmp_path), 2.5) == 2.5


def test_what_counts_as_a_sequence(tmp_path: Path) -> None:
    video_named_like_a_pattern = tmp_path / "clip%03d.mp4"
    video_named_like_a_pattern.write_bytes(b"x")
    assert is_image_sequence(str(tmp_path))
    assert is_image_sequence(str(tmp_path / "frames" / "%03d.jpg"))
    assert not is_image_sequence(str(video_named_like_a_pattern))
    assert not is_image_sequence(str(tmp_path / "clip.mp4"))
    assert not is_image_sequence("rtsp://host/%03d.jpg")


def test_pattern_expands_from_the_first_existing_number(tmp_path: Path) -> None:
    for n in (1, 2, 3, 10, 100):
        write_image(tmp_path / f"{n:03d}.jpg", n)
    # Not what %03d.jpg writes, or another pattern's files: left out.
    write_image(tmp_path / "7.jpg", 7)
    write_image(tmp_path / "0004.jpg", 4)
    write_image(tmp_path / "x005.jpg", 5)
    write_image(tmp_path / "006.png", 6)
    src = sequence(tmp_path / "%03d.jpg")
    assert [p.name for p in src.paths] == ["001.jpg", "002.jpg", "003.jpg", "010.jpg", "100.jpg"]
    frames = list(src.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.pts_s for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_unpadded_pattern_orders_numerically(tmp_path: Path) -> None:
    for n in (0, 1, 2, 10, 11):
        write_image(tmp_path / f"frame_{n}.png", n)
    src = sequence(tmp_path / "frame_%d.png", fps=2.0)
    assert values(src) == [0, 1, 2, 10, 11]


def test_corrupt_image_is_skipped_counted_and_keeps_its_slot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "0.png", 0)
    (tmp_path / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(tmp_path / "2.png", 2)
    src = sequence(tmp_path, fps=2.0)
    with caplog.at_level(logging.WARNING, logger="services.ingest.source"):
        frames = list(src.frames())
    assert [(f.index, f.pts_s) for f in frames] == [(0, 0.0), (2, 1.0)]
    assert (src.stats.corrupt_frames, src.stats.frames_read, src.stats.expected_frames) == (1, 2, 3)
    assert "1.png" in caplog.text


def test_corrupt_first_image_is_probed_past(tmp_path: Path) -> None:
    (tmp_path / "0.jpg").write_bytes(b"garbage")
    write_image(tmp_path / "1.jpg", 100, size=(10, 20))
    write_image(tmp_path / "2.jpg", 200, size=(30, 40))
    src = sequence(tmp_path)
    assert (src.width, src.height) == (20, 10)
    frames = list(src.frames())
    # Mixed sizes: each frame carries its own image.
    assert [(f.index, f.image.shape[:2]) for f in frames] == [(1, (10, 20)), (2, (30, 40))]
    assert src.stats.corrupt_frames == 1


def test_empty_folder_names_it_and_the_extensions(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match=r"no images in folder .*\.jpg.*\.webp"):
        open_source(str(tmp_path), fps=None, open_timeout_s=1.0)


def test_pattern_without_matches_names_it(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", 0)
    pattern = str(tmp_path / "%03d.jpg")
    with pytest.raises(SourceError, match="no files match pattern") as err:
        open_source(pattern, fps=None, open_timeout_s=1.0)
    assert pattern in str(err.value) and ".png" in str(err.value)


def test_missing_folder_of_a_pattern(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nowhere" / "%03d.jpg"), fps=None, open_timeout_s=1.0)


def test_all_corrupt_fails_at_open(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match="none of the 3 images"):
        open_source(str(tmp_path), fps=None, open_timeout_s=1.0)


def test_nonpositive_fps_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 0)
    with pytest.raises(SourceError, match="fps must be positive"):
        ImageSequenceSource(str(tmp_path), fps=-1.0)
