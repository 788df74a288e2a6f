"""What every loss receives and returns.

A loss is an ``nn.Module`` called as ``loss(views, report=False) -> LossOut``. ``views`` holds
the online projections of the two augmented views of N images (and, for the methods that need
them, predictor outputs, momentum-target projections, labels and further views); the method
(``core/methods/``) fills it, the loss only computes. With ``report=True`` the loss
also fills in what it computed for the inspector: the similarity matrix it used, a per-sample
loss, each anchor's positive and its hardest negative. With ``report=False`` none of that is
materialised beyond what the loss itself needs.

A loss reads z1, z2 (and labels); the other Views fields it reads are listed in its class attribute
``needs`` (``("p", "t")`` for predictor outputs and targets, ``"negatives"`` for a queue, ...): the config
pairs it only with a method whose ``gives`` holds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.core.registry import Registry

LOSSES = Registry("loss")


@dataclass
class Views:
    z1: torch.Tensor  # (N, D) online projections of view 1
    z2: torch.Tensor  # (N, D) online projections of view 2
    p1: torch.Tensor | None = None  # (N, D) predictor outputs (BYOL, SimSiam)
    p2: torch.Tensor | None = None
    t1: torch.Tensor | None = None  # (N, D) target projections (momentum encoder), no gradient
    t2: torch.Tensor | None = None
    labels: torch.Tensor | None = None  # (N,) int64, -1 = unknown
    crops: tuple = ()  # (N, D') online outputs of further views (multi-crop local views, DINO)
    center: torch.Tensor | None = None  # (1, D') the teacher's running centre (DINO)
    teacher_temp: float | None = None  # the teacher's scheduled temperature (DINO)
    negatives: torch.Tensor | None = None  # (K, D) L2-normalised keys kept from past batches, no gradient (MoCo's queue)
    gather: object = None  # callable (N, D) -> (world*N, D) with gradients, for DDP; None = single process
    rank: int = 0


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar
    terms: dict = field(default_factory=dict)  # name -> detached scalar tensor, for the plots
    similarity: torch.Tensor | None = None  # (M, K) the similarities the loss used (report only)
    per_sample: torch.Tensor | None = None  # (M,) loss of each anchor (report only)
    positive: torch.Tensor | None = None  # (M,) column of each anchor's positive in ``similarity`` (-1 = none)
    hardest_negative: torch.Tensor | None = None  # (M,) column of each anchor's most similar negative
    mined: dict = field(default_factory=dict)  # pair/triplet losses: the pairs or triplets they mined


def gather_all(views: Views, z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows of ``z`` (with gradients) and the offset of this rank's rows in them."""
    if views.gather is None:
        return z, 0
    return views.gather(z), views.rank * z.shape[0]


def hardest_excluding(sim: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """Column of the highest similarity per row, ignoring entries where ``exclude`` (bool, same shape) is True."""
    return sim.detach().masked_fill(exclude, float("-inf")).argmax(1)


def check_temperature(t: float) -> None:
    if not 1e-3 <= t <= 10:
        raise ValueError(f"temperature must be in [0.001, 10], got {t}")


def cross_view_report(out: LossOut, z1: torch.Tensor, z2: torch.Tensor, per_pair: torch.Tensor) -> LossOut:
    """Fill the inspector fields from cosine similarities of [z1; z2] (2N, 2N): row i's positive is its other view."""
    z = l2n(torch.cat([z1, z2]).detach())
    n = len(z1)
    sim = z @ z.T
    rows = torch.arange(2 * n, device=z.device)
    pos = torch.where(rows < n, rows + n, rows - n)
    exclude = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    exclude[rows, pos] = True
    out.similarity, out.positive = sim, pos
    out.hardest_negative = hardest_excluding(sim, exclude)
    out.per_sample = torch.cat([per_pair, per_pair]).detach().float()
    return out


def instance_labels(views: Views, use_labels: bool) -> torch.Tensor:
    """(2N,) labels for [z1; z2]: the class when ``use_labels`` and known, else a unique id per image."""
    n = views.z1.shape[0]
    ids = torch.arange(n, device=views.z1.device)
    if use_labels and views.labels is not None:
        known = views.labels >= 0
        ids = torch.where(known, views.labels.to(ids.device), ids + 1_000_000)
    return torch.cat([ids, ids])


def l2n(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation in float32; eps 1e-3 keeps the gradient of a (near-)zero row finite, even in fp16."""
    return torch.nn.functional.normalize(x.float(), dim=1, eps=1e-3)
