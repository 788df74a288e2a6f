"""Events yielded by the training generator: plain Python / numpy data, never live tensors."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    config: dict
    n_train: int
    n_test: int
    steps_per_epoch: int
    total_steps: int
    device: str
    classes: list
    start_step: int = 0
    held_out_images: np.ndarray | None = None  # (N, C, H, W) uint8, a view of the held-out split for display


@dataclass(frozen=True)
class StepEvent:
    epoch: int
    step: int  # global optimisation step, 1-based
    loss: float
    lr: float
    images_per_s: float
    eta_s: float
    terms: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalEvent:
    epoch: int
    step: int
    metrics: dict  # knn_acc, linear_acc, alignment, uniformity, emb_std, eff_rank


@dataclass(frozen=True)
class EmbeddingEvent:
    epoch: int
    step: int
    xy: np.ndarray  # (N, 2) float32, stable PCA of the held-out representations
    embeddings: np.ndarray  # (N, D) float32 representations (before the head)
    labels: np.ndarray  # (N,) int64
    indices: np.ndarray  # (N,) int64 rows of the held-out split


@dataclass(frozen=True)
class BatchEvent:
    step: int
    views1: np.ndarray  # (N, C, H, W) uint8, first view of each anchor
    views2: np.ndarray  # (N, C, H, W) uint8
    indices: np.ndarray  # (N,) training rows
    labels: np.ndarray  # (N,)
    similarity: np.ndarray | None  # (M, K) float32
    per_sample: np.ndarray | None  # (M,)
    positive: np.ndarray | None  # (M,)
    hardest_negative: np.ndarray | None  # (M,)
    temperature: float | None
    loss_name: str = ""
    mined: dict = field(default_factory=dict)  # pair/triplet losses: "pairs" (P, 3) or "triplets" (T, 3) as numpy


@dataclass(frozen=True)
class CheckpointEvent:
    path: str
    epoch: int
    step: int


@dataclass(frozen=True)
class PausedEvent:
    step: int
    paused: bool


@dataclass(frozen=True)
class WarningEvent:
    message: str


@dataclass(frozen=True)
class DoneEvent:
    reason: str  # finished | stopped | budget
    run_dir: str
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorEvent:
    message: str
    run_dir: str = ""
