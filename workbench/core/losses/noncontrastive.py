"""The non-contrastive family, for comparison: BYOL, SimSiam, Barlow Twins, VICReg.

None of them uses negatives; for the inspector they report the cross-view cosine similarity
matrix of the batch (2N, 2N) so the same views work for every loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import LOSSES, l2n, LossOut, Views, cross_view_report


def _neg_cos(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return -(l2n(p.float()) * l2n(z.float())).sum(1)


@LOSSES.register("byol", method="byol")
class BYOLLoss(nn.Module):
    """BYOL (Grill et al. 2020, arXiv:2006.07733): online predictions regress momentum-target projections,

        L = mean_n [ (2 - 2 cos(p1_n, t2_n)) + (2 - 2 cos(p2_n, t1_n)) ],   range [0, 8],

    the targets from a momentum network (methods/byol.py). Shapes: p1, p2, t1, t2 (N, D) -> scalar.

    Convention: the official code's (deepmind-research ``byol/byol_experiment.py``: ``regression_loss``
    ||l2n(p) - l2n(t)||^2 = 2 - 2 cos, summed over the two directions, mean over the batch; paper Eq. 2-3). Its loss
    and gradient are 4x lightly's form ``0.5 * (NegativeCosineSimilarity(p1, t2) + NegativeCosineSimilarity(p2, t1))``
    (up to the constant 4): a learning rate tuned with lightly's BYOL corresponds to one 4x smaller here (with SGD).
    """

    term_names = ("cos_p1_t2", "cos_p2_t1")
    needs = ("p", "t")

    def forward(self, views: Views, report: bool = False) -> LossOut:
        if views.p1 is None or views.t1 is None:
            raise ValueError("BYOL needs predictor outputs and momentum-target projections")
        a, b = _neg_cos(views.p1, views.t2.detach()), _neg_cos(views.p2, views.t1.detach())
        per = (2 + 2 * a) + (2 + 2 * b)
        out = LossOut(per.mean(), {"cos_p1_t2": -a.detach().mean(), "cos_p2_t1": -b.detach().mean()})
        return cross_view_report(out, views.z1, views.z2, per) if report else out


@LOSSES.register("simsiam", method="simsiam")
class SimSiamLoss(nn.Module):
    """SimSiam (Chen & He 2021, arXiv:2011.10566): predictions regress the other view's stopped-gradient projection,

        L = D(p1, sg(z2))/2 + D(p2, sg(z1))/2,  D(p, z) = -cos(p, z);  minimum -1.

    Shapes: p1, p2, z1, z2 (N, D) -> scalar.
    """

    term_names = ("cos",)
    needs = ("p",)

    def forward(self, views: Views, report: bool = False) -> LossOut:
        if views.p1 is None:
            raise ValueError("SimSiam needs predictor outputs")
        per = _neg_cos(views.p1, views.z2.detach()) / 2 + _neg_cos(views.p2, views.z1.detach()) / 2
        out = LossOut(per.mean(), {"cos": -2 * per.detach().mean()})
        return cross_view_report(out, views.z1, views.z2, per) if report else out


@LOSSES.register("barlow_twins")
class BarlowTwins(nn.Module):
    """Barlow Twins (Zbontar et al. 2021, arXiv:2103.03230): the cross-correlation C of the batch-standardised
    projections is pushed to the identity,

        L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2,   C = z1n^T z2n / N.

    Shapes: z1, z2 (N, D) -> scalar; terms on_diagonal, off_diagonal.

    lambda_offdiag: lambda, the weight (>= 0) of the off-diagonal (redundancy reduction) term.
    """

    term_names = ("on_diagonal", "off_diagonal")

    def __init__(self, lambda_offdiag: float = 0.005):
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        self.lam = lambda_offdiag

    def forward(self, views: Views, report: bool = False) -> LossOut:
        z1, z2 = views.z1.float(), views.z2.float()
        n = len(z1)

        def std(z):
            return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)

        c = std(z1).T @ std(z2) / n
        on = (1 - torch.diagonal(c)).pow(2).sum()
        off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        out = LossOut(on + self.lam * off, {"on_diagonal": on.detach(), "off_diagonal": off.detach()})
        if report:
            per = (l2n(z1) - l2n(z2)).pow(2).sum(1)
            cross_view_report(out, z1, z2, per)
        return out


@LOSSES.register("vicreg")
class VICReg(nn.Module):
    """VICReg (Bardes, Ponce & LeCun 2022, arXiv:2105.04906): invariance between the views' projections, with a
    variance floor and decorrelation within each view keeping them from collapsing:

        L = lambda * inv + mu * (var(z1) + var(z2)) / 2 + nu * (cov(z1) + cov(z2)),
        inv = mean ||z1 - z2||^2 / D,  var(z) = mean_d relu(1 - sqrt(Var z_d + 1e-4)),
        cov(z) = sum_{i != j} Cov(z)_ij^2 / D   (Var, Cov unbiased: / (N - 1)).

    The official code's convention (facebookresearch/vicreg ``main_vicreg.py``: the variance term is the mean of the
    two views', the covariance term their sum), which lightly's ``VICRegLoss`` follows; the default coefficients
    25, 25, 1 are the paper's. The ``variance`` term reported is the averaged one the loss uses.

    Shapes: z1, z2 (N, D) -> scalar; terms invariance, variance, covariance.

    sim_coeff: lambda, the weight (>= 0) of the invariance term.
    std_coeff: mu, the weight (>= 0) of the variance term.
    cov_coeff: nu, the weight (>= 0) of the covariance term.
    """

    term_names = ("invariance", "variance", "covariance")

    def __init__(self, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0):
        super().__init__()
        for k, v in (("sim_coeff", sim_coeff), ("std_coeff", std_coeff), ("cov_coeff", cov_coeff)):
            if v < 0:
                raise ValueError(f"{k} must be >= 0, got {v}")
        self.l, self.mu, self.nu = sim_coeff, std_coeff, cov_coeff

    def forward(self, views: Views, report: bool = False) -> LossOut:
        z1, z2 = views.z1.float(), views.z2.float()
        n, d = z1.shape
        inv = F.mse_loss(z1, z2)

        def var(z):
            return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()

        def cov(z):
            zc = z - z.mean(0)
            c = zc.T @ zc / max(n - 1, 1)
            return (c.pow(2).sum() - torch.diagonal(c).pow(2).sum()) / d

        v, c = (var(z1) + var(z2)) / 2, cov(z1) + cov(z2)
        out = LossOut(self.l * inv + self.mu * v + self.nu * c,
                      {"invariance": inv.detach(), "variance": v.detach(), "covariance": c.detach()})
        if report:
            cross_view_report(out, z1, z2, (z1 - z2).pow(2).mean(1))
        return out
