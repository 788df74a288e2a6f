"""Loss registry. Adding a loss: one module here and one ``LOSSES.register`` line below.

Registry meta flags: ``labels`` (needs labelled data), ``pairs`` (forms pairs from the batch:
even batch size), ``predictor`` (online predictor head), ``momentum`` (momentum target
network with coefficient parameter ``momentum``), ``head_last_bn`` (BatchNorm after the last
projection layer).
"""
from workbench.core.losses.base import LossOut, Views  # noqa: F401
from workbench.core.losses.ntxent import NTXent
from workbench.core.registry import Registry

LOSSES = Registry("loss")
LOSSES.register("ntxent")(NTXent)
