"""A run's set-up: the config resolved once for the data it trains on, and the parts built from it.

    s = prepare(cfg)            # data loaded, automatic settings written out, network, method, optimiser
    s.cfg                       # what config.toml records: augment.preset, start_size, head_hidden resolved
    s.notes                     # the decisions the data made, said when the run starts

Everything that cannot work (a loss that needs labels on unlabeled data, a batch larger than the data, a GPU asked
for where there is none) raises ConfigError here, before the loop writes anything.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.core import distributed as ddp
from workbench.core.augment import AUTO, PRESETS, TIME_BOXED_START, Augmenter, check_recipe, resolve_preset, view_side
from workbench.core.config import Config, read_toml
from workbench.core.data import ImageData, load_splits, place
from workbench.core.evaluation import MAX_AUTO_BANK
from workbench.core.events import WarningEvent
from workbench.core.losses import LOSSES
from workbench.core.methods import Method, build_method, build_network, head_hidden
from workbench.core.models import Network
from workbench.core.optim import build_optimizer
from workbench.core.registry import ConfigError
from workbench.core.threads import set_threads

logger = logging.getLogger("workbench")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device: CUDA was asked for but no GPU is available; use device = \"auto\" or \"cpu\"")
    return torch.device(name)


@dataclass
class Setup:
    cfg: Config
    device: torch.device
    train: ImageData
    test: ImageData
    aug: Augmenter
    net: Network
    model: torch.nn.Module  # net, possibly DDP-wrapped or compiled
    method: Method  # what the learning method adds; holds the loss (method.loss)
    opt: torch.optim.Optimizer
    steps_per_epoch: int
    total_steps: int
    global_batch: int
    notes: list = field(default_factory=list)  # decisions made for this data (e.g. the preset "auto" chose), said at the start
    loader_notes: list = field(default_factory=list)  # what the loader said while decoding (already said then): for run.log
    readout: str = ""  # what the last evaluation fitted: "whitened", or "centred" (too wide, or degenerate)

    @property
    def loss(self) -> torch.nn.Module:
        return self.method.loss


def prepare(cfg: Config, device: torch.device | None = None, data: tuple[ImageData, ImageData] | None = None) -> Setup:
    """Build data, model, method and optimiser; raise ConfigError for anything that cannot work.

    ``data = (train, test)`` already loaded (e.g. by the window) skips loading. The automatic settings the data
    decide (data.root made absolute, augment.preset, augment.start_size, model.head_hidden) are collected while
    the parts are built and written into the config once, at the end. Changes torch's global state: seed, thread
    count, flush-denormal (the Python API restores them).
    """
    device = ddp.local_device(device or resolve_device(cfg.train.device))
    set_threads(cfg.train.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal floats appear as training settles and slow CPU kernels by ~25%
    torch.manual_seed(cfg.train.seed)
    train_data, test_data = data if data is not None else load_splits(cfg.data)
    augment, notes = resolve_augment(cfg, train_data.channels, train_data.size)
    global_batch = check_fits(cfg, train_data)
    loader_notes = train_data.notes
    aug = Augmenter(check_recipe(PRESETS[augment["preset"]]) if augment else cfg.augment.recipe, *train_data.mean_std())
    train_data = place(train_data, device, cfg.data.in_memory)  # on the GPU when it fits, else streamed by batches()
    method = build_method(cfg)
    net = network(cfg, train_data.channels, aug.out_size(train_data.size), method, device)
    progressive, note = resolve_progressive(cfg, aug.out_size(train_data.size))
    cfg = resolved(cfg, {"data": absolute_root(cfg), "augment": augment | progressive,
                         "model": {"head_hidden": head_hidden(cfg.model, net.encoder.out_dim)}})  # config.toml says what was built
    notes += note + label_notes(train_data, test_data)
    if not cfg.eval.bank_size and len(train_data) > MAX_AUTO_BANK:
        notes.append(f"eval: the kNN bank is a random {MAX_AUTO_BANK:,} of the {len(train_data):,} training images "
                     "(set eval.bank_size to choose)")
    method.attach(net, aug)
    method.to(device)
    opt = build_optimizer(torch.nn.ModuleList([net, method.loss]), cfg.optim)
    model = ddp.wrap(net, device)
    if cfg.train.compile:
        model = torch.compile(model)
    spe = len(train_data) // global_batch
    total = min(cfg.train.epochs * spe, cfg.train.max_steps or cfg.train.epochs * spe)
    return Setup(cfg, device, train_data, test_data, aug, net, model, method, opt, spe, total, global_batch, notes, loader_notes)


def resolved(cfg: Config, changes: dict[str, dict]) -> Config:
    """``cfg`` with ``changes`` ({section: {key: value}}) written in, validated once; ``cfg`` itself when there are none."""
    changes = {section: values for section, values in changes.items()
               if any(getattr(getattr(cfg, section), k) != v for k, v in values.items())}
    if not changes:
        return cfg
    d = cfg.to_dict()
    for section, values in changes.items():
        d[section].update(values)
    return Config.from_dict(d)


def absolute_root(cfg: Config) -> dict:
    """data.root made absolute ({} when it is already, or empty): config.toml must find the data from any folder."""
    if cfg.data.root and not Path(cfg.data.root).is_absolute():
        return {"root": str(Path(cfg.data.root).expanduser().resolve())}
    return {}


def data_changed(config: Path, shape: str) -> list[WarningEvent]:
    """A warning when a resumed run's data are not what it trained on (``[meta] data`` of its config.toml)."""
    try:
        before = read_toml(config).get("meta", {}).get("data")
    except ConfigError:
        return []
    if not before or before == shape:
        return []
    return [WarningEvent(f"data: this run trained on {before}; it resumes on {shape} (the folder changed?)")]


