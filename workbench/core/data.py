"""Dataset registry. Every dataset loads into memory as one uint8 tensor (N, C, H, W) with
labels (N,) int64 (-1 where unlabeled) and the index of each image in its source.

Factories take ``(cfg: DataConfig, split)`` with split ``"train"`` or ``"test"`` and return an
``ImageData`` or ``None`` when the dataset has no such split (the held-out set is then carved
from train by ``cfg.holdout``).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from workbench.core.registry import ConfigError, Registry

log = logging.getLogger("workbench")
RESOURCES = Path(__file__).resolve().parents[2] / "resources"
BUNDLED = RESOURCES / "fashion-mnist"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

DATASETS = Registry("dataset", skip=("cfg", "split"))


@dataclass
class ImageData:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64, -1 = unlabeled
    classes: list[str]
    indices: torch.Tensor = None  # (N,) int64, position in the source
    skipped: list[str] = field(default_factory=list)  # unreadable files left out
    in_memory: bool = True  # False: ``images`` is a memory-mapped store, read batch by batch

    def __post_init__(self):
        if self.indices is None:
            self.indices = torch.arange(len(self.images))

    def batches(self, idx_batches, device) -> Iterator[torch.Tensor]:
        """Yield ``images[idx]`` (B, C, H, W) uint8 on ``device`` for each LongTensor ``idx`` (B,)."""
        for idx in idx_batches:
            yield self.images[idx.to(self.images.device)].to(device, non_blocking=True)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def take(self, idx: torch.Tensor) -> "ImageData":
        return ImageData(self.images[idx], self.labels[idx], self.classes, self.indices[idx], self.skipped)

    def to(self, device) -> "ImageData":
        return ImageData(self.images.to(device), self.labels.to(device), self.classes, self.indices.to(device), self.skipped)

    def mean_std(self) -> tuple[list[float], list[float]]:
        sample = self.images[: min(len(self), 10000)].float().div_(255)
        return sample.mean((0, 2, 3)).tolist(), sample.std((0, 2, 3)).clamp_min(1e-3).tolist()


class Cancelled(Exception):
    """Raised by ``load_splits`` when its ``cancel`` event is set."""


def load_splits(cfg, progress=None, cancel=None) -> tuple[ImageData, ImageData]:
    """Return (train, held-out) for a DataConfig; the held-out split drives kNN and the projection.

    ``progress(done, total, message)`` is called from the loading thread; ``cancel.is_set()`` is
    polled between steps and raises ``Cancelled``.
    """
    if cancel is not None and cancel.is_set():
        raise Cancelled("loading cancelled")
    train = DATASETS.get(cfg.name).factory(cfg, "train")
    test = DATASETS.get(cfg.name).factory(cfg, "test")
    if train is None or len(train) == 0:
        raise ConfigError(f"data: dataset '{cfg.name}' has no training images; check data.root")
    return finish_splits(cfg, train, test)


def finish_splits(cfg, train: ImageData, test: ImageData | None) -> tuple[ImageData, ImageData]:
    """Apply a DataConfig to loaded splits: carve ``holdout`` from train when there is no test
    split, keep ``subset`` training images, resize to ``image_size``."""
    if test is None:
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(train), generator=g)
        n_test = max(1, int(round(len(train) * cfg.holdout)))
        if len(train) - n_test < 2:
            raise ConfigError(f"data: only {len(train)} images; a contrastive run needs at least a few dozen")
        test, train = train.take(perm[:n_test].sort().values), train.take(perm[n_test:].sort().values)
    if cfg.subset and cfg.subset < len(train):
        g = torch.Generator().manual_seed(1)
        train = train.take(torch.randperm(len(train), generator=g)[: cfg.subset].sort().values)
    if cfg.image_size and train.size != cfg.image_size:
        train, test = resize(train, cfg.image_size), resize(test, cfg.image_size)
    return train, test


def resize(data: ImageData, size: int) -> ImageData:
    out = []
    for chunk in data.images.split(2048):
        x = torch.nn.functional.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return ImageData(torch.cat(out), data.labels, data.classes, data.indices, data.skipped)


@DATASETS.register("python", hidden=True, channels=0, labelled=None)
def python(cfg, split):
    """Images passed to workbench.fit() from Python; a config cannot load them again."""
    raise ConfigError("data: this run was trained on images passed to workbench.fit() from Python; embed them with "
                      "workbench.load_run(RUN_DIR).embed(images), or set data.name to a dataset (--set data.name=...)")


# ----- IDX (MNIST-style) files -----
def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ConfigError(f"data: cannot read '{path}': {exc}") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ConfigError(f"data: '{path}' is not an IDX uint8 file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ConfigError(f"data: '{path}' is truncated ({body.size} of {int(np.prod(dims))} values)")
    return body.reshape(dims)


def _find_idx(root: Path, stem: str, sub: str) -> Path | None:
    for folder in (root, root / sub / "raw", root / sub):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _idx_split(root: Path, split: str, sub: str, classes: list[str]) -> ImageData:
    prefix = "train" if split == "train" else "t10k"
    img = _find_idx(root, f"{prefix}-images-idx3-ubyte", sub)
    lab = _find_idx(root, f"{prefix}-labels-idx1-ubyte", sub)
    if img is None or lab is None:
        raise ConfigError(
            f"data.root: no {sub} {split} files ({prefix}-images-idx3-ubyte[.gz]) under '{root}'; "
            "point data.root at the folder holding them, or set data.download=true to fetch them"
        )
    x, y = read_idx(img), read_idx(lab)
    if len(x) != len(y):
        raise ConfigError(f"data: '{img.name}' has {len(x)} images but '{lab.name}' has {len(y)} labels")
    return ImageData(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)), classes)


def _root(cfg, default: Path | None = None) -> Path:
    if not cfg.root:
        if default is not None:
            return default
        raise ConfigError(f"data.root: dataset '{cfg.name}' needs a root folder; set data.root")
    root = Path(cfg.root).expanduser()
    if not root.exists() and not cfg.download:
        raise ConfigError(f"data.root: '{root}' does not exist; point it at the dataset folder or set data.download=true")
    return root


@DATASETS.register("bundled", channels=1, labelled=True)
def bundled(cfg, split):
    """Fashion-MNIST test split (10,000 28x28 greyscale images, 10 classes) shipped with the app; works offline."""
    if split == "test":
        return None  # held-out part is carved from the 10,000 images by data.holdout
    return _idx_split(BUNDLED, "test", "FashionMNIST", FASHION_CLASSES)


def _mnist_like(cfg, split, sub, tv_name, classes):
    root = _root(cfg)
    if cfg.download and _find_idx(root, "train-images-idx3-ubyte", sub) is None:
        import torchvision

        getattr(torchvision.datasets, tv_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, tv_name)(str(root), train=False, download=True)
    return _idx_split(root, split, sub, classes)


@DATASETS.register("fashion_mnist", channels=1, labelled=True)
def fashion_mnist(cfg, split):
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 greyscale) from IDX files under data.root."""
    return _mnist_like(cfg, split, "FashionMNIST", "FashionMNIST", FASHION_CLASSES)


