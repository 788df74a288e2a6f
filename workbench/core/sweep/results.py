"""What a sweep learns from its runs: metric and intermediate values from metrics.csv, pruning, trials.csv,
the ranked table."""
from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any


from workbench.core.registry import ConfigError
from workbench.core.files import atomic_write_text
from workbench.core.sweep.spec import METRICS, Range, STATUSES, SweepSpec, Trial, has_optuna




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
    """Value per evaluation (keyed by its epoch) that pruning compares between trials: the accuracy for
    kNN / linear metrics; for loss metrics the mean logged loss of the steps since the previous evaluation."""
    col = METRICS[metric][1]
    if col != "loss":
        return {int(r["epoch"]): r[col] for r in rows if r.get(col) is not None}
    losses = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    out, prev = {}, -math.inf
    for r in rows:
        if r.get("knn_acc") is not None:
            vals = [v for s, v in losses if prev < s <= r["step"]]
            if vals:
                out[int(r["epoch"])] = statistics.fmean(vals)
            prev = r["step"]
    return out


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
    """One row per parameter point, best first: mean and spread (sample std; None from fewer than two) of
    the metric over the seeds whose trial finished (``n`` of ``seeds``). Points whose every seed finished
    come first, then those with a pruned or failed seed (their mean is over the finished seeds only),
    then those with none finished."""
    groups: dict[int, list[Trial]] = {}
    for t in trials:
        if t.status:
            groups.setdefault(t.point, []).append(t)
    rows = []
    for point, ts in groups.items():
        vals = [t.metric for t in ts if t.status == "finished" and t.metric is not None]
        counts = {s: sum(t.status == s for t in ts) for s in STATUSES if any(t.status == s for t in ts)}
        rows.append({"point": point, "params": ts[0].params, "mean": statistics.fmean(vals) if vals else None,
                     "std": statistics.stdev(vals) if len(vals) > 1 else None,  # no spread from one seed
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
            + (["-", "-"] if r["mean"] is None else [f"{r['mean']:.4f}", "—" if r["std"] is None else f"{r['std']:.4f}"])
            + [f"{r['n']}/{r['seeds']}", r["status"]] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head] + body]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])
