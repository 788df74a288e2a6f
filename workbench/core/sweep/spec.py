"""The [sweep] section: parameters and their values or ranges, method, metric, seeds; the trials it plans."""
from __future__ import annotations

import itertools
import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from workbench.core.config import SECTIONS, Config, read_toml
from workbench.core.registry import ConfigError


log = logging.getLogger("workbench")

METHODS = ("grid", "random", "tpe")
# metric name -> (aggregation over the run, metrics.csv column)
METRICS = {"final_knn": ("final", "knn_acc"), "best_knn": ("best", "knn_acc"),
           "final_knn_readout": ("final", "knn_acc_readout"), "best_knn_readout": ("best", "knn_acc_readout"),
           "final_map_at_r": ("final", "map_at_r"), "best_map_at_r": ("best", "map_at_r"),
           "final_precision_at_1": ("final", "precision_at_1"), "best_precision_at_1": ("best", "precision_at_1"),
           "final_linear": ("final", "linear_acc"), "best_linear": ("best", "linear_acc"),
           "final_linear_10pct": ("final", "linear_acc_10pct"), "final_linear_1pct": ("final", "linear_acc_1pct"),
           "final_loss": ("final", "loss"), "best_loss": ("best", "loss")}
# what a metric needs switched on: metrics.csv column -> (eval setting, the value that gives it, as said to the user)
NEEDS = {"linear_acc": ("linear_probe", True, "eval.linear_probe = true"),
         "linear_acc_10pct": ("label_efficiency", True, "eval.linear_probe = true and eval.label_efficiency = true"),
         "linear_acc_1pct": ("label_efficiency", True, "eval.linear_probe = true and eval.label_efficiency = true"),
         "knn_acc_readout": ("readout", "none", "eval.readout = centred or whitened"),
         "map_at_r": ("retrieval", True, "eval.retrieval = true"),
         "precision_at_1": ("retrieval", True, "eval.retrieval = true")}
STATUSES = ("running", "finished", "pruned", "stopped", "failed")
SPEC_KEYS = ("params", "method", "count", "metric", "seeds", "max_trials", "prune", "prune_startup", "prune_warmup",
             "sampler_seed")
NAME_KEYS = ("loss.name", "method.name", "model.encoder", "augment.preset", "optim.name", "data.name")  # applied before their parameters


def has_optuna() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


# ----- the [sweep] section -----
@dataclass(frozen=True)
class Range:
    """A numeric range: ``num`` evenly spaced points (log-spaced with ``log``) for a grid, sampled otherwise."""
    low: float
    high: float
    num: int = 0
    log: bool = False
    int: bool = False

    def grid(self) -> list:
        if self.num == 1:
            return [self.low]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            pts = [math.exp(a + (b - a) * i / (self.num - 1)) for i in range(self.num)]
        else:
            pts = [self.low + (self.high - self.low) * i / (self.num - 1) for i in range(self.num)]
        return [round(p) for p in pts] if self.int else [float(f"{p:.6g}") for p in pts]

    def sample(self, rng: random.Random):
        v = math.exp(rng.uniform(math.log(self.low), math.log(self.high))) if self.log else rng.uniform(self.low, self.high)
        return round(v) if self.int else float(f"{v:.6g}")


@dataclass(frozen=True)
class SweepSpec:
    params: dict  # "section.key" -> list of values | Range
    method: str = "grid"
    count: int = 0  # points for random / tpe
    metric: str = "best_knn"
    seeds: tuple = ()  # empty: the base config's train.seed
    max_trials: int = 64
    prune: bool = True
    prune_startup: int = 3  # finished trials before any is pruned
    prune_warmup: int = 1  # evaluations a trial always gets
    sampler_seed: int = 0

    @property
    def maximize(self) -> bool:
        return METRICS[self.metric][1] != "loss"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = {k: (asdict(v) if isinstance(v, Range) else list(v)) for k, v in self.params.items()}
        d["seeds"] = list(self.seeds)
        if not d["seeds"]:  # the base config's train.seed
            del d["seeds"]
        return d

    @classmethod
    def from_dict(cls, raw: Any) -> SweepSpec:
        """Check the ``[sweep]`` table; a ConfigError names the bad key or value."""
        if not isinstance(raw, dict):
            raise ConfigError("sweep: expected a table ([sweep])")
        bad = [k for k in raw if k not in SPEC_KEYS]
        if bad:
            raise ConfigError(f"sweep.{bad[0]}: unknown key; choose from: {', '.join(SPEC_KEYS)}")
        kw = {k: v for k, v in raw.items() if k != "params"}
        _check_scalars(kw)
        params = _flatten_params(raw.get("params", {}))
        if not params:
            raise ConfigError("sweep.params: no parameters to vary; add e.g. loss.temperature = [0.1, 0.2, 0.5] under [sweep.params]")
        spec = cls(params=params, **{**kw, "seeds": tuple(kw.get("seeds", ()))})
        if spec.method in ("random", "tpe") and spec.count < 1:
            raise ConfigError(f"sweep.count: method '{spec.method}' needs the number of points to try, e.g. count = 8")
        if spec.method == "tpe" and not has_optuna():
            raise ConfigError("sweep.method: 'tpe' needs Optuna: pip install 'contrastive-workbench[sweep]' (or use grid / random)")
        for k, v in params.items():
            if spec.method == "grid" and isinstance(v, Range) and v.num < 1:
                raise ConfigError(f"sweep.params.{k}: a range in a grid needs num (points), "
                                  f"e.g. {{low = {v.low}, high = {v.high}, num = 4}}")
        return spec


