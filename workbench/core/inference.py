"""Use a trained run: load its encoder, embed images or a dataset split, find nearest neighbours."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench.core.config import Config
from workbench.core.data import ImageData, load_splits
from workbench.core.methods import build_method, build_network
from workbench.core.models import Network
from workbench.core.registry import ConfigError
from workbench.core.runlock import owner
from workbench.core.metrics import nearest
from workbench.core.resume import checkpoint_mismatch
from workbench.core.runfolder import checkpoint_path, find_run
from workbench.core.runs import load_checkpoint, load_run_checkpoint, load_run_config


@dataclass
class RunModel:
    """A run's trained network in eval mode plus what is needed to feed it.

    ``embed(images (N, C, H, W) uint8) -> (N, D) float32`` representations (before the head).
    """

    run_dir: Path
    cfg: Config
    net: Network
    mean: list
    std: list
    channels: int
    image_size: int
    device: torch.device
    checkpoint: Path | None = None  # the file loaded: last.pt, or prev.pt when last.pt is unusable

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu", verb: str = "embed") -> RunModel:
        """The run's network from its checkpoint; ``verb`` (embed | export) words the message of a checkpoint that
        does not fit config.toml, the one resume gives (``resume.checkpoint_mismatch``)."""
        run = find_run(run_dir)
        cfg = load_run_config(run)
        state, used = load_run_checkpoint(run)
        for key in ("model", "mean", "std", "channels", "image_size"):
            if key not in state:
                raise ConfigError(f"checkpoint in '{run}' lacks '{key}'; it was not written by this version of the workbench")
        mismatch = checkpoint_mismatch(run, cfg, state, verb)
        if mismatch:
            raise ConfigError(mismatch)
        net = build_network(cfg, state["channels"], state["image_size"])
        try:
            net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ConfigError(f"cannot {verb} '{run}': the checkpoint does not fit config.toml's model "
                              f"({str(exc).splitlines()[0]})") from None
        say_owner(run, state, used, verb)
        dev = torch.device(device)
        return cls(run, cfg, net.to(dev).eval(), state["mean"], state["std"], state["channels"], state["image_size"], dev, used)

    def preprocess(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the network's normalised float input: grey repeated to RGB, or RGB to ITU-R 601-2 luma
        (as a colour file is read for a greyscale run: PIL's ``convert("L")``), resized, then (x - mean) / std."""
        x = images_u8.to(self.device)
        if x.shape[1] == 3 and self.channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255)
        x = x.float() / 255
        if x.shape[1] != self.channels:
            x = x.mean(1, keepdim=True).expand(-1, self.channels, -1, -1) if self.channels in (1, 3) else x
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def embed(self, images_u8: torch.Tensor, batch: int = 512, project: bool = False, readout: bool = False) -> np.ndarray:
        """(N, D) float32: the backbone's output (the representation the field's kNN reads); the projection
        head's output with ``project``; through the run's fitted read-out with ``readout`` (ConfigError when the
        run fitted none: eval.readout = none)."""
        if readout and self.cfg.eval.readout == "none":
            raise ConfigError(f"run '{self.run_dir.name}' fitted no read-out (eval.readout = none); embed without it, or "
                              "train with --set eval.readout=whitened (or centred)")
        out = []
        for chunk in images_u8.split(batch):
            h, z, _ = self.net(self.preprocess(chunk))
            out.append((z if project else self.net.readout(h.float()) if readout else h).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.net.encoder.out_dim), np.float32)

    @torch.no_grad()
    def features(self, images_u8: torch.Tensor, batch: int = 512) -> np.ndarray:
        """The encoder's own output (N, D) float32 for un-augmented images: the backbone representation the
        field's kNN protocol reads (L2-normalise it for cosine), with no read-out applied."""
        out = [self.net.encoder(self.preprocess(chunk)).float().cpu() for chunk in images_u8.split(batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.net.encoder.out_dim), np.float32)

    def splits(self, overrides: list[str] | None = None) -> tuple[ImageData, ImageData]:
        cfg = self.cfg.with_overrides(overrides or [])
        return load_splits(cfg.data)


def say_owner(run: Path, state: dict, used: Path, verb: str) -> None:
    """A note when the run is being trained meanwhile: what is read is its checkpoint of one step, not the end."""
    holder = owner(run)
    if holder and holder.get("pid") != os.getpid():
        logging.getLogger("workbench").warning(
            "run '%s' is being trained meanwhile (process %s); %s reads its checkpoint of step %d (%s, epoch %d)",
            run, holder.get("pid", "?"), verb, int(state["step"]), used.name, int(state["epoch"]), extra={"note": True})


def check_image_path(path: str | Path) -> Path:
    """``path`` as a Path; ConfigError when it is missing or a folder."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"image '{p}' is a folder; give an image file")
    if not p.is_file():
        raise ConfigError(f"image '{p}' does not exist")
    return p


def load_image_file(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """One image file -> (1, C, size, size) uint8, decoded as an image folder's files are for training
    (``decode.decode``: EXIF orientation, transparency on white, 16-bit scaled, centre square resized)."""
    from workbench.core import decode

    p = check_image_path(path)
    try:
        arr = decode.decode(str(p), size, channels)
    except (decode.Unreadable, OSError) as exc:
        raise ConfigError(f"image '{p}' cannot be read ({exc}); use a PNG or JPEG file") from None
    return torch.from_numpy(np.array(arr, order="C"))[None]  # a writable copy: PIL's greyscale arrays are read-only


def neighbours(query: np.ndarray, bank: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cosine nearest neighbours (``metrics.nearest``): query (Q, D), bank (N, D) -> (indices (Q, k), similarities (Q, k))."""
    return nearest(query, bank, k)


@torch.no_grad()
def batch_from_checkpoint(rm: RunModel, n: int = 64, seed: int = 0):
    """A BatchEvent for ``n`` training images of a saved run: two fresh augmented views through the
    trained network, its method as checkpointed (momentum teacher, queue, centre) and its loss with
    reporting on."""
    from workbench.core.augment import Augmenter
    from workbench.core.inspector import batch_event

    state = load_checkpoint(rm.checkpoint or checkpoint_path(rm.run_dir))
    train, _ = rm.splits()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[: min(n, len(train))].sort().values
    aug = Augmenter(rm.cfg.augment.recipe, rm.mean, rm.std)
    x = train.images[idx]
    v1, v2 = aug.views(x, g), aug.views(x, g)
    size = rm.image_size
    if v1.shape[-1] != size:
        v1, v2 = (F.interpolate(v, size=(size, size), mode="bilinear", antialias=True) for v in (v1, v2))
    method = build_method(rm.cfg)
    method.attach(rm.net, aug)
    method.to(rm.device).eval()
    method.load_checkpoint_state(state)
    labels = train.labels[idx].to(rm.device)
    views = method(rm.net, [v1.to(rm.device), v2.to(rm.device)], labels, state.get("progress", 1.0))
    out = method.loss(views, report=True)
    return batch_event(-1, aug, v1, v2, train.indices[idx], train.labels[idx], out, rm.cfg.loss.name,
                       rm.cfg.loss.params.get("temperature"))
