"""The model card: everything needed to use an exported encoder without this project's code.

``model_card.json`` beside the exported files holds the architecture as a plain-PyTorch recipe (a
module tree of ``torch.nn`` / ``torchvision.models`` constructors with their arguments, and the same
as one Python expression), the preprocessing steps in order with the exact functions, the
output, the versions, the data's provenance and licence, the training config and final metrics.
No absolute local path is written. One card describes every file exported into its folder: a
second format adds its entry under ``files`` instead of replacing the card.

Module-tree spec (``architecture.modules``): ``{"module": "torch.nn.Conv2d", "args": [...], "kwargs": {...}}``;
``"children": [[name, spec], ...]`` for a ``torch.nn.Sequential`` built from an ``OrderedDict``;
``"set": {attribute: spec}`` replaces attributes after construction (torchvision ResNet stems).
"""
from __future__ import annotations

import platform
from collections import OrderedDict
from importlib import import_module
from pathlib import Path

import torch
from torch import nn

from workbench.core.models import GridPool

SCHEMA = "contrastive-workbench/model-card/1"

_LEAVES = {  # class -> constructor arguments that rebuild it exactly
    nn.Conv2d: lambda m: {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
                          "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
                          "groups": m.groups, "bias": m.bias is not None, "padding_mode": m.padding_mode},
    nn.BatchNorm2d: lambda m: {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
                               "track_running_stats": m.track_running_stats},
    nn.BatchNorm1d: lambda m: {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
                               "track_running_stats": m.track_running_stats},
    nn.Linear: lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    nn.ReLU: lambda m: {},
    nn.Identity: lambda m: {},
    nn.Flatten: lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim},
    nn.AdaptiveAvgPool2d: lambda m: {"output_size": m.output_size},
    nn.MaxPool2d: lambda m: {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding, "dilation": m.dilation,
                             "ceil_mode": m.ceil_mode},
}
_RESNETS = {"resnet18_cifar": "resnet18", "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50"}


class NotDescribable(Exception):
    """The module holds a layer the card cannot express in plain PyTorch."""


def spec_of(module: nn.Module, encoder_name: str = "") -> dict:
    """The module-tree spec of an encoder or head (see the module docstring)."""
    kind = nn.AdaptiveAvgPool2d if type(module) is GridPool else type(module)  # the same numbers, torch's own class
    if kind in _LEAVES:
        return {"module": f"torch.nn.{kind.__name__}", "kwargs": _LEAVES[kind](module)}
    if type(module).__name__ == "ResNet" and encoder_name in _RESNETS:
        return {"module": f"torchvision.models.{_RESNETS[encoder_name]}", "kwargs": {"weights": None},
                "set": {"conv1": spec_of(module.conv1), "maxpool": spec_of(module.maxpool), "fc": spec_of(module.fc)}}
    if isinstance(module, nn.Sequential) or type(module).__name__ == "SmallCNN":
        return {"module": "torch.nn.Sequential", "children": [[n, spec_of(c)] for n, c in module.named_children()]}
    raise NotDescribable(f"{type(module).__module__}.{type(module).__name__}")


def build(spec: dict) -> nn.Module:
    """Build a module from its spec with torch / torchvision only (what a card reader does)."""
    path, _, name = spec["module"].rpartition(".")
    ctor = getattr(import_module(path), name)
    if "children" in spec:
        m = ctor(OrderedDict((n, build(c)) for n, c in spec["children"]))
    else:
        m = ctor(*spec.get("args", []), **spec.get("kwargs", {}))
    for attr, sub in spec.get("set", {}).items():
        setattr(m, attr, build(sub))
    return m


def python_source(spec: dict) -> str:
    """The spec as Python statements that leave the module in ``net`` (after ``import torch, torchvision`` and
    ``from collections import OrderedDict``)."""
    lines: list[str] = []
    lines.append(f"net = {_emit(spec, lines)}")
    return "\n".join(lines)


def _emit(spec: dict, lines: list[str]) -> str:
    if "children" in spec:
        inner = ", ".join(f"({n!r}, {_emit(c, lines)})" for n, c in spec["children"])
        expr = f"{spec['module']}(OrderedDict([{inner}]))"
    else:
        args = [repr(a) for a in spec.get("args", [])] + [f"{k}={v!r}" for k, v in spec.get("kwargs", {}).items()]
        expr = f"{spec['module']}({', '.join(args)})"
    if not spec.get("set"):
        return expr
    var = f"m{len(lines)}"
    lines.append(f"{var} = {expr}")
    for attr, sub in spec["set"].items():
        lines.append(f"{var}.{attr} = {_emit(sub, lines)}")
    return var


def architecture(encoder: nn.Module, head: nn.Module | None, encoder_name: str) -> dict:
    """The exported network (encoder, and head when included) as a spec, a Python expression and its key layout."""
    parts = [["encoder", spec_of(encoder, encoder_name)]] + ([["head", spec_of(head)]] if head is not None else [])
    modules = {"module": "torch.nn.Sequential", "children": parts} if head is not None else parts[0][1]
    return {"modules": modules, "python": python_source(modules).splitlines(),
            "imports": ["import torch, torchvision", "from collections import OrderedDict"],
            "mode": "eval() (BatchNorm uses its running statistics)",
            "forward": "images (B, C, S, S) float32 -> (B, D)" + (": encoder, then the projection head" if head is not None else ""),
            "state_dict": "the safetensors file is this module's state_dict (load_state_dict(..., strict=True))"}


