"""JPEG decoding on the GPU in batches (nvjpeg through ``torchvision.io.decode_jpeg(device="cuda")``).

Same result as ``decode.decode`` up to rounding: EXIF orientation applied, centre square of the
shorter side, antialiased bilinear resize. Files nvjpeg cannot decode (CMYK, some progressive or
corrupt files) are handed back for the CPU decoder.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from workbench.core.decode import exif_orientation

JPEG_EXTS = (".jpg", ".jpeg")
BATCH = 256


def available() -> bool:
    """True when a CUDA device and torchvision's nvjpeg decoder are present."""
    if not torch.cuda.is_available():
        return False
    try:
        import torchvision.io  # noqa: F401

        return hasattr(torch.ops.image, "decode_jpegs_cuda")
    except (ImportError, AttributeError, RuntimeError):
        return False


def decode_batch(paths: list[str], size: int, channels: int, device="cuda") -> tuple[np.ndarray, list[int]]:
    """Decode JPEG ``paths``: ((n, channels, size, size) uint8 on the CPU, positions nvjpeg could not decode)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with ThreadPoolExecutor(4) as pool:
        raw = list(pool.map(_read, paths))
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 marks its decoders deprecated in favour of torchcodec
        try:
            images = decode_jpeg([torch.frombuffer(r, dtype=torch.uint8) for r in raw], mode=mode, device=device)
            failed = []
        except RuntimeError:
            images, failed = _one_by_one(raw, mode, device, decode_jpeg)
    for i, (im, data) in enumerate(zip(images, raw, strict=True)):
        if im is not None:
            out[i] = square(orient(im, exif_orientation(data)), size).cpu().numpy()
    return out, failed


def _read(path: str) -> bytearray:
    with open(path, "rb") as f:
        return bytearray(f.read())


def _one_by_one(raw, mode, device, decode_jpeg):
    images, failed = [], []
    for i, r in enumerate(raw):
        try:
            images.append(decode_jpeg(torch.frombuffer(r, dtype=torch.uint8), mode=mode, device=device))
        except RuntimeError:
            images.append(None)
            failed.append(i)
    return images, failed


def orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1..8) to (C, H, W), as PIL's ``ImageOps.exif_transpose`` does."""
    if orientation in (2, 4, 5, 7):  # mirrored variants
        x = x.flip(-1) if orientation in (2, 5, 7) else x.flip(-2)
    turns = {3: 2, 6: 3, 8: 1, 5: 1, 7: 3}.get(orientation, 0)  # counter-clockwise quarter turns
    return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre square of the shorter side of (C, H, W) uint8, resized to (C, size, size) (antialiased bilinear)."""
    _, h, w = x.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[:, top:top + s, left:left + s]
    if s == size:
        return x
    y = torch.nn.functional.interpolate(x[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y[0].round_().clamp_(0, 255).to(torch.uint8)
