"""SimSiam (Chen & He 2021, arXiv:2011.10566): a predictor on one branch, a stopped gradient on the other."""
from __future__ import annotations

import torch

from workbench.core.losses.base import Views
from workbench.core.methods.base import METHODS, Method
from workbench.core.models import mlp


@METHODS.register("simsiam")
class SimSiam(Method):
    """Adds a 2-layer predictor (D -> predictor_hidden -> D, BatchNorm) after the projection head;
    the loss gets z1, z2 and the predictions p1, p2 (N, D). No momentum teacher."""

    gives = ("p",)

    def predictor(self, dim: int):
        return mlp(dim, self.predictor_hidden, dim, 2, True)

    def forward(self, model, crops, labels, progress: float = 1.0) -> Views:
        _, z, p = model(torch.cat(crops[:2]))
        return self.pack(z, labels, p=p)
