"""Typed experiment configuration: dataclass sections that validate on construction,
name the bad field in every error, reject unknown keys, and round-trip through TOML.

Losses, encoders and augmentation steps carry their own parameters as flat keys beside
``name`` (e.g. ``[loss] name = "ntxent"  temperature = 0.5``); those are checked against the
registry entry's declared parameters.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from workbench.core.registry import ConfigError, coerce


def _check_fields(obj, section: str) -> None:
    for f in fields(obj):
        if f.name == "params" or f.name == "recipe":
            continue
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type))
        if kind is not None:
            setattr(obj, f.name, coerce(getattr(obj, f.name), kind, f"{section}.{f.name}"))


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


@dataclass
class DataConfig:
    name: str = "bundled"
    root: str = ""
    image_size: int = 0  # 0 keeps the dataset's own size
    holdout: float = 0.1  # held-out fraction when the dataset has no test split
    subset: int = 0  # 0 = all training images
    download: bool = False
    in_memory: bool = True

    def __post_init__(self):
        _check_fields(self, "data")
        from workbench.core.data import DATASETS

        DATASETS.get(self.name)
        _require(self.image_size == 0 or 8 <= self.image_size <= 1024, "data.image_size", f"must be 0 (native) or 8..1024, got {self.image_size}")
        _require(0.0 < self.holdout < 1.0, "data.holdout", f"must be in (0, 1), got {self.holdout}")
        _require(self.subset >= 0, "data.subset", f"must be >= 0 (0 = all), got {self.subset}")


@dataclass
class AugmentConfig:
    preset: str = "simclr_small_grey"
    recipe: list = field(default_factory=list)  # ordered list of {name, p, ...params}

    def __post_init__(self):
        _check_fields(self, "augment")
        from workbench.core.augment import PRESETS, check_recipe

        if not self.recipe:
            _require(self.preset in PRESETS, "augment.preset", f"unknown preset '{self.preset}'; choose from: {', '.join(PRESETS)}")
            self.recipe = copy.deepcopy(PRESETS[self.preset])
        self.recipe = check_recipe(self.recipe)


@dataclass
class ModelConfig:
    encoder: str = "small_cnn"
    head_layers: int = 2
    head_hidden: int = 512
    head_out: int = 128
    head_bn: bool = True
    predictor_hidden: int = 512  # used by losses that need a predictor (BYOL, SimSiam)
    sync_bn: bool = False  # synchronise BatchNorm across DDP processes
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_fields(self, "model")
        from workbench.core.models import ENCODERS

        params = ENCODERS.check_params(self.encoder, self.params, "model")
        self.params = {p.name: p.default for p in ENCODERS.get(self.encoder).params} | params
        _require(self.head_layers >= 0, "model.head_layers", f"must be >= 0 (0 = no head), got {self.head_layers}")
        for k in ("head_hidden", "head_out", "predictor_hidden"):
            _require(getattr(self, k) >= 1, f"model.{k}", f"must be >= 1, got {getattr(self, k)}")


@dataclass
class LossConfig:
    name: str = "ntxent"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_fields(self, "loss")
        from workbench.core.losses import LOSSES

        self.params = LOSSES.check_params(self.name, self.params, "loss")
        full = {p.name: p.default for p in LOSSES.get(self.name).params}
        full.update(self.params)
        self.params = full
        try:
            LOSSES.build(self.name, self.params)
        except ConfigError as exc:
            raise ConfigError(f"loss.{exc}".replace("loss.loss ", "loss ")) from None


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        _check_fields(self, "optim")
        from workbench.core.optim import OPTIMIZERS

        OPTIMIZERS.get(self.name)
        _require(self.lr > 0 and math.isfinite(self.lr), "optim.lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(0 <= self.momentum < 1, "optim.momentum", f"must be in [0, 1), got {self.momentum}")
        _require(self.warmup_epochs >= 0, "optim.warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")
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
    checkpoint_every: int = 1  # epochs
    threads: int = 0  # CPU threads, 0 = torch default

    def __post_init__(self):
        _check_fields(self, "train")
        _require(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 2, "train.batch_size", f"a contrastive loss needs at least 2 samples a batch, got {self.batch_size}")
        _require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), "train.device", f"choose from: auto, cpu, cuda; got '{self.device}'")
        for k in ("max_steps", "log_every", "checkpoint_every", "threads"):
            _require(getattr(self, k) >= 0, f"train.{k}", f"must be >= 0, got {getattr(self, k)}")
        _require(self.log_every >= 1, "train.log_every", "must be >= 1")
        _require(self.time_budget_s >= 0, "train.time_budget_s", f"must be >= 0, got {self.time_budget_s}")


@dataclass
class EvalConfig:
    every: int = 1  # epochs between evaluations
    knn_k: int = 20
    knn_temperature: float = 0.07
    bank_size: int = 0  # training images in the kNN memory bank, 0 = all
    test_size: int = 0  # held-out images evaluated, 0 = all
    embed_points: int = 2000  # held-out points sent to the live 2-D projection
    embed_every_steps: int = 0  # extra projection snapshots within an epoch, 0 = per epoch only
    linear_probe: bool = False
    linear_probe_epochs: int = 50
    tensorboard: bool = False

    def __post_init__(self):
        _check_fields(self, "eval")
        _require(self.every >= 1, "eval.every", f"must be >= 1, got {self.every}")
        _require(self.knn_k >= 1, "eval.knn_k", f"must be >= 1, got {self.knn_k}")
        _require(self.knn_temperature > 0, "eval.knn_temperature", f"must be > 0, got {self.knn_temperature}")
        for k in ("bank_size", "test_size", "embed_points", "embed_every_steps"):
            _require(getattr(self, k) >= 0, f"eval.{k}", f"must be >= 0, got {getattr(self, k)}")
        _require(self.linear_probe_epochs >= 1, "eval.linear_probe_epochs", "must be >= 1")


SECTIONS = {
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
FLAT_PARAMS = {"model": "params", "loss": "params"}  # sections whose extra keys are registry parameters


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        from workbench.core.losses import LOSSES

        meta = LOSSES.get(self.loss.name).meta
        if meta.get("pairs") and self.train.batch_size % 2:
            raise ConfigError(f"train.batch_size: loss '{self.loss.name}' forms pairs and needs an even batch size, got {self.train.batch_size}")

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
    def from_dict(cls, raw: dict) -> "Config":
        if not isinstance(raw, dict):
            raise ConfigError("config: expected a table of sections")
        unknown = set(raw) - set(SECTIONS) - {"meta"}
        if unknown:
            raise ConfigError(f"config: unknown section(s) {', '.join(sorted(unknown))}; choose from: {', '.join(SECTIONS)}")
        built = {}
        for name, klass in SECTIONS.items():
            sec = dict(raw.get(name, {}))
            if not isinstance(sec, dict):
                raise ConfigError(f"{name}: expected a table, got {sec!r}")
            known = {f.name for f in fields(klass)}
            if name in FLAT_PARAMS:
                known.discard("params")
                params = {k: sec.pop(k) for k in list(sec) if k not in known}
                sec["params"] = params
            else:
                bad = [k for k in sec if k not in known]
                if bad:
                    raise ConfigError(f"{name}.{bad[0]}: unknown key; choose from: {', '.join(sorted(known))}")
            built[name] = klass(**sec)
        return cls(**built)

    def to_toml(self, meta: dict | None = None) -> str:
        d = self.to_dict()
        if meta:
            d["meta"] = meta
        return tomli_w.dumps(d)

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        from workbench.core.runs import atomic_write_text

        atomic_write_text(Path(path), self.to_toml(meta))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file '{path}' is not valid TOML: {exc}") from None
        return cls.from_dict(raw)

    def with_overrides(self, overrides: list[str]) -> "Config":
        """Apply ``section.key=value`` overrides; values are parsed as TOML literals when they can be."""
        d = self.to_dict()
        for item in overrides:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(f"--set '{item}': expected section.key=value, e.g. loss.temperature=0.2")
            key, value = item.split("=", 1)
            section, name = key.strip().split(".", 1)
            if section not in SECTIONS:
                raise ConfigError(f"--set '{item}': unknown section '{section}'; choose from: {', '.join(SECTIONS)}")
            d[section][name] = parse_value(value.strip())
            if section == "loss" and name == "name":  # a different loss has different parameters
                d["loss"] = {"name": d["loss"]["name"], **{k: v for k, v in d["loss"].items() if k in _loss_keys(d["loss"]["name"])}}
            if section == "model" and name == "encoder":
                d["model"] = {k: v for k, v in d["model"].items() if k in {f.name for f in fields(ModelConfig)}}
            if section == "augment" and name == "preset":
                d["augment"]["recipe"] = []
        return Config.from_dict(d)

    def replace(self, section: str, **changes) -> "Config":
        d = self.to_dict()
        d[section].update(changes)
        return Config.from_dict(d)


def _loss_keys(name: str) -> set[str]:
    from workbench.core.losses import LOSSES

    return {p.name for p in LOSSES.get(name).params}


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
