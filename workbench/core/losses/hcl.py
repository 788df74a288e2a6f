"""Hard negative sampling, HCL (Robinson, Chuang, Sra & Jegelka 2021, "Contrastive Learning with
Hard Negative Samples", ICLR, arXiv:2010.04592)."""
from __future__ import annotations

import math

import torch
from torch import nn

from workbench.core.losses.base import LOSSES, LossOut, Views, check_temperature, hardest_excluding
from workbench.core.losses.ntxent import pair_logits


@LOSSES.register("hcl")
class HCL(nn.Module):
    """NT-Xent whose negatives are importance-weighted towards the hard ones and debiased for false negatives.

    With cosine similarities s, temperature t, the positive p(i) of view i and its M = 2N - 2
    negatives k (M = 2WN - 2 under DDP, negatives from every rank):

        w_ik = exp(beta s_ik / t) / mean_k' exp(beta s_ik' / t)                 (importance weights, mean 1)
        Ng_i = max( (sum_k w_ik exp(s_ik / t) - tau_plus M exp(s_ip / t)) / (1 - tau_plus),  M exp(-1/t) )
        l_i = -log( exp(s_ip / t) / (exp(s_ip / t) + Ng_i) ),   loss = mean_i l_i   (eqs. 3-5 of the paper)

    beta = 0 weighs every negative equally and tau_plus = 0 assumes no false negatives: then it is
    NT-Xent. Computed with a per-row shift (log-sum-exp) so small temperatures stay finite.
    Shapes: z1, z2 (N, D) -> scalar; report: similarity (2N, 2N), per_sample (2N,), positive,
    hardest_negative. Terms: pos_sim, neg_sim (plain mean) and weighted_neg_sim (mean under w / M:
    how similar the negatives are as HCL weighs them).

    temperature: softmax temperature t of the similarities, in [0.001, 10].
    beta: concentration on hard negatives (0 = uniform weights; the paper uses 0.5 to 1).
    tau_plus: prior probability that a negative shares the anchor's class, in [0, 1) (0 = no debiasing).
    """

    term_names = ("pos_sim", "neg_sim", "weighted_neg_sim")

    def __init__(self, temperature: float = 0.5, beta: float = 1.0, tau_plus: float = 0.1):
        super().__init__()
        check_temperature(temperature)
        if not 0 <= beta <= 10:
            raise ValueError(f"beta must be in [0, 10], got {beta}")
        if not 0 <= tau_plus < 1:
            raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
        self.temperature, self.beta, self.tau_plus = temperature, beta, tau_plus

    def forward(self, views: Views, report: bool = False) -> LossOut:
        t = self.temperature
        logits, pos, _ = pair_logits(views, "cosine", torch.tensor(t))  # (2N, K), the self column is -inf
        rows = torch.arange(len(pos), device=pos.device)
        pos_logit = logits[rows, pos]
        neg_mask = torch.isfinite(logits)
        neg_mask[rows, pos] = False
        m = logits.shape[1] - 2
        # log sum_k w_k exp(l_k) = logsumexp((1 + beta) l) - logsumexp(beta l) + log M, over the negatives only
        log_rw = (torch.logsumexp(((1 + self.beta) * logits).masked_fill(~neg_mask, -math.inf), 1)
                  - torch.logsumexp((self.beta * logits).masked_fill(~neg_mask, -math.inf), 1) + math.log(m))
        shift = torch.maximum(log_rw, pos_logit).detach()  # keeps exp() in (0, 1]
        pos_e, rw_e = torch.exp(pos_logit - shift), torch.exp(log_rw - shift)
        ng = (rw_e - self.tau_plus * m * pos_e) / (1 - self.tau_plus)
        ng = torch.maximum(ng, torch.exp(math.log(m) - 1 / t - shift))  # the paper's lower bound M e^{-1/t}
        per = torch.log(pos_e + ng) - (pos_logit - shift)
        sims = logits.detach() * t
        out = LossOut(per.mean(), self._terms(sims, pos_logit.detach() * t, neg_mask))
        if report:
            out.similarity, out.per_sample, out.positive = sims, per.detach(), pos
            out.hardest_negative = hardest_excluding(sims, ~neg_mask)
        return out

    @torch.no_grad()
    def _terms(self, sims: torch.Tensor, pos_sim: torch.Tensor, neg_mask: torch.Tensor) -> dict:
        neg = sims.masked_fill(~neg_mask, 0.0)
        w = torch.softmax((self.beta / self.temperature * sims).masked_fill(~neg_mask, -math.inf), 1)
        return {"pos_sim": pos_sim.mean(), "neg_sim": neg.sum() / neg_mask.sum(), "weighted_neg_sim": (w * neg).sum(1).mean()}
