"""Typed experiment configuration: dataclass sections that validate on construction,
name the bad field in every error, reject unknown keys, and round-trip through TOML.

Losses, methods, encoders and augmentation steps carry their own parameters as flat keys beside
``name`` (e.g. ``[loss] name = "ntxent"  temperature = 0.5``, ``[method] name = "moco"  queue_size = 4096``);
those are checked against the registry entry's declared parameters. A config from an older version is
brought up to date on reading (``upgrade``), which says what it moved in one note.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib  # noqa: TID251 - the one place that chooses the TOML parser; import it from here
else:  # Python 3.10: the tomli backport (a dependency there) is the same parser
    import tomli as tomllib  # noqa: TID251

from workbench.core.registry import ConfigError, coerce


def _check_fields(obj, section: str) -> None:
    for f in fields(obj):
        if f.name == "params" or f.name == "recipe":
            continue
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type))
        if kind is not None:
            value = coerce(getattr(obj, f.name), kind, f"{section}.{f.name}")
            if kind is float and not math.isfinite(value):
                raise ConfigError(f"{section}.{f.name}: must be a finite number, got {value}", f"{section}.{f.name}")
            setattr(obj, f.name, value)


def _check_finite(value, where: str) -> None:
    """Reject NaN / infinity anywhere in a registry parameter value (numbers, lists, tables)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value}", where)
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_finite(v, where)
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")


def _in_range(obj, section: str, name: str, lo, hi, note: str = "") -> None:
    v = getattr(obj, name)
    _require(lo <= v <= hi, f"{section}.{name}", f"must be in {lo}..{hi}{note}, got {v}")


def max_threads() -> int:
    """Most CPU threads a config may ask for: 4x this machine's cores (more only thrashes, and a
    huge count crashes the OpenMP runtime)."""
    return 4 * (os.cpu_count() or 1)


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}", where)


def _choice(value, choices: tuple, where: str):
    """``value`` as one of ``choices`` (strings like "true", "3" or "Auto" accepted from --set)."""
    text = str(value).strip().lower()
    for c in choices:
        if value is c or (type(value) is type(c) and value == c) or text == str(c).lower():
            return c
    raise ConfigError(f"{where}: choose from: {', '.join(str(c).lower() for c in choices)}; got {value!r}", where)


@dataclass
class DataConfig:
    name: str = "bundled"
    root: str = ""
    image_size: int = 0  # 0 = auto: the dataset's own size (a folder of large or mixed-size images: a size chosen from them)
    holdout: float = 0.1  # held-out fraction when the dataset has no test split
    subset: int = 0  # 0 = all training images
    download: bool = False
    in_memory: bool | str = "auto"  # "auto": in memory when it fits, else streamed from the decoded store; true; false
    channels: int | str = "auto"  # "auto" (3 if any image has colour), 1 or 3

    def __post_init__(self):
        _check_fields(self, "data")
        self.in_memory = _choice(self.in_memory, ("auto", True, False), "data.in_memory")
        self.channels = _choice(self.channels, ("auto", 1, 3), "data.channels")
        from workbench.core.data import DATASETS

        DATASETS.get(self.name)
        _require(not (self.name == "bundled" and self.root.strip()), "data.root",
                 f"'{self.root}' is set but data.name is 'bundled' (the built-in sample, which reads no folder); "
                 "set data.name = \"image_folder\" to train on that folder, or leave data.root empty")
        _require(self.image_size == 0 or 8 <= self.image_size <= 1024, "data.image_size",
                 f"must be 0 (auto) or 8..1024, got {self.image_size}")
        _require(0.0 < self.holdout < 1.0, "data.holdout", f"must be in (0, 1), got {self.holdout}")
        _in_range(self, "data", "subset", 0, 10**9, " (0 = all)")


