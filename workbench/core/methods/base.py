"""What a learning method is: everything about a run that is neither the encoder nor the loss's maths.

A method owns what it adds to the network (a predictor, a momentum teacher, a centre), its
forward from the augmented views of a batch to what its loss needs (``Views``), what happens
after each optimiser step (momentum update, centre update) and its checkpoint state. The loss it
holds is pure maths: ``method.loss(views, report) -> LossOut``. The loop, ``build_network``,
inference and the inspector call only this interface:

    method = build_method(cfg)                      # cfg.method's Method holding cfg.loss's loss
    net = build_network(cfg, channels, size, method)  # asks method.predictor(dim)
    method.attach(net, aug)                         # once: momentum teacher, extra augmenters
    crops = method.views(x_u8, g)                   # list of (B, C, S, S) float views, two or more
    views = method(model, crops, labels, progress)  # Views for the loss
    out = method.loss(views, report=False)
    ...backward, optimiser step...
    method.after_step(net, progress)                # momentum update, centre update

``progress`` is the fraction of the run done, in [0, 1]; a method's schedules follow it.

A method's hyperparameters are its ``Params`` dataclass (the config's ``[method]`` section, checked on
construction); ``gives`` lists the Views fields beyond z1, z2 it fills, so any loss whose ``needs`` they
cover can train with it. Methods register with ``@METHODS.register("name")`` on the class.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from workbench.core import distributed as ddp
from workbench.core.losses.base import Views
from workbench.core.registry import Registry, TypedParams

METHODS = Registry("method", context=("loss", "predictor_hidden"))


@dataclass
class MethodParams(TypedParams):
    """A method's hyperparameters: the ``[method]`` section beside ``name``; errors name ``method.FIELD``."""

    section = "method"

    def check_images(self, n: int) -> None:
        """Refuse (ConfigError) settings that ``n`` training images cannot feed; none here."""


@dataclass
class MomentumParams(MethodParams):
    """momentum: m of the teacher's update theta_t <- m theta_t + (1 - m) theta_s, in [0, 1)."""

    momentum: float = 0.99

    def check(self) -> None:
        self.require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")


@METHODS.register("simclr")
class Method(nn.Module):
    """Two augmented views of each image through one shared network (SimCLR, Chen et al. 2020).

    The default method: the loss receives the projections z1, z2 (N, D) of the two views (and the
    labels, for losses that use them). Subclasses override the parts they change.
    """

    Params = MethodParams
    gives: tuple[str, ...] = ()  # Views fields filled beyond z1, z2 and labels

    def __init__(self, loss: nn.Module, predictor_hidden: int = 512, params: MethodParams | None = None):
        super().__init__()
        self.loss = loss
        self.params = params if params is not None else self.Params()
        self.predictor_hidden = predictor_hidden
        self.teacher: nn.Module | None = None
        self.aug = None

    @property
    def term_names(self) -> tuple[str, ...]:
        """Names of the loss terms plotted beside the loss (``LossOut.terms`` keys)."""
        return tuple(self.loss.term_names)

    def predictor(self, dim: int) -> nn.Module | None:
        """The module the network applies after its projection head (D -> D'), or None."""
        return None

    def attach(self, net: nn.Module, aug) -> None:
        """Called once the network exists: build what the method keeps beside it."""
        self.aug = aug

    def views(self, images_u8: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        """Augmented views of a uint8 batch (B, C, H, W): a list of float batches, two for this method."""
        return [self.aug.views(images_u8, g), self.aug.views(images_u8, g)]

    def forward(self, model: nn.Module, crops: list[torch.Tensor], labels: torch.Tensor | None,
                progress: float = 1.0) -> Views:
        _, z, _ = model(torch.cat(crops[:2]))
        return self.pack(z, labels)

    def after_step(self, net: nn.Module, progress: float) -> None:
        """What happens after each optimiser step; nothing for this method."""

    @staticmethod
    def pack(z: torch.Tensor, labels, p: torch.Tensor | None = None, t: torch.Tensor | None = None, **extra) -> Views:
        """Split stacked (2N, D) outputs of [view 1; view 2] into the loss's Views."""
        def halves(x):
            return (None, None) if x is None else x.chunk(2)

        (z1, z2), (p1, p2), (t1, t2) = halves(z), halves(p), halves(t)
        gather = ddp.gather_with_grad if ddp.world_size() > 1 else None
        return Views(z1, z2, p1, p2, t1, t2, labels=labels, gather=gather, rank=ddp.rank(), **extra)

    # ----- checkpoint -----
    def checkpoint_state(self) -> dict:
        """``loss`` (its state dict), ``target`` (the teacher's, when there is one) and ``method`` (own buffers)."""
        state = {"loss": self.loss.state_dict()}
        if self.teacher is not None:
            state["target"] = self.teacher.state_dict()
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(("loss.", "teacher."))}
        if own:
            state["method"] = own
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        self.loss.load_state_dict(state["loss"])
        if self.teacher is not None and "target" in state:
            self.teacher.load_state_dict(state["target"])
        for name, value in state.get("method", {}).items():
            self.get_buffer(name).copy_(value)


class MomentumMethod(Method):
    """A method with a momentum teacher: a frozen copy of the network updated after every step as

        theta_t <- m theta_t + (1 - m) theta_s   (parameters; buffers copied),

    with ``m = momentum_at(progress)`` (``method.momentum`` unless a subclass schedules it).
    """

    Params = MomentumParams
    params: MomentumParams

    def attach(self, net: nn.Module, aug) -> None:
        super().attach(net, aug)
        self.teacher = copy.deepcopy(net).requires_grad_(False)

    def momentum_at(self, progress: float) -> float:
        return self.params.momentum

    @torch.no_grad()
    def teach(self, x) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher's (h, z, p) for a batch (or list of batches), without gradients."""
        return self.teacher(x)

    def after_step(self, net: nn.Module, progress: float) -> None:
        momentum_update(net, self.teacher, self.momentum_at(progress))


def cosine_to_one(base: float, progress: float) -> float:
    """Momentum raised from ``base`` to 1 on a half cosine over the run (BYOL, Grill et al. 2020, eq. in sec. 3.2)."""
    return 1 - (1 - base) * (math.cos(math.pi * min(1.0, progress)) + 1) / 2


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    """target <- m * target + (1 - m) * online, over parameters; buffers copied."""
    for po, pt in zip(online.parameters(), target.parameters(), strict=True):
        pt.mul_(m).add_(po.detach(), alpha=1 - m)
    for bo, bt in zip(online.buffers(), target.buffers(), strict=True):
        bt.copy_(bo)
