"""MoCo v2's loss: InfoNCE of queries against momentum keys and a queue of negatives (He et al. 2020,
arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import LOSSES, l2n, LossOut, Views, check_temperature, cross_view_report


@LOSSES.register("moco", method="moco")
class MoCoLoss(nn.Module):
    """InfoNCE of online queries against momentum-encoder keys, with K past keys as negatives:

        l(q, k+) = -log( exp(q.k+/tau) / (exp(q.k+/tau) + sum_{k- in queue} exp(q.k-/tau)) ),

    symmetrised over the two views (q1 with k2, q2 with k1), averaged over the 2N queries. The
    keys t1, t2 come from the momentum encoder and the queue from ``views.negatives``: both are
    kept by a method (``methods/moco.py``: its ``queue_size`` and ``momentum``), which also updates them after each step.
    Shapes: z1, z2, t1, t2 (N, D), negatives (K, D) L2-normalised -> scalar. Report: similarity
    (2N, 2N) of queries against the batch's keys, per_sample (2N,), mined["queue_similarity"] (2N, K).

    temperature: softmax temperature tau, in [0.001, 10].
    """

    term_names = ("pos_sim", "queue_sim")
    needs = ("t", "negatives")

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature

    def forward(self, views: Views, report: bool = False) -> LossOut:
        if views.t1 is None or views.negatives is None:
            raise ValueError("MoCo needs momentum-encoder keys (views.t1, views.t2) and a queue (views.negatives)")
        q = l2n(torch.cat([views.z1, views.z2]))
        k = l2n(torch.cat([views.t2, views.t1])).detach()  # key of q1 is view 2
        pos = (q * k).sum(1, keepdim=True)
        neg = q @ views.negatives.to(q.dtype).detach().T
        logits = torch.cat([pos, neg], 1) / self.temperature
        per = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device), reduction="none")
        out = LossOut(per.mean(), {"pos_sim": pos.detach().mean(), "queue_sim": neg.detach().mean()})
        if report:
            cross_view_report(out, views.z1, views.z2, per[: len(per) // 2])
            out.per_sample = per.detach()
            out.mined = {"queue_similarity": neg.detach()}
        return out
