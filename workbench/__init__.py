"""Contrastive Workbench: run contrastive self-supervised learning experiments and see what the model learns."""

__version__ = "0.1.0"