@DATASETS.register("mnist", channels=1, labelled=True)
def mnist(cfg, split):
    """MNIST digits (60,000 train / 10,000 test, 28x28 greyscale) from IDX files under data.root."""
    return _mnist_like(cfg, split, "MNIST", "MNIST", [str(i) for i in range(10)])


def _torchvision(cfg, cls_name, **kwargs):
    import torchvision

    root = _root(cfg)
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), download=cfg.download, **kwargs)
    except RuntimeError as exc:
        raise ConfigError(f"data.root: {cls_name} not found under '{root}' ({exc}); set data.download=true to fetch it") from None
    data = np.asarray(ds.data)
    if data.ndim == 4 and data.shape[-1] in (1, 3):
        data = data.transpose(0, 3, 1, 2)
    labels = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)), dtype=np.int64)
    return ImageData(torch.from_numpy(np.ascontiguousarray(data)), torch.from_numpy(labels), list(getattr(ds, "classes", [])))


@DATASETS.register("cifar10", channels=3, labelled=True)
def cifar10(cfg, split):
    """CIFAR-10 (50,000 / 10,000, 32x32 RGB) in torchvision's python layout under data.root."""
    return _torchvision(cfg, "CIFAR10", train=split == "train")


@DATASETS.register("cifar100", channels=3, labelled=True)
def cifar100(cfg, split):
    """CIFAR-100 (50,000 / 10,000, 32x32 RGB, 100 classes) in torchvision's layout under data.root."""
    return _torchvision(cfg, "CIFAR100", train=split == "train")


