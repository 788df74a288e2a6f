"""Events of a sweep (around the runs' own events)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


from workbench.core.registry import ConfigError
from workbench.core.sweep.spec import Trial




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
