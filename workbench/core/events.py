"""Events yielded by the training generator: plain Python / numpy data, never live tensors."""
from __future__ import annotations

import errno
import traceback
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
    held_out_source: str = ""  # the image folder the held-out images come from ("" when not a folder) ...
    held_out_indices: np.ndarray | None = None  # ... and their positions in its file list (data.file_names names them)


@dataclass(frozen=True)
class StepEvent:
    epoch: int
    step: int  # global optimisation step, 1-based
    loss: float
    lr: float
    images_per_s: float
    eta_s: float
    terms: dict = field(default_factory=dict)
    progress: float = 0.0  # fraction of the run done, on the clock that ends it (steps, or seconds of a time budget)


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
class EvalProgressEvent:
    """An evaluation under way (it can take minutes on a large bank): what it is doing and how far.

    ``stage`` is one of "bank" (embedding the training images), "queries" (embedding the held-out images),
    "knn" (the nearest-neighbour search), "probe" (linear probe), "views" (alignment/uniformity);
    ``done`` of ``total`` counts images for the embedding stages and queries for "knn" (``total`` 0: unknown).
    ``final`` marks the run's last evaluation. Stop ends an evaluation during training.
    """
    step: int
    stage: str
    done: int
    total: int
    final: bool = False

    @property
    def text(self) -> str:
        """"evaluating: kNN 3,000 / 10,000" for the status bar."""
        words = {"bank": "embedding training images", "queries": "embedding held-out images", "knn": "kNN",
                 "probe": "linear probe", "views": "alignment and uniformity"}.get(self.stage, self.stage)
        count = f" {self.done:,} / {self.total:,}" if self.total else ""
        return f"{'final ' if self.final else ''}evaluation at step {self.step}: {words}{count}"


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
    note: bool = False  # a decision stated (e.g. the preset "auto" chose), not a problem


DONE_TEXT = {"budget": "finished on its time budget"}  # how a DoneEvent's reason reads to the user, where it differs


@dataclass(frozen=True)
class DoneEvent:
    reason: str  # finished | stopped | budget | already finished (a resumed run with nothing left to do)
    run_dir: str
    metrics: dict = field(default_factory=dict)
    message: str = ""  # what the user should know, e.g. how to train a finished run longer
    step: int = -1  # the step the run ended at (the checkpoint's); -1: not known

    @property
    def words(self) -> str:
        """The reason in words: "finished on its time budget" for "budget"."""
        return DONE_TEXT.get(self.reason, self.reason)

    @property
    def text(self) -> str:
        """The reason in words, with the step: "finished on its time budget at step 476"."""
        return self.words + (f" at step {self.step}" if self.step >= 0 else "")


@dataclass(frozen=True)
class ErrorEvent:
    message: str  # one line for the user: what went wrong and what to do
    run_dir: str = ""
    traceback: str = ""  # the full traceback text ("" for expected errors such as a bad config)

    @classmethod
    def from_exception(cls, exc: BaseException, run_dir: str = "") -> ErrorEvent:
        """The user's line (``explain(exc)``) plus the full traceback of ``exc``."""
        return cls(explain(exc), str(run_dir), format_traceback(exc))


def format_traceback(exc: BaseException) -> str:
    """The full traceback text of ``exc`` (as Python prints it), for run.log and the window's Details."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc``'s traceback ("" when it has none)."""
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{tb[-1].filename}:{tb[-1].lineno}" if tb else ""


_CPU_OOM = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory", "Cannot allocate memory")


def explain(exc: BaseException) -> str:
    """One line for the user naming what went wrong and what to change.

    Expected problems (ConfigError, FloatingPointError from the non-finite guard, disk full, out of
    memory) get advice; anything else is a bug: its type, first line and ``file:line``.
    """
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    name = type(exc).__name__
    if any(c.__name__ == "ConfigError" for c in type(exc).__mro__) or isinstance(exc, FloatingPointError):
        return first
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.ENOSPC:
        return first if name == "DiskFullError" else f"disk full ({first}); free some space or write elsewhere (--out)"
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return ("out of GPU memory; lower train.batch_size, use a smaller model.encoder, keep train.bf16 = true, "
                "or lower eval.bank_size / eval.test_size if it happened while evaluating")
    if isinstance(exc, MemoryError) or any(s in text for s in _CPU_OOM):
        return ("out of CPU memory; lower train.batch_size or data.subset, set data.in_memory = false, "
                "or lower eval.bank_size / eval.test_size")
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{first}; check its permissions, or use a folder you can write to (--out; WORKBENCH_CACHE for the image cache)"
    if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
        return first
    loc = where(exc)
    return f"unexpected {name}: {first}" + (f" (at {loc})" if loc else "")
