"""Pixel counts read from image headers, before anything is decoded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.common.images import ImageTooLarge, check_pixels
from services.common.memory_api import clipped


def test_real_jpeg_and_png_report_their_size() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    for ext in (".jpg", ".png"):
        ok, data = cv2.imencode(ext, image)
        assert ok and check_pixels(data.tobytes()) == (64, 48)


def test_over_the_limit_names_size_and_limit() -> None:
    _, data = cv2.imencode(".png", np.zeros((300, 400, 3), np.uint8))
    with pytest.raises(ImageTooLarge, match=r"400x300 = 0\.1 MP, over the 0\.1 MP limit") as err:
        check_pixels(data.tobytes(), max_pixels=100_000)
    assert err.value.size == (400, 300)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a JPEG or PNG"),
        (b"not an image at all", "not a JPEG or PNG"),
        (b"GIF89a" + b"\x00" * 20, "not a JPEG or PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "start like a PNG but its header cannot be read"),
        (b"\xff\xd8\xff" + b"\x00" * 5, "start like a JPEG but its header cannot be read"),
    ],
)
def test_no_header_is_a_value_error(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_pixels(data)


def test_holds_with_ultralytics_imported() -> None:
    """ultralytics patches PIL.Image.open when imported; the header readers must not go through it."""
    patches = pytest.importorskip("ultralytics.utils.patches")
    from PIL import Image

    assert Image.open is patches.image_open
    with pytest.raises(ValueError, match="not a JPEG or PNG"):
        check_pixels(b"not an image at all")


def test_messages_clip_what_they_echo() -> None:
    assert clipped("lobby") == "'lobby'"
    long = "x" * 10_000
    assert clipped(long) == f"{'x' * 64!r}... (10,000 characters)"
