"""One process per GPU: a trial runs in a child process that prints its events as JSON lines and stops on
"stop" read from stdin."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator

from workbench.core import events as E
from workbench.core.config import Config, tomllib
from workbench.core.control import Control
from workbench.core.train import train
from workbench.core.sweep.events import RunEvent, TrialFinished
from workbench.core.sweep.spec import Trial
from workbench.core.sweep.state import SweepState


# ----- one process per GPU -----
def _spawn(st: SweepState, t: Trial, device: str, lines: queue.Queue) -> subprocess.Popen:
    resume = st.resume_dir(t)
    job = {"config": t.config.to_toml(), "runs_root": str(st.dir), "resume": str(resume) if resume else None}  # resume: its own
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


def run_parallel(st: SweepState, devices: list[str]) -> Iterator:
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


def child(job: dict) -> int:
    """A trial in its own process: events as JSON lines on stdout; "stop" on stdin stops it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal reaches the parent, which sends "stop"
    control = Control()

    def listen():
        for line in sys.stdin:
            if line.strip() == "stop":  # pruned or the sweep stopped: the last evaluation stands
                control.stop(quick=True)

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
