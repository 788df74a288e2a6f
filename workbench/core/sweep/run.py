"""Running a sweep: its folder, its trials one after another (or one process per GPU), resume."""
from __future__ import annotations

import os
import statistics
import threading
import time
import traceback
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import tomli_w

from workbench.core import events as E
from workbench.core.config import Config, tomllib
from workbench.core.registry import ConfigError
from workbench.core.runlock import RunLock
from workbench.core.runs import atomic_write_text, check_runs_root, read_metrics
from workbench.core.train import Control, train
from workbench.core.sweep.events import NeedsConfirmation, RunEvent, SweepDone, SweepStarted, TrialFinished, TrialStarted
from workbench.core.sweep.parallel import _run_parallel
from workbench.core.sweep.results import intermediate, make_pruner, ranked, read_trials, run_metric, write_trials
from workbench.core.sweep.spec import Range, SweepSpec, Trial, _checked_config, check_metric, plan, seeds_of


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
    here = evaluations_for_pruning(base, spec)[0].to_dict() | {"sweep": spec.to_dict()}
    marker = out / "sweep.toml"
    if marker.is_file():
        try:
            raw = tomllib.loads(marker.read_text(encoding="utf-8"))
            spec_there = SweepSpec.from_dict(raw.get("sweep"))
            base_there = Config.from_dict({k: v for k, v in raw.items() if k != "sweep"})
            there = evaluations_for_pruning(base_there, spec_there)[0].to_dict()  # both as the trials run
            there["sweep"] = spec_there.to_dict()
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"sweep folder '{out}' holds an unreadable sweep.toml ({exc}); give another --out") from None
        for d in (there, here):
            d["sweep"].pop("max_trials", None)  # only a guard: raising it to resume a sweep is fine
        diff = _difference(there, here)
        if diff:
            raise ConfigError(f"sweep folder '{out}' was written by another config ({diff}); give another --out, "
                              "or the same config to resume it")
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"'{out}' exists and is not a sweep folder (no sweep.toml in it); give another --out")
    check_runs_root(out, "sweep folder")  # a file on the way, or no permission: one line, nothing made
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


def _six_figures(value, dist):
    if not isinstance(value, float) or not hasattr(dist, "low"):
        return value
    return min(max(float(f"{value:.6g}"), dist.low), dist.high)


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
        """The next point's parameters; floats to 6 significant figures (inside their range), as grid and random give."""
        t = self.study.ask(self.dists)
        self.asked[point] = t
        return {k: _six_figures(v, self.dists[k]) for k, v in t.params.items()}

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
            self.trials = sorted(recorded, key=lambda t: t.id)
            for p in sorted({t.point for t in recorded}):  # seeds of a point not started before the interruption
                ts = [t for t in recorded if t.point == p]
                for seed in set(self.seeds) - {t.seed for t in ts}:
                    self.trials.append(Trial(max(t.id for t in self.trials) + 1, p, seed, ts[0].params))
            for t in self.trials:
                t.config = _checked_config(self.base, t.params, t.seed)
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
              confirm: bool = False, devices: list[str] | None = None, pruner: str = "auto", data=None) -> Iterator:
    """Run (or resume) a sweep into ``out``, yielding SweepStarted, TrialStarted, RunEvent, TrialFinished, SweepDone.

    Everything is checked before the first event (ConfigError): each trial's config, the metric, the sweep
    folder and the number of trials (NeedsConfirmation above ``spec.max_trials`` unless ``confirm``).
    ``parallel`` > 1 runs one process per GPU (``devices``: CUDA_VISIBLE_DEVICES values, one per process);
    on the CPU trials run one after another in this process, sharing data loaded once (``data``: the base
    config's (train, test) splits already loaded, e.g. by the window).
    """
    control = control or Control()
    check_metric(base, spec)
    base, even = evaluations_for_pruning(base, spec)
    trials = plan(base, spec)
    total = len(trials) or spec.count * len(seeds_of(base, spec))
    if total > spec.max_trials and not confirm:
        raise NeedsConfirmation(f"sweep: {total} trials is more than sweep.max_trials = {spec.max_trials}; "
                                "confirm it (workbench sweep --yes) or raise sweep.max_trials")
    devices, note = _devices(parallel, devices)
    note = "\n".join(n for n in (even, note) if n)
    folder = open_sweep_dir(out, base, spec)
    with RunLock.acquire(folder, "sweep"):  # one sweep at a time in a folder (each trial's run folder has its own)
        st = _Sweep(folder, base, spec, trials, make_pruner(spec, pruner), control)
        yield SweepStarted(str(st.dir), list(spec.params), spec.metric, st.total, st.index, list(st.trials), note)
        if len(devices) > 1:
            yield from _run_parallel(st, devices)
        else:
            yield from _run_local(st, data)
        reason = "stopped" if control.stopped else "finished"
        yield SweepDone(str(st.dir), reason, ranked(st.trials, spec), list(st.trials))


def evaluations_for_pruning(base: Config, spec: SweepSpec) -> tuple[Config, str]:
    """(base, note): with pruning on, every trial evaluates every ``eval.every`` epochs (``eval.max_share = 1``),
    since the median rule compares trials at the same evaluations; a run alone may skip costly ones."""
    if not spec.prune or base.eval.max_share >= 1:
        return base, ""
    return base.with_overrides(["eval.max_share=1"]), (
        "note: pruning compares trials at the same evaluations, so every trial evaluates every "
        f"{base.eval.every} epoch(s) (eval.max_share = 1 instead of {base.eval.max_share:g}); sweep.prune = false keeps it")


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


def _run_local(st: _Sweep, data=None) -> Iterator:
    if any(k.startswith("data.") for k in st.spec.params):
        data = None  # each trial loads its own
    elif data is None:
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
