"""Where the training loop's metric rows go: metrics.csv, TensorBoard, and any sink a caller gives ``train``.

A row is one dict per logged step or evaluation, the same for every sink: ``time`` (seconds since the epoch),
``epoch``, ``step``, then the values (``loss``, ``lr``, ``images_per_s``, ``term_<name>`` for the loss's own
terms; or the evaluation's metrics, core/metrics.py). metrics.csv's columns are these keys.

    class Printed(Sink):
        def write(self, row):
            print(row["step"], row.get("loss"))

    for event in train(cfg, sinks=[Printed()]):
        ...
"""
from __future__ import annotations

import numpy as np


class Sink:
    """A receiver of the loop's metric rows; every method but ``write`` does nothing unless overridden."""

    def write(self, row: dict) -> None:
        """One metric row (see the module docstring)."""
        raise NotImplementedError

    def embedding(self, step: int, embeddings: np.ndarray, labels: np.ndarray, images: np.ndarray, classes: list) -> None:
        """After each evaluation, the embedding view's points: embeddings (N, D) float, labels (N,) int (-1 unknown),
        images (N, C, H, W) uint8 and the class names."""

    def close(self) -> None:
        """The run ended (finished, stopped or failed): nothing more will be written."""
