"""Image bytes from outside: their pixel count read from the header, before anything is decoded."""

from __future__ import annotations

import io
import struct

from PIL import JpegImagePlugin, PngImagePlugin

# 36 MP holds an 8K UHD frame (7680 x 4320 = 33.2 MP) and decodes to ~108 MB of BGR.
MAX_IMAGE_PIXELS = 36_000_000

# The formats the APIs accept, by magic number, and Pillow's reader of each one's header. The readers are
# used directly, not through Image.open: that adds Pillow's own bomb limit (179 MP, with no size in its
# error), and ultralytics, once imported, patches it to go looking for a HEIF plugin on unknown bytes.
_READERS = (
    ("JPEG", b"\xff\xd8", JpegImagePlugin.JpegImageFile),
    ("PNG", b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
)


class ImageTooLarge(ValueError):
    """The header declares more pixels than allowed."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(
            f"the image is {width}x{height} = {width * height / 1e6:.1f} MP, over the {limit / 1e6:g} MP limit: "
            "downscale it before sending"
        )
        self.size, self.limit = (width, height), limit


def check_pixels(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) from a JPEG or PNG header alone (no pixel data is read); ImageTooLarge past
    `max_pixels`, ValueError when the bytes are not a JPEG or PNG whose header can be read."""
    for name, magic, reader in _READERS:
        if data.startswith(magic):
            try:
                with reader(io.BytesIO(data)) as im:
                    width, height = int(im.size[0]), int(im.size[1])
            except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
                raise ValueError(
                    f"{len(data)} bytes start like a {name} but its header cannot be read ({exc})"
                ) from None
            break
    else:
        raise ValueError(f"{len(data)} bytes are not a JPEG or PNG image")
    if width * height > max_pixels:
        raise ImageTooLarge(width, height, max_pixels)
    return width, height
