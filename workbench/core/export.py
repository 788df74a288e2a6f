"""Export a trained encoder and embeddings, atomically, with a model card.

Formats:
- safetensors: ``encoder.safetensors`` (state dict of the encoder, or of encoder+head), loadable
  into the same class (``torchvision`` ResNet or ``SmallCNN``) with ``safetensors.torch.load_file``;
- torchscript: ``encoder.ts`` for ``torch.jit.load``;
- onnx: ``encoder.onnx`` (dynamic batch) for onnxruntime;
- npz / projector: embeddings of a split, as .npz or TensorBoard-projector TSV + sprite.
Every model export writes ``model_card.json`` beside it: input size, channels, normalisation,
embedding dimension, the training config and the final metrics.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.core.inference import RunModel
from workbench.core.registry import ConfigError
from workbench.core.runs import DiskFullError, atomic_write_bytes, atomic_write_text, file_mode, read_metrics

FORMATS = ("safetensors", "torchscript", "onnx", "npz", "projector")
SUFFIX = {"safetensors": ".safetensors", "torchscript": ".ts", "onnx": ".onnx"}


class Exported(nn.Module):
    """What is exported: images (B, C, S, S), normalised -> (B, D) representations (or projections)."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None):
        super().__init__()
        self.encoder = encoder
        self.head = head if head is not None else nn.Identity()

    def forward(self, x):
        return self.head(self.encoder(x))


def model_card(rm: RunModel, fmt: str, include_head: bool, out_dim: int, filename: str) -> dict:
    rows = read_metrics(rm.run_dir)
    final = {}
    for r in rows:
        for k, v in r.items():
            if v is not None and k not in ("time", "step", "epoch"):
                final[k] = v
    return {
        "format": fmt,
        "file": filename,
        "encoder": rm.cfg.model.encoder,
        "encoder_class": type(rm.net.encoder).__module__ + "." + type(rm.net.encoder).__name__,
        "includes_projection_head": include_head,
        "input": {"shape": ["batch", rm.channels, rm.image_size, rm.image_size], "dtype": "float32",
                  "value_range": "pixels / 255, then (x - mean) / std per channel",
                  "mean": rm.mean, "std": rm.std, "channels": rm.channels, "image_size": rm.image_size},
        "output": {"shape": ["batch", out_dim], "embedding_dim": out_dim,
                   "similarity": "cosine (L2-normalise before comparing)"},
        "training_config": rm.cfg.to_dict(),
        "metrics": final,
        "run_dir": str(rm.run_dir),
    }