def label_notes(train: ImageData, test: ImageData) -> list[str]:
    """What makes the kNN accuracy of these splits mean little: no labels, one class, very uneven classes."""
    labels = test.labels[test.labels >= 0].cpu()
    if len(labels) == 0:
        return ["data: the held-out images have no labels (no class folders), so kNN accuracy is not measured; "
                "the loss, alignment, uniformity and effective rank still are"]
    counts = torch.bincount(train.labels[train.labels >= 0].cpu(), minlength=len(train.classes))
    present = counts[counts > 0]
    if len(present) == 1:  # every neighbour has that class (a held-out split of one class among many is fine)
        return ["data: only one class is labelled, so kNN accuracy is 1 whatever the encoder learns"]
    if int(present.max()) > 20 * int(present.min()):
        return [f"data: classes range from {int(present.min())} to {int(present.max())} training images: kNN accuracy "
                "favours the large classes"]
    return []


def same_size_as_trained(s: Setup, state: dict) -> Setup:
    """A resumed run whose automatic image size (``data.image_size = 0``) now resolves to another side than it
    was trained at (a newer version's limit, a machine without the GPU) goes on at the side it was trained at."""
    trained, now = int(state.get("image_size", 0)), s.aug.out_size(s.train.size)
    channels = int(state.get("channels", s.train.channels))
    if s.cfg.data.name == "python" and (now != trained or s.train.channels != channels):  # cannot be loaded again
        raise ConfigError(f"cannot resume: this run was trained on {channels}-channel {trained}x{trained} images and the "
                          f"images given are {s.train.channels}-channel {now}x{now}; pass the images it was trained on")
    if s.cfg.data.image_size or not trained or now == trained:
        return s
    note = (f"data: this run was trained on {trained}x{trained} images and the automatic size now gives {now}x{now}: "
            f"resuming at {trained}x{trained} (data.image_size = {trained} in config.toml)")
    s = prepare(s.cfg.replace("data", image_size=trained))
    s.notes.append(note)
    return s


def resolve_augment(cfg: Config, channels: int, size: int) -> tuple[dict, list[str]]:
    """The [augment] changes that replace augment.preset = "auto" (and no recipe of its own) by the preset that fits
    ``channels`` x ``size`` x ``size`` images, and the line that says so; ({}, []) for any other config."""
    if cfg.augment.preset != AUTO or cfg.augment.recipe:
        return {}, []
    name = resolve_preset(channels, size)
    return {"preset": name, "recipe": []}, [f"augment.preset auto -> {name} ({channels}-channel {size}x{size} images)"]


def resolve_progressive(cfg: Config, full: int) -> tuple[dict, list[str]]:
    """The [augment] change that resolves augment.start_size = 0 (auto: half size for a time-boxed run, else full
    size), and the line that states progressive resolution when the run uses it (views of side ``full`` at the end)."""
    auto = cfg.augment.start_size == 0
    start_size = (TIME_BOXED_START if cfg.train.time_budget_s else 1.0) if auto else cfg.augment.start_size
    start = view_side(start_size, cfg.augment.full_size_at, full, 0.0)
    changes = {"start_size": start_size} if auto else {}
    if not start or start == full:
        return changes, []
    why = "augment.start_size auto, a time-boxed run" if auto else f"augment.start_size = {start_size:g}"
    return changes, [f"progressive resolution ({why}): views grow from {start} to {full} px over the first "
                     f"{cfg.augment.full_size_at:.0%} of the run; augment.start_size = 1 trains at full size throughout"]


def check_fits(cfg: Config, train_data: ImageData) -> int:
    """The global batch size, after checking the data can feed this config (ConfigError otherwise)."""
    if LOSSES.get(cfg.loss.name).meta.get("labels") and not train_data.has_labels:
        raise ConfigError(f"loss '{cfg.loss.name}' needs labels, but dataset '{cfg.data.name}' has none (no class sub-folders); "
                          "choose a self-supervised loss such as ntxent")
    world = ddp.world_size()
    global_batch = cfg.train.batch_size * world
    if global_batch > len(train_data):
        raise ConfigError(batch_too_large(global_batch, len(train_data), world))
    cfg.method.params.check_images(len(train_data))
    return global_batch


def batch_too_large(batch: int, n: int, world: int = 1) -> str:
    """The message for a batch larger than the training split, with a batch size that fits (a few steps an epoch)."""
    if n < 2 * world:
        return (f"train.batch_size: {batch} is larger than the {n} training images, and a contrastive batch needs at "
                f"least 2 images on each of the {world} process(es); add images" + (" or run fewer processes" if world > 1 else ""))
    fits = max(2, 1 << max(1, (n // (2 * world))).bit_length() - 1)
    procs, steps = f" (x{world} processes)" if world > 1 else "", max(1, n // (fits * world))
    return (f"train.batch_size: {batch}{procs} is larger than the {n} training images; "
            f"lower it (e.g. {fits}: {steps} step{'s' if steps > 1 else ''} an epoch)")


def network(cfg: Config, channels: int, size: int, method: Method, device: torch.device) -> Network:
    net = build_network(cfg, channels, size, method).to(device)
    if cfg.model.sync_bn and ddp.world_size() > 1:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        else:
            logger.warning("model.sync_bn needs GPUs (NCCL); on the CPU each process keeps its own BatchNorm statistics")
    return net.to(memory_format=torch.channels_last) if cfg.train.channels_last else net
