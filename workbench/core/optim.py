"""Optimiser registry (SGD, Adam, AdamW, LARS) and the warm-up + cosine schedule."""
from __future__ import annotations

import math

import torch

from workbench.core.registry import Registry

OPTIMIZERS = Registry("optimizer", context=("model",))


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """The optimiser ``cfg.name`` (an OptimConfig) over ``model``'s parameters, with the config's values
    for the parameters that optimiser declares."""
    return OPTIMIZERS.build(cfg.name, OPTIMIZERS.select(cfg.name, cfg), model=model)


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
def sgd(model, lr: float = 1e-3, weight_decay: float = 1e-4, momentum: float = 0.9):
    """SGD with (heavy-ball, not Nesterov) momentum.

    lr: peak learning rate (after warm-up).
    weight_decay: L2 penalty on weights (not on biases or normalisation parameters).
    momentum: momentum factor in [0, 1).
    """
    return torch.optim.SGD(_groups(model, weight_decay), lr=lr, momentum=momentum)


@OPTIMIZERS.register("adam")
def adam(model, lr: float = 1e-3, weight_decay: float = 1e-4):
    """Adam (Kingma & Ba 2015).

    lr: peak learning rate (after warm-up).
    weight_decay: L2 penalty added to the gradient (not on biases or normalisation parameters).
    """
    return torch.optim.Adam(_groups(model, weight_decay), lr=lr)


@OPTIMIZERS.register("adamw")
def adamw(model, lr: float = 1e-3, weight_decay: float = 1e-4):
    """AdamW, decoupled weight decay (Loshchilov & Hutter 2019).

    lr: peak learning rate (after warm-up).
    weight_decay: decoupled weight decay (not on biases or normalisation parameters).
    """
    return torch.optim.AdamW(_groups(model, weight_decay), lr=lr)


@OPTIMIZERS.register("lars")
def lars(model, lr: float = 1e-3, weight_decay: float = 1e-4, momentum: float = 0.9):
    """LARS: SGD with layer-wise trust ratio (You et al. 2017), as used by SimCLR for large batches.

    lr: peak learning rate (after warm-up).
    weight_decay: L2 penalty on weights (not on biases or normalisation parameters).
    momentum: momentum factor in [0, 1).
    """
    return LARS(_groups(model, weight_decay), lr=lr, momentum=momentum)


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017, "Large Batch Training of Convolutional Networks"), as in SimCLR's code:

        d = grad + weight_decay * p
        d *= eta * ||p|| / ||d||        (when both norms are > 0; skipped for groups with ``lars_exclude``)
        mu = momentum * mu + d;  p -= lr * mu

    Multi-tensor (``torch._foreach_*``) kernels: a handful of launches per step instead of ~8 per
    parameter, which is what keeps a GPU busy at small models and large batches.
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            wd = group["weight_decay"]
            d = torch._foreach_add(grads, params, alpha=wd) if wd else [g.clone() for g in grads]
            if not group.get("lars_exclude"):
                pn, dn = torch.stack(torch._foreach_norm(params)), torch.stack(torch._foreach_norm(d))
                trust = torch.where((pn > 0) & (dn > 0), group["eta"] * pn / dn, torch.ones_like(pn))
                torch._foreach_mul_(d, list(trust.unbind()))
            bufs = [self.state[p].setdefault("mu", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, d)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])


MAX_WARMUP = 0.5  # warm-up never takes more than this fraction of a run


def warmup_fraction(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> tuple[float, str]:
    """Warm-up as a fraction of the run (``warmup_epochs`` epochs of the planned ``total_steps``), capped at
    MAX_WARMUP; returns (fraction, warning) with the warning "" unless the config asked for more."""
    asked = warmup_epochs * steps_per_epoch / max(1, total_steps)
    if asked <= MAX_WARMUP:
        return asked, ""
    return MAX_WARMUP, (f"optim.warmup_epochs = {warmup_epochs:g} is {asked:.0%} of this run ({total_steps} steps); "
                        f"warming up over the first {MAX_WARMUP:.0%} instead (lower optim.warmup_epochs or train longer)")


def lr_factor(progress: float, warmup: float, schedule: str, min_ratio: float) -> float:
    """Learning-rate multiplier once a fraction ``progress`` (0, 1] of the run is done: linear warm-up over the
    first ``warmup`` of the run, then a half cosine from 1 down to ``min_ratio`` at progress 1 (Loshchilov &
    Hutter 2017, without restarts), or constant. Progress is whatever ends the run (epochs, train.max_steps or
    train.time_budget_s), so a time-boxed run ends at the bottom of its schedule too."""
    if progress < warmup:
        return progress / warmup
    if schedule == "constant" or warmup >= 1:
        return 1.0
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class Schedule:
    """The learning-rate multiplier of a run, step by step: warm-up, then cosine (or constant).

    A run whose length is known in steps (epochs, train.max_steps) warms up over ``warmup_epochs`` epochs as a
    fraction of it (``warmup_fraction``, ``lr_factor``). A run with a time budget (train.time_budget_s) has no step
    count to take a fraction of (its planned steps are a ceiling, e.g. 100,000 epochs), so its warm-up counts steps:
    a linear ramp over ``warmup_epochs * steps_per_epoch`` optimiser steps, ended early once MAX_WARMUP of the
    budget is spent; the half cosine runs over the whole budget and the ramp joins it where they meet (the
    multiplier is the smaller of the two), so the schedule has no jump and needs no state (a resumed run gets the
    same value at the same step and time).
    """

    def __init__(self, warmup_epochs: float, steps_per_epoch: int, total_steps: int, schedule: str, min_ratio: float,
                 timed: bool = False):
        self.schedule, self.min_ratio, self.timed = schedule, min_ratio, timed
        self.warmup_steps = warmup_epochs * steps_per_epoch
        self.warmup, self.warning = (0.0, "") if timed else warmup_fraction(warmup_epochs, steps_per_epoch, total_steps)

    @classmethod
    def of(cls, cfg, steps_per_epoch: int, total_steps: int) -> Schedule:
        """The schedule of config ``cfg`` (its [optim] and train.time_budget_s)."""
        o = cfg.optim
        return cls(o.warmup_epochs, steps_per_epoch, total_steps, o.schedule, o.min_lr_ratio, bool(cfg.train.time_budget_s))

    def __call__(self, step: int, progress: float) -> float:
        """The multiplier for optimiser step ``step`` (1-based) at ``progress`` (0, 1] of the run."""
        if not self.timed:
            return lr_factor(progress, self.warmup, self.schedule, self.min_ratio)
        decay = lr_factor(progress, 0.0, self.schedule, self.min_ratio)
        if self.warmup_steps <= 0:
            return decay
        return min(decay, max(step / self.warmup_steps, progress / MAX_WARMUP), 1.0)