@DATASETS.register("stl10", channels=3, labelled=True)
def stl10(cfg, split):
    """STL-10 (96x96 RGB): train = 100,000 unlabeled + 5,000 labelled images, test = 8,000 labelled."""
    if split == "test":
        return _torchvision(cfg, "STL10", split="test")
    return _torchvision(cfg, "STL10", split="train+unlabeled")


# ----- any folder of images -----
@DATASETS.register("image_folder", channels=0, labelled=None)
def image_folder(cfg, split):
    """Any folder of images: class sub-folders give labels, loose images are unlabeled; train/ and test/ sub-folders are used as splits."""
    root = _root(cfg)
    if not root.is_dir():
        raise ConfigError(f"data.root: '{root}' is not a folder")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    if not has_splits and split == "test":
        return None
    folder = root / split if has_splits else root
    return load_folder(folder, cfg.image_size)


def list_images(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [d.name for d in subdirs if any(_is_image(f) for f in d.rglob("*"))]
    files, labels = [], []
    for f in sorted(folder.iterdir()):
        if _is_image(f):
            files.append(f)
            labels.append(-1)
    for ci, name in enumerate(classes):
        for f in sorted((folder / name).rglob("*")):
            if _is_image(f):
                files.append(f)
                labels.append(ci)
    return files, labels, classes


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS


def load_folder(folder: Path, image_size: int = 0) -> ImageData:
    files, labels, classes = list_images(folder)
    if not files:
        raise ConfigError(f"data.root: no images ({', '.join(sorted(IMAGE_EXTS))}) found in '{folder}' or its sub-folders")
    key = hashlib.sha1(f"{folder.resolve()}|{image_size}|{len(files)}|{max(f.stat().st_mtime_ns for f in files)}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")) / f"folder-{key}.npz"
    if cache.is_file():
        try:
            z = np.load(cache, allow_pickle=False)
            skipped = [str(s) for s in z["skipped"]]
            _warn_skipped(skipped, folder)
            return ImageData(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), [str(c) for c in z["classes"]], torch.from_numpy(z["indices"]), skipped)
        except (OSError, ValueError, KeyError):
            pass
    from PIL import Image

    def first_ok():
        for f in files:
            try:
                with Image.open(f) as im:
                    return im.mode, im.size
            except Exception:  # noqa: BLE001 - corrupt files are counted below
                continue
        return None, None

    mode0, size0 = first_ok()
    if mode0 is None:
        raise ConfigError(f"data.root: none of the {len(files)} image files in '{folder}' could be read")
    grey = mode0 in ("L", "1", "I;16", "I")
    mode = "L" if grey else "RGB"
    size = image_size or (size0[0] if size0[0] == size0[1] else min(size0))

    def load(f):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                w, h = im.size
                s = size / min(w, h)
                if (w, h) != (size, size):
                    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                    w, h = im.size
                    left, top = (w - size) // 2, (h - size) // 2
                    im = im.crop((left, top, left + size, top + size))
                arr = np.asarray(im, dtype=np.uint8)
                return arr[None] if grey else arr.transpose(2, 0, 1)
        except Exception:  # noqa: BLE001 - any decoder failure means "unreadable"
            return None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2))) as pool:
        arrays = list(pool.map(load, files, chunksize=64))
    keep = [i for i, a in enumerate(arrays) if a is not None]
    skipped = [str(files[i]) for i, a in enumerate(arrays) if a is None]
    if not keep:
        raise ConfigError(f"data.root: none of the {len(files)} image files in '{folder}' could be read")
    _warn_skipped(skipped, folder)
    images = np.stack([arrays[i] for i in keep])
    labels_np = np.asarray([labels[i] for i in keep], dtype=np.int64)
    indices = np.asarray(keep, dtype=np.int64)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, labels=labels_np, indices=indices, classes=np.asarray(classes, dtype=str), skipped=np.asarray(skipped, dtype=str))
        os.replace(tmp, cache)
    except OSError:
        pass
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels_np), classes, torch.from_numpy(indices), skipped)


def _warn_skipped(skipped: list[str], folder: Path) -> None:
    if skipped:
        shown = ", ".join(Path(s).name for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        log.warning("skipped %d unreadable image file(s) in %s: %s", len(skipped), folder, shown)
