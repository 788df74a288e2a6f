"""One learning method per file; ``METHODS`` maps a loss name to the method that feeds it.

Adding a method: a file here with a ``Method`` subclass and one line in ``METHODS`` (a loss that
needs nothing but two views of a shared network needs no method: ``Method`` is the default).
"""
from __future__ import annotations

from torch import nn

from workbench.core.losses import LOSSES
from workbench.core.methods.base import Method, MomentumMethod  # noqa: F401
from workbench.core.methods.byol import BYOL
from workbench.core.methods.dino import DINO
from workbench.core.methods.moco import MoCo
from workbench.core.methods.simsiam import SimSiam
from workbench.core.models import ENCODERS, Network, mlp

METHODS: dict[str, type[Method]] = {
    "simsiam": SimSiam,
    "byol": BYOL,
    "moco": MoCo,
    "dino": DINO,
}


def build_method(cfg) -> Method:
    """The method for ``cfg.loss.name`` holding its loss (built from ``cfg.loss.params``)."""
    loss = LOSSES.build(cfg.loss.name, cfg.loss.params)
    return METHODS.get(cfg.loss.name, Method)(loss, cfg)


SMALL_CNN_HEAD = 256


def head_hidden(model_cfg, enc_dim: int) -> int:
    """``model.head_hidden`` with 0 (auto) resolved: 256 for small_cnn, whose 2048-d grid would otherwise make
    the head's first layer cost as much as the encoder on a CPU (benchmarks/learn_per_second.py: at least as
    much kNN in a fixed time, at more images/s); the representation's size ``enc_dim`` for other encoders (SimCLR's
    convention: 512 for ResNet-18, 2048 for ResNet-50)."""
    if model_cfg.head_hidden:
        return model_cfg.head_hidden
    return SMALL_CNN_HEAD if model_cfg.encoder == "small_cnn" else enc_dim


def build_network(cfg, in_channels: int, image_size: int, method: Method | None = None) -> Network:
    """Encoder + projection head + the method's predictor, for images (B, in_channels, image_size, image_size)."""
    m = cfg.model
    method = method or build_method(cfg)
    enc = ENCODERS.build(m.encoder, m.params, in_channels=in_channels, image_size=image_size)
    out = m.head_out if m.head_layers else enc.out_dim
    head: nn.Module = mlp(enc.out_dim, head_hidden(m, enc.out_dim), out, m.head_layers, m.head_bn)
    return Network(enc, head, method.predictor(out))
