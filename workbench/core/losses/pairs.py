"""Margin losses on pairs and triplets.

- Margin contrastive loss (Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by Learning an Invariant Mapping").
- Triplet loss (Schroff et al. 2015, FaceNet) with batch-all, batch-hard (Hermans et al. 2017,
  arXiv:1703.07737) or semi-hard mining.
Distances are Euclidean, on L2-normalised embeddings unless ``normalize=False``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import LOSSES, LossOut, Views, cross_view_report, instance_labels, l2n


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, D), (K, D) -> (M, K) distances with a finite gradient at zero distance."""
    d2 = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None] - 2 * a @ b.T).clamp_min(1e-12)
    return d2.sqrt()


def _embed(views: Views, normalize: bool):
    z1, z2 = views.z1.float(), views.z2.float()
    return (l2n(z1), l2n(z2)) if normalize else (z1, z2)


def _check_margin(margin):
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")


@LOSSES.register("margin_contrastive", pairs=True)
class MarginContrastive(nn.Module):
    """Pairs from the batch: (z1_i, z2_i) is similar (y=1); (z1_i, z2_{i+N/2 mod N}) is dissimilar (y=0)
    (a different image, or with ``use_labels`` only when its label differs).

        L = 1/2 [ y d^2 + (1 - y) max(0, margin - d)^2 ],  averaged over the 2N pairs.

    Shapes: z1, z2 (N, D), N even -> scalar; report: similarity (2N, 2N) cosine, per_sample (2N,)
    (N positive then N negative pair losses), mined["pairs"] (2N, 3) = (i, j, y) over [z1; z2] rows.

    margin: distance (> 0) beyond which a dissimilar pair costs nothing.
    normalize: L2-normalise the projections before measuring distances.
    use_labels: treat a pair as dissimilar only when the labels differ (needs labelled data).
    """

    term_names = ("pos_dist", "neg_dist")

    def __init__(self, margin: float = 1.0, normalize: bool = True, use_labels: bool = False):
        super().__init__()
        _check_margin(margin)
        self.margin, self.normalize, self.use_labels = margin, normalize, use_labels

    def forward(self, views: Views, report: bool = False) -> LossOut:
        z1, z2 = _embed(views, self.normalize)
        n = len(z1)
        if n % 2:
            raise ValueError(f"margin contrastive loss forms pairs by halves of the batch; got an odd batch of {n}")
        partner = (torch.arange(n, device=z1.device) + n // 2) % n
        d_pos = (z1 - z2).pow(2).sum(1).clamp_min(1e-12).sqrt()
        d_neg = (z1 - z2[partner]).pow(2).sum(1).clamp_min(1e-12).sqrt()
        neg_y = torch.zeros(n, device=z1.device)
        if self.use_labels and views.labels is not None:
            lab = views.labels.to(z1.device)
            neg_y = ((lab == lab[partner]) & (lab >= 0)).float()
        per_pos = 0.5 * d_pos.pow(2)
        per_neg = 0.5 * (neg_y * d_neg.pow(2) + (1 - neg_y) * F.relu(self.margin - d_neg).pow(2))
        per = torch.cat([per_pos, per_neg])
        out = LossOut(per.mean(), {"pos_dist": d_pos.detach().mean(), "neg_dist": d_neg.detach().mean()})
        if report:
            cross_view_report(out, views.z1, views.z2, per_pos)
            out.per_sample = per.detach()
            rows = torch.arange(n, device=z1.device)
            out.mined = {"pairs": torch.cat([torch.stack([rows, rows + n, torch.ones_like(rows)], 1),
                                             torch.stack([rows, partner + n, neg_y.long()], 1)])}
        return out


@LOSSES.register("triplet")
class Triplet(nn.Module):
    """Triplet loss over the 2N views, positives = same image (or same class with ``use_labels``):

        l(a, p, n) = max(0, d(a, p) - d(a, n) + margin)

    mining = "batch_all": mean over all valid triplets with l > 0 (Hermans et al. "BA+");
    "batch_hard": per anchor the farthest positive and the closest negative; "semi_hard": per
    (a, p) the closest negative farther than p (FaceNet), else the farthest negative.
    Shapes: z1, z2 (N, D) -> scalar; report: similarity (2N, 2N), per_sample (2N,) (mean loss of
    each anchor's triplets), positive / hardest_negative per anchor, mined["triplets"] (T, 3).

    margin: how much (> 0) closer than the negative the positive must be.
    mining: which triplets count: batch_all, batch_hard or semi_hard (see above).
    normalize: L2-normalise the projections before measuring distances.
    use_labels: positives are all views of the same class, not only of the same image (needs labels).
    """

    term_names = ("active_fraction", "pos_dist", "neg_dist")

    def __init__(self, margin: float = 0.2, mining: Literal["batch_all", "batch_hard", "semi_hard"] = "batch_hard",
                 normalize: bool = True, use_labels: bool = False):
        super().__init__()
        _check_margin(margin)
        if mining not in ("batch_all", "batch_hard", "semi_hard"):
            raise ValueError(f"mining must be batch_all, batch_hard or semi_hard, got '{mining}'")
        self.margin, self.mining, self.normalize, self.use_labels = margin, mining, normalize, use_labels

    def forward(self, views: Views, report: bool = False) -> LossOut:
        z1, z2 = _embed(views, self.normalize)
        z = torch.cat([z1, z2])
        y = instance_labels(views, self.use_labels)
        m = len(z)
        d = euclidean(z, z)
        eye = torch.eye(m, dtype=torch.bool, device=z.device)
        pos_mask = (y[:, None] == y[None]) & ~eye
        neg_mask = y[:, None] != y[None]
        if not neg_mask.any():
            raise ValueError("triplet loss needs at least two different images or classes in a batch")
        if self.mining == "batch_hard":
            d_ap, p_idx = d.masked_fill(~pos_mask, float("-inf")).max(1)
            d_an, n_idx = d.masked_fill(~neg_mask, float("inf")).min(1)
            per = F.relu(d_ap - d_an + self.margin)
            loss = per.mean()
            a_idx = torch.arange(m, device=z.device)
            trip = torch.stack([a_idx, p_idx, n_idx], 1)
            active = (per > 0).float().mean()
        else:
            cube = d[:, :, None] - d[:, None, :] + self.margin  # [a, p, n]
            valid = pos_mask[:, :, None] & neg_mask[:, None, :]
            if self.mining == "semi_hard":
                d_ap = d[:, :, None]
                d_an = d[:, None, :].expand(m, m, m)
                semi = valid & (d_an > d_ap)
                closest = d_an.masked_fill(~semi, float("inf")).argmin(2)  # (a, p)
                farthest = d_an.masked_fill(~valid, float("-inf")).argmax(2)
                has = semi.any(2)
                n_pick = torch.where(has, closest, farthest)
                keep = pos_mask
                per_ap = F.relu(d - d.gather(1, n_pick) + self.margin)
                losses = per_ap[keep]
                loss = losses.mean()
                aa, pp = keep.nonzero(as_tuple=True)
                trip = torch.stack([aa, pp, n_pick[aa, pp]], 1)
                per = torch.zeros(m, device=z.device).index_add(0, aa, per_ap[keep]) / keep.sum(1).clamp_min(1)
                active = (losses > 0).float().mean()
            else:
                vals = F.relu(cube)[valid]
                pos_vals = vals > 1e-16
                loss = vals[pos_vals].mean() if pos_vals.any() else vals.sum() * 0
                trip = valid.nonzero()
                per = (F.relu(cube) * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1)
                active = pos_vals.float().mean()
        out = LossOut(loss, {"active_fraction": active.detach(),
                             "pos_dist": d.detach()[pos_mask].mean(), "neg_dist": d.detach()[neg_mask].mean()})
        if report:
            sims = (l2n(z) @ l2n(z).T).detach()
            n = m // 2
            rows = torch.arange(m, device=z.device)
            out.similarity, out.per_sample = sims, per.detach()
            out.positive = torch.where(rows < n, rows + n, rows - n)
            out.hardest_negative = d.detach().masked_fill(~neg_mask, float("inf")).argmin(1)
            out.mined = {"triplets": trip.detach()}
        return out
