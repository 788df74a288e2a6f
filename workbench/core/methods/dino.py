"""DINO (Caron et al. 2021, arXiv:2104.14294): self-distillation with no labels.

A student (the trained network) and a momentum teacher share the architecture; both end in K
prototypes (an L2-normalised bottleneck times a weight-normalised K x D matrix). The teacher
sees the two global views, the student sees those and ``local_crops`` smaller crops
(multi-crop); the loss makes the student's softmax on every view match the teacher's centred and
sharpened softmax on the other global view.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core import distributed as ddp
from workbench.core.augment import RandomResizedCrop
from workbench.core.losses.base import Views
from workbench.core.methods.base import MomentumMethod, cosine_to_one

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


class DINO(MomentumMethod):
    """Student logits p1, p2 (N, K) of the global views and ``crops`` (local views), teacher logits t1, t2,
    the centre c (1, K) and the scheduled teacher temperature go to the loss.

    After each step: the teacher follows the student with momentum raised from ``momentum`` to 1 on a
    cosine, and c <- center_momentum c + (1 - center_momentum) mean(teacher logits of the batch).
    The teacher temperature rises linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over the first
    ``warmup_teacher_temp_frac`` of the run.
    """

    def __init__(self, loss, cfg):
        super().__init__(loss, cfg)
        self.register_buffer("center", torch.zeros(1, self.params["out_dim"]))
        self._local = None
        self._batch_center = None

    def predictor(self, dim: int):
        return Prototypes(dim, self.params["out_dim"])

    def momentum_at(self, progress: float) -> float:
        return cosine_to_one(self.params["momentum"], progress)

    def teacher_temp_at(self, progress: float) -> float:
        p, frac = self.params, self.params["warmup_teacher_temp_frac"]
        ramp = min(1.0, progress / frac) if frac > 0 else 1.0
        return p["warmup_teacher_temp"] + (p["teacher_temp"] - p["warmup_teacher_temp"]) * ramp

    def views(self, images_u8, g):
        crops = super().views(images_u8, g)
        if self.params["local_crops"]:
            local = self._local_augmenter(self.aug.out_size(images_u8.shape[-1]))  # full side, whatever the global views' now
            crops += [local.views(images_u8, g) for _ in range(self.params["local_crops"])]
        return crops

    def _local_augmenter(self, size: int):
        if self._local is None:
            side, scale = max(8, round(size * LOCAL_SIZE)), tuple(self.params["local_scale"])
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
            m = self.params["center_momentum"]
            self.center.mul_(m).add_(t.mean(0, keepdim=True), alpha=1 - m)
            self._batch_center = None
