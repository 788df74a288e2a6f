"""One conversion rule for images given in memory: PIL images, numpy arrays and torch tensors end as image files do.

    one_image(x, where)  -> (C, H, W) uint8, C = 1 or 3     # a PIL image, (H, W), (C, H, W) or (H, W, C)
    batch(x, where)      -> (N, C, H, W) uint8, C = 1 or 3  # (N, C, H, W) or (N, H, W, C)

The rule is ``decode.to_mode``'s, the one every image file of a folder goes through:

- pixel values: uint8 as they are; floats in [0, 1] scaled by 255 (rounded); anything else is refused with its
  dtype and range (an int64 array of 0..255 is one ``.astype(np.uint8)`` away);
- channels: 1 (grey) or 3 (RGB) as they are; 4 (RGBA) composited on white, as PIL images and PNG files with
  transparency are (``decode.to_mode``, so the pixels are the same to the last bit); 2 is refused (grey + alpha,
  or two channels of something else: not guessed);
- layout: channels first (C, H, W) when the first axis is 1..4 and the last is not; channels last (H, W, C) when
  the last is 1..4 and the first is not (an array read from a file, a PIL image through ``np.asarray``); a shape
  that reads both ways, or neither (``(5, 28, 28)``: five greyscale images or one five-channel image?) is refused
  with the shape to use.

A PIL image goes through ``decode.to_mode`` itself (EXIF orientation is a file's, not an image object's).
"""
from __future__ import annotations

import numpy as np
import torch

from workbench.core import decode
from workbench.core.registry import ConfigError

CHANNELS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA


def is_pil(img) -> bool:
    return hasattr(img, "convert") and hasattr(img, "mode") and not isinstance(img, torch.Tensor)


def to_uint8(x: torch.Tensor, where: str) -> torch.Tensor:
    """uint8 as it is; floats in [0, 1] scaled by 255 and rounded; ConfigError for anything else."""
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point() and (x.numel() == 0 or (x.min() >= 0 and x.max() <= 1)):
        return (x * 255).round_().to(torch.uint8)
    hint = ""
    if x.numel() and not x.is_floating_point() and x.dtype != torch.bool and x.min() >= 0 and x.max() <= 255:
        hint = " (its values are 0..255: convert it with .astype(np.uint8) or .to(torch.uint8))"
    raise ConfigError(f"{where}: expected uint8 images (0..255) or floats in [0, 1], got {x.dtype}"
                      + (f" with values {float(x.min()):g}..{float(x.max()):g}" if x.is_floating_point() and x.numel() else "")
                      + hint)


def as_tensor(x, where: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ConfigError(f"{where}: expected an array of numbers, got an object array of shape {x.shape}")
        return torch.from_numpy(np.array(x))  # a copy: PIL's arrays are read-only, a view would alias the caller's
    raise ConfigError(f"{where}: expected a PIL image, a numpy array or a torch tensor, got {type(x).__name__}")


def _channels_first(shape: tuple, where: str, batch_hint: str) -> bool:
    """Whether an image of ``shape`` (3 axes) has its channels first (True) or last (False); ConfigError otherwise."""
    first, last = shape[0] in CHANNELS, shape[-1] in CHANNELS
    if first != last:
        return first
    c, h, w = shape
    if first:
        raise ConfigError(f"{where}: an image of shape {shape} reads as {c} channel(s) of {h}x{w} and as {h}x{c} "
                          f"with {w} channel(s); give it as (C, H, W) with H and W larger than 4")
    raise ConfigError(f"{where}: shape {shape} is not one image (C, H, W) or (H, W, C) with C = 1, 3 or 4 channels"
                      + batch_hint)


def _flatten_alpha(x: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) uint8 RGBA -> RGB composited on white, by ``decode.to_mode`` itself."""
    from PIL import Image

    out = [torch.from_numpy(np.array(decode.to_mode(Image.fromarray(np.ascontiguousarray(img), "RGBA"), "RGB")))
           for img in x.permute(0, 2, 3, 1).numpy()]
    return torch.stack(out).permute(0, 3, 1, 2)


def one_image(img, where: str) -> torch.Tensor:
    """(C, H, W) uint8 with C = 1 or 3 from a PIL image (its centre square), (H, W), (C, H, W) or (H, W, C)."""
    if is_pil(img):
        try:
            img.load()  # PIL decodes lazily: a truncated or corrupt file fails here
        except (OSError, ValueError, SyntaxError) as exc:
            raise ConfigError(f"{where}: the image cannot be decoded ({type(exc).__name__}: {exc}); "
                              "check the file or leave it out") from None
        im = decode.to_mode(img, "RGB" if decode.has_colour(img) else "L")
        arr = np.asarray(decode.square(im, min(im.size)))
        return torch.from_numpy(np.array(arr if arr.ndim == 3 else arr[..., None])).permute(2, 0, 1).contiguous()
    x = as_tensor(img, where)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ConfigError(f"{where}: expected one image (H, W), (C, H, W) or (H, W, C), got shape {tuple(x.shape)}")
    n, h, w = x.shape
    if not _channels_first(tuple(x.shape), where, f"; for {n} greyscale images give ({n}, 1, {h}, {w}) (x[:, None])"):
        x = x.permute(2, 0, 1)
    return batch(to_uint8(x, where)[None], where)[0]


def batch(x, where: str) -> torch.Tensor:
    """(N, C, H, W) uint8 with C = 1 or 3 from (N, C, H, W) or (N, H, W, C) (C = 1..4, alpha composited on white)."""
    x = as_tensor(x, where)
    if x.ndim == 3:
        n, h, w = x.shape
        raise ConfigError(f"{where}: expected images (N, C, H, W), got shape {tuple(x.shape)}; for {n} greyscale "
                          f"images give ({n}, 1, {h}, {w}) (x[:, None]), for one image a list [x]")
    if x.ndim != 4:
        raise ConfigError(f"{where}: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, a, h, b = x.shape
    first, last = a in CHANNELS, b in CHANNELS
    if first == last:
        what = "reads as channels first and as channels last" if first else "has no channel axis of 1, 3 or 4"
        raise ConfigError(f"{where}: images of shape {tuple(x.shape)}: {what}; give (N, C, H, W) with C = 1 or 3 "
                          "(grey or RGB; 4 = RGBA, composited on white)")
    if last:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 2:  # grey + alpha, or two channels of something else: not guessed
        raise ConfigError(f"{where}: images need 1 (grey) or 3 (RGB) channels (4 = RGBA, composited on white), got 2 in "
                          f"shape {tuple(x.shape)}; for grey + alpha composite it first, or give the channel to use")
    x = to_uint8(x, where)
    if x.shape[1] == 4:
        x = _flatten_alpha(x)
    return x.contiguous()