def _check_scalars(kw: dict) -> None:
    checks = {"method": (str, lambda v: v in METHODS, f"choose from: {', '.join(METHODS)}"),
              "metric": (str, lambda v: v in METRICS, f"choose from: {', '.join(METRICS)}"),
              "count": (int, lambda v: v >= 0, "must be >= 0"), "max_trials": (int, lambda v: v >= 1, "must be >= 1"),
              "prune": (bool, lambda v: True, ""), "prune_startup": (int, lambda v: v >= 0, "must be >= 0"),
              "prune_warmup": (int, lambda v: v >= 0, "must be >= 0"), "sampler_seed": (int, lambda v: True, ""),
              "seeds": (list, lambda v: bool(v) and all(isinstance(s, int) and not isinstance(s, bool) for s in v),
                        "expected a non-empty list of integers, e.g. [0, 1, 2]")}
    for key, value in kw.items():
        kind, ok, what = checks[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or not ok(value):
            raise ConfigError(f"sweep.{key}: {what or 'expected ' + kind.__name__}; got {value!r}")


def _flatten_params(raw: Any, prefix: str = "") -> dict:
    """``{loss: {temperature: [..]}}`` (TOML dotted keys) -> ``{"loss.temperature": [..]}``, each value checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep.params{'.' + prefix if prefix else ''}: expected a table of section.key = [values]")
    out = {}
    for key, value in raw.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and not {"low", "high"} & set(value):
            out.update(_flatten_params(value, name))
        else:
            out[name] = _param_values(name, value)
    return out


def _param_values(name: str, value: Any):
    where = f"sweep.params.{name}"
    section, _, key = name.partition(".")
    if section not in SECTIONS or not key or "." in key:
        raise ConfigError(f"{where}: expected section.key with a section from: {', '.join(SECTIONS)}")
    if name == "train.seed":
        raise ConfigError(f"{where}: repeat trials over seeds with sweep.seeds = [0, 1, 2] instead")
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: empty list; give at least one value")
        if len({json.dumps(v, sort_keys=True) for v in value}) < len(value):
            raise ConfigError(f"{where}: a value is listed twice ({value!r})")
        return tuple(value)
    if isinstance(value, dict):
        return _range(where, value)
    raise ConfigError(f"{where}: expected a list of values or a range {{low = .., high = ..}}, got {value!r}")


def _range(where: str, value: dict) -> Range:
    bad = set(value) - {"low", "high", "num", "log", "int"}
    if bad:
        raise ConfigError(f"{where}.{sorted(bad)[0]}: unknown key of a range; choose from: low, high, num, log, int")
    lo, hi = value.get("low"), value.get("high")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)) or not lo < hi:
        raise ConfigError(f"{where}: a range needs numbers low < high, got low = {lo!r}, high = {hi!r}")
    if value.get("log") and lo <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {lo!r}")
    num = value.get("num", 0)
    if not isinstance(num, int) or isinstance(num, bool) or num < 0:
        raise ConfigError(f"{where}.num: expected a number of points >= 1, got {num!r}")
    return Range(float(lo), float(hi), num, bool(value.get("log", False)), bool(value.get("int", False)))


def load(path: str | Path, overrides: list[str] | tuple = ()) -> tuple[Config, SweepSpec]:
    """Read a sweep TOML: (base config with ``--set`` overrides applied, sweep section)."""
    path = Path(path)
    raw = read_toml(path, "sweep config")
    if "sweep" not in raw:
        raise ConfigError(f"'{path}' has no [sweep] section; add one (see examples/sweep_temperature.toml)")
    ours = [o for o in overrides if o.split("=", 1)[0].strip().split(".", 1)[0] == "sweep"]
    spec = SweepSpec.from_dict(sweep_overrides(raw.pop("sweep"), ours))
    rest = [o for o in overrides if o not in ours]
    base = Config.from_dict(raw)
    return (base.with_overrides(rest) if rest else base), spec


def sweep_overrides(table: Any, overrides: list[str]) -> Any:
    """The ``[sweep]`` table with ``--set sweep.KEY=VALUE`` applied (``sweep.seeds=[0]``,
    ``sweep.params.loss.temperature=[0.1, 0.2]``); values are TOML literals, as for the config."""
    from workbench.core.config import parse_value

    if not overrides or not isinstance(table, dict):
        return table
    table = json.loads(json.dumps(table))  # a copy
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")[1:]
        if not sep or not parts or not all(parts) or (parts[0] == "params" and len(parts) < 3):
            raise ConfigError(f"--set '{item}': expected sweep.KEY=VALUE, e.g. sweep.seeds=[0] or "
                              "sweep.params.loss.temperature=[0.1, 0.2]")
        node = table
        for i, name in enumerate(parts[:-1]):
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': sweep.{'.'.join(parts[:i + 1])} is a value, not a table")
        node[parts[-1]] = parse_value(value.strip())
    return table


# ----- trials -----
@dataclass
class Trial:
    id: int
    point: int
    seed: int
    params: dict
    status: str = ""  # "" = not started; then one of STATUSES
    metric: float | None = None
    run_dir: str = ""  # folder name inside the sweep folder
    seconds: float = 0.0
    message: str = ""
    config: Config | None = field(default=None, repr=False, compare=False)

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params.items()) + f" seed={self.seed}"


def toml_literal(value) -> str:
    return tomli_w.dumps({"v": value})[4:].strip()


def trial_config(base: Config, params: dict, seed: int) -> Config:
    """The base config with ``params`` applied as ``--set`` would (names before their parameters)."""
    items = sorted(params.items(), key=lambda kv: kv[0] not in NAME_KEYS)
    sets = [f"{k}={toml_literal(v)}" for k, v in items] + [f"train.seed={seed}"]
    return base.with_overrides(sets)


def points(base: Config, spec: SweepSpec) -> list[dict]:
    """The parameter points of a grid or random sweep (deterministic for a given ``sampler_seed``)."""
    if spec.method == "grid":
        axes = [v.grid() if isinstance(v, Range) else list(v) for v in spec.params.values()]
        return [dict(zip(spec.params, combo, strict=True)) for combo in itertools.product(*axes)]
    rng = random.Random(spec.sampler_seed)
    out, seen = [], set()
    for _ in range(spec.count * 20):
        p = {k: (v.sample(rng) if isinstance(v, Range) else rng.choice(v)) for k, v in spec.params.items()}
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(p)
        if len(out) == spec.count:
            break
    return out


def seeds_of(base: Config, spec: SweepSpec) -> list[int]:
    return list(spec.seeds) or [base.train.seed]


def plan(base: Config, spec: SweepSpec) -> list[Trial]:
    """Every trial of a grid / random sweep with its config; a ConfigError names the first trial the config rejects.
    For TPE (adaptive) the trials come as the sweep runs; the values are checked here one at a time."""
    seeds = seeds_of(base, spec)
    if spec.method == "tpe":
        _check_values(base, spec, seeds[0])
        return []
    trials = []
    for p, params in enumerate(points(base, spec)):
        for seed in seeds:
            trials.append(Trial(len(trials), p, seed, params, config=_checked_config(base, params, seed)))
    return trials


def _checked_config(base: Config, params: dict, seed: int) -> Config:
    try:
        return trial_config(base, params, seed)
    except ConfigError as exc:
        shown = ", ".join(f"{k} = {toml_literal(v)}" for k, v in params.items())
        raise ConfigError(f"sweep trial ({shown}): {exc}") from None


def _check_values(base: Config, spec: SweepSpec, seed: int) -> None:
    axes = [[v.low, v.high] if isinstance(v, Range) else list(v) for v in spec.params.values()]
    for combo in itertools.islice(itertools.product(*axes), 512):
        params = dict(zip(spec.params, combo, strict=True))
        _checked_config(base, {k: (round(v) if isinstance(spec.params[k], Range) and spec.params[k].int else v)
                               for k, v in params.items()}, seed)


def check_metric(base: Config, spec: SweepSpec) -> None:
    """The sweep's metric is one the base config's evaluation reports."""
    need = NEEDS.get(METRICS[spec.metric][1])
    if need is None:
        return
    key, value, words = need
    have = getattr(base.eval, key)
    missing = have == value if key == "readout" else have != value or (key == "label_efficiency" and not base.eval.linear_probe)
    if missing:
        raise ConfigError(f"sweep.metric: '{spec.metric}' is not measured by this config; set {words}")
