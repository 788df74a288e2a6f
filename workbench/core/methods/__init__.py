"""Learning methods: one file per method, each a class with ``@METHODS.register("name")`` and its
typed ``Params`` (the config's ``[method]`` section).

Adding a method: a module here with a ``Method`` subclass carrying the decorator, and its import below
(the order of the imports is the order the window and the CLI list them). A method may train with any
loss whose ``needs`` its ``gives`` covers; a loss names the method it trains with by default (registry
meta ``method``, else ``simclr``: two views of one shared network).
"""
from __future__ import annotations

from torch import nn

from workbench.core.losses import LOSSES
from workbench.core.methods.base import METHODS, Method, MethodParams, MomentumMethod, MomentumParams  # noqa: F401
from workbench.core.methods import simsiam, byol, moco, dino  # noqa: F401 (registers them)
from workbench.core.models import ENCODERS, Network, mlp

DEFAULT_METHOD = "simclr"


def default_method(loss: str) -> str:
    """The method a config pairs ``loss`` with when it names none (as every config did before ``[method]``)."""
    return LOSSES.get(loss).meta.get("method", DEFAULT_METHOD)


def missing_inputs(method: str, loss: str) -> tuple[str, ...]:
    """The Views fields loss ``loss`` reads that method ``method`` does not fill (() when they fit)."""
    needs = getattr(LOSSES.get(loss).factory, "needs", ())
    gives = METHODS.get(method).factory.gives
    return tuple(n for n in needs if n not in gives)


def build_method(cfg) -> Method:
    """``cfg.method``'s method holding ``cfg.loss``'s loss."""
    loss = LOSSES.build(cfg.loss.name, cfg.loss.params)
    return METHODS.build(cfg.method.name, cfg.method.params, loss=loss, predictor_hidden=cfg.model.predictor_hidden)


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
