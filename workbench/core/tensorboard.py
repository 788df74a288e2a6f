"""TensorBoard mirror of a run (``eval.tensorboard = true``): event files under ``<run>/tensorboard/``.

- Scalars grouped as TensorBoard users expect: ``train/loss``, ``train/lr``, ``train/images_per_s``,
  ``train/epoch``, ``train/term/<loss term>``; ``eval/knn_acc``, ``eval/linear_acc``, ``eval/alignment``,
  ``eval/uniformity``, ``eval/emb_std``, ``eval/eff_rank``; all at the training step.
- HParams: the run's resolved config (``section.key``) with its final metrics, written when the log closes.
- Projector: at each evaluation the held-out embedding (at most ``PROJECTOR_POINTS`` points) with class
  labels and an image sprite, one projector entry per evaluation (``eval/embedding@<step>``).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from workbench.core.config import tomllib
from workbench.core.metrics import EVAL_METRICS
from workbench.core.registry import ConfigError
from workbench.core.runs import atomic_write_bytes, atomic_write_text

TRAIN = ("loss", "lr", "images_per_s", "epoch")
EVAL = tuple(EVAL_METRICS)
PROJECTOR_POINTS = 1000  # each evaluation writes a TSV of points x dims; this keeps it to a few MB
SPRITE_PX = 8192  # TensorBoard's limit on a sprite's side


def tag(column: str) -> str | None:
    """metrics.csv column -> TensorBoard tag (None: not a scalar to plot)."""
    if column in ("time", "step"):
        return None
    if column.startswith("term_"):
        return f"train/term/{column[5:]}"
    if column in TRAIN:
        return f"train/{column}"
    return f"eval/{column}" if column in EVAL else f"other/{column}"


class TensorBoardLog:
    """Event files, hparams and projector files for one run folder ``run_dir``."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("eval.tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.run_dir, self.logdir = Path(run_dir), Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(str(self.logdir))
        self.final: dict[str, float] = {}
        self.embeddings: list[tuple[str, str, int]] = []  # (tensor name, folder, sprite tile side) per entry, oldest first
        self._read_projector_config()

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
        out = self.logdir / folder
        names = [classes[y] if 0 <= y < len(classes) else "unlabeled" for y in labels[:n].tolist()]
        atomic_write_text(out / "vectors.tsv", "".join("\t".join(f"{v:.5g}" for v in r) + "\n" for r in embeddings[:n].tolist()))
        rows = "".join(f"{int(y)}\t{c}\n" for y, c in zip(labels[:n], names, strict=True))
        atomic_write_text(out / "metadata.tsv", "label\tclass\n" + rows)
        cell = atomic_sprite(out / "sprite.png", images[:n])
        name = f"eval/embedding@{step}"
        self.embeddings = [e for e in self.embeddings if e[0] != name] + [(name, folder, cell)]
        self._write_projector_config()

    def close(self) -> None:
        """Record the hyperparameters with the final metrics, then flush and close the event file."""
        if self.final:
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(run_hparams(self.run_dir), dict(self.final)):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()

    def _write_projector_config(self) -> None:
        parts = []
        for name, folder, cell in self.embeddings:
            parts.append(f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "{folder}/vectors.tsv"\n'
                         f'  metadata_path: "{folder}/metadata.tsv"\n  sprite {{\n    image_path: "{folder}/sprite.png"\n'
                         f'    single_image_dim: {cell}\n    single_image_dim: {cell}\n  }}\n}}\n')
        atomic_write_text(self.logdir / "projector_config.pbtxt", "".join(parts))

    def _read_projector_config(self) -> None:
        """Keep the entries of earlier sessions of a resumed run."""
        path = self.logdir / "projector_config.pbtxt"
        if not path.is_file():
            return
        from google.protobuf import text_format
        from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

        try:
            cfg = text_format.Parse(path.read_text(encoding="utf-8"), ProjectorConfig())
        except text_format.ParseError:
            return
        for e in cfg.embeddings:
            folder = e.tensor_path.rsplit("/", 1)[0]
            if (self.logdir / e.tensor_path).is_file():
                self.embeddings.append((e.tensor_name, folder, e.sprite.single_image_dim[0] if e.sprite.single_image_dim else 28))


def atomic_sprite(path: Path, images: np.ndarray) -> int:
    """Write images (N, C, H, W) uint8 as one square sprite PNG (row-major tiles); returns the tile side in pixels."""
    from PIL import Image

    n = max(1, len(images))
    side = math.ceil(math.sqrt(n))
    cell = max(1, min(max(images.shape[-2:]), SPRITE_PX // side))
    sprite = Image.new("RGB", (side * cell, side * cell))
    for i, im in enumerate(images):
        arr = im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)
        tile = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB").resize((cell, cell))
        sprite.paste(tile, ((i % side) * cell, (i // side) * cell))
    buf = io.BytesIO()
    sprite.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return cell


def run_hparams(run_dir: Path) -> dict:
    """The run's config.toml as flat ``section.key`` -> bool/int/float/str (lists and tables as text)."""
    try:
        raw = tomllib.loads((Path(run_dir) / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out = {}
    for section, values in raw.items():
        if section == "meta" or not isinstance(values, dict):
            continue
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out
