"""Sweeps: many runs of one config that differ in a few values, ranked by one metric.

A sweep is a config TOML with a ``[sweep]`` section::

    [sweep]
    method = "grid"              # grid | random (with count) | tpe (Optuna's TPE sampler, `pip install .[sweep]`)
    metric = "best_knn"          # final_knn | best_knn | final_linear | best_linear | final_loss | best_loss
    seeds = [0, 1]               # every point runs once per seed (train.seed)
    max_trials = 64              # a larger sweep must be confirmed (`--yes`)
    prune = true                 # stop trials below the median of finished trials at the same evaluation

    [sweep.params]
    loss.name = ["ntxent", "dcl"]
    loss.temperature = [0.05, 0.1, 0.2, 0.5]
    optim.lr = {low = 1e-4, high = 1e-2, log = true, num = 3}   # a range: `num` points for grid, sampled otherwise

The per-trial budget is the base config's ``train.epochs`` / ``train.max_steps`` / ``train.time_budget_s``.

    for event in run_sweep(base, spec, "sweeps/mine"):   # SweepStarted, TrialStarted, RunEvent(trial, run event),
        ...                                                # TrialFinished, SweepDone

Every trial is a normal run folder inside the sweep folder, beside ``sweep.toml`` (base config and
sweep section) and ``trials.csv`` (one row per trial: parameters, seed, status, metric, run folder).
Running the same sweep into the same folder again resumes it: finished and pruned trials are kept,
an interrupted one resumes from its checkpoint. Pruning follows Optuna's median rule
(``optuna.pruners.MedianPruner``: a trial whose intermediate value is worse than the median of
finished trials' values at the same step stops); Optuna's own pruner is used when it is installed.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import tomli_w

from workbench.core import events as E
from workbench.core.config import SECTIONS, Config
from workbench.core.registry import ConfigError
from workbench.core.runs import atomic_write_text, read_metrics
from workbench.core.train import Control, train

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger("workbench")

METHODS = ("grid", "random", "tpe")
# metric name -> (aggregation over the run, metrics.csv column)
METRICS = {"final_knn": ("final", "knn_acc"), "best_knn": ("best", "knn_acc"),
           "final_linear": ("final", "linear_acc"), "best_linear": ("best", "linear_acc"),
           "final_loss": ("final", "loss"), "best_loss": ("best", "loss")}
STATUSES = ("running", "finished", "pruned", "stopped", "failed")
SPEC_KEYS = ("params", "method", "count", "metric", "seeds", "max_trials", "prune", "prune_startup", "prune_warmup",
             "sampler_seed")
NAME_KEYS = ("loss.name", "model.encoder", "augment.preset", "optim.name", "data.name")  # applied before their parameters


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
    if not path.is_file():
        raise ConfigError(f"sweep config '{path}' does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sweep config '{path}' is not valid TOML: {exc}") from None
    if "sweep" not in raw:
        raise ConfigError(f"'{path}' has no [sweep] section; add one (see examples/sweep_temperature.toml)")
    spec = SweepSpec.from_dict(raw.pop("sweep"))
    base = Config.from_dict(raw)
    return (base.with_overrides(list(overrides)) if overrides else base), spec


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
    if METRICS[spec.metric][1] == "linear_acc" and not base.eval.linear_probe:
        raise ConfigError(f"sweep.metric: '{spec.metric}' needs the linear probe; set eval.linear_probe = true")


# ----- metrics of a run -----
def run_metric(rows: list[dict], metric: str) -> float | None:
    """The ranking value of a run from its metrics.csv rows (``best`` = max accuracy or min loss)."""
    how, col = METRICS[metric]
    vals = [r[col] for r in rows if r.get(col) is not None and math.isfinite(r[col])]
    if not vals:
        return None
    if how == "final":
        return vals[-1]
    return min(vals) if col == "loss" else max(vals)


def intermediate(rows: list[dict], metric: str) -> dict[int, float]:
    """Value per evaluation (keyed by the epoch count at evaluation) that pruning compares between trials:
    the accuracy for kNN / linear metrics, the mean logged loss of the epoch for loss metrics."""
    col = METRICS[metric][1]
    if col != "loss":
        return {int(r["epoch"]): r[col] for r in rows if r.get(col) is not None}
    evals = {int(r["epoch"]) for r in rows if r.get("knn_acc") is not None}
    by_epoch: dict[int, list] = {}
    for r in rows:
        if r.get("loss") is not None:
            by_epoch.setdefault(int(r["epoch"]) + 1, []).append(r["loss"])
    return {e: statistics.fmean(v) for e, v in by_epoch.items() if e in evals}


# ----- pruning -----
class MedianRule:
    """Optuna's median stopping rule without Optuna (``MedianPruner``): after ``warmup`` evaluations, and
    once ``startup`` trials have finished, a trial whose best value so far is worse than the median of
    the finished trials' values at its latest evaluation is pruned."""

    def __init__(self, maximize: bool, startup: int, warmup: int):
        self.maximize, self.startup, self.warmup = maximize, startup, warmup
        self.finished: dict[int, dict[int, float]] = {}

    def should_prune(self, trial: int, series: dict[int, float]) -> bool:
        if not series or len(self.finished) < max(1, self.startup):
            return False
        epoch = max(series)
        if epoch <= self.warmup:
            return False
        others = [s[epoch] for s in self.finished.values() if epoch in s]
        if not others:
            return False
        best = max(series.values()) if self.maximize else min(series.values())
        med = statistics.median(others)
        return best < med if self.maximize else best > med

    def finish(self, trial: int, series: dict[int, float], value: float | None) -> None:
        self.finished[trial] = series

    def drop(self, trial: int, pruned: bool, series: dict[int, float]) -> None:
        pass


