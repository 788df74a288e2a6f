"""MoCo v2: momentum encoder and a queue of negatives (He et al. 2020, arXiv:1911.05722;
Chen et al. 2020, arXiv:2003.04297)."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import l2n, LossOut, Views, check_temperature, cross_view_report


class MoCo(nn.Module):
    """InfoNCE of online queries against momentum-encoder keys, with a FIFO queue of K past keys:

        l(q, k+) = -log( exp(q.k+/tau) / (exp(q.k+/tau) + sum_{k- in queue} exp(q.k-/tau)) ),

    symmetrised over the two views (q1 with k2, q2 with k1). The keys t1, t2 come from the
    momentum encoder (updated as theta_k <- m theta_k + (1 - m) theta_q after each step).
    Shapes: z1, z2, t1, t2 (N, D) -> scalar; queue (K, D). Report: similarity (2N, 2N) of
    queries against the batch's keys, per_sample (2N,), mined["queue_similarity"] (2N, K).

    temperature: softmax temperature tau, in [0.001, 10].
    queue_size: K, the number of past keys kept as negatives (>= 1).
    momentum: m of the key encoder's update, in [0, 1).
    """

    term_names = ("pos_sim", "queue_sim")

    def __init__(self, temperature: float = 0.2, queue_size: int = 4096, momentum: float = 0.99):
        super().__init__()
        check_temperature(temperature)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.temperature, self.momentum = temperature, momentum
        self.register_buffer("queue", torch.zeros(0, 0))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.queue_size = queue_size

    def _ensure_queue(self, dim: int, device) -> None:
        if self.queue.shape != (self.queue_size, dim):
            g = torch.Generator().manual_seed(0)
            self.queue = F.normalize(torch.randn(self.queue_size, dim, generator=g), dim=1).to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        q = state_dict.get(prefix + "queue")
        if q is not None:
            self.queue = torch.empty_like(q)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor, views: Views) -> None:
        if views.gather is not None:
            keys = views.gather(keys)
        keys = keys[: self.queue_size]
        k = len(keys)  # the pointer stays on the device: no host sync per step
        idx = (torch.arange(k, device=keys.device) + self.ptr.to(keys.device)) % self.queue_size
        self.queue[idx] = keys
        self.ptr.copy_((self.ptr + k) % self.queue_size)

    def forward(self, views: Views, report: bool = False) -> LossOut:
        if views.t1 is None:
            raise ValueError("MoCo needs momentum-encoder keys (views.t1, views.t2)")
        q = l2n(torch.cat([views.z1, views.z2]))
        k = l2n(torch.cat([views.t2, views.t1])).detach()  # key of q1 is view 2
        self._ensure_queue(q.shape[1], q.device)
        pos = (q * k).sum(1, keepdim=True)
        neg = q @ self.queue.clone().T  # the queue is updated in place below
        logits = torch.cat([pos, neg], 1) / self.temperature
        per = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device), reduction="none")
        out = LossOut(per.mean(), {"pos_sim": pos.detach().mean(), "queue_sim": neg.detach().mean()})
        if report:
            cross_view_report(out, views.z1, views.z2, per[: len(per) // 2])
            out.per_sample = per.detach()
            out.mined = {"queue_similarity": neg.detach()}
        if self.training:
            self._enqueue(l2n(views.t1.float()).detach(), views)
            self._enqueue(l2n(views.t2.float()).detach(), views)
        return out
