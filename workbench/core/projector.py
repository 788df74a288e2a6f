"""TensorBoard projector files, one way for every writer (an export's ``projector`` format, the TensorBoard mirror's
entry per evaluation): ``vectors.tsv`` (N, D), ``metadata.tsv`` (label and class, with a header), ``sprite.png`` (the
images as square tiles, row-major) and ``projector_config.pbtxt`` naming them.

    cell = write_entry(folder, embeddings, labels, classes, images)   # the three data files; the tile side
    write_config(folder, [ProjectorEntry("", "", cell)])                   # projector_config.pbtxt for those entries
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.core.files import atomic_write_bytes, atomic_write_text

SPRITE_PX = 8192  # TensorBoard's limit on a sprite's side
FILES = ("vectors.tsv", "metadata.tsv", "sprite.png")
CONFIG = "projector_config.pbtxt"


@dataclass(frozen=True)
class ProjectorEntry:
    """One embedding in projector_config.pbtxt: its tensor name ("" for none), the folder of its files relative to
    the config ("" for the config's own), and its sprite's tile side in pixels."""

    name: str
    folder: str
    cell: int

    def path(self, file: str) -> str:
        return f"{self.folder}/{file}" if self.folder else file


def sprite_cell(n: int, side_px: int) -> int:
    """The tile side for ``n`` images ``side_px`` wide: their own size, smaller when the square sprite would pass
    SPRITE_PX."""
    per_row = math.ceil(math.sqrt(max(1, n)))
    return max(1, min(side_px, SPRITE_PX // per_row))


def sprite_png(images: np.ndarray) -> tuple[bytes, int]:
    """Images (N, C, H, W) uint8 (C = 1 or 3) as one square sprite PNG: (its bytes, the tile side in pixels)."""
    from PIL import Image

    n = max(1, len(images))
    per_row = math.ceil(math.sqrt(n))
    cell = sprite_cell(n, max(images.shape[-2:]))
    sprite = Image.new("RGB", (per_row * cell, per_row * cell))
    for i, im in enumerate(images):
        arr = im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)
        tile = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB").resize((cell, cell))
        sprite.paste(tile, ((i % per_row) * cell, (i // per_row) * cell))
    buf = io.BytesIO()
    sprite.save(buf, format="PNG")
    return buf.getvalue(), cell


def write_entry(folder: Path, embeddings: np.ndarray, labels: np.ndarray, classes: list, images: np.ndarray) -> int:
    """vectors.tsv, metadata.tsv and sprite.png of one embedding in ``folder`` (atomic): embeddings (N, D) float, labels
    (N,) int (-1 unknown), images (N, C, H, W) uint8. Returns the sprite's tile side."""
    folder = Path(folder)
    atomic_write_text(folder / "vectors.tsv", "".join("\t".join(f"{v:.6g}" for v in r) + "\n" for r in np.asarray(embeddings).tolist()))
    names = [classes[y] if 0 <= y < len(classes) else "unlabeled" for y in np.asarray(labels).tolist()]
    atomic_write_text(folder / "metadata.tsv", "label\tclass\n" + "".join(f"{int(y)}\t{c}\n" for y, c in zip(labels, names, strict=True)))
    png, cell = sprite_png(images)
    atomic_write_bytes(folder / "sprite.png", png)
    return cell


def config_text(entries: list[ProjectorEntry]) -> str:
    """projector_config.pbtxt naming each entry's files."""
    parts = []
    for e in entries:
        name = f'  tensor_name: "{e.name}"\n' if e.name else ""
        parts.append(f'embeddings {{\n{name}  tensor_path: "{e.path("vectors.tsv")}"\n  metadata_path: "{e.path("metadata.tsv")}"\n'
                     f'  sprite {{\n    image_path: "{e.path("sprite.png")}"\n    single_image_dim: {e.cell}\n'
                     f'    single_image_dim: {e.cell}\n  }}\n}}\n')
    return "".join(parts)


def write_config(folder: Path, entries: list[ProjectorEntry]) -> Path:
    path = Path(folder) / CONFIG
    atomic_write_text(path, config_text(entries))
    return path


def read_config(folder: Path) -> list[ProjectorEntry]:
    """The entries of an existing projector_config.pbtxt whose vectors are still there ([] when none can be read)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return []
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    try:
        cfg = text_format.Parse(path.read_text(encoding="utf-8"), ProjectorConfig())
    except text_format.ParseError:
        return []
    return [ProjectorEntry(e.tensor_name, e.tensor_path.rpartition("/")[0],
                           e.sprite.single_image_dim[0] if e.sprite.single_image_dim else 28)
            for e in cfg.embeddings if (Path(folder) / e.tensor_path).is_file()]
