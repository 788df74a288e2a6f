"""TensorBoard mirror of a run (``eval.tensorboard = true``): event files under ``<run>/tensorboard/``.

- Scalars grouped as TensorBoard users expect: ``train/loss``, ``train/lr``, ``train/images_per_s``,
  ``train/epoch``, ``train/term/<loss term>``; ``eval/knn_acc``, ``eval/linear_acc``, ``eval/alignment``,
  ``eval/uniformity``, ``eval/emb_std``, ``eval/eff_rank``; all at the training step.
- HParams: the run's resolved config (``section.key``) with its final metrics, written when the log closes.
- Projector: at each evaluation the held-out embedding (at most ``PROJECTOR_POINTS`` points) with class
  labels and an image sprite, one projector entry per evaluation (``eval/embedding@<step>``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from workbench.core import projector
from workbench.core.config import tomllib
from workbench.core.metrics import EVAL_METRICS
from workbench.core.registry import ConfigError
from workbench.core.runfolder import config_path, tensorboard_dir
from workbench.core.sinks import Sink

TRAIN = ("loss", "lr", "images_per_s", "epoch")
EVAL = tuple(EVAL_METRICS)
PROJECTOR_POINTS = 1000  # each evaluation writes a TSV of points x dims; this keeps it to a few MB


def tag(column: str) -> str | None:
    """metrics.csv column -> TensorBoard tag (None: not a scalar to plot)."""
    if column in ("time", "step"):
        return None
    if column.startswith("term_"):
        return f"train/term/{column[5:]}"
    if column in TRAIN:
        return f"train/{column}"
    return f"eval/{column}" if column in EVAL else f"other/{column}"


class TensorBoardLog(Sink):
    """Event files, hparams and projector files for one run folder ``run_dir``: a sink of the training loop
    (core/sinks.py)."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("eval.tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.run_dir, self.logdir = Path(run_dir), tensorboard_dir(run_dir)
        self.writer = SummaryWriter(str(self.logdir))
        self.final: dict[str, float] = {}
        self.embeddings = projector.read_config(self.logdir)  # one entry per evaluation, oldest first (a resumed run's too)

    def write(self, row: dict) -> None:
        """One metrics.csv row (dict with ``step``) as grouped scalars."""
        step = int(row.get("step") or 0)
        for k, v in row.items():
            t = tag(k)
            if t is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(t, v, step)
                if t.startswith(("eval/", "train/loss")):
                    self.final[t] = float(v)

    def embedding(self, step: int, embeddings: np.ndarray, labels: np.ndarray, images: np.ndarray, classes: list) -> None:
        """Projector entry for one evaluation: embeddings (N, D) float, labels (N,) int (-1 unknown), images (N, C, H, W) uint8."""
        n = min(len(embeddings), PROJECTOR_POINTS)
        folder = f"projector/{step:08d}"
        cell = projector.write_entry(self.logdir / folder, embeddings[:n], labels[:n], classes, images[:n])
        name = f"eval/embedding@{step}"
        self.embeddings = [e for e in self.embeddings if e.name != name] + [projector.ProjectorEntry(name, folder, cell)]
        projector.write_config(self.logdir, self.embeddings)

    def close(self) -> None:
        """Record the hyperparameters with the final metrics, then flush and close the event file."""
        if self.final:
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(run_hparams(self.run_dir), dict(self.final)):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()


def run_hparams(run_dir: Path) -> dict:
    """The run's config.toml as flat ``section.key`` -> bool/int/float/str (lists and tables as text)."""
    try:
        raw = tomllib.loads(config_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out = {}
    for section, values in raw.items():
        if section == "meta" or not isinstance(values, dict):
            continue
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out
