"""Decoding one image file, robustly, to a fixed-size RGB ``uint8`` array.

Rules (also in docs/data.md, "How images are read"):

- Greyscale, palette, CMYK and 16-bit images are converted to 8-bit RGB; 16-bit samples are
  scaled to 8 bits, ``round(v * 255 / 65535)`` (a 32-bit integer image counts as 16-bit only if
  a value exceeds 255, else as 8-bit). Transparent images are composited over white.
- The EXIF orientation tag is applied, so a phone photo is upright.
- An animated GIF (or any multi-frame file) is decoded as its first frame.
- Large JPEGs are decoded at reduced scale first (libjpeg's DCT scaling), then resized.
- Images are resized to ``size x size`` with an antialiased bilinear filter, ignoring the aspect
  ratio (as ``keras.utils.image_dataset_from_directory`` does by default).
- A file that cannot be decoded (truncated, empty, not an image) raises :class:`UnreadableImage`
  with the reason; the loader skips it, counts it and lists it in the run's report.

Example:
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
    >>> Image.fromarray(np.zeros((10, 20), np.uint8)).save(path)
    >>> decode(path, 8).shape
    (8, 8, 3)
    >>> try_decode(path + ".missing", 8)[1].startswith("[Errno 2] No such file")
    True
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class UnreadableImage(Exception):
    """Raised by :func:`decode` for a file that is not a usable image."""


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float64)
        # I;16 is 16-bit by definition (a dark one is not 8-bit data); a 32-bit "I" image
        # has no declared depth, so it is read as 16-bit only when a value exceeds 255.
        top = 65535.0 if im.mode != "I" or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im)
        im = Image.fromarray(
            np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L"
        )
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def decode(path: str, size: int) -> np.ndarray:
    """Decodes ``path`` to a ``(size, size, 3)`` uint8 RGB array.

    Raises:
        UnreadableImage: The file is empty, truncated, or not an image PIL can decode.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and decompression-bomb chatter
            with Image.open(path) as im:
                im.seek(0)
                if im.format in ("JPEG", "MPO"):  # MPO: a phone's JPEG with extra frames
                    im.draft("RGB", (size, size))
                im.load()
                im = ImageOps.exif_transpose(im)
                im = _to_rgb(im)
                im = im.resize((size, size), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise UnreadableImage(reason) from None


def try_decode(path: str, size: int) -> tuple[np.ndarray | None, str | None]:
    """:func:`decode` with the reason in place of an exception: ``(pixels, None)`` or
    ``(None, reason)``, the reason the loader lists for a skipped file.

    Any exception counts, not only :class:`UnreadableImage`: a Pillow plugin's own error on a
    strange file (``struct.error``, ``IndexError``) skips that file and never stops a load.
    """
    try:
        return decode(path, size), None
    except UnreadableImage as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}".strip()
