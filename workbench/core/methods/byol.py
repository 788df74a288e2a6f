"""BYOL (Grill et al. 2020, arXiv:2006.07733): predictor plus a momentum teacher raised to 1 on a cosine."""
from __future__ import annotations

import torch

from workbench.core.losses.base import Views
from workbench.core.methods.base import METHODS, MomentumMethod, cosine_to_one
from workbench.core.models import mlp


@METHODS.register("byol")
class BYOL(MomentumMethod):
    """Online network with a 2-layer predictor; the teacher's projections t1, t2 (N, D) are the targets.

    Teacher momentum ``1 - (1 - momentum) (cos(pi progress) + 1) / 2``: ``momentum`` at the start, 1 at the end.
    """

    gives = ("p", "t")

    def predictor(self, dim: int):
        return mlp(dim, self.predictor_hidden, dim, 2, True)

    def momentum_at(self, progress: float) -> float:
        return cosine_to_one(self.params.momentum, progress)

    def forward(self, model, crops, labels, progress: float = 1.0) -> Views:
        x = torch.cat(crops[:2])
        _, z, p = model(x)
        t = self.teach(x)[1].float()
        return self.pack(z, labels, p=p, t=t)
