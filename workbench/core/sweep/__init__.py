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
from workbench.core.sweep.command import describe, run_cli
from workbench.core.sweep.events import NeedsConfirmation, RunEvent, SweepDone, SweepStarted, TrialFinished, TrialStarted
from workbench.core.sweep.parallel import decode_event, encode_event
from workbench.core.sweep.results import (MedianRule, OptunaMedian, format_table, intermediate, make_pruner, ranked,
                                          read_trials, run_metric, write_trials)
from workbench.core.sweep.run import open_sweep_dir, run_sweep
from workbench.core.sweep.spec import (METHODS, METRICS, Range, SweepSpec, Trial, check_metric, has_optuna, load, plan,
                                       points, seeds_of, trial_config)

__all__ = ["METHODS", "METRICS", "MedianRule", "NeedsConfirmation", "OptunaMedian", "Range", "RunEvent", "SweepDone",
           "SweepSpec", "SweepStarted", "Trial", "TrialFinished", "TrialStarted", "check_metric", "decode_event", "describe",
           "encode_event", "format_table", "has_optuna", "intermediate", "load", "make_pruner", "open_sweep_dir", "plan",
           "points", "ranked", "read_trials", "run_cli", "run_metric", "run_sweep", "seeds_of", "trial_config", "write_trials"]
