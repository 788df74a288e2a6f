"""The one bridge between the core's training generator and Qt: a QObject in its own QThread
that iterates ``train()`` and re-emits events as signals. The GUI only talks to it through
signals and the thread-safe ``Control``.

Step events are coalesced: the worker appends them to a list and emits ``stepsReady`` only when
the window has taken the previous ones, so a fast run (or a busy window) never piles up a backlog
of queued signals in front of the user's clicks; Pause and Stop are handled at once. An evaluation's
progress events are coalesced the same way, keeping only the latest (``evalProgress``, ``take_progress``).
"""
from __future__ import annotations

import contextlib
import threading

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from workbench.core import events as E
from workbench.core.runfolder import read_view, save_view
from workbench.core.threads import set_threads
from workbench.core.train import Control, train
from workbench.gui.jobs import align_shared


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


class TrainWorker(QObject):
    started = Signal(object)  # RunStarted
    stepsReady = Signal()  # take_steps() returns the StepEvents since the last call
    evalProgress = Signal()  # take_progress() returns the latest EvalProgressEvent (an evaluation under way)
    evaluated = Signal(object)  # EvalEvent
    embedding = Signal(object)  # EmbeddingEvent
    batch = Signal(object)  # BatchEvent
    checkpoint = Signal(object)
    paused = Signal(bool)
    warning = Signal(str, bool)  # message, note (a decision stated rather than a problem)
    done = Signal(object)  # DoneEvent
    error = Signal(str, str)  # one line for the user, the full traceback for Details and run.log
    finished = Signal()

    ROUTES = {E.RunStarted: "started", E.EvalEvent: "evaluated", E.EmbeddingEvent: "embedding",
              E.BatchEvent: "batch", E.CheckpointEvent: "checkpoint", E.DoneEvent: "done"}

    def __init__(self, cfg, runs_root: str, resume: str | None = None, data=None):
        super().__init__()
        self.cfg, self.runs_root, self.resume, self.data = cfg, runs_root, resume, data
        self.control = Control()
        self.control.notify = self.paused.emit  # a pause inside an evaluation (signals cross threads safely)
        self._lock = threading.Lock()
        self._steps: list = []
        self._signalled = False
        self._progress, self._progress_signalled = None, False
        self.run_dir, self.reference = None, None

    def take_steps(self) -> list:
        with self._lock:
            out, self._steps, self._signalled = self._steps, [], False
        return out

    def take_progress(self):
        """The latest EvalProgressEvent since the last call (None when none came)."""
        with self._lock:
            out, self._progress, self._progress_signalled = self._progress, None, False
        return out

    def _push_progress(self, ev) -> None:
        with self._lock:
            self._progress = ev
            if self._progress_signalled:
                return
            self._progress_signalled = True
        self.evalProgress.emit()

    def _push_step(self, ev) -> None:
        with self._lock:
            self._steps.append(ev)
            if self._signalled:
                return
            self._signalled = True
        self.stepsReady.emit()

    def _record(self, ev) -> None:
        """The 2-D layout of the run's embedding in its folder (so an opened run keeps the orientation it was trained
        in), written from this thread, off the GUI; the loop itself records the run's state (status.json)."""
        if isinstance(ev, E.RunStarted):
            self.run_dir = ev.run_dir
            self.reference = read_view(ev.run_dir) if ev.start_step > 0 else None  # a resumed run keeps its layout
        elif isinstance(ev, E.EmbeddingEvent) and self.run_dir:
            xy = ev.xy if self.reference is None else align_shared(*self.reference, ev.xy, ev.indices)
            with contextlib.suppress(OSError):
                save_view(self.run_dir, xy, ev.indices)

    def _route(self, ev) -> None:
        self._record(ev)
        if isinstance(ev, E.StepEvent):
            self._push_step(ev)
        elif isinstance(ev, E.EvalProgressEvent):
            self._push_progress(ev)
        elif isinstance(ev, E.PausedEvent):
            self.paused.emit(ev.paused)
        elif isinstance(ev, E.WarningEvent):
            self.warning.emit(ev.message, ev.note)
        elif isinstance(ev, E.ErrorEvent):
            self.error.emit(ev.message, getattr(ev, "traceback", "") or "")
        elif type(ev) in self.ROUTES:
            getattr(self, self.ROUTES[type(ev)]).emit(ev)

    @Slot()
    def run(self):
        if _warm["started"].is_set():
            _warm["done"].wait(120)
        # leave a core to the window so it stays responsive (CPU training only; a GPU run barely uses them)
        set_threads(self.cfg.train.threads if self.cfg is not None else 0, leave_free=1)
        try:
            for ev in train(self.cfg, self.control, runs_root=self.runs_root, resume=self.resume, data=self.data):
                self._route(ev)
        except Exception as exc:  # noqa: BLE001 - anything goes to the window as a message, never a crash
            self._route(E.ErrorEvent.from_exception(exc, self.run_dir or ""))
        finally:
            self.data = None  # the window keeps its own reference
            self.finished.emit()

    def stop(self, quick: bool = False) -> None:
        """Stop at the next step; ``quick`` skips the final evaluation where the loop supports it (closing)."""
        try:
            self.control.stop(quick=quick) if quick else self.control.stop()
        except TypeError:
            self.control.stop()


def start_worker(worker: TrainWorker) -> QThread:
    thread = QThread()
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit, Qt.DirectConnection)  # quit() is thread-safe; no GUI round trip
    thread.start(QThread.LowPriority)  # the window's clicks come before training's next step
    return thread
