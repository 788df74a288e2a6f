"""Decoding one image file into a square uint8 array, the same way for every file of a folder.

Imports only PIL and numpy at load time, so decode worker processes start fast (torch and
torchvision are imported on the first small JPEG, which they decode faster than PIL). Every mode PIL reads ends as
8-bit ``L`` or ``RGB``:

- 16-bit greyscale (``I;16*``) and 32-bit integer (``I``) images are scaled by 255/65535 (PIL's own
  ``convert("L")`` clips them, which turns most 16-bit images white); float (``F``) images in [0, 1]
  are scaled by 255.
- Transparency (RGBA, LA, PA, a palette or greyscale with a transparent index) is composited on
  white, for every file alike.
- CMYK, YCbCr, LAB, HSV and palette images go through PIL's RGB conversion; RGB to ``L`` is
  ITU-R 601-2 luma (PIL's ``convert("L")``).
- EXIF orientation is applied (``ImageOps.exif_transpose``) before anything else.
- Large JPEGs are decoded at a reduced scale (libjpeg DCT scaling through ``Image.draft``), never
  smaller than the requested size, then resized.

The square is the centre crop of the shorter side, resized with PIL's antialiased bilinear filter.
"""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps

# PIL refuses images above 2 x 89 megapixels as possible decompression bombs (and warns above 89); a user's own
# scans and panoramas reach that. Up to MAX_PIXELS are decoded (large JPEGs at reduced scale), larger files are
# "too large to decode".
MAX_PIXELS = 1_000_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's warning level; its refusal is at twice this
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
BACKGROUND = 255  # transparent pixels become white
ORIENTATION = 0x0112


class Unreadable(Exception):
    """The decoder could not read the file (corrupt, truncated or an unknown format)."""


SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def probe(path: str) -> tuple[int, int, bool]:
    """(width, height, has_colour) from the file's header, after EXIF rotation; raises like ``decode``.

    JPEG and PNG headers are parsed from their first bytes (the SOF segment, IHDR); other formats,
    palette PNGs and anything unusual go through PIL."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
        quick = _jpeg_header(head) if head[:2] == b"\xff\xd8" else _png_header(head) if head[:8] == PNG_SIGNATURE else None
        if quick is not None:
            return quick
        with Image.open(path) as im:
            w, h = im.size
            if _orientation(im) in (5, 6, 7, 8):
                w, h = h, w
            return w, h, has_colour(im)
    except (MemoryError, PermissionError):
        raise
    except Image.DecompressionBombError:
        raise MemoryError(f"over {MAX_PIXELS:,} pixels") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure means "unreadable"
        raise Unreadable(f"{type(exc).__name__}: {exc}") from None


def _sof(b: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, components, end of the SOF segment) from a JPEG's bytes, or None."""
    i = 2
    while i + 10 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:
            i += 1 if marker == 0xFF else 2
            continue
        if marker in SOF_MARKERS:
            h, w = int.from_bytes(b[i + 5:i + 7], "big"), int.from_bytes(b[i + 7:i + 9], "big")
            return (w, h, b[i + 9], i) if w and h else None
        i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return None


def _jpeg_header(b: bytes) -> tuple[int, int, bool] | None:
    """(width, height, colour) from a JPEG's SOF segment (1 component: greyscale), EXIF orientation applied."""
    sof = _sof(b)
    if sof is None:
        return None
    w, h, comps, end = sof
    return (h, w, comps != 1) if exif_orientation(b[:end]) in (5, 6, 7, 8) else (w, h, comps != 1)


def _png_header(b: bytes) -> tuple[int, int, bool] | None:
    """(width, height, colour) from a PNG's IHDR; None for palettes or an EXIF chunk (PIL decides those)."""
    if len(b) < 33 or b[12:16] != b"IHDR" or b[25] == 3 or b"eXIf" in b:
        return None
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big"), b[25] in (2, 6)


