"""Batched augmentations with independent random parameters for every sample.

Every op takes a float batch ``x`` of shape (B, C, H, W) in [0, 1] on any device plus a
``torch.Generator`` on that device, and returns a batch of the same layout (a crop may change
H and W). Each op draws, per sample, whether it applies (probability ``p``) and its own
random parameters; nothing is drawn once per batch.
"""
from __future__ import annotations

import math

import numpy as np

import torch
import torch.nn.functional as F

from workbench.core.registry import ConfigError, Registry

AUGMENTS = Registry("augmentation")


def _u(g, n, lo, hi, device):
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _mask(g, n, p, device):
    return torch.rand(n, generator=g, device=device) < p


def _where(mask, a, b):
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _check(cond, msg):
    if not cond:
        raise ValueError(msg)


def _grey(x):
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


@AUGMENTS.register("random_resized_crop")
class RandomResizedCrop:
    """Crop a random area fraction ``scale`` and aspect ratio ``ratio``, resized to ``size`` (0 = input size)."""

    def __init__(self, p: float = 1.0, size: int = 0, scale: tuple = (0.2, 1.0), ratio: tuple = (0.75, 1.3333)):
        _check(len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1, f"scale must be two numbers in (0, 1] with min <= max, got {list(scale)}")
        _check(len(ratio) == 2 and 0 < ratio[0] <= ratio[1], f"ratio must be two positive numbers with min <= max, got {list(ratio)}")
        _check(size >= 0, f"size must be >= 0, got {size}")
        self.p, self.size, self.scale, self.ratio = p, size, scale, ratio

    def __call__(self, x, g):
        b, dev = x.shape[0], x.device
        area = _u(g, b, *self.scale, dev)
        logr = _u(g, b, math.log(self.ratio[0]), math.log(self.ratio[1]), dev)
        w = torch.sqrt(area * torch.exp(logr)).clamp(max=1.0)
        h = torch.sqrt(area / torch.exp(logr)).clamp(max=1.0)
        on = _mask(g, b, self.p, dev)
        w, h = torch.where(on, w, 1.0), torch.where(on, h, 1.0)
        cx = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - w)
        cy = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - h)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
        s = self.size or x.shape[-1]
        grid = F.affine_grid(theta, [b, x.shape[1], s, s], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@AUGMENTS.register("horizontal_flip")
class HorizontalFlip:
    """Mirror left-right."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x, g):
        return _where(_mask(g, x.shape[0], self.p, x.device), x.flip(-1), x)


@AUGMENTS.register("vertical_flip")
class VerticalFlip:
    """Mirror top-bottom."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x, g):
        return _where(_mask(g, x.shape[0], self.p, x.device), x.flip(-2), x)


@AUGMENTS.register("rotation")
class Rotation:
    """Rotate by an angle drawn uniformly from [-degrees, degrees]."""

    def __init__(self, p: float = 0.5, degrees: float = 15.0):
        _check(0 <= degrees <= 180, f"degrees must be in [0, 180], got {degrees}")
        self.p, self.degrees = p, degrees

    def __call__(self, x, g):
        b, dev = x.shape[0], x.device
        a = _u(g, b, -self.degrees, self.degrees, dev) * math.pi / 180 * _mask(g, b, self.p, dev)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@AUGMENTS.register("color_jitter")
class ColorJitter:
    """Random brightness, contrast, saturation (factors in [1-v, 1+v]) and hue shift in [-hue, hue] turns."""

    def __init__(self, p: float = 0.8, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1):
        for k, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            _check(0 <= v <= 1, f"{k} must be in [0, 1], got {v}")
        _check(0 <= hue <= 0.5, f"hue must be in [0, 0.5], got {hue}")
        self.p, self.b, self.c, self.s, self.h = p, brightness, contrast, saturation, hue

    def __call__(self, x, g):
        bsz, dev = x.shape[0], x.device
        on = _mask(g, bsz, self.p, dev)
        y = x
        if self.b:
            y = (y * _u(g, bsz, 1 - self.b, 1 + self.b, dev).view(-1, 1, 1, 1)).clamp(0, 1)
        if self.c:
            m = _grey(y).mean((1, 2, 3), keepdim=True)
            y = ((y - m) * _u(g, bsz, 1 - self.c, 1 + self.c, dev).view(-1, 1, 1, 1) + m).clamp(0, 1)
        if x.shape[1] == 3 and self.s:
            gy = _grey(y)
            y = ((y - gy) * _u(g, bsz, 1 - self.s, 1 + self.s, dev).view(-1, 1, 1, 1) + gy).clamp(0, 1)
        if x.shape[1] == 3 and self.h:
            y = _hue_shift(y, _u(g, bsz, -self.h, self.h, dev) * 2 * math.pi).clamp(0, 1)
        return _where(on, y, x)


def _hue_shift(x, angle):
    """Rotate chroma in YIQ space by ``angle`` (B,) radians."""
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    c, s = angle.cos(), angle.sin()
    rot = torch.zeros(len(angle), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = from_yiq @ rot @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, x)


@AUGMENTS.register("grayscale")
class Grayscale:
    """Replace colour by luminance (kept as the same number of channels)."""

    def __init__(self, p: float = 0.2):
        self.p = p

    def __call__(self, x, g):
        return _where(_mask(g, x.shape[0], self.p, x.device), _grey(x).expand_as(x), x)


@AUGMENTS.register("gaussian_blur")
class GaussianBlur:
    """Blur with sigma drawn from ``sigma`` per sample; kernel_size 0 = about a tenth of the image, odd."""

    def __init__(self, p: float = 0.5, kernel_size: int = 0, sigma: tuple = (0.1, 2.0)):
        _check(kernel_size == 0 or (kernel_size >= 3 and kernel_size % 2 == 1), f"kernel_size must be 0 (auto) or an odd number >= 3, got {kernel_size}")
        _check(len(sigma) == 2 and 0 < sigma[0] <= sigma[1], f"sigma must be two positive numbers with min <= max, got {list(sigma)}")
        self.p, self.k, self.sigma = p, kernel_size, sigma

    def __call__(self, x, g):
        b, c, h, w = x.shape
        k = self.k or max(3, (h // 10) | 1)
        sig = _u(g, b, *self.sigma, x.device)
        r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
        kern = torch.exp(-(r[None] ** 2) / (2 * sig[:, None] ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, k)
        y = F.pad(x.reshape(1, b * c, h, w), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
        y = F.conv2d(y, kern[:, None, None, :], groups=b * c)
        y = F.conv2d(y, kern[:, None, :, None], groups=b * c).reshape(b, c, h, w)
        return _where(_mask(g, b, self.p, x.device), y, x)


@AUGMENTS.register("solarize")
class Solarize:
    """Invert pixels at or above ``threshold``."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        _check(0 <= threshold <= 1, f"threshold must be in [0, 1], got {threshold}")
        self.p, self.t = p, threshold

    def __call__(self, x, g):
        return _where(_mask(g, x.shape[0], self.p, x.device), torch.where(x >= self.t, 1 - x, x), x)


@AUGMENTS.register("posterize")
class Posterize:
    """Keep only the top ``bits`` bits of each 8-bit value."""

    def __init__(self, p: float = 0.2, bits: int = 4):
        _check(1 <= bits <= 8, f"bits must be in 1..8, got {bits}")
        self.p, self.bits = p, bits

    def __call__(self, x, g):
        q = (x * 255).round().to(torch.uint8) & (0xFF << (8 - self.bits)) & 0xFF
        return _where(_mask(g, x.shape[0], self.p, x.device), q.to(x.dtype) / 255, x)


@AUGMENTS.register("equalize")
class Equalize:
    """Histogram equalisation per image and channel."""

    def __init__(self, p: float = 0.2):
        self.p = p

    def __call__(self, x, g):
        b, c, h, w = x.shape
        q = (x * 255).round().long().clamp(0, 255).reshape(b * c, -1)
        hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.float64).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float64))
        last = torch.where(hist > 0, torch.arange(256, device=x.device), -1).amax(1, keepdim=True)
        step = torch.floor((h * w - hist.gather(1, last)) / 255)  # PIL's / torchvision's algorithm
        lut = torch.floor((hist.cumsum(1) + torch.floor(step / 2)) / step.clamp_min(1))
        lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], 1).clamp(0, 255)
        y = (lut.gather(1, q) / 255).to(x.dtype).reshape(b, c, h, w)
        y = torch.where((step == 0).reshape(b, c, 1, 1), x, y)  # near-constant channel: unchanged
        return _where(_mask(g, b, self.p, x.device), y, x)


@AUGMENTS.register("gaussian_noise")
class GaussianNoise:
    """Add pixel noise with standard deviation ``std``."""

    def __init__(self, p: float = 0.5, std: float = 0.05):
        _check(0 <= std <= 1, f"std must be in [0, 1], got {std}")
        self.p, self.std = p, std

    def __call__(self, x, g):
        n = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * self.std
        return _where(_mask(g, x.shape[0], self.p, x.device), (x + n).clamp(0, 1), x)


PRESETS: dict[str, list[dict]] = {
    "simclr_small_grey": [
        {"name": "random_resized_crop", "p": 1.0, "scale": [0.2, 1.0]},
        {"name": "horizontal_flip", "p": 0.5},
        {"name": "color_jitter", "p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0},
    ],
    "simclr_cifar": [
        {"name": "random_resized_crop", "p": 1.0, "scale": [0.2, 1.0]},
        {"name": "horizontal_flip", "p": 0.5},
        {"name": "color_jitter", "p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
        {"name": "grayscale", "p": 0.2},
    ],
    "byol_imagenet": [
        {"name": "random_resized_crop", "p": 1.0, "scale": [0.08, 1.0]},
        {"name": "horizontal_flip", "p": 0.5},
        {"name": "color_jitter", "p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1},
        {"name": "grayscale", "p": 0.2},
        {"name": "gaussian_blur", "p": 0.5},
        {"name": "solarize", "p": 0.1},
    ],
    "none": [],
}


def check_recipe(recipe) -> list[dict]:
    """Validate a recipe (list of {name, p, ...}) and return it with every parameter written out."""
    if not isinstance(recipe, (list, tuple)):
        raise ConfigError(f"augment.recipe: expected a list of steps, got {recipe!r}")
    out = []
    for i, step in enumerate(recipe):
        where = f"augment.recipe[{i}]"
        if not isinstance(step, dict) or "name" not in step:
            raise ConfigError(f"{where}: each step needs a name, e.g. {{name = \"horizontal_flip\", p = 0.5}}")
        step = dict(step)
        name = step.pop("name")
        entry = AUGMENTS.get(name)
        params = AUGMENTS.check_params(name, step, where)
        full = {p.name: p.default for p in entry.params}
        full.update(params)
        if not 0.0 <= full["p"] <= 1.0:
            raise ConfigError(f"{where}.p: probability must be in [0, 1], got {full['p']}")
        try:
            entry.factory(**full)
        except ValueError as exc:
            raise ConfigError(f"{where} ({name}): {exc}") from None
        out.append({"name": name, **{k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}})
    return out


class Augmenter:
    """Turn a uint8 batch (B, C, H, W) into a normalised float view batch (B, C, S, S)."""

    def __init__(self, recipe: list[dict], mean: list[float], std: list[float]):
        self.ops = [AUGMENTS.get(s["name"]).factory(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items() if k != "name"}) for s in recipe]
        self.mean, self.std = mean, std

    def views(self, images_u8: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = images_u8.float().div_(255)
        for op in self.ops:
            x = op(x, g)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_uint8(self, x: torch.Tensor) -> np.ndarray:
        """Undo ``normalize``: float views (B, C, H, W) -> uint8 numpy images for display."""
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return ((x.detach().float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    def plain(self, images_u8: torch.Tensor) -> torch.Tensor:
        """The un-augmented, normalised batch (for evaluation and embedding)."""
        return self.normalize(images_u8.float().div_(255))

    def out_size(self, in_size: int) -> int:
        for op in self.ops:
            if isinstance(op, RandomResizedCrop) and op.size:
                in_size = op.size
        return in_size
