"""Dataset registry and the images a run trains on.

Every dataset is one uint8 array (N, C, H, W) per split with labels (N,) int64 (-1 where
unlabeled) and the index of each image in its source. Image folders are decoded once into a
store on disk (``core/store.py``); a split then lives in memory when it fits and is otherwise
read batch by batch from the store by a background prefetch thread.

Factories are called ``DATASETS.build(name, cfg=DataConfig, split="train" | "test", progress=..., cancel=...)``
and return an ``ImageData`` or ``None`` when the dataset has no such split (the held-out set is
then carved from train by ``cfg.holdout``).
"""
from __future__ import annotations

import contextlib
import gzip
import itertools
import logging
import os
import queue
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from workbench.core import folder as folders
from workbench.core.folder import Cancelled  # noqa: F401 - part of this module's interface
from workbench.core.paths import resources_dir
from workbench.core.registry import ConfigError, Registry
from workbench.core.store import Store

log = logging.getLogger("workbench.data")
RESOURCES = resources_dir()
BUNDLED = RESOURCES / "fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
RAM_SHARE = 0.5  # in_memory = "auto" keeps a dataset in RAM (or GPU memory) up to this share of what is free

DATASETS = Registry("dataset", context=("cfg", "split", "progress", "cancel"))


@dataclass
class ImageData:
    """One split. ``images`` (N, C, H, W) uint8; when ``in_memory`` is False it is a read-only memory
    map of rows ``start:start+N`` of ``store``, and training reads it through ``batches``."""

    images: torch.Tensor
    labels: torch.Tensor  # (N,) int64, -1 = unlabeled
    classes: list[str]
    indices: torch.Tensor = None  # (N,) int64, position in the source
    skipped: list[str] = field(default_factory=list)  # unreadable files left out
    in_memory: bool = True
    store: Store | None = None  # the decoded store these rows come from (None: not from a folder)
    start: int = 0  # row of images[0] in the store
    notes: list[str] = field(default_factory=list)  # the loader's warnings about these images (load_splits sets them)
    source: str = ""  # the image folder whose sorted file list ``indices`` index ("" when not from a folder)

    def __post_init__(self):
        if self.indices is None:
            self.indices = torch.arange(len(self.images))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    @property
    def nbytes(self) -> int:
        return len(self) * self.channels * self.size * self.images.shape[-2]

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def take(self, idx: torch.Tensor) -> ImageData:
        """The samples ``idx`` (K,), copied into memory."""
        return ImageData(self.read(idx), self.labels[idx.to(self.labels.device)], self.classes,
                         self.indices[idx.to(self.indices.device)], self.skipped, source=self.source)

    def rows(self, a: int, b: int) -> ImageData:
        """Samples ``a:b`` without copying (a view of the same memory or store)."""
        return replace(self, images=self.images[a:b], labels=self.labels[a:b], indices=self.indices[a:b], start=self.start + a)

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """Images ``idx`` (K,) as a (K, C, H, W) uint8 tensor in memory (on the CPU when streamed)."""
        if self.in_memory:
            return self.images[idx.to(self.images.device)]
        out = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8)
        self.store.read(idx.cpu().numpy() + self.start, out.numpy())
        return out

    def to(self, device) -> ImageData:
        """In memory on ``device`` (streamed data is copied in chunks, never whole through RAM)."""
        device = torch.device(device)
        if self.in_memory:
            images = self.images.to(device)
        else:
            images = torch.empty(self.images.shape, dtype=torch.uint8, device=device)
            for a in range(0, len(self), 8192):
                images[a:a + 8192] = self.read(torch.arange(a, min(a + 8192, len(self))))
        return ImageData(images, self.labels.to(device), self.classes, self.indices.to(device), self.skipped,
                         source=self.source)

    def file_names(self) -> list[str] | None:
        """Each image's file, relative to its folder; None when not from a folder. Lists the folder again (as the
        store was built from it): seconds for a large one, so call it off the GUI thread."""
        return file_names(self.source, self.indices)

    def batches(self, idx_batches: Iterable[torch.Tensor], device, prefetch: int = 3) -> Iterator[torch.Tensor]:
        """``images[idx]`` (B, C, H, W) uint8 on ``device`` for each LongTensor ``idx`` (B,).

        In memory: plain indexing. Streamed: a background thread consumes ``idx_batches`` up to
        ``prefetch`` batches ahead and reads them from the store (into pinned memory on CUDA, copied
        with ``non_blocking``); the batches are the same either way.
        """
        if self.in_memory:
            for idx in idx_batches:
                # non_blocking: a plain host-to-GPU copy of the indices would synchronise the stream every step
                yield self.images[idx.to(self.images.device, non_blocking=True)].to(device, non_blocking=True)
        else:
            yield from _prefetched(self, idx_batches, torch.device(device), prefetch)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] over (up to) the first 10,000 images."""
        sample = self.read(torch.arange(min(len(self), 10000))).float().div_(255)
        return sample.mean((0, 2, 3)).tolist(), sample.std((0, 2, 3)).clamp_min(1e-3).tolist()

    def thumbnails(self, n_per_class: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_per_class`` images of every class drawn at random (``seed``), class by class:
        ((K, C, H, W) uint8 on the CPU, labels (K,)); unlabeled data gives ``8 * n_per_class`` images."""
        labels = self.labels.cpu()
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        if not self.has_labels:
            pick = perm[: 8 * n_per_class]
        else:
            by_label = labels[perm]
            pick = torch.cat([perm[by_label == c][:n_per_class] for c in labels[labels >= 0].unique().tolist()])
        return self.read(pick).cpu(), labels[pick]