def has_colour(im: Image.Image) -> bool:
    """True when the image's mode carries colour (a palette counts when any entry is not grey)."""
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return any(pal[i] != pal[i + 1] or pal[i] != pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return im.mode not in GREY_MODES


def decode(path: str, size: int, channels: int) -> np.ndarray:
    """Decode ``path`` to a (channels, size, size) uint8 array; ``channels`` is 1 or 3.

    Raises ``Unreadable`` for decoder failures; MemoryError and PermissionError pass through.
    """
    try:
        if path.lower().endswith((".jpg", ".jpeg")):
            arr = _small_jpeg(path, size, channels)
            if arr is not None:
                return arr
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise MemoryError(f"{im.width}x{im.height} is over {MAX_PIXELS:,} pixels")
            if im.format == "JPEG" and size:
                im.draft("L" if channels == 1 else "RGB", (size, size))
            if _orientation(im) in range(2, 9):
                im = ImageOps.exif_transpose(im)
            im = to_mode(im, "L" if channels == 1 else "RGB")
            im = square(im, size)
            arr = np.asarray(im, dtype=np.uint8)
    except (MemoryError, PermissionError):
        raise
    except Image.DecompressionBombError:
        raise MemoryError(f"over {MAX_PIXELS:,} pixels") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure means "unreadable"
        raise Unreadable(f"{type(exc).__name__}: {exc}") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _small_jpeg(path: str, size: int, channels: int) -> np.ndarray | None:
    """A JPEG too small for reduced-scale decoding, decoded by libjpeg-turbo through torchvision (no per-file
    Python parsing: 2-4x PIL's rate on 32x32 files); None leaves it to PIL (CMYK, large, odd or corrupt files)."""
    with open(path, "rb") as f:
        data = f.read()
    sof = _sof(data[:65536])
    if sof is None or sof[2] not in (1, 3) or min(sof[:2]) >= 2 * size:
        return None
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 marks its decoders deprecated in favour of torchcodec
        try:
            x = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:
            return None
    arr = x.numpy()
    if arr.shape[1:] == (size, size):
        return arr
    im = square(Image.fromarray(arr[0] if channels == 1 else arr.transpose(1, 2, 0)), size)
    out = np.asarray(im, dtype=np.uint8)
    return out[None] if channels == 1 else out.transpose(2, 0, 1)


def to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert any PIL mode to 8-bit ``L`` or ``RGB`` with the rules in the module docstring."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _high_depth_to_l(im)
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (BACKGROUND,) * 3 + (255,))
        im = Image.alpha_composite(bg, rgba)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    return im if im.mode == mode else im.convert(mode)


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    x = np.asarray(im).astype(np.float64)
    x = x * 255.0 if im.mode == "F" and x.size and x.max() <= 1.0 else (x if im.mode == "F" else x * (255.0 / 65535.0))
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), "L")


def square(im: Image.Image, size: int) -> Image.Image:
    """Centre square of the shorter side, resized to ``size`` (antialiased bilinear)."""
    w, h = im.size
    s = min(w, h)
    if (w, h) == (size, size):
        return im
    left, top = (w - s) / 2, (h - s) / 2
    return im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + s, top + s), reducing_gap=3.0)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation
        return 1


def decode_many(paths: list[str], size: int, channels: int) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Decode a chunk: ((n, channels, size, size) uint8 with zeros for failures, [(i, kind, message)])."""
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    failures = []
    for i, p in enumerate(paths):
        try:
            out[i] = decode(p, size, channels)
        except Unreadable as exc:
            failures.append((i, "unreadable", str(exc)))
        except MemoryError:
            failures.append((i, "memory", "out of memory while decoding"))
        except PermissionError as exc:
            failures.append((i, "permission", str(exc)))
    return out, failures


def probe_many(paths: list[str]) -> list[tuple[int, int, bool] | tuple[str, str]]:
    """``probe`` for a chunk; a failure is (kind, message) instead of (w, h, colour)."""
    res = []
    for p in paths:
        try:
            res.append(probe(p))
        except Unreadable as exc:
            res.append(("unreadable", str(exc)))
        except MemoryError:
            res.append(("memory", "out of memory while reading the header"))
        except PermissionError as exc:
            res.append(("permission", str(exc)))
    return res


def decode_into(images_path: str, shape: tuple, rows: list[int], paths: list[str], size: int, channels: int) -> list[tuple[int, str, str]]:
    """Decode ``paths`` into rows ``rows`` of the raw uint8 file ``images_path`` of ``shape``.

    Runs in a worker thread or process; returns [(position in ``paths``, kind, message)] for failures.
    """
    arrays, failures = decode_many(paths, size, channels)
    mm = np.memmap(images_path, dtype=np.uint8, mode="r+", shape=tuple(shape))
    for i, row in enumerate(rows):
        mm[row] = arrays[i]
    del mm  # the shared mapping's pages reach the file; the builder fsyncs once at the end
    return failures


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8; 1 when absent) of JPEG bytes, read from the APP1 segment's first IFD."""
    start = data.find(b"Exif\x00\x00", 0, 65536)
    if start < 0:
        return 1
    tiff = start + 6
    order = "little" if data[tiff:tiff + 2] == b"II" else "big"
    try:
        ifd = tiff + int.from_bytes(data[tiff + 4:tiff + 8], order)
        for k in range(int.from_bytes(data[ifd:ifd + 2], order)):
            entry = ifd + 2 + 12 * k
            if int.from_bytes(data[entry:entry + 2], order) == ORIENTATION:
                value = int.from_bytes(data[entry + 8:entry + 10], order)
                return value if 1 <= value <= 8 else 1
    except (IndexError, ValueError):
        pass
    return 1
