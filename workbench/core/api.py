"""The Python API: train from a notebook or a script in a few lines.

    import workbench as wb
    cfg = wb.config("examples/bundled_quick.toml", train={"epochs": 1}, **{"loss.temperature": 0.1})
    run = wb.fit(cfg, data=images, labels=labels)        # uint8 (N, C, H, W) and (N,), or a torch Dataset
    emb = run.embed(images[:100])                         # (100, D) float32 numpy
    run.export("onnx"); run.metrics[-1]                   # files in <run>/export/onnx/; metrics as a list of dicts

``fit`` runs the same training generator as the window and the CLI (one run folder under
``runs_root``), raises failures as the exceptions they are (the run's run.log keeps the traceback
too), and leaves torch's global state (random number
generators, flush-denormal, thread count, matmul precision) as it found it: the loop's own
settings are swapped in only while the loop runs, so code in callbacks and between events sees
the caller's state.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.core.config import SECTIONS, Config
from workbench.core import convert
from workbench.core import keys as keys_
from workbench.core.data import ImageData, data_warnings, finish_splits, same_classes
from workbench.core.events import DoneEvent, RunStarted
from workbench.core.registry import ConfigError
from workbench.core.runfolder import config_path, find_run
from workbench.core.runs import python_resume_message, read_metrics
from workbench.core.control import Control
from workbench.core.train import train

# ----- configs -----
def config(source: Config | dict | str | Path | None = None, overrides: dict | None = None, **keys: Any) -> Config:
    """A validated Config from defaults, a dict, a TOML file or a Config, with overrides.

    ``source``: None (every default), a nested dict ``{"loss": {"name": "dcl"}}`` (dotted keys such
    as ``{"loss.temperature": 0.1}`` work too), a path to a TOML file, or a Config (left unchanged).
    ``overrides`` / keywords: a section as a dict (``train={"epochs": 2}``) or a dotted key
    (``**{"loss.temperature": 0.1}``). Raises ConfigError naming the bad field.
    """
    if isinstance(source, Config):
        cfg = source
    elif isinstance(source, (str, Path)):
        cfg = Config.load(source)
    elif source is None or isinstance(source, dict):
        nested = {k: v for k, v in (source or {}).items() if "." not in k}
        cfg = Config.from_dict(nested)
        keys = {k: v for k, v in (source or {}).items() if "." in k} | dict(overrides or {}) | keys
        overrides = None
    else:
        raise ConfigError(f"config: expected a dict, a TOML path or a Config, got {type(source).__name__}")
    items = _dotted(dict(overrides or {}) | keys)
    for k, v in items:
        _toml_literal(k, v)  # a value TOML cannot hold: ConfigError naming its key
    return keys_.apply(cfg, dict(items)) if items else cfg


def _dotted(keys: dict) -> list[tuple[str, Any]]:
    out = []
    for key, value in keys.items():
        if "." in key:
            out.append((key, value))
        elif key in SECTIONS and isinstance(value, dict):
            out.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            raise ConfigError(f"config: '{key}' is neither a section ({', '.join(SECTIONS)}) given as a dict "
                              "nor a dotted key such as 'loss.temperature'")
    return out


def _toml_literal(key: str, value: Any) -> str:
    try:
        return keys_.toml_literal(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} cannot be written to a config (use numbers, strings, booleans or lists)") from None


# ----- data -----
MAX_CLASS_NUMBER = 100_000  # class numbers above this, used sparsely, are refused (kNN counts a vote for every number)


def as_image_data(data: Any, labels: Any = None, classes: list | None = None, where: str = "data") -> ImageData:
    """ImageData from uint8 images (N, C, H, W) (tensor or array; float in [0, 1] also taken; channels last and
    RGBA read as ``core/convert.py`` says), an ``(images, labels)`` pair, an ImageData, or a torch Dataset yielding
    images (PIL, tensors or arrays) or ``(image, label, ...)`` tuples. Labels are int64 with -1 for unlabeled."""
    if isinstance(data, ImageData):
        return data
    if isinstance(data, tuple) and len(data) == 2 and labels is None:
        data, labels = data
    if isinstance(data, (torch.Tensor, np.ndarray)):
        images = convert.batch(data, where)
    elif isinstance(data, torch.utils.data.Dataset) or hasattr(data, "__getitem__"):
        images, found = _from_dataset(data, where)
        labels = found if labels is None else labels
        classes = classes or list(getattr(data, "classes", []) or [])
    else:
        raise ConfigError(f"{where}: expected a uint8 tensor (N, C, H, W), an (images, labels) pair or a torch Dataset, "
                          f"got {type(data).__name__}")
    return ImageData(_check_images(images, where), _labels(labels, len(images), where), classes or _class_names(labels))


def _check_images(images: torch.Tensor, where: str) -> torch.Tensor:
    _, c, h, w = images.shape
    if c not in (1, 3):
        raise ConfigError(f"{where}: images need 1 (grey) or 3 (RGB) channels in dimension 1, got shape {tuple(images.shape)}")
    if h != w:
        raise ConfigError(f"{where}: images are {h}x{w}; crop or resize them to squares first")
    return images.contiguous()


def _labels(labels: Any, n: int, where: str) -> torch.Tensor:
    """(n,) int64 class numbers (-1 = unknown) from integers, whole floats or names (numbered in sorted order)."""
    if labels is None:
        return torch.full((n,), -1, dtype=torch.int64)
    arr = _label_array(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ConfigError(f"{where}: {n} images need {n} labels, one per image (-1 = unknown); got shape {arr.shape}")
    if arr.dtype.kind in "USO":  # class names, numbered as _class_names lists them; None = unknown
        index = {name: i for i, name in enumerate(_class_names(arr))}
        return torch.tensor([-1 if a is None else index[str(a)] for a in arr], dtype=torch.int64)
    if arr.dtype.kind == "b" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr)))):
        raise ConfigError(f"{where}: labels must be class numbers (0, 1, ...; -1 = unknown) or class names, got "
                          f"{arr.dtype} values such as {arr[:3].tolist()}")
    out = torch.from_numpy(arr.astype(np.int64))
    if n and int(out.min()) < -1:
        raise ConfigError(f"{where}: labels must be >= 0 (or -1 = unknown), got {int(out.min())}")
    top, used = (int(out.max()) if n else -1), len(np.unique(arr[arr >= 0]))
    if top >= MAX_CLASS_NUMBER and top >= 4 * used:
        raise ConfigError(f"{where}: labels run up to {top:,} for {used:,} classes; class numbers are 0 .. classes - 1 "
                          "(kNN counts a vote for every number up to the largest): renumber them "
                          "(np.unique(labels, return_inverse=True)[1]) or give class names")
    return out


def _label_array(labels: Any) -> np.ndarray:
    """Labels as an array; class numbers with None for unknown (an object array) become int64 with -1."""
    arr = np.array(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if arr.dtype.kind == "O" and arr.ndim == 1:
        known = [a for a in arr if a is not None]
        if known and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in known):
            arr = np.array([-1 if a is None else int(a) for a in arr], dtype=np.int64)
    return arr


def _class_names(labels: Any) -> list[str]:
    if labels is None:
        return []
    arr = _label_array(labels)
    if arr.dtype.kind in "USO":
        return sorted({str(a) for a in arr.reshape(-1) if a is not None})
    top = int(arr.max(initial=-1))
    return [str(i) for i in range(top + 1)]


def matched_classes(train: ImageData, test: ImageData, where: str = "test") -> ImageData:
    """``test`` with its labels numbered as ``train``'s classes, matched by name (as image folders' splits are): a
    held-out split of some of the classes keeps each name's number; names training lacks become unlabeled (said)."""
    numbered = test.classes == [str(i) for i in range(len(test.classes))]  # from class numbers: numbers match
    if not test.classes or not train.classes or numbered or test.classes == train.classes[:len(test.classes)]:
        return test
    extra = [c for c in test.classes if c not in train.classes]
    if extra:
        warnings.warn(f"{where}: classes {', '.join(map(str, extra[:10]))} are not among the training labels; their "
                      "images count as unlabeled (left out of kNN)", stacklevel=4)
    return same_classes(test, list(train.classes), Path(where), say=False)


