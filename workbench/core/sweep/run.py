"""Running a sweep: its folder, its trials one after another (or one process per GPU), resume."""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Iterator

import tomli_w

from workbench.core import keys
from workbench.core.config import Config, tomllib
from workbench.core.files import atomic_write_text
from workbench.core.registry import ConfigError
from workbench.core.runfolder import check_runs_root
from workbench.core.runlock import RunLock
from workbench.core.control import Control
from workbench.core.train import train
from workbench.core.sweep.events import NeedsConfirmation, RunEvent, SweepDone, SweepStarted, TrialFinished
from workbench.core.sweep.parallel import run_parallel
from workbench.core.sweep.results import make_pruner, ranked
from workbench.core.sweep.spec import SweepSpec, check_metric, plan, seeds_of
from workbench.core.sweep.state import SweepState, TrialControl


# ----- the sweep folder -----
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
        diff = keys.differences([there, here], keys.UNSET)
        if diff:
            key, (a, b) = diff[0]
            raise ConfigError(f"sweep folder '{out}' was written by another config ({key}: {a!r} there, {b!r} here); "
                              "give another --out, or the same config to resume it")
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"'{out}' exists and is not a sweep folder (no sweep.toml in it); give another --out")
    check_runs_root(out, "sweep folder")  # a file on the way, or no permission: one line, nothing made
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, tomli_w.dumps(here))
    return out


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
        st = SweepState(folder, base, spec, trials, make_pruner(spec, pruner), control)
        yield SweepStarted(str(st.dir), list(spec.params), spec.metric, st.total, st.index, list(st.trials), note)
        if len(devices) > 1:
            yield from run_parallel(st, devices)
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


def _run_local(st: SweepState, data=None) -> Iterator:
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
        ctl = TrialControl(st.control)
        resume = st.resume_dir(t)
        try:
            for ev in train(t.config, ctl, runs_root=st.dir, resume=resume, data=data):  # resume: its own config
                if st.on_event(t, ev):
                    ctl.stop()
                yield RunEvent(t.id, ev)
        except Exception as exc:  # noqa: BLE001 - one trial's failure is recorded; the sweep goes on
            st.finish(t, "error", st.log_exception(t, exc))
        if t.status == "running":  # the run ended without a DoneEvent
            st.finish(t, "error", "the run ended without finishing; see sweep.log")
        yield TrialFinished(t, st.index, st.total)
