"""NT-Xent / InfoNCE (SimCLR: Chen et al. 2020, arXiv:2002.05709; van den Oord et al. 2018)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import l2n, LossOut, Views, check_temperature, gather_all, hardest_excluding


def pair_logits(views: Views, similarity: str, temperature: torch.Tensor):
    """Logits of every view against every view (self masked out), for this rank's rows.

    Returns (logits (2N, 2W*N), positive column (2N,), self column (2N,)) where W = world size; view
    layout across ranks is [z1 of all ranks; z2 of all ranks].
    """
    q = torch.cat([views.z1, views.z2]).float()  # (2N, D), local
    if similarity == "cosine":
        q = l2n(q)
    n = views.z1.shape[0]
    k1, off = gather_all(views, q[:n])
    k2, _ = gather_all(views, q[n:])
    keys = torch.cat([k1, k2])  # (2WN, D)
    wn = k1.shape[0]
    rows = torch.arange(2 * n, device=q.device)
    self_col = torch.where(rows < n, rows + off, rows - n + wn + off)
    pos_col = torch.where(rows < n, self_col + wn, self_col - wn)
    logits = q @ keys.T / temperature
    logits = logits.masked_fill(F.one_hot(self_col, keys.shape[0]).bool(), float("-inf"))
    return logits, pos_col, self_col


class Temperature(nn.Module):
    """A fixed temperature, or a learnable one kept in [0.01, 1] through its logarithm."""

    def __init__(self, value: float, learnable: bool):
        super().__init__()
        check_temperature(value)
        self.learnable = learnable
        if learnable:
            self.log_t = nn.Parameter(torch.tensor(math.log(value)))
        else:
            self.register_buffer("value", torch.tensor(float(value)))

    def forward(self) -> torch.Tensor:
        if self.learnable:
            return self.log_t.clamp(math.log(0.01), 0.0).exp()
        return self.value


class NTXent(nn.Module):
    """NT-Xent / InfoNCE over 2N views.

    For view i with positive p(i) and temperature tau,
        l_i = -log( exp(s_{i,p(i)}/tau) / sum_{k != i} exp(s_{i,k}/tau) ),  loss = mean_i l_i,
    with s the cosine (or dot-product) similarity. Shapes: z1, z2 (N, D) -> scalar;
    report: similarity (2N, 2N), per_sample (2N,), positive (2N,), hardest_negative (2N,).
    Under DDP the keys are gathered from all ranks (negatives span the global batch).
    """

    term_names = ("temperature", "pos_sim", "neg_sim")

    def __init__(self, temperature: float = 0.5, similarity: str = "cosine", learnable_temperature: bool = False):
        super().__init__()
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be 'cosine' or 'dot', got '{similarity}'")
        self.similarity = similarity
        self.tau = Temperature(temperature, learnable_temperature)

    def forward(self, views: Views, report: bool = False) -> LossOut:
        tau = self.tau()
        logits, pos, self_col = pair_logits(views, self.similarity, tau)
        per = F.cross_entropy(logits, pos, reduction="none")
        rows = torch.arange(len(pos), device=pos.device)
        with torch.no_grad():
            sims = logits.detach() * tau
            pos_sim = sims[rows, pos].mean()
            neg_mask = torch.ones_like(sims, dtype=torch.bool)
            neg_mask[rows, pos] = False
            neg_mask[rows, self_col] = False
            neg_sim = sims[neg_mask].mean()
        out = LossOut(per.mean(), {"temperature": tau.detach(), "pos_sim": pos_sim, "neg_sim": neg_sim})
        if report:
            out.similarity, out.per_sample, out.positive = sims, per.detach(), pos
            out.hardest_negative = hardest_excluding(sims, ~neg_mask)
        return out
