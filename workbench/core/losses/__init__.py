"""Loss registry. Adding a loss: one module here and one ``LOSSES.register`` line below (plus a
method in ``core/methods/`` when it needs more than two views of one shared network).

Registry meta flags: ``labels`` (needs labelled data), ``pairs`` (forms pairs from halves of
the batch: even batch size).
"""
from workbench.core.losses.base import LossOut, Views  # noqa: F401
from workbench.core.losses.dcl import DCL, DCLW
from workbench.core.losses.dino import DINOLoss
from workbench.core.losses.hcl import HCL
from workbench.core.losses.moco import MoCo
from workbench.core.losses.noncontrastive import BYOL, VICReg, BarlowTwins, SimSiam
from workbench.core.losses.ntxent import NTXent
from workbench.core.losses.pairs import MarginContrastive, Triplet
from workbench.core.losses.supcon import SupCon
from workbench.core.registry import Registry

LOSSES = Registry("loss")
LOSSES.register("ntxent")(NTXent)
LOSSES.register("dcl")(DCL)
LOSSES.register("dclw")(DCLW)
LOSSES.register("hcl")(HCL)
LOSSES.register("supcon", labels=True)(SupCon)
LOSSES.register("margin_contrastive", pairs=True)(MarginContrastive)
LOSSES.register("triplet")(Triplet)
LOSSES.register("moco")(MoCo)
LOSSES.register("byol")(BYOL)
LOSSES.register("simsiam")(SimSiam)
LOSSES.register("barlow_twins")(BarlowTwins)
LOSSES.register("vicreg")(VICReg)
LOSSES.register("dino")(DINOLoss)