class OptunaMedian:
    """The same rule through ``optuna.pruners.MedianPruner`` (one Optuna trial per sweep trial)."""

    def __init__(self, maximize: bool, startup: int, warmup: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.study = optuna.create_study(direction="maximize" if maximize else "minimize",
                                         pruner=optuna.pruners.MedianPruner(n_startup_trials=max(1, startup),
                                                                            n_warmup_steps=warmup + 1))
        self.live: dict[int, Any] = {}

    def _trial(self, trial: int):
        if trial not in self.live:
            self.live[trial] = self.study.ask()
        return self.live[trial]

    def should_prune(self, trial: int, series: dict[int, float]) -> bool:
        if not series:
            return False
        t = self._trial(trial)
        for epoch, value in sorted(series.items()):
            if epoch not in t.storage.get_trial(t._trial_id).intermediate_values:
                t.report(value, epoch)
        return t.should_prune()

    def finish(self, trial: int, series: dict[int, float], value: float | None) -> None:
        self._close(trial, series, value, self.optuna.trial.TrialState.COMPLETE)

    def drop(self, trial: int, pruned: bool, series: dict[int, float]) -> None:
        self._close(trial, series, None, self.optuna.trial.TrialState.PRUNED if pruned else self.optuna.trial.TrialState.FAIL)

    def _close(self, trial, series, value, state):
        t = self.live.pop(trial, None)
        if t is None:  # a trial finished before this session (resumed sweep): record it whole
            self.study.add_trial(self.optuna.trial.create_trial(
                state=state, value=value if state == self.optuna.trial.TrialState.COMPLETE else None,
                intermediate_values=dict(series)))
            return
        self.study.tell(t, value if state == self.optuna.trial.TrialState.COMPLETE else None, state=state)


def make_pruner(spec: SweepSpec, kind: str = "auto"):
    if not spec.prune:
        return None
    use_optuna = kind == "optuna" or (kind == "auto" and has_optuna())
    return (OptunaMedian if use_optuna else MedianRule)(spec.maximize, spec.prune_startup, spec.prune_warmup)


# ----- trials.csv -----
FIXED_COLUMNS = ["trial", "point", "seed", "status", "metric", "seconds", "run_dir", "message"]


def write_trials(sweep_dir: Path, trials: list[Trial], spec: SweepSpec) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(FIXED_COLUMNS[:3] + list(spec.params) + FIXED_COLUMNS[3:])
    for t in trials:
        if t.status:
            metric = "" if t.metric is None else f"{t.metric:.6g}"
            w.writerow([t.id, t.point, t.seed] + [t.params[k] for k in spec.params]
                       + [t.status, metric, f"{t.seconds:.1f}", t.run_dir, t.message])
    atomic_write_text(sweep_dir / "trials.csv", buf.getvalue())


def read_trials(sweep_dir: str | Path, spec: SweepSpec) -> list[Trial]:
    """The recorded trials (any started one), parameters parsed back to the sweep's own values."""
    path = Path(sweep_dir) / "trials.csv"
    if not path.is_file():
        return []
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            params = {k: _parse_value(spec.params[k], r[k]) for k in spec.params}
            out.append(Trial(int(r["trial"]), int(r["point"]), int(r["seed"]), params, r["status"],
                             float(r["metric"]) if r["metric"] else None, r["run_dir"], float(r["seconds"] or 0), r["message"]))
    return out


def _parse_value(values, text: str):
    if isinstance(values, Range):
        return round(float(text)) if values.int else float(text)
    for v in values:
        if str(v) == text:
            return v
    raise ConfigError(f"trials.csv: value {text!r} is not one of the sweep's values {list(values)}")


# ----- the ranked table -----
def ranked(trials: list[Trial], spec: SweepSpec) -> list[dict]:
    """One row per parameter point, best first: mean and spread (sample std) of the metric over the seeds
    whose trial finished. Points whose every seed finished come first, then those with a pruned or failed
    seed (their mean is over the finished seeds only), then those with none finished."""
    groups: dict[int, list[Trial]] = {}
    for t in trials:
        if t.status:
            groups.setdefault(t.point, []).append(t)
    rows = []
    for point, ts in groups.items():
        vals = [t.metric for t in ts if t.status == "finished" and t.metric is not None]
        counts = {s: sum(t.status == s for t in ts) for s in STATUSES if any(t.status == s for t in ts)}
        rows.append({"point": point, "params": ts[0].params, "mean": statistics.fmean(vals) if vals else None,
                     "std": statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None,
                     "n": len(vals), "seeds": len(ts), "status": ", ".join(f"{n} {s}" for s, n in counts.items())})
    sign = -1 if spec.maximize else 1
    rows.sort(key=lambda r: (r["mean"] is None, r["n"] < r["seeds"], sign * r["mean"] if r["mean"] is not None else 0, r["point"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def format_table(rows: list[dict], spec: SweepSpec) -> str:
    keys = list(spec.params)
    head = ["rank"] + keys + [spec.metric, "± std", "seeds", "trials"]
    body = [[str(r["rank"])] + [str(r["params"][k]) for k in keys]
            + (["-", "-"] if r["mean"] is None else [f"{r['mean']:.4f}", f"{r['std']:.4f}"])
            + [f"{r['n']}/{r['seeds']}", r["status"]] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head] + body]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


# ----- events of a sweep -----
@dataclass(frozen=True)
class SweepStarted:
    sweep_dir: str
    params: list  # parameter names
    metric: str
    n_trials: int  # 0 when adaptive (tpe): then count x seeds
    done: int  # trials already finished in an earlier session
    trials: list = field(default_factory=list)  # Trial rows known so far (a resumed sweep shows them at once)
    note: str = ""  # e.g. why --parallel runs one trial at a time here


@dataclass(frozen=True)
class TrialStarted:
    trial: Trial
    index: int  # 1-based position in this sweep
    total: int
    resumed: bool = False


@dataclass(frozen=True)
class RunEvent:
    trial: int
    event: Any  # the run's own event (RunStarted, StepEvent, EvalEvent, ...)


@dataclass(frozen=True)
class TrialFinished:
    trial: Trial
    index: int
    total: int


@dataclass(frozen=True)
class SweepDone:
    sweep_dir: str
    reason: str  # finished | stopped
    table: list  # ranked() rows
    trials: list


class NeedsConfirmation(ConfigError):
    """The sweep has more trials than ``sweep.max_trials``; run again with ``confirm=True`` (CLI: --yes)."""


# ----- the sweep folder -----
def _difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k == "meta":
                continue
            d = _difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
            if d:
                return d
        return ""
    return "" if _plain(a) == _plain(b) else f"{where}: {a!r} there, {b!r} here"


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def open_sweep_dir(out: str | Path, base: Config, spec: SweepSpec) -> Path:
    """Create the sweep folder, or check that an existing one was written by this same sweep."""
    out = Path(out)
    here = base.to_dict() | {"sweep": spec.to_dict()}
    marker = out / "sweep.toml"
    if marker.is_file():
        try:
            raw = tomllib.loads(marker.read_text(encoding="utf-8"))
            there = Config.from_dict({k: v for k, v in raw.items() if k != "sweep"}).to_dict()
            there["sweep"] = SweepSpec.from_dict(raw.get("sweep")).to_dict()
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"sweep folder '{out}' holds an unreadable sweep.toml ({exc}); give another --out") from None
        diff = _difference(there, here)
        if diff:
            raise ConfigError(f"sweep folder '{out}' was written by another config ({diff}); give another --out, "
                              "or the same config to resume it")
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"'{out}' exists and is not a sweep folder (no sweep.toml in it); give another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, tomli_w.dumps(here))
    return out


class _TrialControl(Control):
    """A trial's control: the sweep's stop and pause, plus its own stop (pruning)."""

    def __init__(self, parent: Control):
        self.parent = parent
        self._prune = threading.Event()
        super().__init__()

    def stop(self, quick: bool = True):
        """Prune: stop at the next step; the last evaluation stands (no final one)."""
        self.quick = self.quick or quick
        self._prune.set()

    @property
    def quick(self) -> bool:
        return self._quick or self.parent.quick

    @quick.setter
    def quick(self, value: bool) -> None:
        self._quick = value

    @property
    def stopped(self) -> bool:
        return self._prune.is_set() or self.parent.stopped

    @property
    def paused(self) -> bool:
        return self.parent.paused

    def wait_while_paused(self, poll: float = 0.1) -> None:
        self.parent.wait_while_paused(poll)

    def take_batch_request(self) -> bool:
        return self.parent.take_batch_request()


class _Tpe:
    """Optuna's TPE sampler over the sweep's parameters; one Optuna trial per point (told the mean over seeds)."""

    def __init__(self, spec: SweepSpec):
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.study = optuna.create_study(direction="maximize" if spec.maximize else "minimize",
                                         sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed))
        self.dists = {}
        for k, v in spec.params.items():
            if isinstance(v, Range):
                self.dists[k] = (IntDistribution(round(v.low), round(v.high), log=v.log) if v.int
                                 else FloatDistribution(v.low, v.high, log=v.log))
            else:
                self.dists[k] = CategoricalDistribution(list(v))
        self.asked: dict[int, Any] = {}

    def ask(self, point: int) -> dict:
        t = self.study.ask(self.dists)
        self.asked[point] = t
        return dict(t.params)

    def tell(self, point: int, params: dict, values: list[float]) -> None:
        TS = self.optuna.trial.TrialState
        state, value = (TS.COMPLETE, statistics.fmean(values)) if values else (TS.PRUNED, None)
        t = self.asked.pop(point, None)
        if t is not None:
            self.study.tell(t, value, state=state)
        else:
            self.study.add_trial(self.optuna.trial.create_trial(params=params, distributions=self.dists, value=value, state=state))


class _Sweep:
    """The state of a running sweep: its trials, trials.csv, the pruner and (for TPE) the sampler."""

    def __init__(self, sweep_dir: Path, base: Config, spec: SweepSpec, trials: list[Trial], pruner, control: Control):
        self.dir, self.base, self.spec, self.trials = sweep_dir, base, spec, trials
        self.pruner, self.control = pruner, control
        self.seeds = seeds_of(base, spec)
        self.tpe = _Tpe(spec) if spec.method == "tpe" else None
        self.pruning: set[int] = set()
        self.started: dict[int, float] = {}
        self.index = 0
        self._restore()

    @property
    def total(self) -> int:
        return len(self.trials) if self.tpe is None else self.spec.count * len(self.seeds)

    def _restore(self) -> None:
        recorded = read_trials(self.dir, self.spec)
        if self.tpe is not None:
            for r in recorded:
                r.config = _checked_config(self.base, r.params, r.seed)
            self.trials = sorted(recorded, key=lambda t: t.id)
        else:
            by_id = {t.id: t for t in self.trials}
            for r in recorded:
                t = by_id.get(r.id)
                if t is None or t.params != r.params or t.seed != r.seed:
                    raise ConfigError(f"trials.csv in '{self.dir}' does not match this sweep's trials (trial {r.id}); give another --out")
                t.status, t.metric, t.run_dir, t.seconds, t.message = r.status, r.metric, r.run_dir, r.seconds, r.message
        for t in self.trials:
            if t.status in ("finished", "pruned", "failed"):
                self._record_done(t, self._series(t))
                self.index += 1
        if self.tpe is not None:
            for p in {t.point for t in self.trials}:
                if self._point_done(p):
                    ts = [t for t in self.trials if t.point == p]
                    self.tpe.tell(p, ts[0].params, [t.metric for t in ts if t.status == "finished" and t.metric is not None])

    def _series(self, t: Trial) -> dict[int, float]:
        return intermediate(read_metrics(self.dir / t.run_dir), self.spec.metric) if t.run_dir else {}

    def _record_done(self, t: Trial, series: dict) -> None:
        if self.pruner is None:
            return
        if t.status == "finished":
            self.pruner.finish(t.id, series, t.metric)
        else:
            self.pruner.drop(t.id, t.status == "pruned", series)

    def _point_done(self, point: int) -> bool:
        ts = [t for t in self.trials if t.point == point]
        return len(ts) == len(self.seeds) and all(t.status in ("finished", "pruned", "failed") for t in ts)

    def next_trial(self) -> Trial | None:
        """The next trial to run (an interrupted one first); TPE asks for a new point when none is left."""
        for t in self.trials:
            if t.status in ("", "running", "stopped") and t.id not in self.started:
                return t
        n_points = len({t.point for t in self.trials})
        if self.tpe is None or n_points >= self.spec.count:
            return None
        params = self.tpe.ask(n_points)
        for seed in self.seeds:
            self.trials.append(Trial(len(self.trials), n_points, seed, params, config=_checked_config(self.base, params, seed)))
        return self.next_trial()

    def resume_dir(self, t: Trial) -> Path | None:
        if t.run_dir and t.status in ("running", "stopped") and (self.dir / t.run_dir / "checkpoints" / "last.pt").is_file():
            return self.dir / t.run_dir
        return None

    def begin(self, t: Trial) -> TrialStarted:
        self.started[t.id] = time.monotonic()
        self.index += 1
        return TrialStarted(t, self.index, self.total, resumed=self.resume_dir(t) is not None)

    def on_event(self, t: Trial, ev) -> bool:
        """Record a run's event for trial ``t``; True when the trial should be pruned now."""
        if isinstance(ev, E.RunStarted):
            t.run_dir, t.status = Path(ev.run_dir).name, "running"
            self.save()
        elif isinstance(ev, E.EvalEvent) and self.pruner is not None and t.id not in self.pruning:
            if self.pruner.should_prune(t.id, self._series(t)):
                self.pruning.add(t.id)
                return True
        elif isinstance(ev, E.DoneEvent):
            self.finish(t, ev.reason)
        elif isinstance(ev, E.ErrorEvent):
            self.finish(t, "error", ev.message)
        return False

    def finish(self, t: Trial, reason: str, message: str = "") -> TrialFinished:
        series = self._series(t)
        t.metric = run_metric(read_metrics(self.dir / t.run_dir), self.spec.metric) if t.run_dir else None
        if reason == "error":
            t.status, t.message = "failed", message
        elif t.id in self.pruning and reason == "stopped":
            t.status, t.message = "pruned", f"below the median at evaluation {max(series) if series else 0}"
        else:
            t.status = "finished" if reason in ("finished", "budget") else "stopped"
        t.seconds += time.monotonic() - self.started.get(t.id, time.monotonic())
        self.started[t.id] = time.monotonic()
        if t.status != "stopped":
            self._record_done(t, series)
        if self.tpe is not None and self._point_done(t.point):
            ts = [x for x in self.trials if x.point == t.point]
            self.tpe.tell(t.point, t.params, [x.metric for x in ts if x.status == "finished" and x.metric is not None])
        self.save()
        return TrialFinished(t, self.index, self.total)

    def save(self) -> None:
        write_trials(self.dir, self.trials, self.spec)

    def log_exception(self, t: Trial, exc: BaseException) -> str:
        with open(self.dir / "sweep.log", "a", encoding="utf-8") as f:
            f.write(f"trial {t.id} ({t.label()}):\n{''.join(traceback.format_exception(exc))}\n")
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# ----- running -----
def run_sweep(base: Config, spec: SweepSpec, out: str | Path, control: Control | None = None, parallel: int = 1,
              confirm: bool = False, devices: list[str] | None = None, pruner: str = "auto") -> Iterator:
    """Run (or resume) a sweep into ``out``, yielding SweepStarted, TrialStarted, RunEvent, TrialFinished, SweepDone.

    Everything is checked before the first event (ConfigError): each trial's config, the metric, the sweep
    folder and the number of trials (NeedsConfirmation above ``spec.max_trials`` unless ``confirm``).
    ``parallel`` > 1 runs one process per GPU (``devices``: CUDA_VISIBLE_DEVICES values, one per process);
    on the CPU trials run one after another in this process, sharing data loaded once.
    """
    control = control or Control()
    check_metric(base, spec)
    trials = plan(base, spec)
    total = len(trials) or spec.count * len(seeds_of(base, spec))
    if total > spec.max_trials and not confirm:
        raise NeedsConfirmation(f"sweep: {total} trials is more than sweep.max_trials = {spec.max_trials}; "
                                "confirm it (workbench sweep --yes) or raise sweep.max_trials")
    devices, note = _devices(parallel, devices)
    st = _Sweep(open_sweep_dir(out, base, spec), base, spec, trials, make_pruner(spec, pruner), control)
    yield SweepStarted(str(st.dir), list(spec.params), spec.metric, st.total, st.index, list(st.trials), note)
    if len(devices) > 1:
        yield from _run_parallel(st, devices)
    else:
        yield from _run_local(st)
    reason = "stopped" if control.stopped else "finished"
    yield SweepDone(str(st.dir), reason, ranked(st.trials, spec), list(st.trials))


def _devices(parallel: int, devices: list[str] | None) -> tuple[list[str], str]:
    if devices is not None or parallel <= 1:
        return devices or [], ""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 2:
        return [], f"--parallel {parallel}: {n} GPU(s) here, so trials run one after another"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(n)]
    return ids[: min(parallel, n)], ""


