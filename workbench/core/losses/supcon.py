"""Supervised contrastive loss, SupCon L_out (Khosla et al. 2020, arXiv:2004.11362)."""
from __future__ import annotations

import torch
from torch import nn

from workbench.core.losses.base import LOSSES, l2n, LossOut, Views, check_temperature, instance_labels


@LOSSES.register("supcon", labels=True)
class SupCon(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020, L_out): every other view of the same class is a positive.

    For each of the 2N views i with positives P(i) = the other views of the same class,

        l_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip/tau) / sum_{a != i} exp(s_ia/tau) ),

    s the cosine similarity. Views of unlabeled images (label -1) only have their other view as
    positive, so without labels this is NT-Xent. Shapes: z1, z2 (N, D), labels (N,) -> scalar;
    report: similarity (2N, 2N), per_sample (2N,), positive (the other view), hardest_negative
    (most similar view of another class).

    temperature: softmax temperature tau, in [0.001, 10].
    """

    term_names = ("pos_sim", "neg_sim")

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature

    def forward(self, views: Views, report: bool = False) -> LossOut:
        z = l2n(torch.cat([views.z1, views.z2]))
        y = instance_labels(views, use_labels=True)
        m = len(z)
        sims = z @ z.T
        eye = torch.eye(m, dtype=torch.bool, device=z.device)
        logits = (sims / self.temperature).masked_fill(eye, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, 1, keepdim=True)
        positive = (y[:, None] == y[None, :]) & ~eye
        per = -(log_prob.masked_fill(~positive, 0).sum(1)) / positive.sum(1)
        negative = ~positive & ~eye
        neg_sim = sims.detach()[negative].mean() if negative.any() else sims.new_tensor(float("nan"))
        out = LossOut(per.mean(), {"pos_sim": sims.detach()[positive].mean(), "neg_sim": neg_sim})
        if report:
            n = m // 2
            rows = torch.arange(m, device=z.device)
            out.similarity, out.per_sample = sims.detach(), per.detach()
            out.positive = torch.where(rows < n, rows + n, rows - n)
            out.hardest_negative = sims.detach().masked_fill(~negative, float("-inf")).argmax(1)
            out.mined = {"positives": positive}
        return out
