"""A sweep's state, below both of its runners (trials one after another in this process, or one process per GPU):
its trials and trials.csv, the pruner, the TPE sampler, and a trial's control."""
from __future__ import annotations

import statistics
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from workbench.core import events as E
from workbench.core.config import Config
from workbench.core.registry import ConfigError
from workbench.core.runfolder import has_checkpoint
from workbench.core.runs import read_metrics
from workbench.core.control import Control
from workbench.core.sweep.events import TrialFinished, TrialStarted
from workbench.core.sweep.results import intermediate, read_trials, run_metric, write_trials
from workbench.core.sweep.spec import Range, SweepSpec, Trial, _checked_config, seeds_of


class TrialControl(Control):
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


class Tpe:
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


class SweepState:
    """The state of a running sweep: its trials, trials.csv, the pruner and (for TPE) the sampler."""

    def __init__(self, sweep_dir: Path, base: Config, spec: SweepSpec, trials: list[Trial], pruner, control: Control):
        self.dir, self.base, self.spec, self.trials = sweep_dir, base, spec, trials
        self.pruner, self.control = pruner, control
        self.seeds = seeds_of(base, spec)
        self.tpe = Tpe(spec) if spec.method == "tpe" else None
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
        """The run folder of an interrupted trial that wrote a checkpoint (it resumes), else None."""
        if t.run_dir and t.status in ("running", "stopped") and has_checkpoint(self.dir / t.run_dir):
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