def preprocessing(channels: int, size: int, mean: list, std: list, dataset: str) -> list[dict]:
    """The steps from an image to the network's input, in order, with the exact functions."""
    mode = "L" if channels == 1 else "RGB"
    steps = [
        {"step": "decode", "how": "PIL.Image.open(path); PIL.ImageOps.exif_transpose when the EXIF orientation is 2-8",
         "jpeg": f"a JPEG whose shorter side is at least {2 * size} px is opened with im.draft({mode!r}, ({size}, {size})) "
                 "first (libjpeg's reduced-scale decoding, never below the requested size); a smaller greyscale or RGB "
                 "one is decoded by torchvision.io.decode_jpeg (libjpeg-turbo, EXIF orientation applied) instead of PIL"},
        {"step": "to_mode", "how": f"PIL Image.convert({mode!r})" + (
            ": ITU-R 601-2 luma L = R * 299/1000 + G * 587/1000 + B * 114/1000" if channels == 1 else "")
            + "; transparent pixels composited on white first; 16-bit images scaled by 255/65535"},
        {"step": "square_resize", "how": f"centre square of the shorter side resized to {size}x{size}: PIL Image.resize(({size}, {size}), "
            "PIL.Image.Resampling.BILINEAR, box=(left, top, left + s, top + s), reducing_gap=3.0) with s = min(w, h), "
            "left = (w - s) / 2, top = (h - s) / 2; skipped when the image is already that size"},
        {"step": "to_tensor", "how": "numpy uint8 (H, W[, C]) -> torch float32 (C, H, W), divided by 255"},
        {"step": "normalize", "how": "(x - mean[c]) / std[c] per channel", "mean": mean, "std": std},
        {"step": "batch", "how": "stack to (B, C, H, W), contiguous float32"},
    ]
    if dataset in ("bundled", "fashion_mnist", "mnist", "cifar10", "cifar100", "stl10"):
        steps[2]["note"] = (f"the '{dataset}' images were used at their native size; where it differs from {size}, "
                            "training resized the uint8 arrays with torch.nn.functional.interpolate(mode='bilinear', "
                            "antialias=True, align_corners=False), rounded to uint8")
    return steps


DATASETS = {
    "bundled": ("Fashion-MNIST test split (t10k, 10,000 images), Zalando Research, bundled with the workbench",
                "https://github.com/zalandoresearch/fashion-mnist", "MIT"),
    "fashion_mnist": ("Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), Zalando Research",
                      "https://github.com/zalandoresearch/fashion-mnist", "MIT"),
    "mnist": ("MNIST (LeCun, Cortes & Burges)", "http://yann.lecun.com/exdb/mnist/", "CC BY-SA 3.0"),
    "cifar10": ("CIFAR-10 (Krizhevsky 2009)", "https://www.cs.toronto.edu/~kriz/cifar.html", "no licence stated by the authors"),
    "cifar100": ("CIFAR-100 (Krizhevsky 2009)", "https://www.cs.toronto.edu/~kriz/cifar.html", "no licence stated by the authors"),
    "stl10": ("STL-10 (Coates, Ng & Lee 2011), images from ImageNet", "https://cs.stanford.edu/~acoates/stl10/",
              "no licence stated by the authors; ImageNet terms of access"),
    "image_folder": ("the user's own image folder", "", "that of the user's images"),
    "python": ("images passed to workbench.fit() from Python", "", "that of the user's images"),
}


def data_provenance(data_cfg: dict) -> dict:
    name = data_cfg.get("name", "")
    desc, url, licence = DATASETS.get(name, (name, "", "unknown"))
    root = data_cfg.get("root") or ""
    return {"dataset": name, "description": desc, "source": url, "licence": licence,
            "folder": Path(root).name if root else "", "subset": data_cfg.get("subset", 0),
            "weights_licence": f"the trained weights are derived from this data: use them under the data's terms ({licence})"}


def strip_paths(cfg: dict) -> dict:
    """The config without absolute local paths (a folder is named by its last component)."""
    out = {k: (strip_paths(v) if isinstance(v, dict) else v) for k, v in cfg.items()}
    for k, v in out.items():
        if isinstance(v, str) and (v.startswith("/") or v.startswith("~") or (len(v) > 2 and v[1] == ":" and v[2] in "\\/")):
            out[k] = Path(v).name
    return out


def versions(train_meta: dict) -> dict:
    import numpy
    import torchvision

    from workbench import __version__

    now = {"workbench": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": numpy.__version__, "python": platform.python_version()}
    keys = ("workbench", "torch", "torchvision", "numpy", "python")
    return {"export": now, "training": {k: train_meta[k] for k in keys if k in train_meta}}
