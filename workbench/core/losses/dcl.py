"""Decoupled contrastive learning, DCL and DCLW (Yeh et al. 2022, arXiv:2110.06848)."""
from __future__ import annotations

import torch
from torch import nn

from workbench.core.losses.base import LOSSES, LossOut, Views, check_temperature, hardest_excluding
from workbench.core.losses.ntxent import pair_logits


@LOSSES.register("dcl")
class DCL(nn.Module):
    """NT-Xent with the positive removed from the denominator:

        l_i = -w_i * s_{i,p(i)}/tau + log sum_{k not in {i, p(i)}} exp(s_{i,k}/tau)

    DCL: w_i = 1. DCLW (``weighted=True``): w_i = 2 - exp(s_{i,p(i)}/sigma) / mean_j exp(s_{j,p(j)}/sigma),
    giving hard (dissimilar) positive pairs more weight. Shapes: z1, z2 (N, D) -> scalar;
    report: similarity (2N, 2N), per_sample (2N,), positive, hardest_negative.

    temperature: softmax temperature tau, in [0.001, 10].
    weighted: use DCLW's von Mises-Fisher weights w_i on the positive pairs.
    sigma: width of the DCLW weighting (> 0); used only with ``weighted``.
    """

    term_names = ("pos_sim", "neg_sim")

    def __init__(self, temperature: float = 0.1, weighted: bool = False, sigma: float = 0.5):
        super().__init__()
        check_temperature(temperature)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.temperature, self.weighted, self.sigma = temperature, weighted, sigma

    def forward(self, views: Views, report: bool = False) -> LossOut:
        logits, pos, self_col = pair_logits(views, "cosine", torch.tensor(self.temperature))
        rows = torch.arange(len(pos), device=pos.device)
        sims = logits * self.temperature
        pos_sim = sims[rows, pos]
        w = torch.ones_like(pos_sim)
        if self.weighted:
            n = len(pos) // 2
            e = torch.exp(pos_sim[:n] / self.sigma)
            w = (2 - e / e.mean()).detach().repeat(2)
        neg_logits = logits.clone()
        neg_logits[rows, pos] = float("-inf")
        per = -w * pos_sim / self.temperature + torch.logsumexp(neg_logits, 1)
        neg_mask = torch.isfinite(neg_logits)
        out = LossOut(per.mean(), {"pos_sim": pos_sim.detach().mean(), "neg_sim": sims.detach()[neg_mask].mean()})
        if report:
            out.similarity, out.per_sample, out.positive = sims.detach(), per.detach(), pos
            out.hardest_negative = hardest_excluding(sims, ~neg_mask)
        return out


@LOSSES.register("dclw")
class DCLW(DCL):
    """DCL with the von Mises-Fisher weighting of positive pairs (Yeh et al. 2022).

    temperature: softmax temperature tau, in [0.001, 10].
    sigma: width of the von Mises-Fisher weighting (> 0).
    """

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5):
        super().__init__(temperature, True, sigma)
