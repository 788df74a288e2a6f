"""The one worker for the window's long work: training, sweeps and background tasks.

An ``EventWorker`` runs a job off the GUI thread and re-emits what it gives as signals; receivers on the GUI
thread get them there (the worker itself lives on the GUI thread, so Qt queues every signal it emits from the
job's thread). A job is ``job(control, report)``:

- a generator of the core's plain events (``train``, ``run_sweep``): each is emitted as ``event``, except those
  ``batched`` coalesces (``batchReady`` fires once until ``take_batch()``: a fast run never floods the GUI thread)
  and those ``latest`` keeps only the newest of (``latestReady``, ``take_latest()``: an evaluation's progress);
- or a plain function, whose return value is the ``result`` (a task); ``report(ev)`` hands on an event from
  inside it (its progress).

``control`` is the core's ``Control`` (stop / pause, shared with the loop); ``cancel()`` stops it, and a
cancelled task reports neither result nor failure. ``failed`` carries the exception and its traceback.

    worker = EventWorker(training(cfg, runs_root), batched=is_step, latest=is_eval_progress)
    worker.event.connect(window.on_event)
    thread = start_worker(worker)                     # its own QThread (training, sweeps)
    task(lambda: slow(), on_done, on_failed)          # a function in Qt's thread pool
"""
from __future__ import annotations

import contextlib
import inspect
import multiprocessing as mp
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, QThreadPool, Signal

from workbench.core import events as E
from workbench.core.runfolder import read_view, save_view
from workbench.core.threads import set_threads
from workbench.core.control import Control
from workbench.core.train import train
from workbench.gui.jobs import align_shared, child_main, first_line


@dataclass(frozen=True)
class TaskProgress:
    """A task's progress: ``done`` of ``total`` (0: unknown), and what it is doing."""
    done: int
    total: int
    message: str = ""


def _never(_ev) -> bool:
    return False


class EventWorker(QObject):
    event = Signal(object)  # an event that is neither batched nor latest-only
    batchReady = Signal()  # take_batch() returns the batched events since the last call
    latestReady = Signal()  # take_latest() returns the newest latest-only event
    result = Signal(object)  # what a plain function returned
    failed = Signal(object, str)  # the exception, its traceback
    finished = Signal()  # the job has ended, whatever way

    running: set = set()  # workers whose job runs (kept alive until they finish); cancel_all() on close

    def __init__(self, job: Callable, batched: Callable = _never, latest: Callable = _never):
        super().__init__()
        self.job, self.batched, self.latest = job, batched, latest
        self.control = Control()
        self.cancel_event = threading.Event()  # what a core function polls (``cancel.is_set()``)
        self.done = threading.Event()  # set when the job has returned
        self._lock = threading.Lock()
        self._batch: list = []
        self._latest, self._signalled = None, {"batch": False, "latest": False}
        self.finished.connect(self._forget)

    # ----- from the job's thread -----
    def report(self, ev) -> None:
        """Hand on ``ev`` (thread-safe): coalesced when batched or latest-only, else emitted at once."""
        if self.batched(ev):
            self._coalesce("batch", lambda: self._batch.append(ev), self.batchReady)
        elif self.latest(ev):
            self._coalesce("latest", lambda: setattr(self, "_latest", ev), self.latestReady)
        else:
            self._emit(self.event, ev)

    def _coalesce(self, kind: str, keep, signal) -> None:
        with self._lock:
            keep()
            if self._signalled[kind]:
                return
            self._signalled[kind] = True
        self._emit(signal)

    def run(self) -> None:
        """The job, start to end (in a worker thread)."""
        try:
            out = self.job(self.control, self.report)
            if inspect.isgenerator(out):
                for ev in out:
                    self.report(ev)
                out = None
            if not self.cancelled:
                self._emit(self.result, out)
        except Exception as exc:  # noqa: BLE001 - shown in the window, never a crash
            if not self.cancelled:
                self._emit(self.failed, exc, traceback.format_exc())
        finally:
            self.job = None  # what it holds (a dataset) goes with it
            self.done.set()
            self._emit(self.finished)

    @staticmethod
    def _emit(signal, *args) -> None:
        with contextlib.suppress(RuntimeError):  # the window (and this object) went while the job ran
            signal.emit(*args)

    # ----- from the GUI thread -----
    def take_batch(self) -> list:
        with self._lock:
            out, self._batch, self._signalled["batch"] = self._batch, [], False
        return out

    def take_latest(self):
        """The newest latest-only event since the last call (None when none came)."""
        with self._lock:
            out, self._latest, self._signalled["latest"] = self._latest, None, False
        return out

    def start(self) -> EventWorker:
        """Run the job in Qt's thread pool (a task)."""
        EventWorker.running.add(self)
        QThreadPool.globalInstance().start(self.run)
        return self

    def stop(self, quick: bool = False) -> None:
        """Stop at the next step (``quick``: without a final evaluation); what the job says after it still comes."""
        self.control.stop(quick=quick)

    def cancel(self) -> None:
        """Stop, and report neither a result nor a failure (a task no longer wanted, the window closing)."""
        self.cancel_event.set()
        self.control.stop(quick=True)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def _forget(self) -> None:
        EventWorker.running.discard(self)

    @classmethod
    def cancel_all(cls, wait_s: float = 0.0) -> None:
        """Cancel every running job (closing the window) and wait up to ``wait_s`` for them to return."""
        workers = list(cls.running)
        for w in workers:
            w.cancel()
        for w in workers:
            w.done.wait(wait_s)


