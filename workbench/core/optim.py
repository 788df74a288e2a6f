"""Optimiser registry (SGD, Adam, AdamW, LARS) and the warm-up + cosine schedule."""
from __future__ import annotations

import math

import torch

from workbench.core.registry import Registry

OPTIMIZERS = Registry("optimizer")


def _split_decay(model):
    """No weight decay on biases and normalisation parameters (1-d tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def _groups(model, wd):
    decay, no_decay = _split_decay(model)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True}]


@OPTIMIZERS.register("sgd")
def sgd(model, cfg):
    """SGD with Nesterov-free momentum."""
    return torch.optim.SGD(_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)


@OPTIMIZERS.register("adam")
def adam(model, cfg):
    """Adam (Kingma & Ba 2015)."""
    return torch.optim.Adam(_groups(model, cfg.weight_decay), lr=cfg.lr)


@OPTIMIZERS.register("adamw")
def adamw(model, cfg):
    """AdamW, decoupled weight decay (Loshchilov & Hutter 2019)."""
    return torch.optim.AdamW(_groups(model, cfg.weight_decay), lr=cfg.lr)


@OPTIMIZERS.register("lars")
def lars(model, cfg):
    """LARS: SGD with layer-wise trust ratio (You et al. 2017), as used by SimCLR for large batches."""
    return LARS(_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if not group.get("lars_exclude"):
                    pn, dn = torch.norm(p), torch.norm(d)
                    trust = torch.where((pn > 0) & (dn > 0), group["eta"] * pn / dn, torch.ones_like(pn))
                    d = d.mul(trust)
                buf = self.state[p].setdefault("mu", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` (or constant)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