@dataclass
class AugmentConfig:
    preset: str = "auto"  # "auto": chosen from the data's channels and size when training starts (augment.resolve_preset)
    recipe: list = field(default_factory=list)  # ordered list of {name, p, ...params}; given, it wins over the preset
    # progressive resolution: views start at this fraction of the full side (1 = off; 0 = auto: 0.5 when
    # train.time_budget_s boxes the run, else 1) and grow linearly to the full side by full_size_at of the run
    start_size: float = 0.0
    full_size_at: float = 0.5

    def __post_init__(self):
        _check_fields(self, "augment")
        _require(self.start_size == 0 or 0.25 <= self.start_size <= 1.0, "augment.start_size",
                 f"must be 0 (auto) or in 0.25..1 (a fraction of the full side; 1 = off), got {self.start_size}")
        _require(0.0 < self.full_size_at <= 1.0, "augment.full_size_at",
                 f"must be in (0, 1] (a fraction of the run), got {self.full_size_at}")
        from workbench.core.augment import AUTO, PRESETS, check_recipe

        if not self.recipe:
            _require(self.preset in PRESETS or self.preset == AUTO, "augment.preset",
                     f"unknown preset '{self.preset}'; choose from: {', '.join([AUTO, *PRESETS])}")
            self.recipe = copy.deepcopy(PRESETS.get(self.preset, []))
        if not isinstance(self.recipe, list):
            raise ConfigError('augment.recipe: expected a list of steps like [{name = "horizontal_flip", p = 0.5}], '
                              f"got {self.recipe!r}", "augment.recipe")
        for i, step in enumerate(self.recipe):
            if not isinstance(step, dict):
                raise ConfigError(f"augment.recipe[{i}]: expected a table like {{name = \"horizontal_flip\", p = 0.5}}, got {step!r}",
                                  f"augment.recipe[{i}]")
            _check_finite(step, f"augment.recipe[{i}]")
        self.recipe = check_recipe(self.recipe)


@dataclass
class ModelConfig:
    encoder: str = "small_cnn"
    head_layers: int = 2
    head_hidden: int = 0  # 0 = auto (methods.head_hidden): 256 for small_cnn, the representation's size otherwise
    head_out: int = 128
    head_bn: bool = True
    predictor_hidden: int = 512  # used by losses that need a predictor (BYOL, SimSiam)
    sync_bn: bool = False  # synchronise BatchNorm across DDP processes
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_fields(self, "model")
        from workbench.core.models import ENCODERS

        params = ENCODERS.check_params(self.encoder, self.params, "model")
        _check_finite(params, "model")
        self.params = {p.name: p.default for p in ENCODERS.get(self.encoder).params} | params
        _in_range(self, "model", "head_layers", 0, 8, " (0 = no head)")
        _in_range(self, "model", "head_hidden", 0, 65536, " (0 = auto)")
        for k in ("head_out", "predictor_hidden"):
            _in_range(self, "model", k, 1, 65536)


@dataclass
class LossConfig:
    name: str = "ntxent"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_fields(self, "loss")
        from workbench.core.losses import LOSSES

        self.params = LOSSES.check_params(self.name, self.params, "loss")
        _check_finite(self.params, "loss")
        full = {p.name: p.default for p in LOSSES.get(self.name).params}
        full.update(self.params)
        self.params = full
        try:
            LOSSES.build(self.name, self.params)
        except ConfigError as exc:
            raise ConfigError(f"loss.{exc}".replace("loss.loss ", "loss "), f"loss.{exc.field or 'name'}") from None


