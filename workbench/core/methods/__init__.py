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


def build_network(cfg, in_channels: int, image_size: int, method: Method | None = None) -> Network:
    """Encoder + projection head + the method's predictor, for images (B, in_channels, image_size, image_size)."""
    m = cfg.model
    method = method or build_method(cfg)
    enc = ENCODERS.build(m.encoder, m.params, in_channels=in_channels, image_size=image_size)
    out = m.head_out if m.head_layers else enc.out_dim
    head: nn.Module = mlp(enc.out_dim, m.head_hidden, out, m.head_layers, m.head_bn)
    return Network(enc, head, method.predictor(out))
