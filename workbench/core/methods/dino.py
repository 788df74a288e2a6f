"""DINO (Caron et al. 2021, arXiv:2104.14294): self-distillation with no labels.

A student (the trained network) and a momentum teacher share the architecture; both end in K
prototypes (an L2-normalised bottleneck times a weight-normalised K x D matrix). The teacher
sees the two global views, the student sees those and ``local_crops`` smaller crops
(multi-crop); the loss makes the student's softmax on every view match the teacher's centred and
sharpened softmax on the other global view.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core import distributed as ddp
from workbench.core.augment import RandomResizedCrop
from workbench.core.losses.base import Views
from workbench.core.methods.base import METHODS, MomentumMethod, MomentumParams, cosine_to_one

LOCAL_SIZE = 96 / 224  # local crop side over global crop side, as in the paper's 224 px / 96 px


class Prototypes(nn.Module):
    """(B, D) -> (B, K) logits ``normalize(z) @ normalize(W).T``: the last layer of the DINO head with its
    weight-norm gain fixed to 1 (the paper's ``norm_last_layer``)."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, z):
        return F.linear(F.normalize(z, dim=1, eps=1e-6), F.normalize(self.weight, dim=1, eps=1e-6))


@dataclass
class DINOParams(MomentumParams):
    """momentum: the teacher's EMA momentum at the start, raised to 1 on a cosine schedule, in [0, 1).
    out_dim: K, the number of prototypes of the DINO head's last layer (2..65536).
    center_momentum: EMA momentum of the centre c of the teacher's outputs, in [0, 1).
    local_crops: small crops per image fed to the student only (0..10; multi-crop).
    local_scale: area fraction range [min, max] of the local crops, within (0, 1].
    warmup_teacher_temp: the teacher's temperature at the start, raised linearly to the loss's teacher_temp, in [0.001, 10].
    warmup_teacher_temp_frac: share of the training (0..1) over which the teacher's temperature rises; 0 = no warm-up.
    """

    momentum: float = 0.996
    out_dim: int = 1024
    center_momentum: float = 0.9
    local_crops: int = 2
    local_scale: tuple = (0.05, 0.4)
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_frac: float = 0.0

    def check(self) -> None:
        super().check()
        self.require(2 <= self.out_dim <= 65536, "out_dim", f"must be in 2..65536, got {self.out_dim}")
        self.require(0 <= self.center_momentum < 1, "center_momentum", f"must be in [0, 1), got {self.center_momentum}")
        self.require(0 <= self.local_crops <= 10, "local_crops", f"must be in 0..10, got {self.local_crops}")
        lo_hi = self.local_scale
        self.require(len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] <= 1, "local_scale",
                     f"must be two numbers in (0, 1] with min <= max, got {list(lo_hi)}")
        self.require(1e-3 <= self.warmup_teacher_temp <= 10, "warmup_teacher_temp",
                     f"must be in [0.001, 10], got {self.warmup_teacher_temp}")
        self.require(0 <= self.warmup_teacher_temp_frac <= 1, "warmup_teacher_temp_frac",
                     f"must be in [0, 1], got {self.warmup_teacher_temp_frac}")


@METHODS.register("dino")
class DINO(MomentumMethod):
    """Student logits p1, p2 (N, K) of the global views and ``crops`` (local views), teacher logits t1, t2,
    the centre c (1, K) and the scheduled teacher temperature go to the loss.

    After each step: the teacher follows the student with momentum raised from ``momentum`` to 1 on a
    cosine, and c <- center_momentum c + (1 - center_momentum) mean(teacher logits of the batch).
    The teacher temperature rises linearly from ``warmup_teacher_temp`` to the loss's ``teacher_temp`` over the
    first ``warmup_teacher_temp_frac`` of the run.
    """

    Params = DINOParams
    params: DINOParams
    gives = ("p", "t", "crops", "center", "teacher_temp")

    def __init__(self, loss, predictor_hidden: int = 512, params: DINOParams | None = None):
        super().__init__(loss, predictor_hidden, params)
        self.register_buffer("center", torch.zeros(1, self.params.out_dim))
        self._local = None
        self._batch_center = None

    def predictor(self, dim: int):
        return Prototypes(dim, self.params.out_dim)

    def momentum_at(self, progress: float) -> float:
        return cosine_to_one(self.params.momentum, progress)

    def teacher_temp_at(self, progress: float) -> float:
        """The teacher's temperature: ``warmup_teacher_temp`` raised linearly to the loss's ``teacher_temp``."""
        p, end = self.params, float(getattr(self.loss, "teacher_temp", self.params.warmup_teacher_temp))
        ramp = min(1.0, progress / p.warmup_teacher_temp_frac) if p.warmup_teacher_temp_frac > 0 else 1.0
        return p.warmup_teacher_temp + (end - p.warmup_teacher_temp) * ramp

    def views(self, images_u8, g):
        crops = super().views(images_u8, g)
        if self.params.local_crops:
            local = self._local_augmenter(self.aug.out_size(images_u8.shape[-1]))  # full side, whatever the global views' now
            crops += [local.views(images_u8, g) for _ in range(self.params.local_crops)]
        return crops

    def _local_augmenter(self, size: int):
        if self._local is None:
            side, scale = max(8, round(size * LOCAL_SIZE)), tuple(self.params.local_scale)
            self._local = copy.copy(self.aug)
            self._local.view_size = 0  # local crops keep their side while the global views grow
            ops = [RandomResizedCrop(1.0, side, scale, op.ratio) if isinstance(op, RandomResizedCrop) else op for op in self.aug.ops]
            if not any(isinstance(op, RandomResizedCrop) for op in ops):
                ops.insert(0, RandomResizedCrop(1.0, side, scale))
            self._local.ops = ops
        return self._local

    def forward(self, model, crops, labels, progress: float = 1.0) -> Views:
        n, glob = len(crops[0]), torch.cat(crops[:2])
        groups = [glob] + ([torch.cat(crops[2:])] if len(crops) > 2 else [])
        _, z, p = model(groups)  # one forward, one encoder pass per crop size (DDP sees every parameter once)
        t = self.teach(glob)[2].float()
        if self.training:
            self._batch_center = t.detach()
        local = tuple(p[2 * n:].split(n)) if len(crops) > 2 else ()
        return self.pack(z[: 2 * n], labels, p=p[: 2 * n], t=t, crops=local, center=self.center.clone(),
                         teacher_temp=self.teacher_temp_at(progress))

    @torch.no_grad()
    def after_step(self, net, progress: float) -> None:
        super().after_step(net, progress)
        if self._batch_center is not None:
            t = ddp.gather_with_grad(self._batch_center) if ddp.world_size() > 1 else self._batch_center
            m = self.params.center_momentum
            self.center.mul_(m).add_(t.mean(0, keepdim=True), alpha=1 - m)
            self._batch_center = None
