"""Image bytes from outside: their pixel count read from the header, before anything is decoded."""

from __future__ import annotations

import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

# 36 MP holds an 8K UHD frame (7680 x 4320 = 33.2 MP) and decodes to ~108 MB of BGR.
MAX_IMAGE_PIXELS = 36_000_000


class ImageTooLarge(ValueError):
    """The header declares more pixels than allowed (`size` is None when only the count is known)."""

    def __init__(self, pixels: int, limit: int, size: tuple[int, int] | None) -> None:
        what = f"{size[0]}x{size[1]} = " if size else ""
        super().__init__(
            f"the image is {what}{pixels / 1e6:.1f} MP, over the {limit / 1e6:g} MP limit: downscale it before sending"
        )
        self.pixels, self.limit, self.size = pixels, limit, size


def check_pixels(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone (Pillow reads no pixel data); ImageTooLarge past `max_pixels`,
    ValueError when there is no image header to read."""
    try:
        with warnings.catch_warnings():
            # Pillow warns past 89 MP: the limit here is ours, with its own message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        # Past 179 MP Pillow refuses to open it at all; its message still carries the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLarge(
            int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0), max_pixels, None
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValueError(f"{len(data)} bytes are not a JPEG, PNG or other image whose header can be read") from None
    if width * height > max_pixels:
        raise ImageTooLarge(width * height, max_pixels, (width, height))
    return width, height
