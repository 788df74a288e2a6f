"""MoCo v2 (He et al. 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297): momentum keys and a queue."""
from __future__ import annotations

import torch

from workbench.core.losses.base import Views
from workbench.core.methods.base import MomentumMethod


class MoCo(MomentumMethod):
    """Queries from the online network, keys t1, t2 (N, D) from the momentum teacher (constant ``momentum``).

    The queue of past keys is the loss's memory of negatives: it lives in the loss (``losses/moco.py``),
    is filled by the loss while training and saved with it in the checkpoint.
    """

    def forward(self, model, crops, labels, progress: float = 1.0) -> Views:
        x = torch.cat(crops[:2])
        _, z, _ = model(x)
        t = self.teach(x)[1].float()
        return self.pack(z, labels, t=t)
