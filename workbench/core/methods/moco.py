"""MoCo v2 (He et al. 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297): momentum keys and a queue."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.core import distributed as ddp
from workbench.core.losses.base import Views
from workbench.core.methods.base import METHODS, MomentumMethod, MomentumParams


@dataclass
class MoCoParams(MomentumParams):
    """momentum: m of the key encoder's update (constant over the run), in [0, 1).
    queue_size: K, the number of past keys kept as negatives (>= 1; at most the training images).
    """

    queue_size: int = 4096

    def check(self) -> None:
        super().check()
        self.require(self.queue_size >= 1, "queue_size", f"must be >= 1, got {self.queue_size}")

    def check_images(self, n: int) -> None:
        self.require(self.queue_size <= n, "queue_size", f"{self.queue_size} is larger than the {n} training images; "
                     f"lower it (e.g. {n // 2})")


@METHODS.register("moco")
class MoCo(MomentumMethod):
    """Queries z1, z2 (N, D) from the online network, keys t1, t2 (N, D) from the momentum teacher
    (constant ``momentum``), and the queue (K, D) of past L2-normalised keys as ``views.negatives``.

    After each step the batch's keys (all ranks' under DDP) enter the queue first in, first out:
    view 1's keys, then view 2's, as in the reference implementation (moco/builder.py,
    ``_dequeue_and_enqueue``). The queue starts as random unit vectors (seeded) and is saved with
    the method in the checkpoint; the pointer stays on the device, so there is no host sync a step.
    Any loss that reads keys and negatives can train with it (``moco``'s InfoNCE is the default).
    """

    Params = MoCoParams
    params: MoCoParams
    gives = ("t", "negatives")

    def __init__(self, loss, predictor_hidden: int = 512, params: MoCoParams | None = None):
        super().__init__(loss, predictor_hidden, params)
        self.queue_size = self.params.queue_size
        self.register_buffer("queue", torch.zeros(0, 0))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self._keys: tuple[torch.Tensor, ...] = ()

    def forward(self, model, crops, labels, progress: float = 1.0) -> Views:
        x = torch.cat(crops[:2])
        _, z, _ = model(x)
        t = self.teach(x)[1].float()
        self._ensure_queue(t.shape[1], t.device)
        self._keys = tuple(F.normalize(k, dim=1) for k in t.chunk(2))
        return self.pack(z, labels, t=t, negatives=self.queue.clone())  # a copy: the queue changes after the step

    def after_step(self, net, progress: float) -> None:
        super().after_step(net, progress)
        for keys in self._keys:
            self._enqueue(keys)
        self._keys = ()

    def _ensure_queue(self, dim: int, device) -> None:
        if self.queue.shape != (self.queue_size, dim):
            g = torch.Generator().manual_seed(0)
            self.queue = F.normalize(torch.randn(self.queue_size, dim, generator=g), dim=1).to(device)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        if ddp.world_size() > 1:
            keys = ddp.gather_with_grad(keys)
        keys = keys[: self.queue_size]
        idx = (torch.arange(len(keys), device=keys.device) + self.ptr.to(keys.device)) % self.queue_size
        self.queue[idx] = keys
        self.ptr.copy_((self.ptr + len(keys)) % self.queue_size)

    def load_checkpoint_state(self, state: dict) -> None:
        loss_state = dict(state["loss"])
        own = dict(state.get("method", {}))
        for name in ("queue", "ptr"):  # checkpoints written before the queue moved here kept it in the loss
            if name in loss_state:
                own.setdefault(name, loss_state.pop(name))
        if "queue" in own:
            self.queue = torch.empty_like(own["queue"], device=self.queue.device)
        super().load_checkpoint_state({**state, "loss": loss_state, "method": own})