def _run_local(st: _Sweep) -> Iterator:
    data = None
    if not any(k.startswith("data.") for k in st.spec.params):
        from workbench.core.data import load_splits

        data = load_splits(st.base.data)  # once for every trial
    while not st.control.stopped:
        t = st.next_trial()
        if t is None:
            break
        yield st.begin(t)
        ctl = _TrialControl(st.control)
        resume = st.resume_dir(t)
        try:
            for ev in train(None if resume else t.config, ctl, runs_root=st.dir, resume=resume, data=data):
                if st.on_event(t, ev):
                    ctl.stop()
                yield RunEvent(t.id, ev)
        except Exception as exc:  # noqa: BLE001 - one trial's failure is recorded; the sweep goes on
            st.finish(t, "error", st.log_exception(t, exc))
        if t.status == "running":  # the run ended without a DoneEvent
            st.finish(t, "error", "the run ended without finishing; see sweep.log")
        yield TrialFinished(t, st.index, st.total)


# ----- one process per GPU -----
def _spawn(st: _Sweep, t: Trial, device: str, lines: queue.Queue) -> subprocess.Popen:
    resume = st.resume_dir(t)
    job = {"config": None if resume else t.config.to_toml(), "runs_root": str(st.dir), "resume": str(resume) if resume else None}
    env = os.environ | {"CUDA_VISIBLE_DEVICES": device}
    with open(st.dir / "sweep.log", "a", encoding="utf-8") as errors:  # the child's tracebacks
        proc = subprocess.Popen([sys.executable, "-m", "workbench.core.sweep", json.dumps(job)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errors, text=True, env=env)

    def pump():
        for line in proc.stdout:
            lines.put((t.id, line))
        lines.put((t.id, None))

    threading.Thread(target=pump, daemon=True).start()
    return proc


def _tell(proc: subprocess.Popen, what: str) -> None:
    try:
        proc.stdin.write(what + "\n")
        proc.stdin.flush()
    except OSError:  # it has already ended
        pass


def _run_parallel(st: _Sweep, devices: list[str]) -> Iterator:
    lines: queue.Queue = queue.Queue()
    running: dict[int, tuple] = {}
    free = list(devices)
    stop_sent = False
    while True:
        while free and not st.control.stopped and (t := st.next_trial()) is not None:
            yield st.begin(t)
            dev = free.pop(0)
            running[t.id] = (t, _spawn(st, t, dev, lines), dev)
        if not running:
            return
        try:
            tid, line = lines.get(timeout=0.5)
        except queue.Empty:
            if st.control.stopped and not stop_sent:
                stop_sent = True
                for _, proc, _ in running.values():
                    _tell(proc, "stop")
            continue
        t, proc, dev = running[tid]
        if line is None:
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()
            if t.status == "running" or not t.status:
                st.finish(t, "error", f"the trial's process ended with code {proc.returncode}; see sweep.log")
            del running[tid]
            free.append(dev)
            yield TrialFinished(t, st.index, st.total)
            continue
        ev = decode_event(line)
        if ev is not None:
            if st.on_event(t, ev):
                _tell(proc, "stop")
            yield RunEvent(t.id, ev)


SENT = (E.RunStarted, E.StepEvent, E.EvalEvent, E.CheckpointEvent, E.WarningEvent, E.DoneEvent, E.ErrorEvent)


def encode_event(ev) -> str | None:
    """One JSON line for the events a parent needs (no image arrays); None for the others."""
    if not isinstance(ev, SENT):
        return None
    from dataclasses import fields

    body = {f.name: getattr(ev, f.name) for f in fields(ev) if f.name != "held_out_images"}
    return json.dumps({"type": type(ev).__name__, **body}, default=str)


def decode_event(line: str):
    try:
        d = json.loads(line)
        return getattr(E, d.pop("type"))(**d)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None  # not an event line (a stray print of a library)


def _child(job: dict) -> int:
    """A trial in its own process: events as JSON lines on stdout; "stop" on stdin stops it."""
    control = Control()

    def listen():
        for line in sys.stdin:
            if line.strip() == "stop":
                control.stop()

    threading.Thread(target=listen, daemon=True).start()
    cfg = Config.from_dict(tomllib.loads(job["config"])) if job["config"] else None
    try:
        for ev in train(cfg, control, runs_root=job["runs_root"], resume=job["resume"]):
            line = encode_event(ev)
            if line:
                print(line, flush=True)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the trial's error; traceback to sweep.log
        traceback.print_exc()
        print(json.dumps({"type": "ErrorEvent", "message": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}), flush=True)
        return 1
    return 0


# ----- the command line -----
def describe(ev) -> str | None:
    """The progress line of a sweep event (None for run events)."""
    if isinstance(ev, SweepStarted):
        extra = f", {ev.done} already done" if ev.done else ""
        return f"sweep folder: {ev.sweep_dir}\n{ev.n_trials} trials ranked by {ev.metric}{extra}" + (f"\n{ev.note}" if ev.note else "")
    if isinstance(ev, TrialStarted):
        return f"trial {ev.index}/{ev.total} started: {ev.trial.label()}" + (" (resuming from its checkpoint)" if ev.resumed else "")
    if isinstance(ev, TrialFinished):
        t = ev.trial
        value = "-" if t.metric is None else f"{t.metric:.4f}"
        why = f" ({t.message})" if t.message else ""
        return f"trial {ev.index}/{ev.total} {t.status}: {t.label()}  {value}  {t.seconds:.0f} s  {t.run_dir}{why}"
    return None


def run_cli(config: str, out: str | None, overrides: list[str], parallel: int = 1, yes: bool = False) -> int:
    """``workbench sweep``: progress line per trial, ranked table at the end; Ctrl-C stops (resume by running again)."""
    import signal

    base, spec = load(config, overrides)
    out = out or str(Path("sweeps") / Path(config).stem)
    control = Control()
    signal.signal(signal.SIGINT, lambda *_: control.stop())
    try:
        events = run_sweep(base, spec, out, control, parallel=parallel, confirm=yes)
        first = next(events)
    except NeedsConfirmation as exc:
        if not (sys.stdin.isatty() and input(f"{exc}\nrun them all? [y/N] ").strip().lower() in ("y", "yes")):
            raise
        events = run_sweep(base, spec, out, control, parallel=parallel, confirm=True)
        first = next(events)
    status = 0
    for ev in itertools.chain([first], events):
        line = describe(ev)
        if line:
            print(line, flush=True)
        if isinstance(ev, SweepDone):
            print("\n" + format_table(ev.table, spec))
            if ev.reason == "stopped":
                print(f"\nstopped; resume with the same command (or: workbench sweep {config} --out {out})")
                status = 130
    return status


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))