def _atomic_via_tmp(path: Path, writer) -> None:
    """Call writer(tmp_path) and rename the result into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; give it the umask's mode like every other file
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFullError(path, 0) from exc
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError):
            raise OSError(exc.errno, f"cannot write '{path}': {exc.strerror or exc}") from exc
        raise


def export_model(rm: RunModel, fmt: str, out: Path, include_head: bool = False) -> list[Path]:
    module = Exported(rm.net.encoder, rm.net.head if include_head else None).eval().cpu()
    example = torch.zeros(2, rm.channels, rm.image_size, rm.image_size)
    with torch.no_grad():
        out_dim = module(example).shape[1]
    if out.suffix == "" or out.is_dir():
        out = out / f"encoder{SUFFIX[fmt]}"
    if fmt == "safetensors":
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in (module if include_head else rm.net.encoder).state_dict().items()}
        atomic_write_bytes(out, save(state, metadata={"encoder": rm.cfg.model.encoder}))
    elif fmt == "torchscript":
        buf = io.BytesIO()
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(module, example), buf)
        atomic_write_bytes(out, buf.getvalue())
    elif fmt == "onnx":
        def write(tmp):
            with torch.no_grad():
                torch.onnx.export(module, (example,), tmp, input_names=["images"], output_names=["embeddings"],
                                  dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, dynamo=False)
        try:
            _atomic_via_tmp(out, write)
        except ImportError as exc:
            raise ConfigError(f"ONNX export needs the onnx package ({exc}); pip install 'contrastive-workbench[onnx]'") from None
    card = model_card(rm, fmt, include_head, out_dim, out.name)
    card_path = out.with_name(out.stem + ".model_card.json") if out.stem != "encoder" else out.with_name("model_card.json")
    atomic_write_text(card_path, json.dumps(card, indent=2))
    return [out, card_path]


def write_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_projector(folder: Path, embeddings: np.ndarray, labels: np.ndarray, classes: list, images: np.ndarray) -> list[Path]:
    """TensorBoard projector files: vectors.tsv, metadata.tsv (with header), sprite.png, projector_config.pbtxt."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    vec = "\n".join("\t".join(f"{v:.6g}" for v in row) for row in embeddings) + "\n"
    names = [classes[l] if 0 <= l < len(classes) else "unlabeled" for l in labels]
    meta = "label\tclass\n" + "".join(f"{int(l)}\t{n}\n" for l, n in zip(labels, names))
    n = len(images)
    side = math.ceil(math.sqrt(n))
    h, w = images.shape[-2:]
    scale = max(1, 8192 // (side * max(h, w)))  # TensorBoard limits sprites to 8192 px
    cell = min(max(h, w) * scale, 8192 // side) if side * max(h, w) > 8192 else max(h, w)
    sprite = Image.new("RGB", (side * cell, side * cell))
    for i, im in enumerate(images):
        arr = im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)
        tile = Image.fromarray(arr).convert("RGB").resize((cell, cell))
        sprite.paste(tile, ((i % side) * cell, (i // side) * cell))
    png = io.BytesIO()
    sprite.save(png, format="PNG")
    cfgtxt = ('embeddings {\n  tensor_path: "vectors.tsv"\n  metadata_path: "metadata.tsv"\n'
              f'  sprite {{\n    image_path: "sprite.png"\n    single_image_dim: {cell}\n    single_image_dim: {cell}\n  }}\n}}\n')
    paths = [folder / "vectors.tsv", folder / "metadata.tsv", folder / "sprite.png", folder / "projector_config.pbtxt"]
    for p, data in zip(paths, [vec.encode(), meta.encode(), png.getvalue(), cfgtxt.encode()]):
        atomic_write_bytes(p, data)
    return paths


def export_targets(fmt: str, out) -> list[Path]:
    """The files ``export_run(run_dir, fmt, out)`` writes, so a caller can refuse (or ask) before
    overwriting any of them."""
    out = Path(out)
    if fmt in SUFFIX:
        model = out / f"encoder{SUFFIX[fmt]}" if out.suffix == "" or out.is_dir() else out
        card = model.with_name(model.stem + ".model_card.json") if model.stem != "encoder" else model.with_name("model_card.json")
        return [model, card]
    if fmt == "npz":
        return [out if out.suffix == ".npz" else out / "embeddings.npz"]
    return [out / n for n in ("vectors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt")]


def export_run(run_dir, fmt: str, out, include_head: bool = False, split: str = "test", max_points: int = 10000) -> list[Path]:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; choose from: {', '.join(FORMATS)}")
    rm = RunModel.load(run_dir)
    out = Path(out)
    if fmt in SUFFIX:
        return export_model(rm, fmt, out, include_head)
    train, test = rm.splits()
    data = test if split == "test" else train
    if fmt == "npz":
        emb = rm.embed(data.images)
        path = out if out.suffix == ".npz" else out / "embeddings.npz"
        write_npz(path, embeddings=emb.astype(np.float32), labels=data.labels.numpy(), indices=data.indices.numpy())
        return [path]
    data = data.take(torch.arange(min(max_points, len(data))))
    return write_projector(out, rm.embed(data.images), data.labels.numpy(), data.classes, data.images.numpy())