class _Thread(QThread):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def run(self) -> None:
        self.fn()


def start_worker(worker: EventWorker) -> QThread:
    """Run ``worker``'s job in a thread of its own (training, sweeps) at low priority: the window's clicks come
    before the next step."""
    EventWorker.running.add(worker)
    thread = _Thread(worker.run)
    thread.start(QThread.LowPriority)
    return thread


# ----- tasks: a function off the GUI thread -----
def task(fn, on_done, on_failed=None, progress=None) -> EventWorker:
    """Run ``fn`` in the thread pool; ``on_done(result)``, ``on_failed(message, traceback)`` and
    ``progress(done, total, message)`` run on the GUI thread. ``fn`` takes no argument, or ``(report, cancel)``:
    ``report(done, total, message)`` from its thread and ``cancel`` a ``threading.Event`` to poll."""
    def job(_control, report):
        if _takes_two(fn):
            return fn(lambda d, t, m="": report(TaskProgress(int(d), int(t), str(m))), worker.cancel_event)
        return fn()

    worker = EventWorker(job, latest=lambda ev: isinstance(ev, TaskProgress))
    worker.fn = fn
    worker.result.connect(lambda out: None if worker.cancelled else on_done(out))  # cancelled while it was queued
    if on_failed is not None:
        worker.failed.connect(lambda exc, tb: None if worker.cancelled else _call_failed(on_failed, first_line(exc), tb))
    if progress is not None:
        worker.latestReady.connect(lambda: _show_progress(worker, progress))
    return worker.start()


def _takes_two(fn) -> bool:
    try:
        return len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        return False


def _call_failed(on_failed, message: str, tb: str) -> None:
    try:
        on_failed(message, tb)
    except TypeError:
        on_failed(message)


def _show_progress(worker: EventWorker, progress) -> None:
    ev = worker.take_latest()
    if ev is not None and not worker.cancelled:
        progress(ev.done, ev.total, ev.message)


class in_child:  # noqa: N801 - used as a function: task(in_child(fn, *args), on_done)
    """``fn(*args)`` (importable, picklable) in a child process at low priority, as a task's function: cancelling
    the task ends the process within 50 ms, so nothing outlives the window (UMAP, t-SNE). ``proc`` is the process
    while it runs."""

    def __init__(self, fn, *args):
        self.fn, self.args, self.proc = fn, args, None

    def __call__(self, _report, cancel):
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        self.proc = proc = ctx.Process(target=child_main, args=(child, self.fn, self.args), daemon=True)  # a light module: starts fast
        proc.start()
        child.close()
        try:
            while not cancel.is_set():
                if parent.poll(0.05):
                    kind, value = parent.recv()
                    if kind == "error":
                        raise RuntimeError(value[0])
                    return value
                if not proc.is_alive() and not parent.poll(0):
                    raise RuntimeError(f"the background process ended unexpectedly (exit code {proc.exitcode})")
            return None
        finally:
            if proc.is_alive():
                proc.terminate()
            proc.join(2)
            parent.close()


# ----- training -----
_warm = {"started": threading.Event(), "done": threading.Event()}


def warm_up() -> None:
    """Import what the first optimiser step pulls in (torch.optim imports torch._dynamo: ~2 s on a busy 2-core
    machine) while the user is still setting up, so Start gets to the first step sooner. Training waits for it:
    two threads importing torch's lazily registered operators at once can see them half-initialised."""
    _warm["started"].set()
    try:
        import torch

        p = torch.zeros(1, requires_grad=True)
        torch.optim.AdamW([p], lr=1e-3).step()
    finally:
        _warm["done"].set()


def leave_a_core(cfg) -> None:
    """Leave a core to the window so it stays responsive (CPU training only; a GPU run barely uses them)."""
    set_threads(cfg.train.threads if cfg is not None else 0, leave_free=1)


def training(cfg, runs_root: str, resume: str | None = None, data=None):
    """The training job: ``train``'s events; the 2-D layout of the run's embedding is saved in its folder as it
    passes (off the GUI thread), so an opened run keeps the orientation it was trained in; a pause inside an
    evaluation, where the loop cannot yield, comes as a PausedEvent with step -1."""
    def job(control, report):
        if _warm["started"].is_set():
            _warm["done"].wait(120)
        leave_a_core(cfg)
        control.notify = lambda paused: report(E.PausedEvent(-1, paused))
        run_dir, reference = None, None
        for ev in train(cfg, control, runs_root=runs_root, resume=resume, data=data):
            if isinstance(ev, E.RunStarted):
                run_dir = ev.run_dir
                reference = read_view(run_dir) if ev.start_step > 0 else None  # a resumed run keeps its layout
            elif isinstance(ev, E.EmbeddingEvent) and run_dir:
                xy = ev.xy if reference is None else align_shared(*reference, ev.xy, ev.indices)
                with contextlib.suppress(OSError):
                    save_view(run_dir, xy, ev.indices)
            yield ev

    return job


def training_worker(cfg, runs_root: str, resume: str | None = None, data=None) -> EventWorker:
    """A worker for one training run: its step events batched, an evaluation's progress latest-only."""
    return EventWorker(training(cfg, runs_root, resume, data), batched=lambda ev: isinstance(ev, E.StepEvent),
                       latest=lambda ev: isinstance(ev, E.EvalProgressEvent))