@dataclass
class MethodConfig:
    """The learning method (``core/methods/``) and its typed parameters (its ``Params`` dataclass, ``params``);
    a config that names none gets its loss's method (``methods.default_method``)."""

    name: str = "simclr"
    params: Any = None  # the method's Params (a dict of its values is accepted and checked)

    def __post_init__(self):
        _check_fields(self, "method")
        from workbench.core.methods import METHODS

        given = self.params if isinstance(self.params, dict) else dataclasses.asdict(self.params) if self.params else {}
        _check_finite(given, "method")
        self.params = METHODS.typed(self.name, given, "method")


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 2e-3  # AdamW at batch 256; chosen by the study in benchmarks/learn_per_second.py
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        _check_fields(self, "optim")
        from workbench.core.optim import OPTIMIZERS

        OPTIMIZERS.get(self.name)
        _require(0 < self.lr <= 10, "optim.lr", f"must be > 0 and at most 10, got {self.lr}")
        _require(0 <= self.weight_decay <= 10, "optim.weight_decay", f"must be in 0..10 (typically 1e-6..0.1), got {self.weight_decay}")
        _require(0 <= self.momentum < 1, "optim.momentum", f"must be in [0, 1), got {self.momentum}")
        _require(0 <= self.warmup_epochs <= 10000, "optim.warmup_epochs", f"must be in 0..10000, got {self.warmup_epochs}")
        _require(self.schedule in ("cosine", "constant"), "optim.schedule", f"choose from: cosine, constant; got '{self.schedule}'")
        _require(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256
    device: str = "auto"
    seed: int = 0
    bf16: bool = True  # autocast on CUDA only
    channels_last: bool = True  # NHWC memory format: faster convolutions on CUDA and on the CPU
    compile: bool = False
    max_steps: int = 0  # 0 = no limit
    time_budget_s: float = 0.0  # 0 = no limit
    log_every: int = 10
    checkpoint_every: int = 1  # epochs between epoch-end checkpoints
    checkpoint_minutes: float = 5.0  # also a checkpoint every this many minutes of training (the first after 1 minute at most)
    threads: int = 0  # CPU threads, 0 = torch default

    def __post_init__(self):
        _check_fields(self, "train")
        _in_range(self, "train", "epochs", 1, 100000)
        _require(self.batch_size >= 2, "train.batch_size", f"a contrastive loss needs at least 2 samples a batch, got {self.batch_size}")
        _in_range(self, "train", "batch_size", 2, 65536)
        _require(self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
                 "train.device", f"choose from: auto, cpu, cuda, cuda:N; got '{self.device}'")
        _in_range(self, "train", "seed", 0, 2**31 - 1)
        _in_range(self, "train", "max_steps", 0, 10**9, " (0 = no limit)")
        _in_range(self, "train", "log_every", 1, 10**6)
        _in_range(self, "train", "checkpoint_every", 1, 100000, " (epochs)")
        _require(0.01 <= self.checkpoint_minutes <= 1440, "train.checkpoint_minutes",
                 f"must be in 0.01..1440 minutes, got {self.checkpoint_minutes}")
        _in_range(self, "train", "threads", 0, max_threads(), f" on this machine ({os.cpu_count()} cores; 0 = torch's default)")
        _require(self.time_budget_s >= 0, "train.time_budget_s", f"must be >= 0 (0 = no limit), got {self.time_budget_s}")


READOUTS = ("none", "centred", "whitened")


@dataclass
class EvalConfig:
    every: int = 1  # epochs between evaluations
    max_share: float = 0.2  # an epoch-end evaluation is skipped while evaluations would take more of the training time; 1 = never skipped
    knn_k: int = 20
    knn_temperature: float = 0.07
    bank_size: int = 0  # training images in the kNN memory bank, 0 = all up to 100,000 (a random 100,000 beyond)
    test_size: int = 0  # held-out images evaluated, 0 = all
    embed_points: int = 2000  # held-out points sent to the live 2-D projection
    embed_every_steps: int = 0  # extra projection snapshots within an epoch, 0 = per epoch only
    linear_probe: bool = False
    linear_probe_epochs: int = 50
    label_efficiency: bool = False  # with linear_probe: the probe on 10% and 1% of the labels too
    readout: str = "none"  # none | centred | whitened: a read-out fitted on the bank, its kNN reported beside the standard one
    retrieval: bool = True  # precision@1, recall@k and mAP@R within the held-out split
    recall_k: int = 5
    quick_size: int = 0  # held-out images for evaluations during training, 0 = as the final one (eval.test_size)
    tensorboard: bool = False

    def __post_init__(self):
        _check_fields(self, "eval")
        _in_range(self, "eval", "every", 1, 100000, " (epochs)")
        _require(0 < self.max_share <= 1, "eval.max_share",
                 f"must be in (0, 1] (the largest share of the training time evaluations may take; 1 = every time), got {self.max_share}")
        _in_range(self, "eval", "knn_k", 1, 10000)
        _require(0 < self.knn_temperature <= 100, "eval.knn_temperature", f"must be > 0 and at most 100, got {self.knn_temperature}")
        for k in ("bank_size", "test_size", "embed_every_steps"):
            _in_range(self, "eval", k, 0, 10**9, " (0 = all)" if k != "embed_every_steps" else " (0 = per epoch only)")
        _in_range(self, "eval", "embed_points", 0, 100000)
        _in_range(self, "eval", "linear_probe_epochs", 1, 10000)
        _require(self.readout in READOUTS, "eval.readout", f"must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        _in_range(self, "eval", "recall_k", 1, 10000)
        _in_range(self, "eval", "quick_size", 0, 10**9, " (0 = as the final evaluation)")


SECTIONS = {
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
FLAT_PARAMS = {"model": "params", "loss": "params", "method": "params"}  # sections whose extra keys are registry parameters


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        from workbench.core.losses import LOSSES
        from workbench.core.methods import default_method, missing_inputs

        meta = LOSSES.get(self.loss.name).meta
        if meta.get("pairs") and self.train.batch_size % 2:
            raise ConfigError(f"train.batch_size: loss '{self.loss.name}' forms pairs and needs an even batch size, "
                              f"got {self.train.batch_size}", "train.batch_size")
        missing = missing_inputs(self.method.name, self.loss.name)
        if missing:
            raise ConfigError(f"method.name: loss '{self.loss.name}' reads {', '.join(missing)}, which method "
                              f"'{self.method.name}' does not give; choose method '{default_method(self.loss.name)}'",
                              "method.name")

    # ----- dict / TOML round trip -----
    def to_dict(self) -> dict:
        out = {}
        for name in SECTIONS:
            sec = dataclasses.asdict(getattr(self, name))
            if name in FLAT_PARAMS:
                sec.update(sec.pop("params"))
            out[name] = sec
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Config:
        """The config of a dict as ``to_dict`` or a TOML file gives it (an older version's brought up to date)."""
        if not isinstance(raw, dict):
            raise ConfigError("config: expected a table of sections")
        raw = upgrade(raw)[0]
        for name in SECTIONS:
            if name in raw and not isinstance(raw[name], dict):
                raise ConfigError(f"{name}: expected a table ([{name}] with keys below it), got {raw[name]!r}; "
                                  f"e.g. [{name}] then {_example_key(name)}", name)
        # [sweep] is read and checked by core/sweep.py (workbench sweep); a plain run trains the base config
        unknown = set(raw) - set(SECTIONS) - {"meta", "sweep"}
        if unknown:
            raise ConfigError(f"config: unknown section(s) {', '.join(sorted(unknown))}; choose from: {', '.join(SECTIONS)}")
        built = {}
        for name, klass in SECTIONS.items():
            sec = dict(raw.get(name, {}))
            known = {f.name for f in fields(klass)}
            if name in FLAT_PARAMS:
                known.discard("params")
                params = {k: sec.pop(k) for k in list(sec) if k not in known}
                sec["params"] = params
            else:
                bad = [k for k in sec if k not in known]
                if bad:
                    raise ConfigError(f"{name}.{bad[0]}: unknown key; choose from: {', '.join(sorted(known))}", f"{name}.{bad[0]}")
            built[name] = klass(**sec)
        return cls(**built)

    def to_toml(self, meta: dict | None = None) -> str:
        d = self.to_dict()
        if meta:
            d["meta"] = meta
        return tomli_w.dumps(d)

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Write the resolved config (and a ``[meta]`` table) atomically. Saving over a run's
        config.toml (a resume) keeps its original ``created`` time and records ``resumed``."""
        from workbench.core.files import atomic_write_text

        path = Path(path)
        if meta and "created" in meta and path.is_file():
            try:
                old = tomllib.loads(path.read_text(encoding="utf-8")).get("meta", {})
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                old = {}
            if isinstance(old, dict) and isinstance(old.get("created"), str):
                meta = meta | {"created": old["created"], "resumed": meta["created"]}
        atomic_write_text(path, self.to_toml(meta))

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path))

    @classmethod
    def load_noted(cls, path: str | Path) -> tuple[Config, list[str]]:
        """``load`` with the note of what reading it brought up to date (none: [])."""
        raw = read_toml(path)
        return cls.from_dict(raw), [f"'{path}': {n}; saving the config writes them there" for n in upgrade(raw)[1]]

    def with_overrides(self, overrides: list[str]) -> Config:
        """Apply ``section.key=value`` overrides; values are parsed as TOML literals when they can be."""
        d = self.to_dict()
        for item in overrides:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(f"--set '{item}': expected section.key=value, e.g. loss.temperature=0.2")
            key, value = item.split("=", 1)
            section, name = key.strip().split(".", 1)
            if section not in SECTIONS:
                raise ConfigError(f"--set '{item}': unknown section '{section}'; choose from: {', '.join(SECTIONS)}")
            old_loss = d["loss"]["name"]
            d[section][name] = parse_value(value.strip())
            if section == "loss" and name == "name":  # a different loss has different parameters, maybe another method
                d["method"] = method_for_loss(d["loss"]["name"], old_loss, d["method"])
                keep = _param_keys("loss", d["loss"]["name"]) | _param_keys("method", d["method"]["name"])
                d["loss"] = {"name": d["loss"]["name"], **{k: v for k, v in d["loss"].items() if k in keep}}
            if section == "method" and name == "name":
                d["method"] = {k: v for k, v in d["method"].items() if k == "name" or k in _param_keys("method", d["method"]["name"])}
            if section == "model" and name == "encoder":
                d["model"] = {k: v for k, v in d["model"].items() if k in {f.name for f in fields(ModelConfig)}}
            if section == "augment" and name == "preset":
                d["augment"]["recipe"] = []
        return Config.from_dict(d)

    def replace(self, section: str, **changes) -> Config:
        d = self.to_dict()
        d[section].update(changes)
        return Config.from_dict(d)


def _example_key(section: str) -> str:
    return {"data": 'name = "bundled"', "augment": 'preset = "simclr_small_grey"', "model": 'encoder = "small_cnn"',
            "loss": 'name = "ntxent"', "method": 'name = "simclr"', "optim": "lr = 0.001", "train": "epochs = 10",
            "eval": "every = 1"}[section]


def _registry(section: str):
    from workbench.core.losses import LOSSES
    from workbench.core.methods import METHODS

    return {"loss": LOSSES, "method": METHODS}[section]


def _param_keys(section: str, name: Any) -> set[str]:
    """The parameter names of ``name`` in the ``loss`` or ``method`` registry (none for an unknown name)."""
    reg = _registry(section)
    return {p.name for p in reg.get(name).params} if isinstance(name, str) and name in reg else set()


def method_for_loss(loss: str, old_loss: str, method: dict) -> dict:
    """The ``[method]`` table after the loss changed from ``old_loss`` to ``loss``: the loss's own method when
    the method was the old loss's (or cannot give what the new one reads), else the method chosen."""
    from workbench.core.losses import LOSSES
    from workbench.core.methods import METHODS, default_method, missing_inputs

    name = method.get("name")
    if loss not in LOSSES or name not in METHODS:
        return method
    if old_loss in LOSSES and name == default_method(old_loss) or missing_inputs(name, loss):
        return {"name": default_method(loss)}
    return method


def upgrade(raw: dict) -> tuple[dict, list[str]]:
    """A config dict as an older version wrote it, brought up to date, and the one note that says what moved
    (none: the dict itself and []). Before ``[method]`` existed, a method's parameters were keys of ``[loss]``
    (``loss.queue_size``, ``loss.momentum``, DINO's ``loss.out_dim`` ...): a ``[loss]`` key the loss does not
    declare but the method does moves to ``[method]`` (winning over a value there: it is the newer one, as
    after ``--set loss.momentum=...``), and a config whose ``[method]`` names none gets its loss's method."""
    from workbench.core.methods import METHODS, default_method

    loss = raw.get("loss")
    if not isinstance(loss, dict) or not isinstance(loss.get("name", "ntxent"), str):
        return raw, []
    loss_name = loss.get("name", "ntxent")
    if loss_name not in _registry("loss"):
        return raw, []
    method = raw.get("method") if isinstance(raw.get("method"), dict) else {}
    method_name = method.get("name", default_method(loss_name))
    if method_name not in METHODS:
        return raw, []
    own, theirs = _param_keys("loss", loss_name), _param_keys("method", method_name)
    moved = [k for k in loss if k != "name" and k not in own and k in theirs]
    if not moved and "name" in method:
        return raw, []
    out = dict(raw)
    out["loss"] = {k: v for k, v in loss.items() if k not in moved}
    out["method"] = {"name": method_name, **{k: v for k, v in method.items() if k != "name"}, **{k: loss[k] for k in moved}}
    if not moved:
        return out, []
    keys = ", ".join(moved)
    return out, [f"the method's settings ({keys}) moved from [loss] to [method] (method '{method_name}')"]


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """The tables of a TOML file, or a ConfigError naming the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder; give a .toml file (see examples/)")
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} '{path}' is not valid TOML: {exc}") from None


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
