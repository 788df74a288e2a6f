"""NT-Xent / InfoNCE (SimCLR: Chen et al. 2020, arXiv:2002.05709; van den Oord et al. 2018)."""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import LOSSES, l2n, LossOut, Views, check_temperature, gather_all, hardest_excluding


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
    """A fixed temperature, or a learnable one in (0.01, 1) with a gradient everywhere:

        tau = 0.01 ** sigmoid(theta)   (log tau = sigmoid(theta) * log 0.01),

    so tau never leaves (0.01, 1) and d tau / d theta != 0 at every value (no clamp that stops learning).
    A learnable start outside (0.01, 1) is rejected rather than moved.
    """

    LOW = 0.01

    def __init__(self, value: float, learnable: bool):
        super().__init__()
        check_temperature(value)
        self.learnable = learnable
        if learnable:
            if not self.LOW < value < 1:
                raise ValueError(f"a learnable temperature must start inside (0.01, 1), got {value}; "
                                 "choose a start in that range or set learnable_temperature = false")
            s = math.log(value) / math.log(self.LOW)
            self.logit_t = nn.Parameter(torch.tensor(math.log(s / (1 - s))))
        else:
            self.register_buffer("value", torch.tensor(float(value)))

    def forward(self) -> torch.Tensor:
        if self.learnable:
            return torch.exp(torch.sigmoid(self.logit_t) * math.log(self.LOW))
        return self.value

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = state_dict.pop(prefix + "log_t", None)  # checkpoints written with the earlier clamped log parametrisation
        if old is not None and self.learnable:
            s = (old.clamp(math.log(self.LOW), 0.0) / math.log(self.LOW)).clamp(1e-4, 1 - 1e-4)
            state_dict[prefix + "logit_t"] = torch.log(s / (1 - s))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@LOSSES.register("ntxent")
class NTXent(nn.Module):
    """NT-Xent / InfoNCE over 2N views.

    For view i with positive p(i) and temperature tau,
        l_i = -log( exp(s_{i,p(i)}/tau) / sum_{k != i} exp(s_{i,k}/tau) ),  loss = mean_i l_i,
    with s the cosine (or dot-product) similarity. Shapes: z1, z2 (N, D) -> scalar;
    report: similarity (2N, 2N), per_sample (2N,), positive (2N,), hardest_negative (2N,).
    Under DDP the keys are gathered from all ranks (negatives span the global batch).

    temperature: softmax temperature tau, in [0.001, 10]; lower values concentrate the loss on the hardest negatives.
    similarity: cosine (L2-normalised projections) or dot (raw inner products).
    learnable_temperature: learn tau in (0.01, 1) (tau = 0.01 ** sigmoid(theta), a gradient at every value); the start must lie inside.
    """

    term_names = ("temperature", "pos_sim", "neg_sim")

    def __init__(self, temperature: float = 0.1, similarity: Literal["cosine", "dot"] = "cosine", learnable_temperature: bool = False):
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
            # masked mean without boolean indexing (which would sync the GPU): every row has 2 excluded columns
            neg_sim = sims.masked_fill(~neg_mask, 0.0).sum() / (sims.shape[0] * (sims.shape[1] - 2))
        out = LossOut(per.mean(), {"temperature": tau.detach(), "pos_sim": pos_sim, "neg_sim": neg_sim})
        if report:
            out.similarity, out.per_sample, out.positive = sims, per.detach(), pos
            out.hardest_negative = hardest_excluding(sims, ~neg_mask)
        return out
