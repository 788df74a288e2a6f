"""`workbench sweep`: a progress line per trial and the ranked table at the end."""
from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path


from workbench.core.events import WarningEvent
from workbench.core.control import Control
from workbench.core.sweep.events import NeedsConfirmation, RunEvent, SweepDone, SweepStarted, TrialFinished, TrialStarted
from workbench.core.sweep.results import format_table
from workbench.core.sweep.run import run_sweep
from workbench.core.sweep.spec import load




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
    presses = []

    def on_sigint(signum, frame):  # the first Ctrl-C stops after the step (checkpoint kept); a second one at once
        presses.append(1)
        if len(presses) > 1:
            raise KeyboardInterrupt
        control.stop(quick=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    once = Once()
    console = list(logging.getLogger("workbench").handlers)  # the terminal's handlers; each run's run.log is added later
    for h in console:
        h.addFilter(once)
    try:
        return _report(base, spec, out, control, parallel, yes, config, once)
    finally:
        signal.signal(signal.SIGINT, previous)
        for h in console:
            h.removeFilter(once)


class Once(logging.Filter):
    """Each warning text once per sweep on the terminal: the trials repeat the same set-up warnings (a
    warm-up cap, a preset chosen); every trial's run.log still records its own."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def first(self, text: str) -> bool:
        new = text not in self.seen
        self.seen.add(text)
        return new

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or self.first(record.getMessage())


def _report(base, spec, out, control, parallel: int, yes: bool, config: str, once: Once) -> int:
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
        elif isinstance(ev, RunEvent) and isinstance(ev.event, WarningEvent) and once.first(ev.event.message):
            kind = "note" if ev.event.note else "warning"
            print(f"{kind}: {ev.event.message}", file=sys.stderr, flush=True)  # from a trial's process, or not logged
        if isinstance(ev, SweepDone):
            print("\n" + format_table(ev.table, spec))
            if ev.reason == "stopped":
                print(f"\nstopped; resume with the same command (or: workbench sweep {config} --out {out})")
                status = 130
    return status