_END = object()


def _prefetched(data: ImageData, idx_batches: Iterable[torch.Tensor], device: torch.device, depth: int) -> Iterator[torch.Tensor]:
    pin = device.type == "cuda"
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for idx in idx_batches:
                if stop.is_set():
                    return
                buf = torch.empty((len(idx), *data.images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
                data.store.read(idx.cpu().numpy() + data.start, buf.numpy())
                put(buf)
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=work, name="workbench-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item.to(device, non_blocking=True) if pin else item
    finally:
        stop.set()
        thread.join(timeout=5)


@contextlib.contextmanager
def data_warnings():
    """Collects the warnings the data log ("workbench.data") gives in this thread meanwhile (what a loader decided
    about the user's data and wants checked), for a client that shows them instead of a console."""
    said: list[str] = []
    me = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record):
            if record.thread == me and record.levelno >= logging.WARNING:
                said.append(record.getMessage())

    handler = Collect()
    log.addHandler(handler)
    try:
        yield said
    finally:
        log.removeHandler(handler)


def load_splits(cfg, progress=None, cancel=None) -> tuple[ImageData, ImageData]:
    """Return (train, held-out) for a DataConfig; the held-out split drives kNN and the projection.

    ``progress(done, total, message)`` is called from the loading thread (``total`` 0: no count
    known); ``cancel.is_set()`` is polled between files and raises ``Cancelled``.
    """
    splits = []
    tally = _Tally(progress)
    with data_warnings() as said:
        for split in ("train", "test"):
            _check(cancel)
            if progress is not None:
                progress(tally.before, 0, f"reading {cfg.name} {split}")
            splits.append(DATASETS.build(cfg.name, None, cfg=cfg, split=split, progress=tally, cancel=cancel))
            tally.next_split(len(splits[-1]) if splits[-1] is not None else 0)
        train, test = splits
        if train is None or len(train) == 0:
            raise ConfigError(f"data: dataset '{cfg.name}' has no training images; check data.root")
        train, test = finish_splits(cfg, train, test)
        train, test = _reside(train, test, getattr(cfg, "in_memory", "auto"))
    train.notes = list(said)  # what the loader decided or skipped: a run writes it to its run.log
    return train, test


class _Tally:
    """A loader's ``progress(done, total, message)`` counted over both splits: the images of the splits already loaded
    are added, so the bar reads 58,832 / 60,000 while the last 10,000 of a 50,000 + 10,000 folder load, never
    8,832 / 10,000 as if the held-out split were all there is."""

    def __init__(self, progress):
        self.progress, self.before = progress, 0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.progress is not None:
            self.progress(self.before + done, self.before + total if total else 0, message)

    def next_split(self, n: int) -> None:
        self.before += n


def _check(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("loading cancelled")


def finish_splits(cfg, train: ImageData, test: ImageData | None) -> tuple[ImageData, ImageData]:
    """Apply a DataConfig to loaded splits: carve ``holdout`` from train when there is no test
    split, keep ``subset`` training images, set ``channels``, resize to ``image_size``.

    Rows of a store are already in a fixed random order, so it is carved by slicing (no copy)."""
    if test is None:
        n_test = max(1, int(round(len(train) * cfg.holdout)))
        if len(train) - n_test < 2 and len(train) >= 20:
            raise ConfigError(f"data.holdout: {cfg.holdout:g} of {len(train)} images leaves {len(train) - n_test} to train on; "
                              "lower it (e.g. 0.1)")
        if len(train) - n_test < 2:
            raise ConfigError(f"data: only {len(train)} images; a contrastive run needs at least a few dozen")
        if train.store is not None:
            test, train = train.rows(0, n_test), train.rows(n_test, len(train))
        else:
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
            test, train = train.take(perm[:n_test].sort().values), train.take(perm[n_test:].sort().values)
    if cfg.subset and cfg.subset < len(train):
        if train.store is not None:
            train = train.rows(0, cfg.subset)
        else:
            g = torch.Generator().manual_seed(1)
            train = train.take(torch.randperm(len(train), generator=g)[: cfg.subset].sort().values)
    channels = getattr(cfg, "channels", "auto")
    if channels in (1, 3) and train.channels != channels:
        train = to_channels(train, channels)
    if cfg.image_size and train.size != cfg.image_size:
        train = resize(train, cfg.image_size)
    return train, like_training(test, train)


def like_training(test: ImageData, train: ImageData) -> ImageData:
    """The held-out split at the training split's channels and size (checked before the first step, not found by
    the final evaluation), with a warning when it had to be converted."""
    was = f"{test.channels}-channel {test.size}x{test.images.shape[-2]}"
    if test.channels != train.channels:
        test = to_channels(test, train.channels)
    if test.size != train.size or test.images.shape[-2] != train.images.shape[-2]:
        test = resize(test, train.size)
    if was != f"{test.channels}-channel {test.size}x{test.images.shape[-2]}":
        log.warning("data: the held-out images are %s, the training images %d-channel %dx%d: the held-out ones are "
                    "converted to that", was, train.channels, train.size, train.size)
    return test


def _reside(train: ImageData, test: ImageData, in_memory) -> tuple[ImageData, ImageData]:
    """Keep store-backed splits streamed, or read them into RAM (``in_memory`` True, or "auto" when they fit)."""
    if train.in_memory:
        return train, test
    need, free = train.nbytes + test.nbytes, available_ram()
    if in_memory is True or (in_memory == "auto" and need <= RAM_SHARE * free):
        return train.to("cpu"), test.to("cpu")
    why = "data.in_memory = false" if in_memory is False else f"more than {RAM_SHARE:.0%} of the {free / 1e9:.1f} GB of free memory"
    log.warning("data: %.1f GB of decoded images (%s): streaming batches from %s", need / 1e9, why, train.store.path)
    return train, test


def place(data: ImageData, device, in_memory="auto") -> ImageData:
    """Training images where the loop reads them: on ``device`` when they fit there (``in_memory``
    True forces it, False never moves them), else where they are (RAM, or streamed from the store)."""
    device = torch.device(device)
    if in_memory is False:
        return data
    if device.type == "cuda" and data.images.device != device:
        free = torch.cuda.mem_get_info(device)[0]
        return data.to(device) if in_memory is True or data.nbytes <= RAM_SHARE * free else data
    return data.to(device) if data.in_memory or in_memory is True else data


def available_ram() -> int:
    """Bytes of memory available to new allocations (MemAvailable; total physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 8 << 30


def to_channels(data: ImageData, channels: int) -> ImageData:
    """Greyscale repeated to RGB, or RGB to luma (ITU-R 601-2, PIL's weights)."""
    x = data.read(torch.arange(len(data)))
    if channels == 3:
        x = x.expand(-1, 3, -1, -1).contiguous()
    else:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    return ImageData(x, data.labels, data.classes, data.indices, data.skipped, source=data.source)


def resize(data: ImageData, size: int) -> ImageData:
    out = []
    for chunk in data.read(torch.arange(len(data))).split(2048):
        x = torch.nn.functional.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return ImageData(torch.cat(out), data.labels, data.classes, data.indices, data.skipped, source=data.source)


def file_names(source: str, indices) -> list[str] | None:
    """The file (relative to ``source``, an image folder) at each position ``indices`` of its sorted file list; ""
    for a position the folder no longer has. None without a folder."""
    if not source or not Path(source).is_dir():
        return None
    files = folders.list_images(Path(source), say=False, stat=False).files
    return [os.path.relpath(files[i], source) if 0 <= i < len(files) else "" for i in (int(i) for i in indices)]


@DATASETS.register("python", hidden=True, channels=0, labelled=None)
def python(cfg, split, **_):
    """Images passed to workbench.fit() from Python; a config cannot load them again."""
    raise ConfigError("data: this run was trained on images passed to workbench.fit() from Python, which a config cannot "
                      "load again; to resume it pass the same images (workbench.fit(resume=RUN_DIR, data=images, "
                      "labels=labels)); to embed images use workbench.load_run(RUN_DIR).embed(images), or name a dataset "
                      "(--set data.name=...)")


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
        missing = " and ".join(f"{prefix}-{kind}-idx{n}-ubyte[.gz]" for kind, n, found in
                               (("images", 3, img), ("labels", 1, lab)) if found is None)
        raise ConfigError(
            f"data.root: no {sub} {split} file {missing} under '{root}'; "
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
        fetch = "" if cfg.name == "image_folder" else " or set data.download=true"
        raise ConfigError(f"data.root: '{root}' does not exist; point it at the dataset folder{fetch}")
    return root


@DATASETS.register("bundled", channels=1, labelled=True)
def bundled(cfg, split, **_):
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
def fashion_mnist(cfg, split, **_):
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 greyscale) from IDX files under data.root."""
    return _mnist_like(cfg, split, "FashionMNIST", "FashionMNIST", FASHION_CLASSES)


@DATASETS.register("mnist", channels=1, labelled=True)
def mnist(cfg, split, **_):
    """MNIST digits (60,000 train / 10,000 test, 28x28 greyscale) from IDX files under data.root."""
    return _mnist_like(cfg, split, "MNIST", "MNIST", [str(i) for i in range(10)])


def _torchvision(cfg, cls_name, **kwargs):
    import torchvision

    root = _root(cfg)
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), download=cfg.download, **kwargs)
    except RuntimeError:
        images = any(p.suffix.lower() in folders.IMAGE_EXTS for p in itertools.islice(root.rglob("*"), 5000))
        other = " (it holds image files: for a folder of images choose data.name = \"image_folder\")" if images else ""
        raise ConfigError(f"data.root: no {cls_name} files in torchvision's layout under '{root}'{other}; point data.root "
                          "at them or set data.download=true to fetch them there") from None
    data = np.asarray(ds.data)
    if data.ndim == 4 and data.shape[-1] in (1, 3):
        data = data.transpose(0, 3, 1, 2)
    labels = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)), dtype=np.int64)
    return ImageData(torch.from_numpy(np.ascontiguousarray(data)), torch.from_numpy(labels), list(getattr(ds, "classes", [])))


@DATASETS.register("cifar10", channels=3, labelled=True)
def cifar10(cfg, split, **_):
    """CIFAR-10 (50,000 / 10,000, 32x32 RGB) in torchvision's python layout under data.root."""
    return _torchvision(cfg, "CIFAR10", train=split == "train")


@DATASETS.register("cifar100", channels=3, labelled=True)
def cifar100(cfg, split, **_):
    """CIFAR-100 (50,000 / 10,000, 32x32 RGB, 100 classes) in torchvision's layout under data.root."""
    return _torchvision(cfg, "CIFAR100", train=split == "train")


@DATASETS.register("stl10", channels=3, labelled=True)
def stl10(cfg, split, **_):
    """STL-10 (96x96 RGB): train = 100,000 unlabeled + 5,000 labelled images, test = 8,000 labelled."""
    if split == "test":
        return _torchvision(cfg, "STL10", split="test")
    return _torchvision(cfg, "STL10", split="train+unlabeled")


# ----- any folder of images -----
@DATASETS.register("image_folder", channels=0, labelled=None)
def image_folder(cfg, split, progress=None, cancel=None):
    """Any folder of images: class sub-folders give labels, loose images are unlabeled; train/ (or training/) beside
    test/, val/, validation/ and the like (folder.HELDOUT_NAMES) are used as splits, the held-out classes matched to
    the training ones by name. Decoded once into a store in the cache."""
    root = _root(cfg)
    if not root.is_dir():
        raise ConfigError(f"data.root: '{root}' is not a folder")
    train_dir, heldout_dir = folders.split_folders(root, say=split == "train")
    key = (str(train_dir.resolve()), getattr(cfg, "channels", "auto"), cfg.image_size)
    if split == "train":
        st = folders.load_folder(train_dir, key[1], key[2], progress, cancel)
        _TRAIN_SHAPE[key] = st.shape[1], st.shape[2], list(st.meta["classes"])
        return from_store(st)
    if heldout_dir is None:
        return None
    if key not in _TRAIN_SHAPE:  # the held-out split asked for alone: the training split still decides its shape
        image_folder(cfg, "train", progress, cancel)
    channels, size, classes = _TRAIN_SHAPE[key]
    held_out = from_store(folders.load_folder(heldout_dir, channels, size, progress, cancel))
    return same_classes(held_out, classes, heldout_dir, say=split == "test")


_TRAIN_SHAPE: dict[tuple, tuple] = {}  # (train folder, channels, image_size) -> decided (channels, size, class names)


def same_classes(held_out: ImageData, classes: list[str], folder: Path, say: bool = True) -> ImageData:
    """``held_out`` with its labels numbered as the training split's ``classes`` (by folder name: test/ may lack a
    class or hold one train/ has not, which shifts every number after it); classes train/ lacks become unlabeled."""
    if held_out.classes == classes:
        return held_out
    index = {name: i for i, name in enumerate(classes)}
    mapping = torch.tensor([index.get(name, -1) for name in held_out.classes] + [-1], dtype=torch.int64)
    labels = mapping[held_out.labels]  # an unlabeled image's -1 picks the last entry: -1 again
    extra = [name for name in held_out.classes if name not in index]
    if extra and say:
        log.warning("data: %s holds class folder(s) that the training split has not: %s; their %d images count as "
                    "unlabeled (left out of kNN)", folder, ", ".join(extra[:10]), int(((labels < 0) & (held_out.labels >= 0)).sum()))
    return replace(held_out, labels=labels, classes=list(classes))


def from_store(st: Store) -> ImageData:
    """A streamed ImageData over a whole store."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only map: nothing writes to training images
        images = torch.from_numpy(st.images)
    skipped = list(st.meta.get("failures", {}))
    return ImageData(images, torch.from_numpy(st.labels), list(st.meta["classes"]), torch.from_numpy(st.indices),
                     skipped, in_memory=False, store=st, source=st.meta.get("folder", ""))