def _from_dataset(ds, where: str) -> tuple[torch.Tensor, list[int] | None]:
    images, labels, cropped = [], [], 0
    for i in range(len(ds)):
        try:
            item = ds[i]
        except Exception as exc:  # the user's own code: say which item, keep its traceback as the cause
            raise ConfigError(f"{where}[{i}]: the dataset raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                              "(its traceback is this error's cause)") from exc
        img, label = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        cropped += bool(convert.is_pil(img) and img.size[0] != img.size[1])
        images.append(convert.one_image(img, f"{where}[{i}]"))
        labels.append(-1 if label is None else label.item() if hasattr(label, "item") else label)
        if images[-1].shape[1:] != images[0].shape[1:]:
            raise ConfigError(f"{where}[{i}]: image is {tuple(images[-1].shape)} but the first is {tuple(images[0].shape)} "
                              "(C, H, W); give every image the same size (e.g. a Resize transform)")
    if not images:
        raise ConfigError(f"{where}: the dataset is empty")
    if cropped:  # a guess about the user's images, said as an image folder says it
        warnings.warn(f"{where}: {cropped} of {len(images)} PIL images are not square; the centre square of each is used",
                      stacklevel=3)
    if len({im.shape[0] for im in images}) > 1:  # greyscale among colour: grey as RGB, as an image folder does
        warnings.warn(f"{where}: greyscale and colour images are mixed; the greyscale ones are used as RGB", stacklevel=3)
        images = [im.expand(3, -1, -1) for im in images]
    has_labels = any(not (isinstance(lab, (int, np.integer)) and lab < 0) for lab in labels)
    return torch.stack(images), (labels if has_labels else None)


def _is_pil(img) -> bool:
    return convert.is_pil(img)


def images_to_embed(images: Any) -> torch.Tensor:
    """(N, C, H, W) uint8 from what ``Run.embed`` takes in memory: one image (PIL, (H, W), (C, H, W), (H, W, C)),
    a batch (N, C, H, W) / (N, H, W, C), a list of images, or anything ``fit`` takes; ``core/convert.py``'s rule."""
    if isinstance(images, ImageData):
        return images.images
    if convert.is_pil(images) or (isinstance(images, (torch.Tensor, np.ndarray)) and np.ndim(images) in (2, 3)):
        return convert.one_image(images, "images")[None]
    if isinstance(images, (list, tuple)) and images and all(convert.is_pil(i) or isinstance(i, (torch.Tensor, np.ndarray))
                                                            for i in images):
        return as_image_data(_ListDataset(images), where="images").images
    return as_image_data(images, where="images").images


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# ----- global torch state -----
@dataclass
class TorchState:
    """The process-wide torch settings a training run changes (see ``swapped``)."""

    rng: torch.Tensor
    cuda_rng: list | None  # None: CUDA was not initialised yet
    threads: int
    flush_denormal: bool
    matmul_precision: str

    @classmethod
    def capture(cls) -> TorchState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda, torch.get_num_threads(), _flushes_denormals(),
                   torch.get_float32_matmul_precision())

    def restore(self) -> None:
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        elif torch.cuda.is_available() and torch.cuda.is_initialized():  # initialised since: a fresh random seed, as
            torch.cuda.seed_all()  # a process that never seeded CUDA has (not the run's seed)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.set_flush_denormal(self.flush_denormal)
        torch.set_float32_matmul_precision(self.matmul_precision)


def _flushes_denormals() -> bool:
    """Whether denormal floats are flushed to zero now (torch has a setter but no getter)."""
    return bool((torch.tensor([1e-39]) * torch.tensor([1.0])).item() == 0.0)


def swapped(events: Iterator) -> Iterator:
    """Yield from ``events`` with the loop's global torch state active only inside the generator:
    the caller's state is captured before each step and restored before each yield. Closing it closes ``events``
    (a run whose reader stopped saves and records itself as stopped)."""
    inner = None
    try:
        while True:
            outer = TorchState.capture()
            if inner is not None:
                inner.restore()
            try:
                ev = next(events, None)
            finally:
                inner = TorchState.capture()
                outer.restore()
            if ev is None:
                return
            yield ev
    finally:
        events.close()


# ----- runs -----
@dataclass
class Run:
    """A finished (or stopped) run folder: its config, metrics, trained encoder and exports."""

    run_dir: Path
    reason: str = "finished"  # finished | stopped | budget
    final: dict = field(default_factory=dict)  # the last evaluation's metrics
    device: str = "cpu"
    _model: Any = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        return Config.load(config_path(self.run_dir))

    @property
    def metrics(self) -> list[dict]:
        """metrics.csv as a list of dicts (one per logged step or evaluation; None where a column is empty)."""
        return read_metrics(self.run_dir)

    @property
    def model(self):
        """The trained network with what is needed to feed it (core.inference.RunModel), loaded once."""
        if self._model is None:
            from workbench.core.inference import RunModel

            self._model = RunModel.load(self.run_dir, device=self.device)
        return self._model

    def embed(self, images: Any, project: bool = False, batch: int = 512, readout: bool = False) -> np.ndarray:
        """Representations (N, D) float32 of images given in any form ``fit`` takes, or as image files (a path,
        or a list of paths: decoded as a folder's files are for training); resized and normalised as in training.
        The backbone's output (what the field's kNN reads); projection-head outputs with ``project``; through the
        run's fitted read-out (``eval.readout``) with ``readout``."""
        if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple)) and images
                                               and all(isinstance(p, (str, Path)) for p in images)):
            return self._embed_files([images] if isinstance(images, (str, Path)) else list(images), project, batch, readout)
        x = images_to_embed(images)
        rm = self.model
        if tuple(x.shape[1:]) != (rm.channels, rm.image_size, rm.image_size):
            warnings.warn(f"images are {x.shape[-1]}x{x.shape[-2]} with {x.shape[1]} channel(s); this encoder was trained "
                          f"on {rm.image_size}x{rm.image_size} with {rm.channels}: they are converted and resized to that",
                          stacklevel=2)
        return rm.embed(x, batch=batch, project=project, readout=readout)

    def _embed_files(self, paths: list, project: bool, batch: int, readout: bool = False) -> np.ndarray:
        from workbench.core.inference import load_image_file

        rm = self.model
        x = torch.cat([load_image_file(p, rm.channels, rm.image_size) for p in paths])
        return rm.embed(x, batch=batch, project=project, readout=readout)

    def explain(self, a: Any, b: Any, readout: bool = False):
        """Why the encoder finds ``a`` and ``b`` similar: exact similarity maps (``core.explain``, Stylianou et al.
        2019) of the backbone representation that kNN and retrieval read, not through the projection head.

        a, b: image files (paths), or uint8 images (C, H, W) / equal batches (B, C, H, W) as tensors or arrays.
        Returns ``PairMaps``: ``cosine`` (B,), ``map_a`` / ``map_b`` (B, h, w) that each sum to the cosine,
        ``matches`` (B, N, N) location to location, ``top_matches(k)``, and ``figure(k)`` an RGB image (H, W, 3)
        uint8 (``PIL.Image.fromarray(m.figure()).save("pair.png")``). ``readout``: explain the run's whitening
        read-out (an affine map after pooling, still exact) instead of the plain backbone."""
        from workbench.core.explain import explain_run

        return explain_run(self.model, a, b, readout)

    def deletion_curve(self, a: Any, b: Any, steps: int = 16, seed: int = 0, fill: str = "black"):
        """How fast the cosine of a and b (as ``explain`` takes them) falls as a's image regions are masked (``fill``:
        black | mean | blur), highest map value first against a random order: ``DeletionCurve`` (``fraction``,
        ``ranked`` and ``random`` (B, S + 1), ``auc`` (ranked, random))."""
        from workbench.core.explain import deletion_run

        return deletion_run(self.model, a, b, steps, seed, fill=fill)

    def check(self, split: str = "both", k: int = 10, factor: float = 0.13, subset: int = 0, subset_distance: float = 0.0,
              data: Any = None, labels: Any = None, test: Any = None, test_labels: Any = None, overrides: list[str] | None = None):
        """Duplicates, train/test leaks, outliers and likely label errors of the run's data, read with its encoder
        (``core.checks``): a Report whose ``tables`` (duplicates, leaks, outliers, label_issues, confusion, subset)
        are the lists ``workbench check`` writes as CSV, ``findings`` what is worth a look, ``save(folder)`` the
        files. ``data`` / ``labels`` / ``test`` / ``test_labels``: images in any form ``fit`` takes (a run trained on
        images from Python needs them again); ``overrides``: data.KEY=VALUE to check other data of a config."""
        from workbench.core.checks import check_run

        splits = None
        if data is not None:
            held_out = None if test is None else as_image_data(test, test_labels, where="test")
            splits = finish_splits(self.config.data, as_image_data(data, labels), held_out)
        return check_run(self.model, split, k, factor, subset, subset_distance, overrides=overrides, splits=splits)

    def export(self, fmt: str = "safetensors", out: str | Path | None = None, include_head: bool = False,
               force: bool = False, readout: bool = False) -> list[Path]:
        """Write the encoder (safetensors | pt2 | torchscript | onnx | onnx_uint8, with a model card) or
        embeddings (npz | projector); ``out`` defaults to ``<run>/export/<fmt>/`` (as in the window).
        Returns the written paths. An existing file is never replaced unless ``force``: ConfigError
        naming it (the model card of the same run is extended, not replaced)."""
        from workbench.core.export import destination, export_run

        return export_run(self.run_dir, fmt, destination(self.run_dir, fmt, out, force), include_head, readout=readout)


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """A saved run folder as a Run (metrics, embed, export)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"load_run: expected a run folder's path, got {type(path).__name__}")
    run_dir = find_run(path)
    done = [r for r in read_metrics(run_dir) if r.get("knn_acc") is not None]
    final = {k: v for k, v in done[-1].items() if v is not None and k not in ("time", "epoch", "step")} if done else {}
    return Run(run_dir, "saved", final, device)


# ----- training -----
class Stream:
    """Iterate a run's events (``for ev in wb.stream(cfg, data)``); afterwards ``.run`` is the Run.
    Failures raise; ``stop()`` (or Ctrl-C in the loop's thread) ends the run cleanly with a checkpoint."""

    def __init__(self, cfg, data=None, *, labels=None, test=None, test_labels=None, runs_root: str | Path = "runs",
                 resume: str | Path | None = None, control: Control | None = None):
        self.cfg = None if resume is not None and cfg is None else config(cfg)
        if isinstance(data, (str, os.PathLike)):  # an image folder: the config's data.root
            if any(x is not None for x in (labels, test, test_labels)):
                raise ConfigError("data: an image folder's labels are its class sub-folders and its held-out split its "
                                  "test/ folder (or data.holdout); leave labels, test and test_labels out")
            self.cfg, data = _folder_config(self.cfg, Path(data).expanduser(), resume), None
        self.control = control or Control()
        self.run: Run | None = None
        self.run_dir = ""
        splits = None
        if test_labels is not None and test is None:
            raise ConfigError("test_labels: given without test (the held-out images they label); pass test=images too, "
                              "or leave both out to carve the held-out split from data (data.holdout)")
        if data is not None:
            if self.cfg is not None and self.cfg.data.name != "python":
                self.cfg = self.cfg.with_overrides(['data.name="python"'])  # names the run; the CLI will not reload other data
            data_cfg = (self.cfg or Config.load(config_path(find_run(resume)))).data
            train_data = as_image_data(data, labels)
            held_out = None if test is None else matched_classes(train_data, as_image_data(test, test_labels, where="test"))
            with data_warnings() as said:
                splits = finish_splits(data_cfg, train_data, held_out)
            for line in said:  # what was decided about the splits (a held-out split converted to the training shape)
                warnings.warn(line, stacklevel=3)
        elif resume is not None and self.cfg is None and Config.load(config_path(find_run(resume))).data.name == "python":
            raise ConfigError(python_resume_message(find_run(resume)))
        self._events = swapped(train(self.cfg, self.control, runs_root, resume=resume, data=splits, raise_errors=True))

    def __iter__(self) -> Iterator:
        try:
            for ev in self._events:
                self._note(ev)
                yield ev
        except GeneratorExit:  # the loop over the events was left (break): the run stops as stop() stops it
            self.close()
            raise
        except KeyboardInterrupt:
            self.control.stop()
            for ev in self._events:  # the loop saves its checkpoint and ends with DoneEvent("stopped")
                self._note(ev)
            if self.run is None:
                raise

    def stop(self) -> None:
        self.control.stop()

    def close(self) -> None:
        """End the run now (what leaving the loop over its events does): the checkpoint of its step is saved and
        status.json says "stopped" at that step, so it can be resumed; the run folder's lock is released."""
        self._events.close()
        if self.run is None and self.run_dir:
            self.run = Run(Path(self.run_dir), "stopped")

    def _note(self, ev) -> None:
        if isinstance(ev, RunStarted):
            self.run_dir = ev.run_dir
        elif isinstance(ev, DoneEvent):
            self.run = Run(Path(ev.run_dir), ev.reason, dict(ev.metrics))


def _folder_config(cfg: Config | None, folder: Path, resume) -> Config:
    if resume is not None:
        raise ConfigError(f"data: a resumed run reads the data its config names; leave data='{folder}' out")
    if not folder.is_dir():
        raise ConfigError(f"data: '{folder}' is not a folder; give an image folder, images (N, C, H, W) or a torch Dataset")
    return (cfg or config()).replace("data", name="image_folder", root=str(folder))


def stream(cfg=None, data=None, **kwargs) -> Stream:
    """Events of a training run as an iterator; see ``fit`` for the arguments."""
    return Stream(cfg, data, **kwargs)


def fit(cfg=None, data=None, *, labels=None, test=None, test_labels=None, on_event: Callable | None = None,
        runs_root: str | Path = "runs", resume: str | Path | None = None, control: Control | None = None) -> Run:
    """Train and return the Run.

    cfg: a Config or anything ``config()`` takes (None = defaults). data: None (the config's
    dataset), an image folder's path (as data.root, data.name = "image_folder"), uint8 images
    (N, C, H, W) with ``labels`` (N,) (-1 = unknown), an ``(images, labels)`` pair, or a torch
    Dataset of images (PIL / tensors / arrays, with or without labels); the held-out split is
    ``test`` (same forms) or ``data.holdout`` of ``data``. on_event(event) is called for every
    event (RunStarted, StepEvent, EvalEvent, ...). resume: a run folder to continue (pass the same
    ``data`` when it was trained on in-memory images). Raises ConfigError for a bad
    set-up and the training failure's own exception (e.g. FloatingPointError for a non-finite loss)
    when training fails; Ctrl-C stops cleanly and returns the stopped run.
    """
    if on_event is not None and not callable(on_event):
        raise ConfigError(f"on_event: expected a function called with each event, got {type(on_event).__name__}")
    s = Stream(cfg, data, labels=labels, test=test, test_labels=test_labels, runs_root=runs_root, resume=resume, control=control)
    for ev in s:
        if on_event is not None:
            on_event(ev)
    if s.run is None:
        raise RuntimeError(f"training in '{s.run_dir}' ended without a DoneEvent")
    return s.run

