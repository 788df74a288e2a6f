"""Loss registry. Adding a loss: one module here and one ``LOSSES.register`` line below.

Registry meta flags: ``labels`` (needs labelled data), ``pairs`` (forms pairs from halves of
the batch: even batch size), ``predictor`` (online predictor head), ``momentum`` (momentum
target network), ``head_last_bn`` (BatchNorm after the last projection layer).
"""
from workbench.core.losses.base import LossOut, Views  # noqa: F401
from workbench.core.losses.dcl import DCL, DCLW
from workbench.core.losses.hcl import HCL
from workbench.core.losses.moco import MoCo
from workbench.core.losses.noncontrastive import BYOL, VICReg, BarlowTwins, SimSiam
from workbench.core.losses.ntxent import NTXent
from workbench.core.losses.pairs import MarginContrastive, Triplet
from workbench.core.losses.supcon import SupCon
from workbench.core.registry import Registry

LOSSES = Registry("loss")
LOSSES.register("ntxent", family="contrastive")(NTXent)
LOSSES.register("dcl", family="contrastive")(DCL)
LOSSES.register("dclw", family="contrastive")(DCLW)
LOSSES.register("hcl", family="contrastive")(HCL)
LOSSES.register("supcon", family="supervised", labels=True)(SupCon)
LOSSES.register("margin_contrastive", family="metric", pairs=True)(MarginContrastive)
LOSSES.register("triplet", family="metric")(Triplet)
LOSSES.register("moco", family="contrastive", momentum=True)(MoCo)
LOSSES.register("byol", family="non-contrastive", momentum=True, predictor=True)(BYOL)
LOSSES.register("simsiam", family="non-contrastive", predictor=True)(SimSiam)
LOSSES.register("barlow_twins", family="non-contrastive")(BarlowTwins)
LOSSES.register("vicreg", family="non-contrastive")(VICReg)
