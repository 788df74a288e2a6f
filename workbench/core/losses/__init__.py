"""Losses: pure maths, ``loss(views, report=False) -> LossOut`` (see base.py), reusable by any method.

Adding a loss: one module here whose class carries ``@LOSSES.register("name")``, and its import below
(the order of the imports is the order the window and the CLI list the losses). A loss lists in ``needs``
the Views fields beyond z1, z2 it reads; the method that trains with it (``core/methods/``) gives them.

Registry meta: ``labels`` (needs labelled data), ``pairs`` (forms pairs from halves of the batch: even
batch size), ``method`` (the method a config pairs it with unless it names one; "simclr" when absent).
"""
from workbench.core.losses import ntxent, dcl, hcl, supcon, pairs, moco, noncontrastive, dino  # noqa: F401 (registers them)
from workbench.core.losses.base import LOSSES, LossOut, Views  # noqa: F401
